"""Transports that carry a `dig`/`resolve` query into the embedded cluster's network namespaces.

A socket belongs to the network namespace it was created in, whichever thread uses it afterwards. So a
`NetnsTransport` asks a worker thread that has entered the namespace (setns(2) is per thread) for a socket, then
does the exchange from the calling thread. The process itself never leaves the host namespace and no packet to a
cluster address is ever sent from there (DESIGN.md, network safety).

- `pod_transport(pod, namespace, home)`: the pod's namespace (`/run/netns/<prefix>-p<8 of uid>`), found from the
  pod object's UID; its resolv.conf is the file the node bind-mounts into the pod (`<home>/node/pods/<uid>/`).
- `node_transport(home, namespace)`: the node's namespace (`<prefix>-node`) with a ClusterFirst-like resolver
  configuration (nameserver 10.96.0.10, the pod search list of `namespace`, ndots:5), so `resolve()` from the node
  behaves like a pod in that namespace.
- `install_embedded(home)` installs both into `labkit.dns.dig`; `auto_install()` does so for a running embedded
  cluster at $LABKIT_HOME (or ~/.labkit) the first time a query needs a transport.

On kind there is no namespace to enter from here: the helper keeps `KubectlExecTransport` (dig.py).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labkit import kubeconfig
from labkit.dns import dig as digmod
from labkit.dns.dig import query_wire
from labkit.netns import NetnsSockets

CLUSTER_DNS = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"

# One socket-making thread per namespace (labkit.netns.NetnsSockets), kept for the life of the process: a socket
# then costs one hand-off to an idle thread, not a new thread and a setns each time. Keyed by the namespace's
# inode as well as its path, so that after `labkit down; labkit up` (same path, new namespace) a fresh thread
# joins the new namespace instead of the old thread quietly making sockets in the dead one.
_workers: dict[tuple[str, int], NetnsSockets] = {}
_workers_lock = threading.Lock()


def socket_in_netns(path: str | os.PathLike[str], family: int, type_: int) -> socket.socket:
    """A new socket that lives in the network namespace file `path`."""
    path = os.fspath(path)
    try:
        key = (path, os.stat(path).st_ino)
    except FileNotFoundError:
        raise FileNotFoundError(f"network namespace {path} does not exist") from None
    with _workers_lock:
        maker = _workers.get(key)
        if maker is None:
            for old in [k for k in _workers if k[0] == path]:
                _workers.pop(old).close()
            maker = _workers[key] = NetnsSockets(path)
    try:
        return maker.socket(family, type_)
    except RuntimeError as exc:  # the worker could not enter the namespace (BrokenThreadPool)
        with _workers_lock:
            _workers.pop(key, None)
        raise OSError(f"cannot enter network namespace {path}: {exc}") from exc


def cluster_first_resolv_conf(namespace: str = "default", cluster_dns: str = CLUSTER_DNS,
                              domain: str = CLUSTER_DOMAIN) -> str:
    """The resolv.conf kubelet gives a ClusterFirst pod in `namespace` (containerd's line order)."""
    return (f"search {namespace}.svc.{domain} svc.{domain} {domain}\n"
            f"nameserver {cluster_dns}\noptions ndots:5\n")


class NetnsTransport:
    """Queries sent from a network namespace file (e.g. /run/netns/lk1a2b3c-node) by this process."""

    def __init__(self, netns_path: str | os.PathLike[str], resolv_conf: str | Callable[[], str],
                 label: str = "") -> None:
        self.netns_path = os.fspath(netns_path)
        self._resolv_conf = resolv_conf
        self.label = label or Path(self.netns_path).name

    def make_socket(self, family: int, type_: int) -> socket.socket:
        return socket_in_netns(self.netns_path, family, type_)

    def exchange(self, wire: bytes, server: str, port: int, tcp: bool, timeout: float) -> bytes:
        return query_wire(wire, server, port, tcp, timeout, make_socket=self.make_socket)

    def resolv_conf(self) -> str:
        return self._resolv_conf() if callable(self._resolv_conf) else self._resolv_conf

    def __repr__(self) -> str:
        return f"<NetnsTransport {self.label}>"


# ------------------------------------------------------------------------------------------------- API access


def _kubeconfig_access(path: Path) -> tuple[str, dict[str, str], ssl.SSLContext]:
    access = kubeconfig.read(path)
    sslctx = access.ssl_context()
    headers = {"Accept": "application/json", "User-Agent": "labkit-dig"}
    if access.token:
        headers["Authorization"] = f"Bearer {access.token}"
    return access.server.rstrip("/"), headers, sslctx


def get_pod(kubeconfig: str | os.PathLike[str], name: str, namespace: str) -> dict[str, Any]:
    """GET one pod (synchronously: dig() is called from notebooks, where an event loop is already running)."""
    server, headers, sslctx = _kubeconfig_access(Path(kubeconfig))
    url = f"{server}/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods/{urllib.parse.quote(name)}"
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, context=sslctx, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise LookupError(f'pods "{name}" not found in namespace "{namespace}"') from None
        raise OSError(f"API server: {exc.code} {exc.reason}") from None


# ------------------------------------------------------------------------------------------------- embedded


def _names(home: str | os.PathLike[str]) -> Any:
    from labkit.node.names import Names

    return Names.for_home(home)


def node_transport(home: str | os.PathLike[str], namespace: str = "default") -> NetnsTransport:
    """The node's network namespace, resolving like a ClusterFirst pod in `namespace`."""
    names = _names(home)
    return NetnsTransport(names.netns_path(names.node_netns), cluster_first_resolv_conf(namespace),
                          label=names.node_netns)


def pod_transport(pod: str, namespace: str = "default", home: str | os.PathLike[str] | None = None,
                  kubeconfig: str | os.PathLike[str] | None = None) -> NetnsTransport:
    """The network namespace of pod `namespace/pod` on the embedded node (the pod must be running)."""
    home_path = Path(home) if home is not None else _default_home()
    obj = get_pod(kubeconfig or home_path / "kubeconfig", pod, namespace)
    uid = obj["metadata"]["uid"]
    names = _names(home_path)
    netns = names.netns_path(names.pod_netns(uid))
    if not netns.exists():
        phase = obj.get("status", {}).get("phase", "?")
        raise FileNotFoundError(f"pod {namespace}/{pod} has no network namespace yet (phase {phase})")
    resolv = names.pod_dir(uid) / "resolv.conf"
    return NetnsTransport(netns, lambda: resolv.read_text(), label=f"pod {namespace}/{pod}")


def _default_home() -> Path:
    from labkit.backends.embedded import default_home

    return default_home()


def embedded_running(home: str | os.PathLike[str]) -> bool:
    """True when an embedded cluster runs at `home` (its kubeconfig and node namespace exist)."""
    names = _names(home)
    return (Path(home) / "kubeconfig").exists() and names.netns_path(names.node_netns).exists()


def install_embedded(home: str | os.PathLike[str] | None = None) -> None:
    """Make `labkit.dns.dig.dig()`/`resolve()` send their queries from the embedded cluster at `home`."""
    home_path = Path(home).absolute() if home is not None else _default_home()

    digmod.set_pod_transport_factory(lambda pod, ns: pod_transport(pod, ns, home_path))
    digmod.set_node_transport_factory(lambda ns: node_transport(home_path, ns))


def auto_install() -> bool:
    """Install the embedded transports if a cluster runs at the default home; False if none does."""
    try:
        home = _default_home()
    except Exception:
        return False
    if not embedded_running(home):
        return False
    install_embedded(home)
    return True
