"""Looking inside a real cluster (kind, or one that already exists) from outside it, through kubectl only.

This process cannot enter a real cluster's network namespaces, and must not send packets to cluster addresses
from the host. So DNS queries, HTTP connections and node files go through a *node helper*: one privileged pod per
node with the host's network and PIDs (docker/manifests/node-helper.yaml), to which the backend sends small
standard-library Python programs with `kubectl exec`:

- a DNS exchange (labkit.dns.dig's EXEC_QUERY_SCRIPT) or a TCP relay, run in the node's network namespace, or in
  a pod's: the helper finds the namespace that holds the pod's IP among /proc/<pid>/ns/net and enters it, so the
  query or connection leaves from the pod's own address, as it would from the pod's program;
- `cat /proc/net/ip_vs` and friends (IPVS tables are per network namespace: the helper's is the node's).

An HTTP connection is a relay: `kubectl exec -i helper -- python3 -c RELAY …` connects inside the cluster, prints
its local and peer addresses, then copies bytes between its stdin/stdout and the socket. `ExecSocket` makes that
look like a socket to `labkit.agent.cli.HttpConnection`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from labkit import errors
from labkit.backends import images, tools
from labkit.dns import transports
from labkit.dns.dig import EXEC_QUERY_SCRIPT

if TYPE_CHECKING:
    from labkit.agent.cli import HttpConnection
    from labkit.agent.model import Connection

HELPER_NAME = "labkit-node-helper"
PROBE_NAME = "labkit-probe"

# First argument: "IP/HOSTNAME" of the pod whose network namespace to enter, or "-" for the node's own. A
# namespace qualifies when the IP is local there and its pod's UTS namespace has that hostname (the IP alone would
# do on one node; the hostname guards against a stale namespace). Python >= 3.12 (os.setns).
ENTER_NETNS = """
import os, socket, sys
def _same_host(pid, hostname):
    home = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        fd = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY)
        try:
            os.setns(fd, os.CLONE_NEWUTS)
        finally:
            os.close(fd)
        return socket.gethostname().split(".")[0] == hostname
    finally:
        os.setns(home, os.CLONE_NEWUTS)
        os.close(home)
def _enter(target):
    if target == "-":
        return
    ip, _, hostname = target.partition("/")
    home, seen = os.open("/proc/self/ns/net", os.O_RDONLY), set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            inode = os.stat(f"/proc/{pid}/ns/net").st_ino
            if inode in seen:
                continue
            seen.add(inode)
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        except OSError:
            continue
        try:
            os.setns(fd, os.CLONE_NEWNET)
        finally:
            os.close(fd)
        probe = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((ip, 0))
            if not hostname or _same_host(pid, hostname):
                return
        except OSError:
            pass
        finally:
            probe.close()
        os.setns(home, os.CLONE_NEWNET)
    sys.exit(f"no network namespace on this node holds {target}")
_enter(sys.argv.pop(1))
"""

# argv: host port timeout. Prints "local-ip local-port peer-ip peer-port", then relays stdin/stdout <-> socket.
RELAY_SCRIPT = """
import threading
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    conn = socket.create_connection((host, port), timeout=timeout)
except OSError as exc:
    sys.exit(f"connect to {host}:{port}: {exc.strerror or exc}")
conn.settimeout(None)
local, peer = conn.getsockname(), conn.getpeername()
sys.stdout.write(f"{local[0]} {local[1]} {peer[0]} {peer[1]}\\n")
sys.stdout.flush()
def _upstream():
    while data := os.read(0, 65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
threading.Thread(target=_upstream, daemon=True).start()
while data := conn.recv(65536):
    os.write(1, data)
"""

DNS_PROGRAM = "# labkit node helper: dns" + ENTER_NETNS + EXEC_QUERY_SCRIPT
RELAY_PROGRAM = "# labkit node helper: relay" + ENTER_NETNS + RELAY_SCRIPT


def helper_manifest(node: str | None, namespace: str, docker_dir: Any) -> str:
    """docker/manifests/node-helper.yaml for `node`, in `namespace`; with node None, the unprivileged *probe*: the
    same Python in a plain pod of `namespace`, for a cluster that refuses privileged pods (it can only send
    traffic from its own network namespace)."""
    pod = yaml.safe_load((docker_dir / "manifests" / "node-helper.yaml").read_text())
    pod["metadata"]["namespace"] = namespace
    pod["spec"]["containers"][0]["image"] = images.NODE_HELPER
    if node is None:
        pod["metadata"]["name"] = PROBE_NAME
        pod["metadata"]["labels"] = {"app.kubernetes.io/name": PROBE_NAME}
        for key in ("nodeName", "hostNetwork", "hostPID", "dnsPolicy", "tolerations"):
            pod["spec"].pop(key)
        del pod["spec"]["containers"][0]["securityContext"]
    else:
        pod["metadata"]["name"] = helper_pod_name(node)
        pod["spec"]["nodeName"] = node
    return yaml.safe_dump(pod, sort_keys=False)


def helper_pod_name(node: str) -> str:
    return f"{HELPER_NAME}-{node}"[:63].rstrip("-.")


# Why a pod cannot start, as kubelet reports it: waiting on these does not help.
STUCK_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                 "CreateContainerConfigError", "CreateContainerError", "RunContainerError")


@dataclass
class Place:
    """Where a query or connection leaves from, and the pod whose Python sends it."""

    pod: str  # the helper (or probe) pod to exec in
    node: str  # "" when unknown (the probe)
    target: str  # "IP/HOSTNAME" of a pod's network namespace to enter, or "-" for the exec'd pod's own
    label: str


@dataclass
class InCluster:
    """kubectl-driven access to the inside of one real cluster; helper pods live in `namespace`."""

    kubectl: tools.Kubectl
    namespace: str
    docker_dir: Any
    timeout: float = 120.0
    _ready: set[str] = field(default_factory=set)
    _refused: str | None = None  # why this cluster refuses helper pods
    _cluster_dns: str | None = None

    # -- the cluster's facts ----------------------------------------------------------------------------------

    def nodes(self) -> list[str]:
        """Node names, control-plane nodes first."""
        proc = self.kubectl("get", "nodes", "-o", "json", check=False, timeout=60)
        if proc.returncode != 0:
            raise errors.Unavailable(f"the nodes cannot be listed: {tools.last_words(proc.stderr)}")

        def order(node: dict) -> tuple[bool, str]:
            labels = node["metadata"].get("labels") or {}
            return (not any(k.startswith("node-role.kubernetes.io/control-plane") for k in labels),
                    node["metadata"]["name"])

        return [n["metadata"]["name"] for n in sorted(json.loads(proc.stdout)["items"], key=order)]

    def pod(self, name: str, namespace: str) -> dict[str, Any]:
        proc = self.kubectl("-n", namespace, "get", "pod", name, "-o", "json", check=False, timeout=60)
        if proc.returncode != 0:
            raise errors.NotFound(tools.last_words(proc.stderr))
        return json.loads(proc.stdout)

    def cluster_dns(self) -> str:
        """The kube-dns Service's ClusterIP (10.96.0.10 on kind; another on other clusters)."""
        if self._cluster_dns is None:
            proc = self.kubectl("-n", "kube-system", "get", "service", "kube-dns", "-o",
                                "jsonpath={.spec.clusterIP}", check=False, timeout=60)
            self._cluster_dns = proc.stdout.strip() if proc.returncode == 0 else transports.CLUSTER_DNS
        return self._cluster_dns

    # -- helper pods -------------------------------------------------------------------------------------------

    def helper(self, node: str) -> str:
        """The running helper pod on `node` (made, or remade once its deadline passed); `errors.Unavailable`
        with the cluster's reason when it refuses or cannot run it."""
        if self._refused:
            raise errors.Unavailable(self._refused)
        try:
            return self._running(helper_pod_name(node), node)
        except errors.Unavailable as exc:
            self._refused = f"looking inside node {node} needs a privileged pod with the host's network: {exc}"
            raise errors.Unavailable(self._refused) from None

    def probe(self) -> str:
        """The unprivileged probe pod of `namespace`."""
        return self._running(PROBE_NAME, None)

    def _running(self, name: str, node: str | None) -> str:
        if name in self._ready:
            return name
        phase = self.kubectl("-n", self.namespace, "get", "pod", name, "-o", "jsonpath={.status.phase}",
                             check=False, timeout=60)
        if phase.returncode == 0 and phase.stdout.strip() in ("Failed", "Succeeded"):  # past its deadline
            self.kubectl("-n", self.namespace, "delete", "pod", name, "--wait=true", timeout=120)
        if phase.returncode != 0 or phase.stdout.strip() != "Running":
            applied = self.kubectl("apply", "-f", "-", input=helper_manifest(node, self.namespace, self.docker_dir),
                                   check=False, timeout=120)
            if applied.returncode != 0:
                raise errors.Unavailable(f"the cluster refuses pod {self.namespace}/{name}: "
                                         f"{tools.last_words(applied.stderr)}")
            self._wait_ready(name)
        self._ready.add(name)
        return name

    def _wait_ready(self, name: str) -> None:
        """Poll the pod until it is Ready; give up at once when kubelet says it cannot start it."""
        deadline = time.monotonic() + self.timeout
        while True:
            pod = self.pod(name, self.namespace)
            status = pod.get("status") or {}
            if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
                return
            for container in status.get("containerStatuses") or []:
                waiting = (container.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in STUCK_REASONS:
                    raise errors.Unavailable(f"pod {self.namespace}/{name} cannot start: {waiting['reason']}: "
                                             f"{waiting.get('message', '')}".rstrip(": "))
            if time.monotonic() > deadline:
                raise errors.Unavailable(f"pod {self.namespace}/{name} was not Ready within {self.timeout:.0f}s "
                                         f"(phase {status.get('phase', '?')})")
            time.sleep(0.5)

    def exec_in(self, pod: str, *argv: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return self.kubectl("-n", self.namespace, "exec", pod, "--", *argv, check=False, timeout=timeout)

    def node_file(self, node: str, path: str) -> str:
        proc = self.exec_in(self.helper(node), "cat", path)
        if proc.returncode != 0:
            raise FileNotFoundError(f"{path} on node {node}: {tools.last_words(proc.stderr)}")
        return proc.stdout

    # -- where traffic leaves from ----------------------------------------------------------------------------

    def place(self, from_pod: str | None, namespace: str) -> Place:
        if from_pod:
            pod = self.pod(from_pod, namespace)
            status, spec = pod.get("status") or {}, pod.get("spec") or {}
            if status.get("phase") != "Running" or not status.get("podIP"):
                raise errors.ClusterError(f"pod {namespace}/{from_pod} is not running yet "
                                          f"(phase {status.get('phase', '?')})")
            hostname = spec.get("hostname") or pod["metadata"]["name"]
            target = "-" if spec.get("hostNetwork") else f"{status['podIP']}/{hostname}"
            try:
                helper = self.helper(spec["nodeName"])
            except errors.Unavailable as exc:
                raise errors.Unavailable(f"sending traffic from pod {namespace}/{from_pod}: {exc}") from None
            return Place(helper, spec["nodeName"], target, f"pod {namespace}/{from_pod}")
        try:
            node = self.nodes()[0]
            return Place(self.helper(node), node, "-", f"node {node}")
        except errors.Unavailable:
            return Place(self.probe(), "", "-", f"pod {self.namespace}/{PROBE_NAME}")

    def dns_transport(self, from_pod: str | None, namespace: str) -> HelperTransport:
        place = self.place(from_pod, namespace)
        if from_pod:
            def resolv_conf() -> str:
                proc = self.kubectl("-n", namespace, "exec", from_pod, "--", "cat", "/etc/resolv.conf",
                                    check=False, timeout=30)
                if proc.returncode != 0:  # an image without cat: what kubelet writes for ClusterFirst
                    return transports.cluster_first_resolv_conf(namespace, self.cluster_dns())
                return proc.stdout
        else:
            def resolv_conf() -> str:
                return transports.cluster_first_resolv_conf(namespace, self.cluster_dns())
        return HelperTransport(self, place, resolv_conf)

    def relay_argv(self, place: Place) -> list[str]:
        return self.kubectl.argv("-n", self.namespace, "exec", "-i", place.pod, "--",
                                 "python3", "-c", RELAY_PROGRAM, place.target)


class HelperTransport:
    """labkit.dns.dig's Transport, sending each query from a node's or a pod's network namespace via a helper."""

    def __init__(self, cluster: InCluster, place: Place, resolv_conf: Callable[[], str]) -> None:
        self.cluster, self.place, self._resolv_conf = cluster, place, resolv_conf
        self.label = place.label

    def exchange(self, wire: bytes, server: str, port: int, tcp: bool, timeout: float) -> bytes:
        proc = self.cluster.exec_in(self.place.pod, "python3", "-c", DNS_PROGRAM, self.place.target, server,
                                    str(port), "1" if tcp else "0", str(timeout), wire.hex(), timeout=timeout + 30)
        if proc.returncode != 0:
            raise OSError(f"query from {self.label}: {tools.last_words(proc.stderr or proc.stdout)}")
        return bytes.fromhex(proc.stdout.strip())

    def resolv_conf(self) -> str:
        return self._resolv_conf()


class ExecSocket:
    """A TCP connection made inside the cluster by RELAY_PROGRAM under `kubectl exec -i`, shaped like the socket
    `HttpConnection` uses (connect, getsockname, getpeername, sendall, makefile, settimeout, close)."""

    def __init__(self, argv: list[str]) -> None:
        self._argv = argv
        self._timeout: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._mine, self._theirs = socket.socketpair()
        self._local: tuple[str, int] = ("", 0)
        self._peer: tuple[str, int] = ("", 0)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._mine.settimeout(timeout)

    def connect(self, address: tuple[str, int]) -> None:
        host, port = address
        timeout = self._timeout or 10.0
        self._proc = subprocess.Popen([*self._argv, host, str(port), str(timeout)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        header = self._read_line(self._proc, timeout + 30)
        if header is None:
            self._proc.wait(timeout=30)
            assert self._proc.stderr is not None
            said = tools.last_words(self._proc.stderr.read().decode(errors="replace"))
            raise ConnectionError(said)
        local_ip, local_port, peer_ip, peer_port = header.split()
        self._local, self._peer = (local_ip, int(local_port)), (peer_ip, int(peer_port))
        threading.Thread(target=self._downstream, daemon=True).start()
        threading.Thread(target=self._upstream, daemon=True).start()

    @staticmethod
    def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> str | None:
        assert proc.stdout is not None
        fd, line, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, 1) if ready else b""
            if not chunk:
                return None
            line += chunk
        return line.decode()

    def _downstream(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        with contextlib.suppress(OSError):
            while data := os.read(fd, 65536):
                self._theirs.sendall(data)
        with contextlib.suppress(OSError):
            self._theirs.shutdown(socket.SHUT_WR)

    def _upstream(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        with contextlib.suppress(OSError, ValueError):
            while data := self._theirs.recv(65536):
                self._proc.stdin.write(data)
                self._proc.stdin.flush()
        with contextlib.suppress(OSError, ValueError):
            self._proc.stdin.close()

    def getsockname(self) -> tuple[str, int]:
        return self._local

    def getpeername(self) -> tuple[str, int]:
        return self._peer

    def sendall(self, data: bytes) -> None:
        self._mine.sendall(data)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        return self._mine.makefile(mode, *args, **kwargs)

    def close(self) -> None:
        self._mine.close()
        self._theirs.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)


Destinations = Callable[[str], "dict[tuple[str, int], tuple[str, int]]"]


def ipvs_destinations(connections: list[Connection]) -> dict[tuple[str, int], tuple[str, int]]:
    """An IPVS connection table as {client address and port: the real server IPVS chose}."""
    return {c.source: c.destination for c in connections if not c.template}


def open_http(inside: InCluster, host: str, port: int, from_pod: str | None, namespace: str, timeout: float,
              destinations: Destinations | None) -> HttpConnection:
    """An HTTP connection from a pod (or a node) through a relay in its network namespace; `destinations(node)`
    reads the node's connection table (IPVS's, or conntrack's in nftables mode), where each reply's destination is
    looked up."""
    from labkit.agent.cli import HttpConnection, resolve_host

    transport = inside.dns_transport(from_pod, namespace)
    address = resolve_host(host, transport)
    argv = inside.relay_argv(transport.place)

    def lookup(local: tuple[str, int]) -> tuple[str, int] | None:
        if destinations is None or not transport.place.node:
            return None
        with contextlib.suppress(errors.LabkitError, OSError):
            return destinations(transport.place.node).get((local[0], local[1]))
        return None

    def make_socket() -> Any:
        return ExecSocket(argv)

    return HttpConnection(make_socket, address, port, host if port == 80 else f"{host}:{port}", lookup, timeout)
