"""The kubeconfig backend: a cluster that already exists (a workshop's shared multi-node cluster, a cloud cluster).

    labkit up --backend kubeconfig [--kubeconfig PATH] [--context C] [--learner NAME]

Each learner's labs run in namespaces of their own: a lab asking for namespace `clusterip` gets
`<learner>-clusterip`. Every namespace handed out is remembered in `<home>/existing/cluster.json`, and
`labkit down` deletes exactly those, plus `<learner>-labkit` where the node helper pods run. Nothing outside them
is created, changed or deleted; of the cluster's own objects only nodes, Services and kube-proxy's ConfigMap are
read (each read may be forbidden: the backend then does without).

The chosen context is copied, flattened, into `<home>/existing/kubeconfig`, so kubectl, the labs and labkit's
client all reach the same cluster as the same user. (labkit's client speaks bearer tokens and client
certificates; a context that authenticates with an exec plugin works with kubectl only.)

What the API cannot show (the IPVS table, queries and connections from inside) goes through node helper pods
(labkit.backends.incluster): privileged, on the host's network, so only where RBAC and the namespace's Pod
Security admission allow. Where they do not, lab cells that need a node say why (the cluster's refusal) and which
proxy mode kube-proxy runs; queries and connections not tied to a pod then leave from an unprivileged probe pod.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from labkit import errors
from labkit.agent.cli import parse_conntrack
from labkit.agent.ipvsadm import kernel_hz, lists_persistent, parse_proc, parse_proc_connections
from labkit.agent.model import Connection, VirtualServer
from labkit.backends import tools
from labkit.backends.base import Backend, ClusterInfo
from labkit.backends.incluster import InCluster, ipvs_destinations, open_http

if TYPE_CHECKING:
    from labkit.agent.cli import HttpConnection
    from labkit.dns.dig import Transport

DOCKER_DIR = Path(__file__).resolve().parents[2] / "docker"
NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# How kube-proxy's mode is found: kubeadm's ConfigMap, else kube-proxy's own metrics endpoint on a node.
PROXY_MODE_URL = "http://127.0.0.1:10249/proxyMode"


@dataclass
class Saved:
    """What `start` found, kept in <home>/existing/cluster.json."""

    source: str  # the kubeconfig the context came from
    context: str
    learner: str
    kubectl: str
    proxy_mode: str = "unknown"
    proxy_mode_how: str = ""
    namespaces: list[str] = field(default_factory=list)


def default_learner() -> str:
    user = re.sub(r"[^a-z0-9-]", "-", (os.environ.get("USER") or "learner").lower()).strip("-")
    return user or "learner"


class KubeconfigBackend(Backend):
    """Namespaces of one learner's own on the cluster a kubeconfig names."""

    name = "kubeconfig"
    proxy_modes = ("ipvs", "nftables")

    def __init__(self, home: str | Path | None = None, *, kubeconfig: str | None = None, context: str | None = None,
                 learner: str | None = None, kubectl_bin: str | None = None, timeout: float = 120.0) -> None:
        from labkit.backends.embedded import default_home

        self.home = Path(home).expanduser().absolute() if home else default_home()
        self.dir = self.home / "existing"
        self._source, self._context, self._learner, self._kubectl_bin = kubeconfig, context, learner, kubectl_bin
        self.timeout = timeout
        self._inside: InCluster | None = None

    def __repr__(self) -> str:
        return f"<KubeconfigBackend {self.home}>"

    # -- state ------------------------------------------------------------------------------------------------

    def _load(self) -> Saved | None:
        path = self.dir / "cluster.json"
        return Saved(**json.loads(path.read_text())) if path.exists() else None

    def _saved(self) -> Saved:
        saved = self._load()
        if saved is None:
            raise errors.ClusterNotRunning(f"no cluster was reached from {self.home}; "
                                           "`labkit up --backend kubeconfig [--context C]` first")
        return saved

    def _save(self, saved: Saved) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / "cluster.json.tmp"
        tmp.write_text(json.dumps(asdict(saved), indent=2))
        tmp.replace(self.dir / "cluster.json")

    def _kubectl(self, saved: Saved) -> tools.Kubectl:
        return tools.Kubectl(Path(saved.kubectl), self.kubeconfig)

    def inside(self) -> InCluster:
        if self._inside is None:
            saved = self._saved()
            self._inside = InCluster(self._kubectl(saved), self.home_namespace(saved), DOCKER_DIR,
                                     timeout=self.timeout)
        return self._inside

    @staticmethod
    def home_namespace(saved: Saved) -> str:
        return f"{saved.learner}-labkit"

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self, proxy_mode: str | None = None, timeout: float = 180.0) -> bool:
        saved = self._load()
        started = saved is None
        if saved is None:
            saved = self._reach()
        kubectl = self._kubectl(saved)
        self._answers(kubectl)
        home_ns = self.home_namespace(saved)
        if home_ns not in saved.namespaces:
            self._create_namespace(kubectl, home_ns, timeout)
            saved.namespaces.append(home_ns)
            self._save(saved)
        if saved.proxy_mode == "unknown":
            saved.proxy_mode, saved.proxy_mode_how = self._detect_proxy_mode(kubectl)
            self._save(saved)
        if proxy_mode and saved.proxy_mode != proxy_mode:
            raise errors.Unavailable(f"this cluster runs kube-proxy in {saved.proxy_mode} mode "
                                     f"({saved.proxy_mode_how}); a cluster that exists keeps its mode")
        self._wait_usable(timeout)
        return started

    def _reach(self) -> Saved:
        kubectl_path = tools.find_tool("kubectl", self._kubectl_bin, backend="kubeconfig")
        source = Path(self._source or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
                      or Path.home() / ".kube" / "config").expanduser().absolute()
        if not source.exists():
            raise errors.BackendUnavailable(f"kubeconfig backend: no kubeconfig at {source} (--kubeconfig, "
                                            "$KUBECONFIG); the embedded backend (`labkit up`) needs none")
        learner = self._learner or default_learner()
        if not NAME.fullmatch(learner) or len(learner) > 40:
            raise errors.ClusterError(f"kubeconfig backend: learner {learner!r} must be lowercase letters, digits "
                                      "and '-', at most 40 characters (it prefixes namespace names)")
        context = ["--context", self._context] if self._context else []
        view = tools.run([kubectl_path, f"--kubeconfig={source}", "config", "view", "--minify", "--flatten",
                          *context], timeout=60)
        config = yaml.safe_load(view.stdout) or {}
        if not config.get("contexts"):
            raise errors.BackendUnavailable(f"kubeconfig backend: {source} has no context "
                                            f"{self._context or '(current)'}")
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "kubeconfig", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(view.stdout)
        return Saved(str(source), config["contexts"][0]["name"], learner, str(kubectl_path))

    @staticmethod
    def _create_namespace(kubectl: tools.Kubectl, name: str, timeout: float) -> None:
        """Create `name` unless it exists; one still terminating (an earlier `down`) is waited out first."""
        deadline = time.monotonic() + timeout
        while True:
            phase = kubectl("get", "namespace", name, "-o", "jsonpath={.status.phase}", check=False, timeout=60)
            if phase.returncode == 0 and phase.stdout.strip() == "Active":
                return
            if phase.returncode != 0:
                made = kubectl("create", "namespace", name, check=False, timeout=60)
                if made.returncode == 0:
                    return
                if "AlreadyExists" not in made.stderr:
                    raise errors.ClusterError(f"kubeconfig backend: cannot create namespace {name}: "
                                              f"{tools.last_words(made.stderr)}")
            if time.monotonic() > deadline:
                raise errors.ClusterError(f"kubeconfig backend: namespace {name} is still terminating")
            time.sleep(0.5)

    def _answers(self, kubectl: tools.Kubectl) -> None:
        proc = kubectl("get", "--raw", "/readyz", check=False, timeout=60)
        if proc.returncode != 0:
            raise errors.ClusterError(f"kubeconfig backend: the cluster does not answer: "
                                      f"{tools.last_words(proc.stderr)}")

    def _detect_proxy_mode(self, kubectl: tools.Kubectl) -> tuple[str, str]:
        """kube-proxy's mode: kubeadm's kube-proxy ConfigMap, else /proxyMode on a node; ("unknown", why)."""
        proc = kubectl("-n", "kube-system", "get", "configmap", "kube-proxy", "-o", r"jsonpath={.data.config\.conf}",
                       check=False, timeout=60)
        if proc.returncode == 0 and proc.stdout.strip():
            config = yaml.safe_load(proc.stdout) or {}
            # An empty mode is the platform's default: iptables on Linux (kube-proxy's --proxy-mode).
            return str(config.get("mode") or "iptables"), "kube-system/kube-proxy ConfigMap"
        why = tools.last_words(proc.stderr) if proc.returncode else "kube-system/kube-proxy has no config.conf"
        try:
            inside = self.inside()
            node = inside.nodes()[0]
            probe = inside.exec_in(inside.helper(node), "python3", "-c",
                                   f"import urllib.request; print(urllib.request.urlopen({PROXY_MODE_URL!r}, "
                                   "timeout=5).read().decode())")
            if probe.returncode == 0 and probe.stdout.strip():
                return probe.stdout.strip(), f"{PROXY_MODE_URL} on node {node}"
            why += f"; {PROXY_MODE_URL}: {tools.last_words(probe.stderr)}"
        except errors.Unavailable as exc:
            why += f"; {exc}"
        return "unknown", why

    def _wait_usable(self, timeout: float) -> None:
        """The cluster DNS answers for the kubernetes Service, asked from inside."""
        from labkit.dns.dig import resolve

        transport = self.dns_transport(None, "default")
        deadline, said = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            try:
                if resolve("kubernetes.default.svc.cluster.local.", transport=transport).addresses:
                    return
                said = "no address for kubernetes.default.svc.cluster.local"
            except OSError as exc:
                said = str(exc)
        raise errors.ClusterError(f"kubeconfig backend: the cluster DNS does not answer from {transport.label} "
                                  f"({said})")

    def connect(self, timeout: float = 60.0) -> None:
        saved = self._saved()
        self._answers(self._kubectl(saved))
        self._wait_usable(timeout)

    def stop(self) -> bool:
        saved = self._load()
        if saved is None:
            return False
        if saved.namespaces:
            self._kubectl(saved)("delete", "namespace", *saved.namespaces, "--ignore-not-found", "--wait=false",
                                 timeout=120)
        for name in ("cluster.json", "kubeconfig"):
            (self.dir / name).unlink(missing_ok=True)
        self._inside = None
        return True

    def stopped_what(self) -> str:
        return "the learner's namespaces deleted"

    def running(self) -> bool:
        saved = self._load()
        if saved is None:
            return False
        return self._kubectl(saved)("get", "--raw", "/readyz", check=False, timeout=30).returncode == 0

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    def describe(self) -> ClusterInfo:
        saved = self._saved()
        config = yaml.safe_load(self.kubeconfig.read_text())
        try:
            nodes = tuple(self.inside().nodes())
        except errors.Unavailable:
            nodes = ()
        return ClusterInfo(backend=self.name, server=config["clusters"][0]["cluster"]["server"],
                           kubeconfig=self.kubeconfig, proxy_mode=saved.proxy_mode, nodes=nodes,
                           details=(("context", saved.context), ("learner", saved.learner),
                                    ("namespaces", ", ".join(saved.namespaces)),
                                    ("proxy", f"kube-proxy in {saved.proxy_mode} mode ({saved.proxy_mode_how})")))

    @property
    def proxy_mode(self) -> str:
        return self._saved().proxy_mode

    def namespace(self, name: str) -> str:
        """`<learner>-<name>`, remembered so that `labkit down` deletes it."""
        saved = self._saved()
        prefix = f"{saved.learner}-"
        real = name if name.startswith(prefix) else f"{prefix}{name}"
        if not NAME.fullmatch(real) or len(real) > 63:
            raise errors.ClusterError(f"namespace {real!r} is not a valid namespace name")
        if real not in saved.namespaces:
            saved.namespaces.append(real)
            self._save(saved)
        return real

    # -- what the API cannot show -----------------------------------------------------------------------------

    def _node_file(self, path: str) -> str:
        saved = self._saved()
        if saved.proxy_mode != "ipvs":
            raise errors.Unavailable(f"kube-proxy runs in {saved.proxy_mode} mode on this cluster "
                                     f"({saved.proxy_mode_how}): there is no IPVS table")
        inside = self.inside()
        try:
            return inside.node_file(inside.nodes()[0], path)
        except errors.Unavailable as exc:
            raise errors.Unavailable(f"{exc} (kube-proxy runs in ipvs mode here)") from None
        except FileNotFoundError as exc:
            raise errors.Unavailable(str(exc)) from None

    def ipvs_table(self) -> list[VirtualServer]:
        text = self._node_file("/proc/net/ip_vs")
        if not lists_persistent(text):
            return parse_proc(text)
        try:  # persistence timeouts are in jiffies there (labkit.agent.ipvsadm.kernel_hz)
            hz = kernel_hz(self._node_file("/proc/timer_list"))
        except ValueError as exc:
            raise errors.Unavailable(f"cannot read the IPVS table's persistence timeouts: {exc}") from None
        return parse_proc(text, hz=hz)

    def ipvs_connections(self) -> list[Connection]:
        return parse_proc_connections(self._node_file("/proc/net/ip_vs_conn"))

    def dns_transport(self, from_pod: str | None, namespace: str) -> Transport:
        return self.inside().dns_transport(from_pod, namespace)

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        return tools.list_pods(self._kubectl(self._saved()), namespace)  # the kubectl `up` found

    def http_connection(self, host: str, port: int, *, from_pod: str | None, namespace: str,
                        timeout: float = 3.0) -> HttpConnection:
        inside = self.inside()
        mode = self.proxy_mode

        def destinations(node: str) -> dict[tuple[str, int], tuple[str, int]]:
            if mode == "ipvs":
                return ipvs_destinations(parse_proc_connections(inside.node_file(node, "/proc/net/ip_vs_conn")))
            return parse_conntrack(inside.node_file(node, "/proc/net/nf_conntrack"))

        return open_http(inside, host, port, from_pod, namespace, timeout, destinations)

