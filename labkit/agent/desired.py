"""kube-proxy's desired state from Services and EndpointSlices, computed once for either proxy mode.

`service_ports()` is the proxy-mode-neutral part, what kube-proxy's service and endpoint change trackers hold:
one `ServicePort` per port of a Service, with its endpoints already categorized (pkg/proxy/topology.go).
`render_ipvs()` turns those into IPVS virtual servers (the IPVS proxier); labkit/agent/nftables.py renders the
same `ServicePort`s as the nftables proxier's ruleset. `compute_desired()` does both steps for IPVS.

Facts followed (kubernetes/kubernetes pkg/proxy/ipvs/proxier.go `syncProxyRules`/`syncEndpoint`,
pkg/proxy/topology.go `CategorizeEndpoints`, pkg/proxy/endpointslicecache.go, pkg/proxy/servicechangetracker.go):

- Services without a ClusterIP (headless, "None") and ExternalName Services get no virtual server.
- Per service port: a VS on the ClusterIP (bound to kube-ipvs0), on each externalIP and each LoadBalancer
  ingress IP whose ipMode is not "Proxy" (bound unless the address is already a node address), and, when the
  port has a nodePort, one VS per node IP (never bound). All VSs of a port get the same scheduler and
  persistence; real servers are endpoint ip:port, weight 1, Masq.
- Endpoints: `ready` (nil = true) are used; with none ready anywhere, serving∧terminating ones.
  InternalTrafficPolicy=Local applies to the ClusterIP VS, ExternalTrafficPolicy=Local to the other VSs;
  when there are no local endpoints the proxier falls back to the cluster endpoints (PR #97081), which
  `CategorizeEndpoints` leaves empty when the Service uses no cluster endpoints at all.
- The endpoint port is the slice port with the same name and protocol as the service port.
- Masquerading (the IPVS proxier's iptables rules over its ipsets): KUBE-NODE-PORT-{TCP,UDP}, KUBE-EXTERNAL-IP and
  KUBE-LOAD-BALANCER mark NodePort, external-IP and load-balancer traffic for masquerade unless the Service's
  externalTrafficPolicy is Local (the *-LOCAL sets RETURN first); ClusterIP traffic is masqueraded only when its
  source is outside the cluster CIDR, which the data plane decides per connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from labkit.agent.model import FLAG_PERSISTENT, FLAG_SCHED2, RealServer, Table, VirtualServer, VSKey

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800  # v1.DefaultClientIPServiceAffinitySeconds


@dataclass(frozen=True)
class Endpoint:
    """One endpoint of a service port as kube-proxy sees it (BaseEndpointInfo)."""

    ip: str
    port: int
    ready: bool
    serving: bool
    terminating: bool
    local: bool


@dataclass
class ServicePort:
    """One port of one Service as kube-proxy's proxiers see it (BaseServicePortInfo), with its endpoints
    categorized: `cluster` for Cluster traffic policy, `local` for Local, `reachable` their union (the endpoints
    this node sends traffic to), `has_endpoints` whether any usable endpoint exists anywhere."""

    namespace: str
    name: str
    port_name: str
    protocol: str  # TCP, UDP or SCTP
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: list[str] = field(default_factory=list)
    lb_ips: list[str] = field(default_factory=list)
    lb_source_ranges: list[str] = field(default_factory=list)
    affinity_timeout: int = 0  # seconds of ClientIP affinity; 0 = no affinity
    internal_local: bool = False  # internalTrafficPolicy: Local
    external_local: bool = False  # externalTrafficPolicy: Local (and externally accessible)
    externally_accessible: bool = False
    cluster: list[Endpoint] = field(default_factory=list)
    local: list[Endpoint] = field(default_factory=list)
    reachable: list[Endpoint] = field(default_factory=list)
    has_endpoints: bool = False

    @property
    def port_key(self) -> str:
        """kube-proxy's ServicePortName string: `ns/svc:port`, or `ns/svc` for an unnamed port."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base


@dataclass
class DesiredState:
    """Everything one IPVS sync should make true: the VS table, the addresses bound to kube-ipvs0, and the virtual
    servers whose traffic is masqueraded whatever its source (NodePorts, external and load-balancer IPs)."""

    table: Table = field(default_factory=dict)
    bind_addresses: set[str] = field(default_factory=set)
    masquerade: set[VSKey] = field(default_factory=set)


def _family(ip: str) -> int:
    return ipaddress.ip_address(ip).version


def service_endpoints(
    slices: Iterable[dict[str, Any]], namespace: str, name: str, port_name: str, protocol: str,
    node_name: str, family: int = 4,
) -> list[Endpoint]:
    """The endpoints of one service port, merged over all its EndpointSlices (deduplicated by ip:port)."""
    out: dict[tuple[str, int], Endpoint] = {}
    want_type = "IPv4" if family == 4 else "IPv6"
    for sl in sorted(slices, key=lambda s: s.get("metadata", {}).get("name", "")):
        meta = sl.get("metadata", {})
        if meta.get("namespace") != namespace or (meta.get("labels") or {}).get(SERVICE_NAME_LABEL) != name:
            continue
        if sl.get("addressType", "IPv4") != want_type:
            continue
        port_num = None
        for p in sl.get("ports") or []:
            if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol:
                port_num = p.get("port")
                break
        if port_num is None:
            continue
        for ep in sl.get("endpoints") or []:
            addrs = ep.get("addresses") or []
            if not addrs:
                continue
            cond = ep.get("conditions") or {}
            ready = cond.get("ready") is not False
            serving = cond.get("serving") is not False  # nil means serving, as kube-proxy reads it
            terminating = cond.get("terminating") is True
            key = (addrs[0], int(port_num))
            if key in out:
                continue
            out[key] = Endpoint(addrs[0], int(port_num), ready, serving, terminating, ep.get("nodeName") == node_name)
    return list(out.values())


def _externally_accessible(svc: dict[str, Any]) -> bool:
    spec = svc.get("spec", {})
    if spec.get("externalIPs"):
        return True
    if spec.get("type") in ("NodePort", "LoadBalancer"):
        return True
    return bool(_lb_ips(svc))


def _lb_ips(svc: dict[str, Any]) -> list[str]:
    out = []
    for ing in (svc.get("status", {}).get("loadBalancer", {}) or {}).get("ingress") or []:
        ip = ing.get("ip")
        if ip and ing.get("ipMode") != "Proxy":
            out.append(ip)
    return out


def categorize(endpoints: list[Endpoint], svc: dict[str, Any]
               ) -> tuple[list[Endpoint], list[Endpoint], list[Endpoint], bool]:
    """kube-proxy's CategorizeEndpoints (no topology): (cluster endpoints, local endpoints, all reachable ones,
    whether the Service has any usable endpoint anywhere)."""
    spec = svc.get("spec", {})
    itp_local = spec.get("internalTrafficPolicy") == "Local"
    external = _externally_accessible(svc)
    etp_local = external and spec.get("externalTrafficPolicy") == "Local"
    uses_cluster = not itp_local or (external and not etp_local)
    uses_local = itp_local or etp_local
    cluster: list[Endpoint] = []
    has_any = False
    if uses_cluster:
        cluster = [e for e in endpoints if e.ready]
        if not cluster:
            cluster = [e for e in endpoints if e.serving and e.terminating]
        has_any = bool(cluster)
    if not uses_local:
        return cluster, [], cluster, has_any
    has_any = has_any or any(e.ready or (e.serving and e.terminating) for e in endpoints)
    local: list[Endpoint] = []
    if any(e.ready and e.local for e in endpoints):
        local = [e for e in endpoints if e.local and e.ready]
    elif any(e.local and e.serving and e.terminating and not e.ready for e in endpoints):
        local = [e for e in endpoints if e.local and e.serving and e.terminating]
    if not uses_cluster:
        return cluster, local, local, has_any
    reachable = cluster + [e for e in local if e not in cluster]
    return cluster, local, reachable, has_any


def _sorted(eps: list[Endpoint]) -> list[Endpoint]:
    return sorted(eps, key=lambda e: (_family(e.ip), int(ipaddress.ip_address(e.ip)), e.port))


def _slices_by_service(slices: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    # Grouped once: scanning every slice for every service port is quadratic (1,000 Services × 1,000 slices took
    # seconds per sync).
    by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for sl in slices:
        meta = sl.get("metadata", {})
        key = (meta.get("namespace", ""), (meta.get("labels") or {}).get(SERVICE_NAME_LABEL, ""))
        by_service.setdefault(key, []).append(sl)
    return by_service


def service_ports(svc: dict[str, Any], slices: Iterable[dict[str, Any]], node_name: str,
                  family: int = 4) -> list[ServicePort]:
    """The ServicePorts of one Service (none for headless and ExternalName Services) with their endpoints from
    `slices` (those of other Services are ignored)."""
    meta, spec = svc.get("metadata", {}), svc.get("spec", {})
    if spec.get("type") == "ExternalName":
        return []
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    if not cluster_ips or cluster_ips[0] in ("None", ""):
        return []
    cluster_ip = next((ip for ip in cluster_ips if ip != "None" and _family(ip) == family), None)
    if cluster_ip is None:
        return []
    timeout = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        timeout = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    external = _externally_accessible(svc)
    ns, name = meta.get("namespace", "default"), meta.get("name", "")
    slices = list(slices)
    out = []
    for port in spec.get("ports") or []:
        proto = port.get("protocol") or "TCP"
        eps = service_endpoints(slices, ns, name, port.get("name") or "", proto, node_name, family)
        cluster, local, reachable, has_any = categorize(eps, svc)
        out.append(ServicePort(
            namespace=ns, name=name, port_name=port.get("name") or "", protocol=proto, cluster_ip=cluster_ip,
            port=int(port["port"]), node_port=int(port.get("nodePort") or 0),
            external_ips=[ip for ip in spec.get("externalIPs") or [] if _family(ip) == family],
            lb_ips=[ip for ip in _lb_ips(svc) if _family(ip) == family],
            lb_source_ranges=list(spec.get("loadBalancerSourceRanges") or []),
            affinity_timeout=timeout, internal_local=spec.get("internalTrafficPolicy") == "Local",
            external_local=external and spec.get("externalTrafficPolicy") == "Local", externally_accessible=external,
            cluster=_sorted(cluster), local=_sorted(local), reachable=_sorted(reachable), has_endpoints=has_any))
    return out


def _pick(port: ServicePort, only_local: bool) -> list[Endpoint]:
    if only_local:
        return port.local if port.local else port.cluster  # PR #97081 fallback
    return port.cluster


def render_ipvs(ports: Iterable[ServicePort], node_ips: Iterable[str], scheduler: str = "rr",
                family: int = 4) -> DesiredState:
    """The IPVS proxier's virtual servers, kube-ipvs0 addresses and masqueraded virtual servers for `ports`."""
    scheduler = scheduler or "rr"
    node_addrs = [ip for ip in node_ips if _family(ip) == family and not ipaddress.ip_address(ip).is_loopback]
    node_set = set(node_addrs)
    state = DesiredState()
    for sp in ports:
        flags = FLAG_PERSISTENT if sp.affinity_timeout else 0
        if scheduler == "mh":
            flags |= FLAG_SCHED2

        def add(ip: str, port: int, eps: list[Endpoint], bind: bool, masquerade: bool,
                sp: ServicePort = sp, flags: int = flags) -> None:
            vs = VirtualServer(sp.protocol, ip, port, scheduler, flags, sp.affinity_timeout)
            vs.destinations = [RealServer(e.ip, e.port, weight=1, forward="Masq") for e in eps]
            state.table[vs.key] = vs
            if bind:
                state.bind_addresses.add(ip)
            if masquerade:
                state.masquerade.add(vs.key)

        add(sp.cluster_ip, sp.port, _pick(sp, sp.internal_local), True, False)
        external = _pick(sp, sp.external_local)
        for ip in sp.external_ips + sp.lb_ips:
            add(ip, sp.port, external, ip not in node_set, not sp.external_local)
        if sp.node_port:
            for ip in node_addrs:
                add(ip, sp.node_port, external, False, not sp.external_local)
    return state


def compute_desired(
    services: Iterable[dict[str, Any]],
    slices: Iterable[dict[str, Any]],
    node_name: str,
    node_ips: Iterable[str],
    scheduler: str = "rr",
    family: int = 4,
) -> DesiredState:
    """The VS table and kube-ipvs0 addresses kube-proxy's IPVS proxier would program on this node."""
    by_service = _slices_by_service(slices)
    ports: list[ServicePort] = []
    for svc in services:
        meta = svc.get("metadata", {})
        key = (meta.get("namespace", "default"), meta.get("name", ""))
        ports.extend(service_ports(svc, by_service.get(key, ()), node_name, family))
    return render_ipvs(ports, node_ips, scheduler, family)
