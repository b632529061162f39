"""The kind backend: a real Kubernetes cluster whose nodes are Docker containers, made by kind.

    labkit up --backend kind [--name NAME] [--image kindest/node:vX] [--nodes N] [--proxy-mode ipvs|nftables]
                             [--proxy kube-proxy|labkit] [--kind-bin PATH] [--kubectl-bin PATH]

The cluster's config is one of docker/kind/ (ipvs.yaml by default: kube-proxy in IPVS mode on a pinned node image
that still has it; nftables.yaml; none.yaml for `--proxy labkit`), with workers added for `--nodes N`. With
`--proxy labkit` no kube-proxy runs: the labkit agent image is built from docker/agent/Dockerfile, loaded into the
nodes with `kind load docker-image` and run as the DaemonSet of docker/manifests/labkit-agent.yaml, programming
each node kernel's IPVS. The images the labs use are loaded into the nodes when Docker has them locally.
`up` returns once every node is Ready and CoreDNS answers a query sent from a node.

Clusters are made through pytest-kind-ng's `KindCluster` (import name `pytest_kind`), subclassed so that kind and
kubectl come from PATH or paths the user gave (it would download kind 0.17 for amd64 otherwise) and its files live
in labkit's state directory (it would write ./.pytest-kind/ otherwise). Its `port_forward` is not used: it never
stops retrying (reference kind.md); in-cluster queries and connections go through node helper pods instead
(labkit.backends.incluster).

State: `<home>/kind/` holds the kubeconfig, the config kind was given and `cluster.json` (what `down`, `status`
and the tools need to find the cluster again). Facts: reference kind.md; kind v0.32.0's sources.
"""

from __future__ import annotations

import copy
import json
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pytest_kind import KindCluster as PytestKindCluster

import labkit
from labkit import errors
from labkit.agent.cli import parse_conntrack
from labkit.agent.ipvsadm import kernel_hz, lists_persistent, parse_proc, parse_proc_connections
from labkit.agent.model import Connection, VirtualServer
from labkit.backends import images, tools
from labkit.backends.base import Backend, ClusterInfo
from labkit.backends.incluster import InCluster, ipvs_destinations, open_http

if TYPE_CHECKING:
    from labkit.agent.cli import HttpConnection
    from labkit.dns.dig import Transport

CHECKOUT = Path(__file__).resolve().parents[2]
DOCKER_DIR = CHECKOUT / "docker"
PROXY_MODES = ("ipvs", "nftables")
PROXIES = ("kube-proxy", "labkit")
DEFAULT_NAME = "labkit"
MIN_KIND_VERSION = (0, 32, 0)  # the pinned node image (v1.36.1) is kind v0.32.0's; older kinds write kubeadm v1beta3
AGENT_IMAGE = f"labkit/agent:{labkit.__version__}"
AGENT_NAMESPACE, AGENT_NAME = "kube-system", "labkit-agent"
HELPER_NAMESPACE = "labkit"  # the node helper pods (labkit.backends.incluster)
APISERVER_PORT = 6443

Progress = Callable[[str], None]


def say(message: str) -> None:
    print(f"labkit: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ options, config

@dataclass
class Options:
    """What `labkit up --backend kind` was asked for."""

    name: str = DEFAULT_NAME
    image: str | None = None  # a kindest/node image instead of the config's pinned one
    nodes: int = 1
    proxy_mode: str = "ipvs"
    proxy: str = "kube-proxy"  # or "labkit": no kube-proxy, the labkit agent as a DaemonSet
    kind_bin: str | None = None
    kubectl_bin: str | None = None
    timeout: float = 300.0

    def validate(self) -> None:
        if self.proxy_mode not in PROXY_MODES:
            raise errors.ClusterError(f"kind backend: --proxy-mode must be one of {', '.join(PROXY_MODES)}")
        if self.proxy not in PROXIES:
            raise errors.ClusterError(f"kind backend: --proxy must be one of {', '.join(PROXIES)}")
        if self.proxy == "labkit" and self.proxy_mode != "ipvs":
            raise errors.ClusterError("kind backend: the labkit agent programs the kernel's IPVS; "
                                      "use --proxy-mode ipvs with --proxy labkit")
        if self.nodes < 1:
            raise errors.ClusterError("kind backend: --nodes must be at least 1")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", self.name):
            raise errors.ClusterError(f"kind backend: {self.name!r} is not a valid cluster name "
                                      "(lowercase letters, digits and '-')")

    @property
    def config_name(self) -> str:
        """The docker/kind/ file this cluster starts from."""
        return "none.yaml" if self.proxy == "labkit" else f"{self.proxy_mode}.yaml"


def docker_dir() -> Path:
    if not DOCKER_DIR.is_dir():
        raise errors.BackendUnavailable(f"kind backend: {DOCKER_DIR} is missing; the kind backend runs from a "
                                        "labkit checkout (its docker/ directory holds the configs and manifests)")
    return DOCKER_DIR


def cluster_config(options: Options) -> dict[str, Any]:
    """The kind config for these options: docker/kind/<mode>.yaml, with workers added up to `nodes`."""
    config = yaml.safe_load((docker_dir() / "kind" / options.config_name).read_text())
    config["name"] = options.name
    control_plane = next(n for n in config["nodes"] if n["role"] == "control-plane")
    workers = [n for n in config["nodes"] if n["role"] == "worker"]
    for _ in range(options.nodes - 1 - len(workers)):
        worker = copy.deepcopy(control_plane)
        worker["role"] = "worker"
        config["nodes"].append(worker)
    return config


# ------------------------------------------------------------------------------------------------ prerequisites

@dataclass(frozen=True)
class Tools:
    docker: Path
    kind: Path
    kubectl: Path


def parse_kind_version(text: str) -> tuple[int, int, int] | None:
    """`kind version` prints `kind v0.32.0 go1.24.3 linux/amd64`."""
    match = re.search(r"\bv(\d+)\.(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def find_tools(options: Options) -> Tools:
    """docker, kind and kubectl, checked: Docker answers and kind is recent enough for the pinned node image."""
    docker = tools.find_tool("docker", backend="kind")
    kind = tools.find_tool("kind", options.kind_bin, backend="kind")
    kubectl = tools.find_tool("kubectl", options.kubectl_bin, backend="kind")
    probe = tools.run([docker, "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
    if probe.returncode != 0:
        raise errors.BackendUnavailable(f"kind backend: Docker does not answer ({tools.last_words(probe.stderr)}); "
                                        f"{tools.EMBEDDED_HINT}")
    text = tools.run([kind, "version"], timeout=30).stdout
    version = parse_kind_version(text)
    if options.image is None and (version is None or version < MIN_KIND_VERSION):
        want = ".".join(map(str, MIN_KIND_VERSION))
        raise errors.BackendUnavailable(f"kind backend: {kind} is {text.strip() or 'of unknown version'}; the "
                                        f"pinned node image needs kind >= v{want} (or pass --image for yours)")
    return Tools(docker, kind, kubectl)


# ------------------------------------------------------------------------------------------------ the cluster

class KindCluster(PytestKindCluster):
    """pytest-kind-ng's KindCluster with kind and kubectl given, never downloaded, and its files in `state_dir`."""

    def __init__(self, name: str, state_dir: Path, *, kind_path: Path, kubectl_path: Path,
                 image: str | None = None) -> None:
        # Not the parent's __init__: it creates ./.pytest-kind/<name> in the current directory. Same attributes.
        self.name = name
        self.image = image
        self.path = Path(state_dir)
        self.path.mkdir(parents=True, exist_ok=True)
        self.kubeconfig_path = self.path / "kubeconfig"
        self.kind_path = Path(kind_path)
        self.kubectl_path = Path(kubectl_path)
        self.platform = platform.system().lower()

    def ensure_kind(self) -> None:
        if not self.kind_path.exists():
            raise errors.BackendUnavailable(f"kind backend: kind is missing at {self.kind_path}")

    def ensure_kubectl(self) -> None:
        if not self.kubectl_path.exists():
            raise errors.BackendUnavailable(f"kind backend: kubectl is missing at {self.kubectl_path}")

    def create(self, config_file: str | Path | None = None) -> None:
        """kind create cluster (kind narrates its steps on stderr), unless one of this name exists."""
        try:
            super().create(config_file)
        except subprocess.CalledProcessError as exc:
            raise errors.ClusterError(f"`kind {' '.join(map(str, exc.cmd[1:3]))}` failed with exit status "
                                      f"{exc.returncode} (kind's message is above)") from exc

    def load_docker_image(self, docker_image: str) -> None:
        try:
            super().load_docker_image(docker_image)
        except subprocess.CalledProcessError as exc:
            raise errors.ClusterError(f"`kind load docker-image {docker_image}` failed with exit status "
                                      f"{exc.returncode} (kind's message is above)") from exc

    def delete(self) -> None:
        try:
            super().delete()
        except subprocess.CalledProcessError as exc:
            raise errors.ClusterError(f"`kind delete cluster --name={self.name}` failed with exit status "
                                      f"{exc.returncode} (kind's message is above)") from exc

    def kubectl(self, *args: str, **kwargs: Any) -> str:
        """kubectl against this cluster; a failure raises ClusterError with kubectl's message."""
        return tools.run([self.kubectl_path, f"--kubeconfig={self.kubeconfig_path}", *args], **kwargs).stdout

    def node_names(self) -> list[str]:
        """The cluster's nodes, the control plane first (`kind get nodes` lists them in no fixed order)."""
        names = tools.run([self.kind_path, "get", "nodes", "--name", self.name]).stdout.split()
        return sorted(names, key=lambda n: (not n.startswith(f"{self.name}-control-plane"), n))


# ------------------------------------------------------------------------------------------------ state

@dataclass
class Info:
    """What `up` made, saved in <home>/kind/cluster.json for `down`, `status` and the tools."""

    name: str
    kubeconfig: str
    kind: str
    kubectl: str
    docker: str
    proxy: str
    proxy_mode: str
    nodes: int
    image: str | None = None
    created: float = field(default_factory=time.time)

    def cluster(self) -> KindCluster:
        return KindCluster(self.name, Path(self.kubeconfig).parent, kind_path=Path(self.kind),
                           kubectl_path=Path(self.kubectl), image=self.image)

    def kubectl_runner(self) -> tools.Kubectl:
        return tools.Kubectl(Path(self.kubectl), Path(self.kubeconfig))


def state_dir(home: Path) -> Path:
    return Path(home) / "kind"


def info_file(home: Path) -> Path:
    return state_dir(home) / "cluster.json"


def load_info(home: Path) -> Info | None:
    path = info_file(home)
    if not path.exists():
        return None
    return Info(**json.loads(path.read_text()))


def save_info(home: Path, info: Info) -> None:
    path = info_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info), indent=2))
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------ up, down, status

def up(home: Path, options: Options, progress: Progress = say) -> tuple[Info, bool]:
    """Create (or find) the cluster and wait until it is usable; returns (info, whether it was created now)."""
    options.validate()
    existing = load_info(home)
    found = find_tools(options)
    if existing is not None:
        if existing.name in list_clusters(found.kind):
            progress(f"kind cluster {existing.name!r} exists ({home})")
            wait_usable(existing, options.timeout, progress)
            return existing, False
        info_file(home).unlink()  # deleted behind our back (kind delete cluster): make it again
    if options.name in list_clusters(found.kind):
        raise errors.ClusterError(f"kind backend: a kind cluster named {options.name!r} exists and labkit did not "
                                  f"make it at {home}; pass --name, or `kind delete cluster --name {options.name}`")
    directory = state_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "config.yaml"
    config_path.write_text(yaml.safe_dump(cluster_config(options), sort_keys=False))
    info = Info(options.name, str(directory / "kubeconfig"), str(found.kind), str(found.kubectl),
                str(found.docker), options.proxy, options.proxy_mode, options.nodes, options.image)
    cluster = info.cluster()
    progress(f"creating kind cluster {options.name!r} ({options.nodes} node{'s' * (options.nodes > 1)}, "
             f"{'the labkit agent' if options.proxy == 'labkit' else 'kube-proxy'} in {options.proxy_mode} mode)")
    save_info(home, info)  # before kind runs: `labkit down` must find a half-made cluster too
    cluster.create(config_path)
    if options.proxy == "labkit":
        deploy_agent(info, cluster, options.timeout, progress)
    preload_images(info, cluster, images.LAB_IMAGES, progress)
    wait_usable(info, options.timeout, progress)
    return info, True


def list_clusters(kind: Path | str) -> list[str]:
    return tools.run([kind, "get", "clusters"], timeout=60).stdout.split()


def down(home: Path) -> bool:
    """Delete the cluster `up` made at this home; False when there was none."""
    info = load_info(home)
    if info is None:
        return False
    cluster = info.cluster()
    if info.name in list_clusters(info.kind):
        cluster.delete()
    info_file(home).unlink()
    return True


def status(home: Path) -> dict[str, Any]:
    info = load_info(home)
    if info is None:
        return {"backend": "kind", "home": str(home), "running": False}
    running = info.name in list_clusters(info.kind)
    result = {"backend": "kind", "home": str(home), "running": running, **asdict(info)}
    if running:
        result["nodeNames"] = info.cluster().node_names()
    return result


# ------------------------------------------------------------------------------------------------ steps of `up`

def deploy_agent(info: Info, cluster: KindCluster, timeout: float, progress: Progress) -> None:
    """Build the agent image from this checkout, load it into the nodes, run it as a DaemonSet, wait for it."""
    dockerfile = docker_dir() / "agent" / "Dockerfile"
    progress(f"building {AGENT_IMAGE} from {dockerfile.relative_to(CHECKOUT)}")
    tools.run([info.docker, "build", "-f", dockerfile, "-t", AGENT_IMAGE, CHECKOUT], timeout=1800)
    progress(f"loading {AGENT_IMAGE} into the nodes")
    cluster.load_docker_image(AGENT_IMAGE)
    kubectl = info.kubectl_runner()
    kubectl("apply", "-f", "-", input=agent_manifest(info.name), timeout=120)
    progress("waiting for the labkit agent on every node")
    kubectl("-n", AGENT_NAMESPACE, "rollout", "status", f"daemonset/{AGENT_NAME}", f"--timeout={timeout:.0f}s",
            timeout=timeout + 30)


def agent_manifest(cluster_name: str, image: str = AGENT_IMAGE) -> str:
    """docker/manifests/labkit-agent.yaml for this cluster: its image, its control plane's address."""
    docs = list(yaml.safe_load_all((docker_dir() / "manifests" / "labkit-agent.yaml").read_text()))
    for doc in docs:
        if doc["kind"] != "DaemonSet":
            continue
        container = doc["spec"]["template"]["spec"]["containers"][0]
        container["image"] = image
        for env in container["env"]:
            if env["name"] == "KUBERNETES_SERVICE_HOST":
                env["value"] = f"{cluster_name}-control-plane"
            elif env["name"] == "KUBERNETES_SERVICE_PORT":
                env["value"] = str(APISERVER_PORT)
    return yaml.safe_dump_all(docs, sort_keys=False)


def local_images(docker: Path | str, wanted: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """(present, missing): which of `wanted` Docker has locally."""
    present, missing = [], []
    for image in wanted:
        probe = tools.run([docker, "image", "inspect", "--format", "{{.Id}}", image], check=False, timeout=60)
        (present if probe.returncode == 0 else missing).append(image)
    return present, missing


def preload_images(info: Info, cluster: KindCluster, wanted: tuple[str, ...], progress: Progress) -> list[str]:
    """Load into the nodes the lab images Docker has; returns those it lacks (the nodes will pull them)."""
    present, missing = local_images(info.docker, wanted)
    for image in present:
        cluster.load_docker_image(image)
    if missing:
        progress(f"not loaded, Docker does not have them locally (the nodes will pull them): {', '.join(missing)}; "
                 "`labkit images | xargs -n1 docker pull` before `labkit up` makes the labs work offline")
    return missing


def incluster(info: Info, timeout: float = 120.0) -> InCluster:
    """Access to the inside of the cluster: node helper pods in the `labkit` namespace."""
    return InCluster(info.kubectl_runner(), HELPER_NAMESPACE, docker_dir(), timeout=timeout)


def wait_usable(info: Info, timeout: float, progress: Progress) -> None:
    """Return once every node is Ready, CoreDNS is rolled out and answers a query sent from a node."""
    kubectl = info.kubectl_runner()
    deadline = time.monotonic() + timeout

    def left() -> str:
        return f"--timeout={max(1, int(deadline - time.monotonic()))}s"

    progress("waiting for the nodes to be Ready")
    kubectl("wait", "--for=condition=Ready", "nodes", "--all", left(), timeout=timeout + 30)
    progress("waiting for CoreDNS")
    kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", left(), timeout=timeout + 30)
    kubectl("apply", "-f", "-", input=namespace_manifest(HELPER_NAMESPACE), timeout=120)
    wait_dns_answers(incluster(info, timeout), deadline)


def namespace_manifest(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def wait_dns_answers(cluster: InCluster, deadline: float) -> None:
    """Ask the cluster DNS for the kubernetes Service from the first node until it answers 10.96.0.1."""
    from labkit.dns.dig import resolve

    transport = cluster.dns_transport(None, "default")
    said = ""
    while time.monotonic() < deadline:
        try:
            result = resolve("kubernetes.default.svc.cluster.local.", transport=transport)
        except OSError as exc:
            said = str(exc)
            continue
        if "10.96.0.1" in result.addresses:
            return
        said = f"it answered {result.addresses or 'no address'}"
    raise errors.ClusterError(f"kind backend: the cluster DNS does not answer from {transport.label} ({said})")


# ------------------------------------------------------------------------------------------------ what the labs read

def node_file(info: Info, node: str, path: str) -> str:
    """A file of a node's /proc, read with `docker exec` (the node is a container)."""
    proc = tools.run([info.docker, "exec", node, "cat", path], check=False, timeout=30)
    if proc.returncode != 0:
        reason = tools.last_words(proc.stderr)
        if "No such file" in reason:
            raise FileNotFoundError(f"{path} on node {node}: {reason}")
        raise errors.ClusterError(f"cannot read {path} on node {node}: {reason}")
    return proc.stdout


def ipvs_table(info: Info, node: str | None = None) -> list[VirtualServer]:
    """A node's IPVS table, read from its /proc/net/ip_vs (kind's node image has no ipvsadm)."""
    node = node or f"{info.name}-control-plane"
    if info.proxy_mode != "ipvs":
        raise errors.Unavailable(f"the cluster runs {describe_proxy(info)}: it has no IPVS table (`ipvsadm -Ln` "
                                 "lists nothing); its rules are in `nft list table ip kube-proxy` on each node")
    try:
        text = node_file(info, node, "/proc/net/ip_vs")
    except FileNotFoundError as exc:
        raise errors.Unavailable(f"node {node} has no IPVS table yet: the ip_vs module is not loaded there "
                                 f"({exc})") from None
    return parse_proc(text, hz=node_hz(info, node) if lists_persistent(text) else None)


def node_hz(info: Info, node: str) -> int:
    """The node kernel's HZ: /proc/net/ip_vs prints persistence timeouts in jiffies (ipvsadm.kernel_hz)."""
    try:
        return kernel_hz(node_file(info, node, "/proc/timer_list"))
    except (FileNotFoundError, ValueError) as exc:
        raise errors.Unavailable(f"node {node}: cannot read persistence timeouts, which /proc/net/ip_vs gives in "
                                 f"jiffies ({exc})") from None


def ipvs_tables(info: Info) -> dict[str, list[VirtualServer]]:
    """Every node's IPVS table (kube-proxy programs the same one on each)."""
    return {node: ipvs_table(info, node) for node in info.cluster().node_names()}


def ipvs_connections(info: Info, node: str | None = None) -> list[Connection]:
    node = node or f"{info.name}-control-plane"
    try:
        return parse_proc_connections(node_file(info, node, "/proc/net/ip_vs_conn"))
    except FileNotFoundError as exc:
        raise errors.Unavailable(f"node {node} has no IPVS connection table: {exc}") from None


def describe_proxy(info: Info) -> str:
    if info.proxy == "labkit":
        return "the labkit agent (kernel IPVS)"
    return f"kube-proxy in {info.proxy_mode} mode"


# ------------------------------------------------------------------------------------------------ the Backend

class KindBackend(Backend):
    """A kind cluster made (or found) at `home`: `Lab(backend="kind")`, `labkit up --backend kind`."""

    name = "kind"
    proxy_modes = PROXY_MODES

    def __init__(self, home: str | Path | None = None, *, cluster_name: str | None = None, image: str | None = None,
                 nodes: int = 1, proxy: str = "kube-proxy", kind_bin: str | None = None,
                 kubectl_bin: str | None = None, progress: Progress = say) -> None:
        from labkit.backends.embedded import default_home

        self.home = Path(home).expanduser().absolute() if home else default_home()
        self.options = Options(name=cluster_name or DEFAULT_NAME, image=image, nodes=nodes, proxy=proxy,
                               kind_bin=kind_bin, kubectl_bin=kubectl_bin)
        self.progress = progress
        self._incluster: InCluster | None = None

    def __repr__(self) -> str:
        return f"<KindBackend {self.options.name} at {self.home}>"

    def info(self) -> Info:
        info = load_info(self.home)
        if info is None:
            raise errors.ClusterNotRunning(f"no kind cluster was made at {self.home}; "
                                           "`labkit up --backend kind` makes one")
        return info

    def start(self, proxy_mode: str | None = None, timeout: float = 600.0) -> bool:
        if proxy_mode is not None and proxy_mode not in self.proxy_modes:
            raise errors.Unavailable(f"the kind backend makes clusters with kube-proxy in "
                                     f"{' or '.join(self.proxy_modes)} mode, not {proxy_mode}")
        existing = load_info(self.home)
        # no mode asked: a cluster that exists is fine whatever its mode; a new one gets IPVS mode
        mode = proxy_mode or (existing.proxy_mode if existing else "ipvs")
        if existing is not None and existing.proxy_mode != mode:
            raise errors.ClusterError(f"the kind cluster {existing.name!r} at {self.home} runs "
                                      f"{describe_proxy(existing)}, not {mode} mode: `labkit down` it first, "
                                      "or use another LABKIT_HOME")
        options = replace(self.options, proxy_mode=mode, timeout=timeout)
        _, started = up(self.home, options, self.progress)
        return started

    def connect(self, timeout: float = 60.0) -> None:
        info = self.info()
        if info.name not in list_clusters(info.kind):
            raise errors.ClusterNotRunning(f"the kind cluster {info.name!r} of {self.home} is gone; "
                                           "`labkit up --backend kind` makes it again")
        wait_usable(info, timeout, self.progress)

    def stop(self) -> bool:
        return down(self.home)

    def running(self) -> bool:
        info = load_info(self.home)
        if info is None or info.name not in list_clusters(info.kind):
            return False
        return info.kubectl_runner()("get", "--raw", "/readyz", check=False, timeout=30).returncode == 0

    @property
    def kubeconfig(self) -> Path:
        return state_dir(self.home) / "kubeconfig"

    def describe(self) -> ClusterInfo:
        info = self.info()
        server = yaml.safe_load(Path(info.kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
        return ClusterInfo(backend=self.name, server=server, kubeconfig=Path(info.kubeconfig),
                           proxy_mode=info.proxy_mode, nodes=tuple(info.cluster().node_names()),
                           details=(("cluster", info.name), ("proxy", describe_proxy(info)),
                                    ("home", str(self.home))))

    @property
    def proxy_mode(self) -> str:
        return self.info().proxy_mode

    def stopped_what(self) -> str:
        return f"kind cluster {self.options.name!r} deleted"

    def ipvs_table(self) -> list[VirtualServer]:
        return ipvs_table(self.info())

    def ipvs_connections(self) -> list[Connection]:
        return ipvs_connections(self.info())

    def _inside(self) -> InCluster:
        if self._incluster is None:
            self._incluster = incluster(self.info())
        return self._incluster

    def dns_transport(self, from_pod: str | None, namespace: str) -> Transport:
        return self._inside().dns_transport(from_pod, namespace)

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        return tools.list_pods(self.info().kubectl_runner(), namespace)  # the kubectl `up` was given

    def http_connection(self, host: str, port: int, *, from_pod: str | None, namespace: str,
                        timeout: float = 3.0) -> HttpConnection:
        info = self.info()

        def destinations(node: str) -> dict[tuple[str, int], tuple[str, int]]:
            if info.proxy_mode == "ipvs":
                return ipvs_destinations(ipvs_connections(info, node))
            return parse_conntrack(node_file(info, node, "/proc/net/nf_conntrack"))

        return open_http(self._inside(), host, port, from_pod, namespace, timeout, destinations)

    def nft(self, args: list[str]) -> str:
        """`nft ARGS` on the first node (kind's node image has nft), for listings only."""
        info = self.info()
        if not args or args[0] != "list":
            raise errors.Unavailable(f"only nft listings are shown (`nft list …`), not `nft {' '.join(args)}`")
        if info.proxy_mode != "nftables":
            raise errors.Unavailable(f"the cluster runs {describe_proxy(info)}: kube-proxy made no nftables rules "
                                     "(`nft list table ip kube-proxy` finds no table)")
        proc = tools.run([info.docker, "exec", f"{info.name}-control-plane", "nft", *args], check=False, timeout=30)
        if proc.returncode != 0:
            raise errors.ClusterError(f"nft {' '.join(args)} on node {info.name}-control-plane: "
                                      f"{tools.last_words(proc.stderr)}")
        return proc.stdout

