"""The one interface every backend implements, and how a backend is chosen.

`labkit.Lab` (and so every lab) reaches a cluster only through a `Backend`: the Kubernetes API itself is reached
with the kubeconfig the backend names (the real kubectl, labkit's client), and everything the API cannot show —
the load balancer's table, traffic and DNS queries sent from inside the cluster — through the methods below. A
backend knows how to create, reach and delete one cluster; it knows nothing about labs.

    embedded    this host, no Docker (labkit.backends.embedded.EmbeddedBackend)
    kind        a kind cluster in Docker (labkit.backends.kind.KindBackend)
    kubeconfig  a cluster that already exists (labkit.backends.kubeconfig.KubeconfigBackend)

Which one: `get_backend(name)` takes the name given, else `$LABKIT_BACKEND`, else `embedded`. A backend module
registers by being named in `BACKENDS` ("module:Class"); it is imported only when chosen.

Rules every implementation keeps:
- Nothing here sends a packet to a cluster address from the host's network namespace: queries and requests run
  inside a pod's or a node's network namespace (or a pod, through the API's exec).
- Methods are blocking and may be called from any thread; none of them needs, or may assume, an event loop in
  the calling thread (a Jupyter kernel runs one). `Lab` calls them from worker threads.
- What a backend cannot show raises `labkit.errors.Unavailable` with the reason in words a learner understands
  ("kube-proxy runs in iptables mode on this cluster: there is no IPVS table"); the lab then says so.
"""

from __future__ import annotations

import abc
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from labkit import errors

if TYPE_CHECKING:
    from labkit.agent.cli import HttpConnection
    from labkit.agent.model import Connection, VirtualServer
    from labkit.dns.dig import Transport

DEFAULT_BACKEND = "embedded"
BACKEND_ENV = "LABKIT_BACKEND"
PROXY_MODES = ("ipvs", "nftables")  # kube-proxy's modes a lab may ask for

BACKENDS: dict[str, str] = {
    "embedded": "labkit.backends.embedded:EmbeddedBackend",
    "kind": "labkit.backends.kind:KindBackend",
    "kubeconfig": "labkit.backends.kubeconfig:KubeconfigBackend",
}


@dataclass(frozen=True)
class ClusterInfo:
    """What `describe()` tells about a running cluster (shown by `Lab` and `labkit status`)."""

    backend: str
    server: str  # the API server's URL
    kubeconfig: Path
    proxy_mode: str  # "ipvs" | "nftables"
    nodes: tuple[str, ...] = ()
    details: tuple[tuple[str, str], ...] = ()  # anything else worth a line: ("home", "/root/.labkit"), …


class Backend(abc.ABC):
    """One cluster: start or reach it, stop it, and look inside it where the API cannot."""

    name: ClassVar[str]
    proxy_modes: ClassVar[tuple[str, ...]] = ("ipvs",)  # the modes `start` can give a new cluster

    # -- lifecycle ------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def start(self, proxy_mode: str | None = None, timeout: float = 180.0) -> bool:
        """Start the cluster unless it runs, and return once a learner can use it.

        Usable means: the API answers, every node is Ready, and the cluster DNS answers through its Service
        (the load balancer has programmed it). Idempotent: when the cluster already runs, wait until it is
        usable and return False (never a second cluster); True when this call created it. `proxy_mode`
        (None: the backend's default, "ipvs") is the mode a new cluster gets; if the running cluster uses
        another mode, raise `errors.ClusterError` saying which mode it runs and how to get the other.
        A mode the backend cannot give raises `errors.Unavailable`.
        """

    @abc.abstractmethod
    def connect(self, timeout: float = 60.0) -> None:
        """Reach a cluster that already runs and wait until it is usable (as `start` defines it);
        `errors.ClusterNotRunning` when there is none."""

    @abc.abstractmethod
    def stop(self) -> bool:
        """Delete the cluster and everything it made; True if one was running. Succeeds when none runs."""

    @abc.abstractmethod
    def running(self) -> bool:
        """Whether the cluster exists and its API answers (cheap: no waiting)."""

    @property
    @abc.abstractmethod
    def kubeconfig(self) -> Path:
        """The kubeconfig file that reaches the cluster (for kubectl and the API client)."""

    def kubectl_args(self) -> list[str]:
        """Arguments put before every kubectl command run against this cluster (kubeconfig, context)."""
        return ["--kubeconfig", str(self.kubeconfig)]

    @abc.abstractmethod
    def describe(self) -> ClusterInfo:
        """What runs: backend, API server, kubeconfig, proxy mode, nodes."""

    def namespace(self, name: str) -> str:
        """The namespace a lab that asks for `name` really uses (a shared cluster prefixes a learner's)."""
        return name

    # -- the load balancer ----------------------------------------------------------------------------------

    @property
    def proxy_mode(self) -> str:
        """The mode the running cluster's Service proxy uses ("ipvs" or "nftables")."""
        return self.describe().proxy_mode

    @abc.abstractmethod
    def ipvs_table(self) -> list[VirtualServer]:
        """The node's IPVS virtual servers with their real servers and counters, as `ipvsadm -L -n` lists them.

        With several nodes, the first node's (kube-proxy programs the same table on each). `errors.Unavailable`
        when the cluster has no IPVS table (another proxy mode, no access to a node).
        """

    def nft(self, args: list[str]) -> str:
        """What `nft ARGS` (a listing: `list table ip kube-proxy`, `list chain …`) prints on the (first) node, where
        kube-proxy runs in nftables mode. `errors.Unavailable` where the backend cannot look."""
        raise errors.Unavailable(f"the {self.name} backend cannot list a node's nftables rules")

    @abc.abstractmethod
    def ipvs_connections(self) -> list[Connection]:
        """The IPVS connection table (`ipvsadm -L -n -c`, /proc/net/ip_vs_conn), persistence templates included."""

    # -- traffic from inside the cluster --------------------------------------------------------------------

    @abc.abstractmethod
    def dns_transport(self, from_pod: str | None, namespace: str) -> Transport:
        """How `labkit.dns.dig.dig()`/`resolve()` send a query from pod `namespace/from_pod`, or from a node when
        `from_pod` is None (resolving like a ClusterFirst pod in `namespace`)."""

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        """Every pod the kubeconfig may list (all namespaces; where that is refused, `namespace`'s), as the API
        lists them: to name the pod that answered a request. Through kubectl, which speaks every way a kubeconfig
        authenticates."""
        from labkit.backends import tools

        return tools.list_pods(tools.Kubectl(tools.find_tool("kubectl", backend=self.name), self.kubeconfig),
                               namespace)

    @abc.abstractmethod
    def http_connection(self, host: str, port: int, *, from_pod: str | None, namespace: str,
                        timeout: float = 3.0) -> HttpConnection:
        """An HTTP/1.1 connection opened from pod `namespace/from_pod` (or a node) to `host:port`.

        `host` is a name (resolved the way the pod would, search list included) or an address. The connection's
        `request()` names, for each answer, where the load balancer sent it (the connection table) when it can.
        """


def backend_name(name: str | None = None) -> str:
    """The backend to use: `name`, else $LABKIT_BACKEND, else embedded."""
    return name or os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND


def get_backend(name: str | None = None, **options: Any) -> Backend:
    """An instance of the backend named `name` (see `backend_name`), built with `options` (home=, context=, …)."""
    chosen = backend_name(name)
    target = BACKENDS.get(chosen)
    if target is None:
        raise errors.LabkitError(f"unknown backend {chosen!r}: choose one of {', '.join(BACKENDS)}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise errors.Unavailable(f"the {chosen} backend is not part of this labkit yet; use the embedded "
                                 "backend (LABKIT_BACKEND=embedded)") from None
    cls: type[Backend] = getattr(module, class_name)
    return cls(**options)
