"""Garbage collector (ownerReferences) and namespace controller.

Garbage collector (upstream pkg/controller/garbagecollector), driven by informers of every kind:
- an object whose owners are all gone (checked against the cache, then confirmed with a live GET by
  name and uid) is deleted in the background; owners that are gone are dropped from the
  ownerReferences of objects that still have another owner;
- an owner marked for deletion with the `foregroundDeletion` finalizer gets its dependents deleted
  (foreground, too), and loses the finalizer once no dependent with blockOwnerDeletion remains;
- an owner with the `orphan` finalizer gets its ownerReference removed from every dependent, then
  loses the finalizer.

Namespace controller (pkg/controller/namespace): a Namespace with a deletionTimestamp has its contents
deleted, kind by kind; once nothing is left, the `kubernetes` finalizer is removed from spec.finalizers
through the `finalize` subresource and the API server removes the Namespace.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from labkit import errors, kinds

from .util import json_copy, meta, name_of, ns_of

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger(__name__)

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
GC_RESOURCES = ("pods", "services", "endpoints", "endpointslices", "deployments", "replicasets", "statefulsets",
                "configmaps", "secrets", "serviceaccounts", "daemonsets", "jobs", "cronjobs")

Ref = tuple[str, str, str]  # (resource, namespace, name)


def owner_resource(ref: dict) -> str | None:
    try:
        return kinds.for_object({"apiVersion": ref.get("apiVersion", ""), "kind": ref.get("kind", "")}).plural
    except KeyError:
        return None


class GarbageCollector:
    """Keys: ("dep", resource, ns, name) to check an object's owners; ("own", resource, ns, name) to
    process an owner being deleted with foreground/orphan semantics."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.uids: dict[str, Ref] = {}
        self.dependents: dict[str, set[Ref]] = {}
        self.queue = mgr.new_queue("garbagecollector", self.sync, workers=4)
        for res in GC_RESOURCES:
            mgr.informer(res).add_handler(self._handler(res))

    def _handler(self, res: str):
        def on(etype: str, obj: dict, old: dict | None) -> None:
            ref: Ref = (res, ns_of(obj), name_of(obj))
            uid = meta(obj).get("uid", "")
            if old is not None:
                for o in meta(old).get("ownerReferences") or []:
                    self.dependents.get(o.get("uid", ""), set()).discard(ref)
            if etype == "DELETED":
                self.uids.pop(uid, None)
                for dep in self.dependents.get(uid, set()):
                    self.queue.add(("dep", *dep))
                for o in meta(obj).get("ownerReferences") or []:
                    owner = self.uids.get(o.get("uid", ""))
                    if owner is not None:
                        self.queue.add(("own", *owner))
                return
            self.uids[uid] = ref
            owners = meta(obj).get("ownerReferences") or []
            for o in owners:
                self.dependents.setdefault(o.get("uid", ""), set()).add(ref)
                if o.get("uid") not in self.uids:
                    self.queue.add(("dep", *ref))
                else:
                    owner = self.uids[o["uid"]]
                    owner_obj = self.mgr.informer(owner[0]).get(owner[1], owner[2])
                    if owner_obj is not None and meta(owner_obj).get("deletionTimestamp"):
                        self.queue.add(("own", *owner))
            fins = meta(obj).get("finalizers") or []
            if meta(obj).get("deletionTimestamp") and (FOREGROUND in fins or ORPHAN in fins):
                self.queue.add(("own", *ref))
        return on

    async def sync(self, key: tuple) -> None:
        if key[0] == "dep":
            await self._check_dependent(key[1], key[2], key[3])
        else:
            await self._process_owner(key[1], key[2], key[3])

    async def _owner_exists(self, ref: dict, namespace: str) -> tuple[bool, dict | None]:
        res = owner_resource(ref)
        if res is None:
            return True, None  # a kind labkit does not serve: leave the dependent alone
        cached = self.uids.get(ref.get("uid", ""))
        if cached is not None:
            obj = self.mgr.informer(cached[0]).get(cached[1], cached[2]) if cached[0] in GC_RESOURCES else None
            return True, obj
        kind = kinds.lookup(res)
        try:
            live = await self.mgr.client.get(res, ref.get("name", ""), namespace=namespace if kind.namespaced else None)
        except errors.NotFound:
            return False, None
        return meta(live).get("uid") == ref.get("uid"), live

    async def _check_dependent(self, res: str, ns: str, name: str) -> None:
        obj = self.mgr.informer(res).get(ns, name)
        if obj is None:
            return
        refs = meta(obj).get("ownerReferences") or []
        if not refs:
            return
        gone, alive, foreground_owner = [], [], False
        for r in refs:
            exists, owner = await self._owner_exists(r, ns)
            if exists:
                alive.append(r)
                fins = meta(owner or {}).get("finalizers") or []
                if owner is not None and meta(owner).get("deletionTimestamp") and FOREGROUND in fins:
                    foreground_owner = True
            else:
                gone.append(r)
        if not gone:
            return
        if not alive:
            if meta(obj).get("deletionTimestamp"):
                return
            try:
                await self.mgr.client.delete(res, name, namespace=ns, propagation_policy="Background",
                                             preconditions={"uid": meta(obj).get("uid")})
            except (errors.NotFound, errors.Conflict):
                pass
            return
        if foreground_owner:
            return
        gone_uids = {r.get("uid") for r in gone}
        keep = [r for r in refs if r.get("uid") not in gone_uids]
        try:
            await self.mgr.client.patch(res, name, {"metadata": {"ownerReferences": keep}}, namespace=ns)
        except errors.NotFound:
            pass

    async def _process_owner(self, res: str, ns: str, name: str) -> None:
        obj = self.mgr.informer(res).get(ns, name)
        if obj is None or not meta(obj).get("deletionTimestamp"):
            return
        fins = list(meta(obj).get("finalizers") or [])
        uid = meta(obj).get("uid")
        deps = [d for d in self.dependents.get(uid, set()) if self.mgr.informer(d[0]).get(d[1], d[2]) is not None]
        if ORPHAN in fins:
            for d in deps:
                dep = self.mgr.informer(d[0]).get(d[1], d[2])
                keep = [r for r in meta(dep).get("ownerReferences") or [] if r.get("uid") != uid]
                try:
                    await self.mgr.client.patch(d[0], d[2], {"metadata": {"ownerReferences": keep}}, namespace=d[1])
                except errors.NotFound:
                    pass
            await self._remove_finalizer(res, ns, name, ORPHAN)
            return
        if FOREGROUND in fins:
            blocking = 0
            for d in deps:
                dep = self.mgr.informer(d[0]).get(d[1], d[2])
                ref = next((r for r in meta(dep).get("ownerReferences") or [] if r.get("uid") == uid), {})
                if ref.get("blockOwnerDeletion"):
                    blocking += 1
                if not meta(dep).get("deletionTimestamp"):
                    try:
                        await self.mgr.client.delete(d[0], d[2], namespace=d[1], propagation_policy="Foreground")
                    except errors.NotFound:
                        pass
            if blocking == 0:
                await self._remove_finalizer(res, ns, name, FOREGROUND)

    async def _remove_finalizer(self, res: str, ns: str, name: str, finalizer: str) -> None:
        for _ in range(5):
            try:
                cur = await self.mgr.client.get(res, name, namespace=ns or None)
            except errors.NotFound:
                return
            fins = meta(cur).get("finalizers") or []
            if finalizer not in fins:
                return
            new = json_copy(cur)
            new["metadata"]["finalizers"] = [f for f in fins if f != finalizer]
            try:
                await self.mgr.client.replace(new)
                return
            except errors.Conflict:
                continue
            except errors.NotFound:
                return


NAMESPACED_CONTENT = tuple(k.plural for k in kinds.ALL_KINDS if k.namespaced)


class NamespaceController:
    """Empties and finalizes Namespaces that are being deleted."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.queue = mgr.new_queue("namespace", self.sync, workers=2)
        mgr.informer("namespaces").add_handler(self._on_ns)
        for res in GC_RESOURCES:
            mgr.informer(res).add_handler(self._on_content)

    def _on_ns(self, etype: str, ns: dict, old: dict | None) -> None:
        if etype != "DELETED" and meta(ns).get("deletionTimestamp"):
            self.queue.add(name_of(ns))

    def _on_content(self, etype: str, obj: dict, old: dict | None) -> None:
        if etype == "DELETED":
            ns = self.mgr.informer("namespaces").get("", ns_of(obj))
            if ns is not None and meta(ns).get("deletionTimestamp"):
                self.queue.add(ns_of(obj))

    async def sync(self, name: str) -> None:
        ns = self.mgr.informer("namespaces").get("", name)
        if ns is None or not meta(ns).get("deletionTimestamp"):
            return
        remaining = 0
        for res in NAMESPACED_CONTENT:
            try:
                items, _ = await self.mgr.client.list(res, namespace=name)
            except errors.NotFound:
                continue
            for item in items:
                remaining += 1
                if meta(item).get("deletionTimestamp"):
                    continue
                try:
                    await self.mgr.client.delete(res, name_of(item), namespace=name, propagation_policy="Background")
                except errors.NotFound:
                    remaining -= 1
        if remaining:
            # pods finish terminating through the node agent; their DELETED events requeue us, and a
            # slow retry covers kinds without an informer (events).
            self.queue.add_after(name, 2.0)
            return
        fins = list((ns.get("spec") or {}).get("finalizers") or [])
        if "kubernetes" in fins:
            new = json_copy(ns)
            new.setdefault("spec", {})["finalizers"] = [f for f in fins if f != "kubernetes"]
            try:
                await self.mgr.client.replace(new, subresource="finalize")
            except errors.NotFound:
                return
