"""Desired state kept per Service, so one change recomputes one Service instead of the whole table.

kube-proxy's change trackers (pkg/proxy/servicechangetracker.go, endpointschangetracker.go) record which
Services an informer event touched; its nftables proxier then rewrites only those Services' chains and runs a
full resync only periodically (syncPeriod) or when a partial sync fails. This is the same idea for the IPVS
agent: informer events mark Services dirty (a Service event its own key; an EndpointSlice event the Service
named by its `kubernetes.io/service-name` label, before and after the change), `update()` recomputes the desired
fragment of each dirty Service with `compute_desired` and reports which virtual-server keys may have changed
(old fragment ∪ new fragment), and the syncer diffs and applies only those. `rebuild()` recomputes everything
from the informers' caches: the first sync and the periodic full resync, the safety net for anything an
incremental update could have missed (two Services claiming the same VIP:port, node address changes).

The cache keeps each Service's proxy-mode-neutral `ServicePort`s (`ports`) and, in IPVS mode (`ipvs=True`), their
rendering as virtual servers; the nftables backend renders `ports` itself. `changed` collects the Services
recomputed since the caller last took it, for a backend that works per Service (nftables).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from labkit.agent.desired import SERVICE_NAME_LABEL, DesiredState, ServicePort, render_ipvs, service_ports
from labkit.agent.model import Table, VSKey

ServiceKey = tuple[str, str]  # (namespace, name)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def service_key(svc: dict[str, Any]) -> ServiceKey:
    meta = _meta(svc)
    return meta.get("namespace") or "", meta.get("name") or ""


def slice_owner(sl: dict[str, Any] | None) -> ServiceKey | None:
    """The Service an EndpointSlice belongs to, by its `kubernetes.io/service-name` label."""
    if not sl:
        return None
    meta = _meta(sl)
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return (meta.get("namespace") or "", name) if name else None


def _slice_id(sl: dict[str, Any]) -> str:
    return _meta(sl).get("name") or ""


class DesiredCache:
    """Services and EndpointSlices indexed by Service, their desired fragments, and the merged table."""

    def __init__(self, node_name: str, scheduler: str = "rr", family: int = 4, ipvs: bool = True) -> None:
        self.node_name, self.scheduler, self.family, self.ipvs = node_name, scheduler, family, ipvs
        self.ports: dict[ServiceKey, list[ServicePort]] = {}
        self.changed: set[ServiceKey] = set()
        # virtual servers masqueraded whatever the source, kept like `binds` (how many fragments want each)
        self.masq_counts: dict[VSKey, int] = {}
        self.masquerade: set[VSKey] = set()
        self.services: dict[ServiceKey, dict[str, Any]] = {}
        self.slices: dict[ServiceKey, dict[str, dict[str, Any]]] = {}
        self.fragments: dict[ServiceKey, DesiredState] = {}
        self.table: Table = {}                  # every fragment's virtual servers, merged
        self.owner: dict[VSKey, ServiceKey] = {}
        # how many fragments want each address bound, and the addresses at least one wants: kept as fragments
        # change, so that a partial sync does not merge 2,000 fragments' addresses to change one Service
        self.bind_counts: dict[str, int] = {}
        self.binds: set[str] = set()
        self.dirty: set[ServiceKey] = set()
        self.node_ips: list[str] = []

    # ---- informer events -------------------------------------------------------------------------------------

    def service_event(self, typ: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        key = service_key(obj)
        if typ == "DELETED":
            self.services.pop(key, None)
        else:
            self.services[key] = obj
        self.dirty.add(key)

    def slice_event(self, typ: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        before, after = slice_owner(old), slice_owner(obj)
        sid = _slice_id(obj)
        if before is not None:  # the label may have changed: the slice leaves its former Service
            self._drop_slice(before, sid)
            self.dirty.add(before)
        if after is not None:
            if typ == "DELETED":
                self._drop_slice(after, sid)
            else:
                self.slices.setdefault(after, {})[sid] = obj
            self.dirty.add(after)

    def _drop_slice(self, key: ServiceKey, sid: str) -> None:
        group = self.slices.get(key)
        if group is not None:
            group.pop(sid, None)
            if not group:
                del self.slices[key]

    # ---- desired state ---------------------------------------------------------------------------------------

    def rebuild(self, services: Iterable[dict[str, Any]], slices: Iterable[dict[str, Any]],
                node_ips: Iterable[str]) -> DesiredState:
        """Everything again from the informers' caches (full sync); clears the dirty set."""
        self.node_ips = list(node_ips)
        self.services = {service_key(s): s for s in services}
        self.slices = {}
        for sl in slices:
            owner = slice_owner(sl)
            if owner is not None:
                self.slices.setdefault(owner, {})[_slice_id(sl)] = sl
        self.fragments, self.table, self.owner, self.ports = {}, {}, {}, {}
        self.bind_counts, self.binds = {}, set()
        self.masq_counts, self.masquerade = {}, set()
        self.dirty = set()
        for key in self.services:
            self._recompute(key)
        return self.state()

    def update(self) -> set[VSKey]:
        """Recompute the dirty Services; the virtual-server keys whose desired state may have changed."""
        touched: set[VSKey] = set()
        dirty, self.dirty = self.dirty, set()
        for key in dirty:
            touched |= self._recompute(key)
        return touched

    def _recompute(self, key: ServiceKey) -> set[VSKey]:
        touched: set[VSKey] = set()
        self.changed.add(key)
        self.ports.pop(key, None)
        old = self.fragments.pop(key, None)
        if old is not None:
            for k in old.table:
                touched.add(k)
                if self.owner.get(k) == key:
                    del self.owner[k]
                    del self.table[k]
            _uncount(self.bind_counts, self.binds, old.bind_addresses)
            _uncount(self.masq_counts, self.masquerade, old.masquerade)
        svc = self.services.get(key)
        if svc is None:
            return touched
        ports = service_ports(svc, (self.slices.get(key) or {}).values(), self.node_name, self.family)
        if ports:
            self.ports[key] = ports
        if not self.ipvs:
            return touched
        new = render_ipvs(ports, self.node_ips, self.scheduler, self.family)
        self.fragments[key] = new
        for k, vs in new.table.items():
            touched.add(k)
            self.table[k] = vs
            self.owner[k] = key
        _count(self.bind_counts, self.binds, new.bind_addresses)
        _count(self.masq_counts, self.masquerade, new.masquerade)
        return touched

    def take_changed(self) -> set[ServiceKey]:
        """The Services recomputed since the last call."""
        changed, self.changed = self.changed, set()
        return changed

    def state(self) -> DesiredState:
        """The merged desired state (table and addresses are shared, not copied: read them, do not change them)."""
        return DesiredState(self.table, self.binds, self.masquerade)


def _count(counts: dict[Any, int], present: set[Any], items: Iterable[Any]) -> None:
    for item in items:
        counts[item] = counts.get(item, 0) + 1
        present.add(item)


def _uncount(counts: dict[Any, int], present: set[Any], items: Iterable[Any]) -> None:
    for item in items:
        left = counts[item] - 1
        if left:
            counts[item] = left
        else:
            del counts[item]
            present.discard(item)
