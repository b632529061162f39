"""The three controllers that turn Services into endpoints: Endpoints, EndpointSlice, mirroring.

They react to Service, Pod, Endpoints and EndpointSlice events at once (per-Service keys on coalescing
work queues, several workers), compute the desired objects with the pure functions of `endpoints` and
`endpointslice`, and write only what differs. What they wrote themselves is remembered until the
informer shows it (upstream's stale-cache trackers), so a lagging informer never causes a duplicate
slice or a lost update.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from labkit import errors

from . import endpoints as ep
from . import endpointslice as es
from .util import json_copy, meta, name_of, ns_of, rv_int

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger(__name__)


class _Written:
    """Objects this controller wrote (or deleted: None) that the informer may not show yet."""

    def __init__(self) -> None:
        self.objs: dict[tuple[str, str], dict | None] = {}
        self.rv: dict[tuple[str, str], int] = {}

    def put(self, key: tuple[str, str], obj: dict | None, rv: int) -> None:
        self.objs[key] = obj
        self.rv[key] = rv

    def merge(self, key: tuple[str, str], cached: dict | None) -> dict | None:
        if key not in self.objs:
            return cached
        if cached is not None and rv_int(cached) >= self.rv[key] and self.objs[key] is not None:
            del self.objs[key]
            del self.rv[key]
            return cached
        if self.objs[key] is None and cached is None:
            del self.objs[key]
            del self.rv[key]
            return None
        if self.objs[key] is None and cached is not None and rv_int(cached) > self.rv[key]:
            del self.objs[key]  # re-created by someone after our delete
            del self.rv[key]
            return cached
        return self.objs[key]

    def names_for(self, ns: str) -> list[tuple[str, str]]:
        return [k for k in self.objs if k[0] == ns]

    def is_echo(self, etype: str, key: tuple[str, str], obj: dict) -> bool:
        """Whether an informer event only shows this controller's own last write (upstream's
        endpointSliceTracker.ShouldSync): such an event needs no sync, anything else (a delete, someone
        else's change) does."""
        return etype != "DELETED" and self.objs.get(key) is not None and self.rv.get(key) == rv_int(obj)


class EndpointsController:
    """Endpoints for every Service with a selector."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.written = _Written()
        self.queue = mgr.new_queue("endpoints", self.sync, workers=8)
        mgr.informer("services").add_handler(lambda e, o, old: self.queue.add((ns_of(o), name_of(o))))
        mgr.informer("pods").add_handler(self._on_pod)
        mgr.informer("endpoints").add_handler(self._on_endpoints)

    def _on_endpoints(self, etype: str, obj: dict, old: dict | None) -> None:
        key = (ns_of(obj), name_of(obj))
        if not self.written.is_echo(etype, key, obj):
            self.queue.add(key)

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        for key in self.mgr.services_of_pod_change(pod, old):
            self.queue.add(key)

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        svc = self.mgr.informer("services").get(ns, name)
        current = self.written.merge(key, self.mgr.informer("endpoints").get(ns, name))
        if svc is None:
            # the Service is gone: so are its Endpoints (upstream deletes them too)
            if current is not None and self.mgr.informer("endpoints").get(ns, name) is not None:
                try:
                    await self.mgr.client.delete("endpoints", name, namespace=ns)
                except errors.NotFound:
                    pass
            return
        want = ep.plan_endpoints(svc, self.mgr.pods_for_selector(ns, (svc.get("spec") or {}).get("selector")),
                                 current)
        if want is None:
            return
        try:
            if current is None:
                out = await self.mgr.client.create(want, namespace=ns)
            else:
                out = await self.mgr.client.replace(want)
        except errors.AlreadyExists:
            self.written.put(key, await self.mgr.client.get("endpoints", name, namespace=ns), 0)
            self.queue.add(key)
            return
        except errors.Conflict:
            fresh = await self.mgr.client.get("endpoints", name, namespace=ns)
            self.written.put(key, fresh, rv_int(fresh))
            self.queue.add(key)
            return
        except errors.NotFound:
            self.written.put(key, None, 0)
            self.queue.add(key)
            return
        self.written.put(key, out, rv_int(out))


class _SliceWriter:
    """Shared create/update/delete of EndpointSlices with a written-object overlay."""

    def __init__(self, mgr: Manager, managed_by: str) -> None:
        self.mgr = mgr
        self.managed_by = managed_by
        self.written = _Written()
        self.created_for: dict[tuple[str, str], set[str]] = {}

    def service_to_sync(self, etype: str, sl: dict) -> tuple[str, str] | None:
        """The Service whose sync a slice event calls for: one of this writer's slices, changed by someone else."""
        labels = meta(sl).get("labels") or {}
        if labels.get(es.MANAGED_BY) != self.managed_by or not labels.get(es.SERVICE_NAME):
            return None
        if self.written.is_echo(etype, (ns_of(sl), name_of(sl)), sl):
            return None
        return (ns_of(sl), labels[es.SERVICE_NAME])

    def existing(self, ns: str, svc: str) -> list[dict]:
        out: dict[str, dict] = {}
        for sl in self.mgr.slices_of(ns, svc):
            if es.owned_by_controller(sl, self.managed_by):
                out[name_of(sl)] = sl
        names = set(out) | self.created_for.get((ns, svc), set())
        result = []
        for n in sorted(names):
            obj = self.written.merge((ns, n), out.get(n))
            if obj is None:
                self.created_for.get((ns, svc), set()).discard(n)
                continue
            if (meta(obj).get("labels") or {}).get(es.SERVICE_NAME) == svc:
                result.append(obj)
        return result

    async def apply(self, ns: str, svc: str, plan: es.Plan) -> None:
        client = self.mgr.client
        for name in plan.delete:
            try:
                await client.delete("endpointslices", name, namespace=ns)
            except errors.NotFound:
                pass
            self.written.put((ns, name), None, 1 << 62)
            self.created_for.get((ns, svc), set()).discard(name)
        for sl in plan.update:
            try:
                out = await client.replace(sl)
            except errors.Conflict:
                fresh = await client.get("endpointslices", name_of(sl), namespace=ns)
                self.written.put((ns, name_of(sl)), fresh, rv_int(fresh))
                raise
            except errors.NotFound:
                self.written.put((ns, name_of(sl)), None, 1 << 62)
                raise
            self.written.put((ns, name_of(out)), out, rv_int(out))
        for sl in plan.create:
            out = await client.create(sl, namespace=ns)
            self.written.put((ns, name_of(out)), out, rv_int(out))
            self.created_for.setdefault((ns, svc), set()).add(name_of(out))


class EndpointSliceController:
    """EndpointSlices for every Service with a selector."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.writer = _SliceWriter(mgr, es.CONTROLLER)
        self.queue = mgr.new_queue("endpointslice", self.sync, workers=8)
        mgr.informer("services").add_handler(lambda e, o, old: self.queue.add((ns_of(o), name_of(o))))
        mgr.informer("pods").add_handler(self._on_pod)
        mgr.informer("endpointslices").add_handler(self._on_slice)

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        for key in self.mgr.services_of_pod_change(pod, old):
            self.queue.add(key)

    def _on_slice(self, etype: str, sl: dict, old: dict | None) -> None:
        key = self.writer.service_to_sync(etype, sl)
        if key is not None:
            self.queue.add(key)

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        svc = self.mgr.informer("services").get(ns, name)
        existing = self.writer.existing(ns, name)
        if svc is None or not (svc.get("spec") or {}).get("selector") or \
                (svc.get("spec") or {}).get("type") == "ExternalName":
            # no selector (or gone): this controller's slices go; the GC would also remove them
            if existing:
                await self.writer.apply(ns, name, es.Plan(delete=[name_of(s) for s in existing]))
            return
        pods = self.mgr.pods_for_selector(ns, (svc.get("spec") or {}).get("selector"))
        plan = es.plan_for_service(svc, pods, existing, trigger=ep.trigger_time(svc, pods))
        if not plan.empty():
            await self.writer.apply(ns, name, plan)


class MirroringController:
    """EndpointSlices mirrored from user-written Endpoints of selectorless Services."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.writer = _SliceWriter(mgr, es.MIRROR_CONTROLLER)
        self.queue = mgr.new_queue("endpointslicemirroring", self.sync, workers=4)
        mgr.informer("services").add_handler(lambda e, o, old: self.queue.add((ns_of(o), name_of(o))))
        mgr.informer("endpoints").add_handler(lambda e, o, old: self.queue.add((ns_of(o), name_of(o))))
        mgr.informer("endpointslices").add_handler(self._on_slice)

    def _on_slice(self, etype: str, sl: dict, old: dict | None) -> None:
        key = self.writer.service_to_sync(etype, sl)
        if key is not None:
            self.queue.add(key)

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        svc = self.mgr.informer("services").get(ns, name)
        endpoints = self.mgr.informer("endpoints").get(ns, name)
        existing = self.writer.existing(ns, name)
        # Copy only what will be mirrored: most Endpoints belong to Services with selectors (not mirrored), and
        # a deep copy per sync of every Service was a visible share of the controller manager's CPU.
        if endpoints is not None and es.should_mirror(endpoints, svc):
            endpoints = json_copy(endpoints)
        plan = es.plan_mirror(endpoints, svc, existing)
        if not plan.empty():
            await self.writer.apply(ns, name, plan)


__all__: list[Any] = ["EndpointSliceController", "EndpointsController", "MirroringController"]
