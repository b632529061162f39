"""The Endpoints controller (upstream pkg/controller/endpoint), as pure functions plus a sync.

For a Service with a selector, the Endpoints object of the same name lists the matching pods of the
namespace that have an IP: ready pods (or all, with publishNotReadyAddresses) under `addresses`, the rest
under `notReadyAddresses`, each with `ip`, `nodeName`, `targetRef` and `hostname` (when the pod's
hostname is set and its subdomain is the Service's name). Ports come from each Service port's targetPort,
resolved per pod (a pod without a named port is left out of that port). A headless Service without ports
lists addresses without ports. Subsets are then repacked (endpoints.RepackSubsets): addresses that share
the same port set form one subset. Labels are the Service's, plus `service.kubernetes.io/headless: ""`
for headless Services. Services without a selector are left alone (their Endpoints are user-written).
"""

from __future__ import annotations

from typing import Any

from .util import (
    canonical,
    find_port,
    is_pod_ready,
    json_copy,
    map_selector_matches,
    meta,
    name_of,
    ns_of,
    parse_time,
    pod_condition,
    pod_ip,
    should_pod_be_in_endpoints,
    should_set_hostname,
    uid_of,
)

HEADLESS_LABEL = "service.kubernetes.io/headless"
TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"
MAX_CAPACITY = 1000


def is_headless(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("clusterIP") == "None" or (spec.get("clusterIPs") or [""])[0] == "None"


def is_ip_set(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    ip = spec.get("clusterIP") or ""
    return ip not in ("", "None")


def selected_pods(svc: dict, pods: list[dict]) -> list[dict]:
    sel = (svc.get("spec") or {}).get("selector")
    return [p for p in pods if ns_of(p) == ns_of(svc) and map_selector_matches(sel, meta(p).get("labels"))]


def pod_address(pod: dict, svc: dict) -> dict:
    """podToEndpointAddressForService + the hostname rule."""
    addr: dict[str, Any] = {"ip": pod_ip(pod)}
    if should_set_hostname(pod, svc):
        addr["hostname"] = pod["spec"]["hostname"]
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        addr["nodeName"] = node
    addr["targetRef"] = {"kind": "Pod", "namespace": ns_of(pod), "name": name_of(pod), "uid": uid_of(pod)}
    return addr


def endpoint_port(service_port: dict, port: int) -> dict:
    p: dict[str, Any] = {}
    if service_port.get("name"):
        p["name"] = service_port["name"]
    p["port"] = port
    p["protocol"] = service_port.get("protocol") or "TCP"
    if service_port.get("appProtocol"):
        p["appProtocol"] = service_port["appProtocol"]
    return p


def _addr_key(a: dict) -> tuple[str, str]:
    return (a.get("ip", ""), (a.get("targetRef") or {}).get("uid", ""))


def repack_subsets(subsets: list[dict]) -> list[dict]:
    """endpoints.RepackSubsets: one subset per distinct set of (address, ready) sharing the same ports.

    Addresses sort by IP then pod UID, ports by (name, port, protocol), subsets by their content
    (upstream sorts ports and subsets by a Go struct hash, which is only an arbitrary stable order).
    """
    no_port = "\x00"
    addrs: dict[tuple[str, str], dict] = {}
    by_port: dict[str, dict[tuple[str, str], bool]] = {}
    port_objs: dict[str, dict | None] = {}
    for ss in subsets:
        ports = ss.get("ports") or []
        keys = [canonical(p) for p in ports] or [no_port]
        for p, k in zip(ports or [None], keys, strict=False):
            port_objs[k] = p
        for ready, field in ((True, "addresses"), (False, "notReadyAddresses")):
            for a in ss.get(field) or []:
                ak = _addr_key(a)
                addrs.setdefault(ak, a)
                for k in keys:
                    m = by_port.setdefault(k, {})
                    m[ak] = m.get(ak, False) or ready  # ready wins over not ready
    groups: dict[str, list[str]] = {}
    group_sets: dict[str, dict[tuple[str, str], bool]] = {}
    for k, m in by_port.items():
        gk = canonical(sorted([[*a, r] for a, r in m.items()]))
        groups.setdefault(gk, []).append(k)
        group_sets[gk] = m
    out: list[dict] = []
    for gk, port_keys in groups.items():
        m = group_sets[gk]
        ss: dict[str, Any] = {}
        ready = sorted((a for a, r in m.items() if r))
        not_ready = sorted((a for a, r in m.items() if not r))
        if ready:
            ss["addresses"] = [addrs[a] for a in ready]
        if not_ready:
            ss["notReadyAddresses"] = [addrs[a] for a in not_ready]
        ports = [port_objs[k] for k in port_keys if k != no_port and port_objs[k] is not None]
        if ports:
            ss["ports"] = sorted(ports, key=lambda p: (p.get("name", ""), p.get("port", 0), p.get("protocol", "")))
        out.append(ss)
    out.sort(key=canonical)
    return out


def desired_subsets(svc: dict, pods: list[dict]) -> list[dict]:
    """The repacked subsets the Endpoints of `svc` should hold, given the namespace's pods."""
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    subsets: list[dict] = []
    for pod in selected_pods(svc, pods):
        if not should_pod_be_in_endpoints(pod, publish):
            continue
        addr = pod_address(pod, svc)
        ready = publish or is_pod_ready(pod)
        field = "addresses" if ready else "notReadyAddresses"
        sports = spec.get("ports") or []
        if not sports:
            if is_headless(svc):
                subsets.append({field: [addr]})
            continue
        for sp in sports:
            port = find_port(pod, sp)
            if port is None:
                continue
            subsets.append({field: [json_copy(addr)], "ports": [endpoint_port(sp, port)]})
    return repack_subsets(subsets)


def truncate(subsets: list[dict]) -> bool:
    """truncateEndpoints: keep at most 1000 addresses, ready ones first, proportionally per subset."""
    total_ready = sum(len(s.get("addresses") or []) for s in subsets)
    total_nr = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if total_ready + total_nr <= MAX_CAPACITY:
        return False
    truncate_ready = total_ready > MAX_CAPACITY
    mx = MAX_CAPACITY if truncate_ready else MAX_CAPACITY - total_ready
    num_total = total_ready if truncate_ready else total_nr
    can = mx
    for s in subsets:
        n = len(s.get("addresses" if truncate_ready else "notReadyAddresses") or [])
        add = min(-(-n * mx // num_total), can)
        if truncate_ready:
            s["addresses"] = (s.get("addresses") or [])[:add]
            s.pop("notReadyAddresses", None)
            can -= len(s["addresses"])
        else:
            s["notReadyAddresses"] = (s.get("notReadyAddresses") or [])[:add]
            can -= len(s["notReadyAddresses"])
    return True


def trigger_time(svc: dict, pods: list[dict]) -> str:
    """The `last-change-trigger-time` labkit records: the latest change among the Service and its pods.

    Upstream tracks the earliest unprocessed change per sync; labkit uses the latest of the Service's
    creation and each selected pod's creation / Ready transition, which is the same for a single change.
    """
    times = [meta(svc).get("creationTimestamp") or ""]
    for p in selected_pods(svc, pods):
        times.append(meta(p).get("creationTimestamp") or "")
        c = pod_condition(p, "Ready")
        if c:
            times.append(c.get("lastTransitionTime") or "")
    best = max((t for t in times if parse_time(t)), default="")
    return best


def desired_labels(svc: dict) -> dict[str, str]:
    labels = dict(meta(svc).get("labels") or {})
    if not is_ip_set(svc):
        labels[HEADLESS_LABEL] = ""
    else:
        labels.pop(HEADLESS_LABEL, None)
    return labels


def plan_endpoints(svc: dict, pods: list[dict], current: dict | None) -> dict | None:
    """The Endpoints object to create or PUT for `svc`, or None when `current` is already right.

    `current` is the stored Endpoints (None when absent). Services without a selector: always None.
    """
    if (svc.get("spec") or {}).get("selector") is None or (svc.get("spec") or {}).get("type") == "ExternalName":
        return None
    subsets = desired_subsets(svc, pods)
    labels = desired_labels(svc)
    if current is not None:
        over = OVER_CAPACITY in (meta(current).get("annotations") or {})
        n = sum(len(s.get("addresses") or []) + len(s.get("notReadyAddresses") or []) for s in subsets)
        same = canonical(current.get("subsets") or []) == canonical(subsets)
        if same and over == (n > MAX_CAPACITY) and (meta(current).get("labels") or {}) == labels:
            return None
        new = json_copy(current)
    else:
        new = {"apiVersion": "v1", "kind": "Endpoints",
               "metadata": {"name": name_of(svc), "namespace": ns_of(svc)}}
    md = new.setdefault("metadata", {})
    md["labels"] = labels
    ann = dict(md.get("annotations") or {})
    tt = trigger_time(svc, pods)
    if tt:
        ann[TRIGGER_TIME] = tt
    else:
        ann.pop(TRIGGER_TIME, None)
    if truncate(subsets):
        ann[OVER_CAPACITY] = "truncated"
    else:
        ann.pop(OVER_CAPACITY, None)
    md["annotations"] = ann
    if subsets:
        new["subsets"] = subsets
    else:
        new.pop("subsets", None)
    return new
