"""EndpointSlice controller and EndpointSlice mirroring, as pure planning functions.

Upstream: pkg/controller/endpointslice + staging/src/k8s.io/endpointslice (reconciler, utils) and
pkg/controller/endpointslicemirroring.

EndpointSlice controller, for a Service with a selector: every matching pod with an IP (terminating
ones included) becomes an endpoint {addresses: [podIP], conditions {ready, serving, terminating},
hostname?, targetRef, nodeName?} with `serving = pod Ready`, `terminating = deletionTimestamp set`,
`ready = publishNotReadyAddresses or (serving and not terminating)`. Endpoints are grouped by their
resolved port list; each group fills slices of at most 100 endpoints named by generateName `<svc>-`,
labelled `kubernetes.io/service-name`, `endpointslice.kubernetes.io/managed-by:
endpointslice-controller.k8s.io` and the Service's labels (plus `service.kubernetes.io/headless` for
headless Services), owned by the Service. A Service with no endpoints keeps one empty placeholder slice.
Existing slices are updated in place (kept endpoints keep their order, new ones are appended), and a
slice is only written when its content changes.

Mirroring, for a Service *without* selector that has a user-written Endpoints object (not labelled
`endpointslice.kubernetes.io/skip-mirror: "true"`): addresses → ready true, notReadyAddresses → ready
false, hostnames/nodeName/targetRef copied, at most 1000 addresses per subset, slices labelled
managed-by `endpointslicemirroring-controller.k8s.io`, the Endpoints' labels and annotations copied
(except last-applied-configuration and the trigger time), owned by the Endpoints object.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .endpoints import HEADLESS_LABEL, TRIGGER_TIME, is_ip_set, selected_pods
from .util import (
    canonical,
    find_port,
    is_pod_ready,
    is_terminating,
    json_copy,
    meta,
    name_of,
    ns_of,
    pod_ip,
    should_pod_be_in_endpoints,
    should_set_hostname,
    uid_of,
)

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"
CONTROLLER = "endpointslice-controller.k8s.io"
MIRROR_CONTROLLER = "endpointslicemirroring-controller.k8s.io"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
MAX_PER_SLICE = 100
MAX_PER_SUBSET = 1000


@dataclass
class Group:
    """Endpoints sharing one port list (upstream's endpointMeta / addrTypePortMapKey)."""

    ports: list[dict] | None
    endpoints: list[dict] = field(default_factory=list)


@dataclass
class Plan:
    """What to write: new slices to create, slices to PUT, slice names to delete."""

    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def ports_key(ports: list[dict] | None) -> str:
    return canonical(sorted(ports or [], key=canonical))


def endpoint_key(ep: dict) -> str:
    addrs = ep.get("addresses") or [""]
    return addrs[0] + "/" + ((ep.get("targetRef") or {}).get("uid") or "")


def slice_port(service_port: dict, port: int) -> dict:
    p: dict[str, Any] = {"name": service_port.get("name") or "", "port": port,
                         "protocol": service_port.get("protocol") or "TCP"}
    if service_port.get("appProtocol"):
        p["appProtocol"] = service_port["appProtocol"]
    return p


def pod_to_endpoint(pod: dict, svc: dict) -> dict:
    """endpointsliceutil podToEndpoint."""
    serving = is_pod_ready(pod)
    terminating = is_terminating(pod)
    ready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    ep: dict[str, Any] = {
        "addresses": [pod_ip(pod)],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    }
    if should_set_hostname(pod, svc):
        ep["hostname"] = pod["spec"]["hostname"]
    ep["targetRef"] = {"kind": "Pod", "namespace": ns_of(pod), "name": name_of(pod), "uid": uid_of(pod)}
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        ep["nodeName"] = node
    return ep


def _is_ipv4(ip: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(ip), ipaddress.IPv4Address)
    except ValueError:
        return False


def desired_groups(svc: dict, pods: list[dict]) -> dict[str, Group]:
    """Endpoints of a selector Service grouped by port list (IPv4 only: labkit is single-stack)."""
    groups: dict[str, Group] = {}
    sports = (svc.get("spec") or {}).get("ports") or []
    for pod in sorted(selected_pods(svc, pods), key=name_of):
        if not should_pod_be_in_endpoints(pod, True) or not _is_ipv4(pod_ip(pod)):
            continue
        ports: list[dict] = []
        for sp in sports:
            port = find_port(pod, sp)
            if port is not None:
                ports.append(slice_port(sp, port))
        k = ports_key(ports)
        g = groups.setdefault(k, Group(ports=ports or None))
        g.endpoints.append(pod_to_endpoint(pod, svc))
    return groups


def mirror_groups(endpoints: dict) -> dict[str, Group]:
    """Endpoints' subsets grouped by port list, as the mirroring controller does."""
    groups: dict[str, Group] = {}
    for ss in endpoints.get("subsets") or []:
        ports: list[dict] = []
        for p in ss.get("ports") or []:
            q: dict[str, Any] = {"name": p.get("name") or "", "port": p.get("port"),
                                 "protocol": p.get("protocol") or "TCP"}
            if p.get("appProtocol"):
                q["appProtocol"] = p["appProtocol"]
            ports.append(q)
        k = ports_key(ports)
        g = groups.setdefault(k, Group(ports=ports or None))
        seen = {endpoint_key(e) for e in g.endpoints}
        n = 0
        for ready, fld in ((True, "addresses"), (False, "notReadyAddresses")):
            for a in ss.get(fld) or []:
                if n >= MAX_PER_SUBSET:
                    break
                try:
                    ip = str(ipaddress.ip_address(a.get("ip", "")))
                except ValueError:
                    continue
                if not _is_ipv4(ip):
                    continue
                ep: dict[str, Any] = {"addresses": [ip], "conditions": {"ready": ready}}
                if a.get("hostname"):
                    ep["hostname"] = a["hostname"]
                if a.get("targetRef"):
                    ep["targetRef"] = json_copy(a["targetRef"])
                if a.get("nodeName"):
                    ep["nodeName"] = a["nodeName"]
                n += 1
                if endpoint_key(ep) in seen:
                    continue
                seen.add(endpoint_key(ep))
                g.endpoints.append(ep)
    return {k: g for k, g in groups.items() if g.endpoints}


def service_slice_meta(svc: dict) -> dict:
    """Labels and owner references of the slices of a selector Service (setEndpointSliceLabels)."""
    labels = {k: v for k, v in (meta(svc).get("labels") or {}).items() if k not in (SERVICE_NAME, MANAGED_BY)}
    if not is_ip_set(svc):
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME] = name_of(svc)
    labels[MANAGED_BY] = CONTROLLER
    owner = {"apiVersion": "v1", "kind": "Service", "name": name_of(svc), "uid": uid_of(svc),
             "controller": True, "blockOwnerDeletion": True}
    return {"labels": labels, "ownerReferences": [owner]}


def mirror_slice_meta(endpoints: dict) -> dict:
    labels = dict(meta(endpoints).get("labels") or {})
    labels[SERVICE_NAME] = name_of(endpoints)
    labels[MANAGED_BY] = MIRROR_CONTROLLER
    ann = {k: v for k, v in (meta(endpoints).get("annotations") or {}).items() if k not in (TRIGGER_TIME, LAST_APPLIED)}
    owner = {"apiVersion": "v1", "kind": "Endpoints", "name": name_of(endpoints), "uid": uid_of(endpoints),
             "controller": True, "blockOwnerDeletion": True}
    return {"labels": labels, "annotations": ann, "ownerReferences": [owner]}


def should_mirror(endpoints: dict, svc: dict | None) -> bool:
    """Mirror only user Endpoints of an existing Service without selector, not skip-mirrored."""
    if svc is None or (svc.get("spec") or {}).get("selector"):
        return False
    if (meta(endpoints).get("labels") or {}).get(SKIP_MIRROR) == "true":
        return False
    return LEADER_ANNOTATION not in (meta(endpoints).get("annotations") or {})


def new_slice(namespace: str, name: str, smeta: dict, ports: list[dict] | None, endpoints: list[dict]) -> dict:
    md: dict[str, Any] = {"generateName": f"{name}-", "namespace": namespace}
    md.update(json_copy(smeta))
    if "annotations" in md and not md["annotations"]:
        del md["annotations"]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": md,
        "addressType": "IPv4",
        "endpoints": endpoints or None,
        "ports": json_copy(ports) if ports else None,
    }


def _meta_differs(sl: dict, smeta: dict) -> bool:
    md = meta(sl)
    if (md.get("labels") or {}) != smeta.get("labels", {}):
        return True
    if "annotations" in smeta:
        ann = {k: v for k, v in (md.get("annotations") or {}).items() if k != TRIGGER_TIME}
        if ann != smeta["annotations"]:
            return True
    return canonical(md.get("ownerReferences") or []) != canonical(smeta.get("ownerReferences") or [])


def _apply_meta(sl: dict, smeta: dict, trigger: str) -> None:
    md = sl.setdefault("metadata", {})
    md["labels"] = dict(smeta.get("labels") or {})
    md["ownerReferences"] = json_copy(smeta.get("ownerReferences") or [])
    ann = dict(smeta.get("annotations") if "annotations" in smeta else (md.get("annotations") or {}))
    if trigger:
        ann[TRIGGER_TIME] = trigger
    if ann:
        md["annotations"] = ann
    else:
        md.pop("annotations", None)


def plan_slices(namespace: str, name: str, groups: dict[str, Group], existing: list[dict], smeta: dict,
                placeholder: bool, trigger: str = "",
                max_per_slice: int = MAX_PER_SLICE) -> Plan:
    """Turn desired endpoint groups and the existing slices into creates, updates and deletes."""
    plan = Plan()
    by_key: dict[str, list[dict]] = {}
    for sl in sorted(existing, key=name_of):
        by_key.setdefault(ports_key(sl.get("ports")), []).append(sl)
    kept: list[dict] = []
    for k, slices in by_key.items():
        g = groups.get(k)
        if g is None:
            plan.delete.extend(name_of(s) for s in slices)
            continue
        want = {endpoint_key(e): e for e in g.endpoints}
        placed: set[str] = set()
        for sl in slices:
            old = sl.get("endpoints") or []
            new = []
            for e in old:
                ek = endpoint_key(e)
                if ek in want and ek not in placed:
                    new.append(want[ek])
                    placed.add(ek)
            rest = [e for e in g.endpoints if endpoint_key(e) not in placed]
            room = max_per_slice - len(new)
            for e in rest[:max(room, 0)]:
                new.append(e)
                placed.add(endpoint_key(e))
            if not new:
                plan.delete.append(name_of(sl))
                continue
            changed = canonical(new) != canonical(old) or _meta_differs(sl, smeta)
            if changed:
                upd = json_copy(sl)
                upd["endpoints"] = new
                upd["ports"] = json_copy(g.ports) if g.ports else None
                upd.setdefault("addressType", "IPv4")
                _apply_meta(upd, smeta, trigger)
                plan.update.append(upd)
            kept.append(sl)
        rest = [e for e in g.endpoints if endpoint_key(e) not in placed]
        for i in range(0, len(rest), max_per_slice):
            plan.create.append(_created(namespace, name, smeta, g.ports, rest[i:i + max_per_slice], trigger))
    for k, g in groups.items():
        if k in by_key:
            continue
        for i in range(0, len(g.endpoints), max_per_slice):
            plan.create.append(_created(namespace, name, smeta, g.ports, g.endpoints[i:i + max_per_slice], trigger))
    if placeholder and not kept and not plan.create:
        # upstream keeps exactly one empty slice for a Service with no endpoints
        reusable = [s for s in existing if not (s.get("endpoints") or []) and not (s.get("ports") or [])]
        if reusable:
            keep = sorted(reusable, key=name_of)[0]
            plan.delete = [n for n in plan.delete if n != name_of(keep)]
            if _meta_differs(keep, smeta):
                upd = json_copy(keep)
                _apply_meta(upd, smeta, trigger)
                plan.update.append(upd)
        else:
            plan.create.append(_created(namespace, name, smeta, None, [], trigger))
    return plan


def _created(namespace: str, name: str, smeta: dict, ports: list[dict] | None, eps: list[dict],
             trigger: str) -> dict:
    sl = new_slice(namespace, name, smeta, ports, eps)
    _apply_meta(sl, smeta, trigger)
    return sl


def plan_for_service(svc: dict, pods: list[dict], existing: list[dict], trigger: str = "") -> Plan:
    """The EndpointSlice controller's plan for one selector Service."""
    return plan_slices(ns_of(svc), name_of(svc), desired_groups(svc, pods), existing, service_slice_meta(svc),
                       placeholder=True, trigger=trigger)


def plan_mirror(endpoints: dict | None, svc: dict | None, existing: list[dict]) -> Plan:
    """The mirroring controller's plan for one Endpoints object (None when it is gone)."""
    if endpoints is None or not should_mirror(endpoints, svc):
        return Plan(delete=[name_of(s) for s in existing])
    return plan_slices(ns_of(endpoints), name_of(endpoints), mirror_groups(endpoints), existing,
                       mirror_slice_meta(endpoints), placeholder=False)


def owned_by_controller(sl: dict, controller: str) -> bool:
    return (meta(sl).get("labels") or {}).get(MANAGED_BY) == controller


SliceFilter = Callable[[dict], bool]
