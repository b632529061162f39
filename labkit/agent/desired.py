"""Desired IPVS state from Services and EndpointSlices, computed the way kube-proxy's IPVS proxier does.

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
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from labkit.agent.model import FLAG_PERSISTENT, FLAG_SCHED2, RealServer, Table, VirtualServer

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
class DesiredState:
    """Everything one sync should make true: the VS table and the addresses bound to kube-ipvs0."""

    table: Table = field(default_factory=dict)
    bind_addresses: set[str] = field(default_factory=set)


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


def categorize(endpoints: list[Endpoint], svc: dict[str, Any]) -> tuple[list[Endpoint], list[Endpoint]]:
    """kube-proxy's CategorizeEndpoints (no topology): (cluster endpoints, local endpoints)."""
    spec = svc.get("spec", {})
    itp_local = spec.get("internalTrafficPolicy") == "Local"
    external = _externally_accessible(svc)
    etp_local = external and spec.get("externalTrafficPolicy") == "Local"
    uses_cluster = not itp_local or (external and not etp_local)
    uses_local = itp_local or etp_local
    cluster: list[Endpoint] = []
    if uses_cluster:
        cluster = [e for e in endpoints if e.ready]
        if not cluster:
            cluster = [e for e in endpoints if e.serving and e.terminating]
    local: list[Endpoint] = []
    if uses_local:
        if any(e.ready and e.local for e in endpoints):
            local = [e for e in endpoints if e.local and e.ready]
        elif any(e.local and e.serving and e.terminating and not e.ready for e in endpoints):
            local = [e for e in endpoints if e.local and e.serving and e.terminating]
    return cluster, local


def _pick(cluster: list[Endpoint], local: list[Endpoint], only_local: bool) -> list[Endpoint]:
    if only_local:
        return local if local else cluster  # PR #97081 fallback
    return cluster


def _real_servers(eps: list[Endpoint]) -> list[RealServer]:
    return [RealServer(e.ip, e.port, weight=1, forward="Masq") for e in sorted(eps, key=lambda e: (e.ip, e.port))]


def compute_desired(
    services: Iterable[dict[str, Any]],
    slices: Iterable[dict[str, Any]],
    node_name: str,
    node_ips: Iterable[str],
    scheduler: str = "rr",
    family: int = 4,
) -> DesiredState:
    """The VS table and kube-ipvs0 addresses kube-proxy's IPVS proxier would program on this node."""
    scheduler = scheduler or "rr"
    # Group the slices by Service once: scanning every slice for every service port is quadratic (1,000
    # Services × 1,000 slices took seconds per sync).
    by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for sl in slices:
        meta = sl.get("metadata", {})
        key = (meta.get("namespace", ""), (meta.get("labels") or {}).get(SERVICE_NAME_LABEL, ""))
        by_service.setdefault(key, []).append(sl)
    node_addrs = [ip for ip in node_ips if _family(ip) == family and not ipaddress.ip_address(ip).is_loopback]
    node_set = set(node_addrs)
    state = DesiredState()

    def add(vs: VirtualServer, eps: list[Endpoint], bind: bool) -> None:
        vs.destinations = _real_servers(eps)
        state.table[vs.key] = vs
        if bind:
            state.bind_addresses.add(vs.address)

    for svc in services:
        meta, spec = svc.get("metadata", {}), svc.get("spec", {})
        if spec.get("type") == "ExternalName":
            continue
        cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        if not cluster_ips or cluster_ips[0] in ("None", ""):
            continue
        cluster_ip = next((ip for ip in cluster_ips if ip != "None" and _family(ip) == family), None)
        if cluster_ip is None:
            continue
        flags, timeout = 0, 0
        if spec.get("sessionAffinity") == "ClientIP":
            flags |= FLAG_PERSISTENT
            cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
            timeout = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
        if scheduler == "mh":
            flags |= FLAG_SCHED2
        itp_local = spec.get("internalTrafficPolicy") == "Local"
        etp_local = _externally_accessible(svc) and spec.get("externalTrafficPolicy") == "Local"
        ext_ips = [ip for ip in spec.get("externalIPs") or [] if _family(ip) == family]
        lb_ips = [ip for ip in _lb_ips(svc) if _family(ip) == family]
        for port in spec.get("ports") or []:
            proto = port.get("protocol") or "TCP"
            ns, name = meta.get("namespace", "default"), meta.get("name", "")
            eps = service_endpoints(by_service.get((ns, name), ()), ns, name, port.get("name") or "", proto,
                                    node_name, family)
            cluster, local = categorize(eps, svc)

            def vs_for(
                ip: str, p: int, proto: str = proto, flags: int = flags, timeout: int = timeout
            ) -> VirtualServer:
                return VirtualServer(proto, ip, p, scheduler, flags, timeout)

            add(vs_for(cluster_ip, int(port["port"])), _pick(cluster, local, itp_local), True)
            for ip in ext_ips:
                add(vs_for(ip, int(port["port"])), _pick(cluster, local, etp_local), ip not in node_set)
            for ip in lb_ips:
                add(vs_for(ip, int(port["port"])), _pick(cluster, local, etp_local), ip not in node_set)
            if port.get("nodePort"):
                for ip in node_addrs:
                    add(vs_for(ip, int(port["nodePort"])), _pick(cluster, local, etp_local), False)
    return state
