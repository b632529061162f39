"""The DNS server's in-memory view of the cluster: Services, EndpointSlices, Namespaces and Pods (dns-rules.md §2).

Built from Kubernetes JSON dicts and updated incrementally by informer callbacks
(`callback(event_type, obj, old)`). Only what DNS serves is kept, in the shape the record rules need:

- a Service: name, namespace, type, clusterIPs (headless iff clusterIPs[0] == "None"), externalName, ports
  (a Service without ports gets the sentinel port -1);
- per Service, the ready endpoints of all its EndpointSlices (label `kubernetes.io/service-name`; only endpoints
  whose `conditions.ready` is true or absent), each with its hostname label (§2: the slice hostname, else the
  dashed IP) and the slice's ports (sentinel -1 when the slice has none);
- the set of existing Namespaces, and pod IPs per namespace (for `pods verified`).

`generation` increases on every change that alters what DNS serves (updates that change nothing served are
ignored, like CoreDNS's `updateModified`); `serial` is the Unix time of the last such change (the SOA serial).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class Port:
    name: str
    protocol: str
    port: int


NO_PORTS = (Port("", "", -1),)


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    namespace: str
    type: str
    cluster_ips: tuple[str, ...]  # as stored; ("None",) for headless
    external_name: str
    ports: tuple[Port, ...]

    @property
    def headless(self) -> bool:
        return bool(self.cluster_ips) and self.cluster_ips[0] == "None"

    @property
    def is_external(self) -> bool:
        return self.type == "ExternalName"


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    hostname: str  # the label used in per-endpoint names: slice hostname or dashed IP
    ports: tuple[Port, ...]
    pod: str = ""  # the targetRef's pod name when the slice gives no hostname (for `endpoint_pod_names`)

    def label(self, pod_names: bool) -> str:
        """kubernetes.go endpointHostname: hostname, else (with endpoint_pod_names) the pod's name, else dashed IP."""
        return self.pod if pod_names and self.pod else self.hostname


def dashed_ip(ip: str) -> str:
    """10.244.1.5 → 10-244-1-5; 5678:abcd::1 → 5678-abcd--1; an IPv6 form ending in '-' gets '0' (CoreDNS ≥ 1.12.3)."""
    if ":" in ip:
        d = ip.replace(":", "-")
        return d + "0" if d.endswith("-") else d
    return ip.replace(".", "-")


def canonical_ip(ip: str) -> str | None:
    try:
        return ipaddress.ip_address(ip).compressed
    except ValueError:
        return None


def service_from_dict(obj: dict[str, Any]) -> Service:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ports = tuple(
        Port(str(p.get("name") or ""), str(p.get("protocol") or "TCP"), int(p.get("port") or 0))
        for p in spec.get("ports") or []
    )
    return Service(
        name=meta.get("name", ""),
        namespace=meta.get("namespace") or "default",
        type=spec.get("type") or "ClusterIP",
        cluster_ips=tuple(ips),
        external_name=spec.get("externalName") or "",
        ports=ports or NO_PORTS,
    )


def slice_endpoints(obj: dict[str, Any]) -> list[Endpoint]:
    """Ready endpoints of one EndpointSlice (object/endpoint.go endpointsliceReady: ready true or absent)."""
    if obj.get("addressType") not in (None, "IPv4", "IPv6"):
        return []  # FQDN slices (deprecated) are not served (dns-rules.md §11)
    ports = tuple(
        Port(str(p.get("name") or ""), str(p.get("protocol") or "TCP"), int(p.get("port") if p.get("port") else -1))
        for p in obj.get("ports") or []
    ) or NO_PORTS
    out: list[Endpoint] = []
    for ep in obj.get("endpoints") or []:
        ready = (ep.get("conditions") or {}).get("ready")
        if ready is False:
            continue
        hostname = ep.get("hostname") or ""
        ref = ep.get("targetRef") or {}
        pod = ref.get("name", "") if ref.get("kind") == "Pod" and not hostname else ""
        for ip in ep.get("addresses") or []:
            out.append(Endpoint(ip, hostname or dashed_ip(ip), ports, pod))
    return out


class ClusterIndex:
    """What the DNS server knows about the cluster; see the module docstring."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], Service] = {}
        self.namespaces: set[str] = set()
        self._slices: dict[tuple[str, str], tuple[str, tuple[Endpoint, ...]]] = {}  # (ns, slice) → (svc, eps)
        self._slices_by_svc: dict[tuple[str, str], dict[str, tuple[Endpoint, ...]]] = {}
        self._endpoints: dict[tuple[str, str], tuple[Endpoint, ...]] = {}  # (ns, svc) → all slices' ready eps
        self._pods: dict[tuple[str, str], tuple[str, ...]] = {}  # (ns, pod) → canonical pod IPs
        self._reverse_gen = -1
        self._svc_by_ip: dict[str, list[Service]] = {}
        self._ep_by_ip: dict[str, list[tuple[str, str, Endpoint]]] = {}
        self._pod_ips_by_ns: dict[str, set[str]] = {}
        self.generation = 0
        self.serial = int(time.time())
        self.synced = False
        self._listeners: list[Callable[[], None]] = []

    # -- change bookkeeping ------------------------------------------------------------------------------------

    def add_listener(self, fn: Callable[[], None]) -> None:
        """fn() is called after every served change (e.g. to drop a response cache)."""
        self._listeners.append(fn)

    def _changed(self) -> None:
        self.generation += 1
        self.serial = int(time.time())
        for fn in self._listeners:
            fn()

    def set_synced(self, synced: bool = True) -> None:
        """Mark the informers as synced: name errors become NXDOMAIN instead of SERVFAIL."""
        if synced != self.synced:
            self.synced = synced
            self.generation += 1
            for fn in self._listeners:
                fn()

    # -- informer callbacks (event_type: ADDED | MODIFIED | DELETED) ---------------------------------------------

    def on_service(self, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        svc = service_from_dict(obj)
        key = (svc.namespace, svc.name)
        if event_type == "DELETED":
            if self.services.pop(key, None) is not None:
                self._changed()
            return
        if self.services.get(key) != svc:
            self.services[key] = svc
            self._changed()

    def on_endpointslice(self, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or "default"
        key = (ns, meta.get("name", ""))
        svc_name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        prev = self._slices.get(key)
        new = None if event_type == "DELETED" or not svc_name else (svc_name, tuple(slice_endpoints(obj)))
        if prev == new:
            return
        if prev is not None:
            by = self._slices_by_svc.get((ns, prev[0]), {})
            by.pop(key[1], None)
            self._rebuild_endpoints((ns, prev[0]))
        if new is None:
            self._slices.pop(key, None)
        else:
            self._slices[key] = new
            self._slices_by_svc.setdefault((ns, new[0]), {})[key[1]] = new[1]
            self._rebuild_endpoints((ns, new[0]))
        self._changed()

    def on_namespace(self, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        name = (obj.get("metadata") or {}).get("name", "")
        if event_type == "DELETED":
            if name in self.namespaces:
                self.namespaces.discard(name)
                self._changed()
        elif name not in self.namespaces:
            self.namespaces.add(name)
            self._changed()

    def on_pod(self, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace") or "default", meta.get("name", ""))
        status = obj.get("status") or {}
        ips = [p.get("ip") for p in status.get("podIPs") or []] or ([status["podIP"]] if status.get("podIP") else [])
        canon = tuple(c for c in (canonical_ip(ip) for ip in ips if ip) if c)
        if event_type == "DELETED":
            if self._pods.pop(key, None) is not None:
                self._changed()
            return
        if self._pods.get(key) != canon:
            self._pods[key] = canon
            self._changed()

    def handler_for(self, resource: str) -> Callable[[str, dict[str, Any], dict[str, Any] | None], None]:
        """The informer callback for a resource name ("services", "endpointslices", "namespaces", "pods")."""
        return {
            "services": self.on_service,
            "endpointslices": self.on_endpointslice,
            "namespaces": self.on_namespace,
            "pods": self.on_pod,
        }[resource]

    def load(self, objects: list[dict[str, Any]]) -> None:
        """Add plain objects of any of the four kinds (tests, snapshots)."""
        for obj in objects:
            kind = obj.get("kind")
            fn = {
                "Service": self.on_service,
                "EndpointSlice": self.on_endpointslice,
                "Namespace": self.on_namespace,
                "Pod": self.on_pod,
            }.get(kind or "")
            if fn is None:
                raise ValueError(f"the DNS index does not use {kind!r} objects")
            fn("ADDED", obj, None)

    def _rebuild_endpoints(self, svc_key: tuple[str, str]) -> None:
        slices = self._slices_by_svc.get(svc_key)
        if not slices:
            self._slices_by_svc.pop(svc_key, None)
            self._endpoints.pop(svc_key, None)
            return
        self._endpoints[svc_key] = tuple(ep for eps in slices.values() for ep in eps)

    # -- queries -------------------------------------------------------------------------------------------------

    def service(self, namespace: str, name: str) -> Service | None:
        return self.services.get((namespace, name))

    def endpoints(self, namespace: str, service: str) -> tuple[Endpoint, ...]:
        """Ready endpoints of a service, slice order × address order, not de-duplicated."""
        return self._endpoints.get((namespace, service), ())

    def namespace_exists(self, namespace: str) -> bool:
        return namespace in self.namespaces

    def _ensure_reverse(self) -> None:
        if self._reverse_gen == self.generation:
            return
        svc_by_ip: dict[str, list[Service]] = {}
        for svc in self.services.values():
            if svc.is_external or svc.headless:
                continue
            for ip in svc.cluster_ips:
                c = canonical_ip(ip)
                if c:
                    svc_by_ip.setdefault(c, []).append(svc)
        # Endpoints are indexed by the service named in their slices, whether or not that Service exists
        # (CoreDNS serviceRecordForIP uses the endpoints' own index).
        ep_by_ip: dict[str, list[tuple[str, str, Endpoint]]] = {}
        for (ns, name), eps in self._endpoints.items():
            for ep in eps:
                c = canonical_ip(ep.ip)
                if c:
                    ep_by_ip.setdefault(c, []).append((ns, name, ep))
        pods: dict[str, set[str]] = {}
        for (ns, _), ips in self._pods.items():
            pods.setdefault(ns, set()).update(ips)
        self._svc_by_ip, self._ep_by_ip, self._pod_ips_by_ns = svc_by_ip, ep_by_ip, pods
        self._reverse_gen = self.generation

    def services_by_cluster_ip(self, ip: str) -> list[Service]:
        """Services having this (canonical) IP among their clusterIPs."""
        self._ensure_reverse()
        return self._svc_by_ip.get(ip, [])

    def endpoints_by_ip(self, ip: str) -> list[tuple[str, str, Endpoint]]:
        """(namespace, service name, ready endpoint) for this (canonical) IP, across all services."""
        self._ensure_reverse()
        return self._ep_by_ip.get(ip, [])

    def pod_ip_exists(self, namespace: str, ip: str) -> bool:
        self._ensure_reverse()
        return ip in self._pod_ips_by_ns.get(namespace, set())
