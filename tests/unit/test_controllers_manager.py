"""The controller manager end to end over an in-memory fake API (client + informers).

The fake stores objects, fills in uid / resourceVersion / generateName, deletes at once (or marks
objects with finalizers), and feeds the informers synchronously, which is enough to drive every
controller's sync path: Deployment → ReplicaSet → Pods, scheduling, Endpoints and EndpointSlices,
StatefulSet ordering, garbage collection.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import random
import string
from typing import Any

from labkit import errors, kinds
from labkit.controllers.manager import Manager
from labkit.controllers.util import fmt_time


class FakeInformer:
    def __init__(self, api: FakeApi, resource: str) -> None:
        self.api, self.resource = api, kinds.lookup(resource).plural
        self.by_key: dict[tuple[str, str], dict] = {}
        self.handlers: list = []
        api.informers[self.resource] = self

    def add_handler(self, h) -> None:
        self.handlers.append(h)

    def get(self, ns: str | None, name: str) -> dict | None:
        return self.by_key.get((ns or "", name))

    def items(self) -> list[dict]:
        return list(self.by_key.values())

    async def wait_synced(self) -> None:
        return None

    async def run(self) -> None:
        await asyncio.Event().wait()

    def notify(self, etype: str, obj: dict) -> None:
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        old = self.by_key.get(key)
        if etype == "DELETED":
            self.by_key.pop(key, None)
        else:
            self.by_key[key] = copy.deepcopy(obj)
        for h in self.handlers:
            h(etype, copy.deepcopy(obj), old)


class FakeApi:
    """Client interface of labkit.client.Client over dicts."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, str, str], dict] = {}
        self.informers: dict[str, FakeInformer] = {}
        self.rv = itertools.count(1)
        self.rng = random.Random(0)
        self.in_flight = 0  # watch events not delivered yet

    def _emit(self, res: str, etype: str, obj: dict) -> None:
        # As over a real watch, the event reaches the informers after the writer has its response.
        if res in self.informers:
            self.in_flight += 1
            asyncio.get_running_loop().call_soon(self._deliver, res, etype, copy.deepcopy(obj))

    def _deliver(self, res: str, etype: str, obj: dict) -> None:
        self.in_flight -= 1
        self.informers[res].notify(etype, obj)

    async def get(self, resource: str, name: str, namespace: str | None = None) -> dict:
        res = kinds.lookup(resource).plural
        try:
            return copy.deepcopy(self.store[(res, namespace or "", name)])
        except KeyError:
            raise errors.not_found(res, name) from None

    async def list(self, resource: str, namespace: str | None = None, **_: Any) -> tuple[list[dict], str]:
        res = kinds.lookup(resource).plural
        return [copy.deepcopy(o) for (r, ns, _n), o in self.store.items()
                if r == res and (namespace is None or ns == namespace)], "0"

    async def create(self, obj: dict, namespace: str | None = None) -> dict:
        k = kinds.for_object(obj)
        obj = copy.deepcopy(obj)
        md = obj["metadata"]
        if not md.get("name"):
            md["name"] = md["generateName"] + "".join(self.rng.choice(string.ascii_lowercase) for _ in range(5))
        ns = (namespace or md.get("namespace") or "default") if k.namespaced else ""
        if ns:
            md["namespace"] = ns
        key = (k.plural, ns, md["name"])
        if key in self.store:
            raise errors.already_exists(k.plural, md["name"])
        md["uid"] = f"uid-{next(self.rv)}"
        md["resourceVersion"] = str(next(self.rv))
        md["creationTimestamp"] = fmt_time()
        md["generation"] = 1
        self.store[key] = obj
        self._emit(k.plural, "ADDED", obj)
        return copy.deepcopy(obj)

    async def replace(self, obj: dict, subresource: str | None = None) -> dict:
        k = kinds.for_object(obj)
        md = obj["metadata"]
        key = (k.plural, md.get("namespace", "") if k.namespaced else "", md["name"])
        cur = self.store.get(key)
        if cur is None:
            raise errors.not_found(k.plural, md["name"])
        if md.get("resourceVersion") and md["resourceVersion"] != cur["metadata"]["resourceVersion"]:
            raise errors.conflict(k.plural, md["name"])
        new = copy.deepcopy(cur)
        if subresource == "status":
            new["status"] = copy.deepcopy(obj.get("status"))
        else:
            new = copy.deepcopy(obj)
            new["metadata"].update({f: cur["metadata"][f] for f in ("uid", "creationTimestamp", "generation")})
            if "deletionTimestamp" in cur["metadata"]:
                new["metadata"]["deletionTimestamp"] = cur["metadata"]["deletionTimestamp"]
            if canon(new.get("spec")) != canon(cur.get("spec")):
                new["metadata"]["generation"] = cur["metadata"]["generation"] + 1
        new["metadata"]["resourceVersion"] = str(next(self.rv))
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            del self.store[key]
            self._emit(k.plural, "DELETED", new)
            return new
        self.store[key] = new
        self._emit(k.plural, "MODIFIED", new)
        return copy.deepcopy(new)

    async def patch(self, resource: str, name: str, patch: dict, namespace: str | None = None, *,
                    subresource: str | None = None, **_: Any) -> dict:
        cur = await self.get(resource, name, namespace)
        merged = merge(cur, patch)
        merged["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        return await self.replace(merged)

    async def bind_pod(self, namespace: str, name: str, node: str) -> dict:
        return await self.patch("pods", name, {"spec": {"nodeName": node}}, namespace=namespace)

    async def delete(self, resource: str, name: str, namespace: str | None = None, *,
                     propagation_policy: str | None = None, **_: Any) -> dict:
        k = kinds.lookup(resource)
        key = (k.plural, namespace or "" if k.namespaced else "", name)
        cur = self.store.get(key)
        if cur is None:
            raise errors.not_found(k.plural, name)
        fins = list(cur["metadata"].get("finalizers") or [])
        if propagation_policy == "Foreground" and "foregroundDeletion" not in fins:
            fins.append("foregroundDeletion")
        if fins:
            cur = copy.deepcopy(cur)
            cur["metadata"]["finalizers"] = fins
            cur["metadata"]["deletionTimestamp"] = fmt_time()
            cur["metadata"]["resourceVersion"] = str(next(self.rv))
            self.store[key] = cur
            self._emit(k.plural, "MODIFIED", cur)
            return cur
        del self.store[key]
        self._emit(k.plural, "DELETED", cur)
        return cur


def canon(x: Any) -> str:
    import json
    return json.dumps(x, sort_keys=True)


def merge(a: Any, b: Any) -> Any:
    if not isinstance(b, dict) or not isinstance(a, dict):
        return copy.deepcopy(b)
    out = copy.deepcopy(a)
    for k, v in b.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


async def start() -> tuple[FakeApi, Manager]:
    api = FakeApi()
    mgr = Manager(api, informer_factory=lambda c, r: FakeInformer(api, r))
    await mgr.start()
    await api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "labkit-control-plane"},
                      "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    return api, mgr


async def settle(mgr: Manager) -> None:
    api = mgr.client
    while True:
        await mgr.wait_idle()
        await asyncio.sleep(0)
        await mgr.wait_idle()
        if not api.in_flight:
            return


async def kubelet(api: FakeApi, ns: str = "default") -> None:
    n = 10
    for (res, pns, _name), p in sorted(api.store.items()):
        if res != "pods" or pns != ns or (p.get("status") or {}).get("podIP"):
            continue
        n += 1
        new = copy.deepcopy(p)
        new["status"] = {"phase": "Running", "podIP": f"10.244.0.{n + len(api.store)}",
                         "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": fmt_time()}]}
        await api.replace(new, subresource="status")


def objs(api: FakeApi, res: str) -> list[dict]:
    return [o for (r, _ns, _n), o in api.store.items() if r == res]


DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "namespace": "default",
                                                                      "labels": {"app": "nginx"}},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}},
                   "template": {"metadata": {"labels": {"app": "nginx"}},
                                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.19"}]}}}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx", "namespace": "default",
                                                               "labels": {"app": "nginx"}},
           "spec": {"selector": {"app": "nginx"}, "clusterIP": "10.96.100.100",
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}}


async def test_deployment_service_scale_and_delete() -> None:
    api, mgr = await start()
    try:
        await api.create(copy.deepcopy(DEPLOY))
        await api.create(copy.deepcopy(SERVICE))
        await settle(mgr)
        (rs,) = objs(api, "replicasets")
        (pod,) = objs(api, "pods")
        assert pod["spec"]["nodeName"] == "labkit-control-plane"
        assert pod["metadata"]["name"].startswith(rs["metadata"]["name"] + "-")
        await kubelet(api)
        await settle(mgr)
        e = await api.get("endpoints", "nginx", "default")
        assert [a["ip"] for a in e["subsets"][0]["addresses"]] == [
            (await api.get("pods", pod["metadata"]["name"], "default"))["status"]["podIP"]]
        (sl,) = objs(api, "endpointslices")
        assert sl["endpoints"][0]["conditions"] == {"ready": True, "serving": True, "terminating": False}
        d = await api.get("deployments", "nginx", "default")
        assert d["status"]["availableReplicas"] == 1 and d["status"]["updatedReplicas"] == 1
        assert {c["type"]: c["reason"] for c in d["status"]["conditions"]} == {
            "Available": "MinimumReplicasAvailable", "Progressing": "NewReplicaSetAvailable"}
        await api.patch("deployments", "nginx", {"spec": {"replicas": 2}}, "default")
        await settle(mgr)
        assert len(objs(api, "pods")) == 2
        await kubelet(api)
        await settle(mgr)
        e = await api.get("endpoints", "nginx", "default")
        assert len(e["subsets"][0]["addresses"]) == 2
        assert len(objs(api, "endpointslices")) == 1
        rv = e["metadata"]["resourceVersion"]
        await settle(mgr)
        assert (await api.get("endpoints", "nginx", "default"))["metadata"]["resourceVersion"] == rv
        events = {(ev["reason"], ev["message"]) for ev in objs(api, "events")}
        rsn = rs["metadata"]["name"]
        assert ("ScalingReplicaSet", f"Scaled up replica set {rsn} from 1 to 2") in events
        await api.delete("deployments", "nginx", "default")
        await settle(mgr)
        assert objs(api, "replicasets") == [] and objs(api, "pods") == []
        e = await api.get("endpoints", "nginx", "default")
        assert "subsets" not in e
    finally:
        await mgr.stop()


async def test_endpoint_controllers_skip_their_own_echo_but_undo_other_writers() -> None:
    api, mgr = await start()
    syncs: list[str] = []
    for ctrl in mgr.controllers[:2]:  # Endpoints and EndpointSlice controllers: count their syncs
        inner = ctrl.queue.handler

        async def counted(key: object, inner: Any = inner, name: str = ctrl.queue.name) -> None:
            syncs.append(name)
            await inner(key)

        ctrl.queue.handler = counted
    try:
        await api.create(copy.deepcopy(DEPLOY))
        await api.create(copy.deepcopy(SERVICE))
        await settle(mgr)
        await kubelet(api)
        await settle(mgr)
        await api.patch("deployments", "nginx", {"spec": {"replicas": 2}}, "default")
        await settle(mgr)
        # the second pod becomes ready: one sync of each controller writes the new address; the events of
        # those writes (the controllers' own) start no further sync
        syncs.clear()
        await kubelet(api)
        await settle(mgr)
        assert len((await api.get("endpoints", "nginx", "default"))["subsets"][0]["addresses"]) == 2
        assert sorted(syncs) == ["endpoints", "endpointslice"]
        # someone else empties the Endpoints and the slice: both controllers put them back
        e = await api.get("endpoints", "nginx", "default")
        e["subsets"] = []
        await api.replace(e)
        (sl,) = objs(api, "endpointslices")
        sl = copy.deepcopy(sl)
        sl["endpoints"] = []
        await api.replace(sl)
        await settle(mgr)
        assert len((await api.get("endpoints", "nginx", "default"))["subsets"][0]["addresses"]) == 2
        (sl,) = objs(api, "endpointslices")
        assert len(sl["endpoints"]) == 2
    finally:
        await mgr.stop()


async def test_rolling_update_replaces_pods() -> None:
    api, mgr = await start()
    try:
        d = copy.deepcopy(DEPLOY)
        d["spec"]["replicas"] = 2
        await api.create(d)
        await settle(mgr)
        await kubelet(api)
        await settle(mgr)
        await api.patch("deployments", "nginx", {"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.20"}]}}}}, "default")
        for _ in range(10):
            await settle(mgr)
            await kubelet(api)
        await settle(mgr)
        images = {p["spec"]["containers"][0]["image"] for p in objs(api, "pods")}
        assert images == {"nginx:1.20"}
        rss = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r["spec"]["replicas"]
               for r in objs(api, "replicasets")}
        assert rss == {"1": 0, "2": 2}
        dep = await api.get("deployments", "nginx", "default")
        assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    finally:
        await mgr.stop()


async def test_statefulset_and_foreground_gc() -> None:
    api, mgr = await start()
    try:
        sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"replicas": 2, "serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
                        "template": copy.deepcopy(DEPLOY["spec"]["template"])}}
        await api.create(sts)
        await settle(mgr)
        assert [p["metadata"]["name"] for p in objs(api, "pods")] == ["web-0"]
        await kubelet(api)
        await settle(mgr)
        assert sorted(p["metadata"]["name"] for p in objs(api, "pods")) == ["web-0", "web-1"]
        await kubelet(api)
        await settle(mgr)
        s = await api.get("statefulsets", "web", "default")
        assert s["status"]["readyReplicas"] == 2
        await api.delete("statefulsets", "web", "default", propagation_policy="Foreground")
        await settle(mgr)
        assert objs(api, "pods") == [] and objs(api, "statefulsets") == []
    finally:
        await mgr.stop()


async def test_orphan_keeps_dependents() -> None:
    api, mgr = await start()
    try:
        await api.create(copy.deepcopy(DEPLOY))
        await settle(mgr)
        cur = await api.get("deployments", "nginx", "default")
        cur["metadata"]["finalizers"] = ["orphan"]
        await api.replace(cur)
        await api.delete("deployments", "nginx", "default")
        await settle(mgr)
        assert objs(api, "deployments") == []
        (rs,) = objs(api, "replicasets")
        assert not rs["metadata"].get("ownerReferences")
    finally:
        await mgr.stop()
