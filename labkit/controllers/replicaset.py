"""ReplicaSet controller (upstream pkg/controller/replicaset): keep `spec.replicas` active pods.

Pods are created from `spec.template` with `generateName: <rs>-` (the API server adds 5 random
characters) and a controller ownerReference; surplus pods are deleted in upstream's order
(`controller.ActivePodsWithRanks`): unscheduled before scheduled, Pending before Unknown before
Running, not ready before ready, pods sharing a node with more siblings first, ready for less time
first, more restarts first, newer before older. Creations run in slow-start batches (1, 2, 4, …) and
are tracked with expectations so an informer that lags behind never causes a second creation.
Events: `SuccessfulCreate` "Created pod: <name>" and `SuccessfulDelete` "Deleted pod: <name>".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from labkit import errors

from .util import (
    controller_ref,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    json_copy,
    meta,
    name_of,
    ns_of,
    owner_ref,
    parse_time,
    pod_condition,
    pod_phase,
)

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger(__name__)

BURST_REPLICAS = 500
EXPECTATIONS_TIMEOUT = 300.0
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


class Expectations:
    """ControllerExpectations: creations/deletions a controller waits to see in its informer."""

    def __init__(self) -> None:
        self._exp: dict[Any, list[float]] = {}  # key → [adds, dels, timestamp]

    def expect(self, key: Any, adds: int = 0, dels: int = 0) -> None:
        self._exp[key] = [adds, dels, time.monotonic()]

    def lower(self, key: Any, adds: int = 0, dels: int = 0) -> None:
        e = self._exp.get(key)
        if e is not None:
            e[0] -= adds
            e[1] -= dels

    def satisfied(self, key: Any) -> bool:
        e = self._exp.get(key)
        if e is None:
            return True
        return (e[0] <= 0 and e[1] <= 0) or time.monotonic() - e[2] > EXPECTATIONS_TIMEOUT

    def forget(self, key: Any) -> None:
        self._exp.pop(key, None)

    def observe(self, key: Any, etype: str, pod: dict, old: dict | None) -> None:
        """Count a pod event of the owner `key` against what it waits for."""
        if etype == "ADDED":
            self.lower(key, adds=1)
        elif deletion_observed(etype, pod, old):
            self.lower(key, dels=1)


def deletion_observed(etype: str, pod: dict, old: dict | None) -> bool:
    """Whether this event is the first sign of the pod going away (deletionTimestamp counts, as upstream)."""
    marked = bool(meta(pod).get("deletionTimestamp"))
    was_marked = bool(old and meta(old).get("deletionTimestamp"))
    if etype == "DELETED":
        return not was_marked
    return etype == "MODIFIED" and marked and not was_marked


def _restarts(pod: dict) -> int:
    return sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def _ts(s: str | None) -> float:
    t = parse_time(s)
    return t.timestamp() if t else 0.0


def deletion_order(pods: list[dict], related: list[dict] | None = None) -> list[dict]:
    """Pods sorted so that the first ones are the ones to delete (ActivePodsWithRanks)."""
    per_node = Counter((p.get("spec") or {}).get("nodeName") or "" for p in (related or pods) if is_pod_active(p))

    def key(p: dict) -> tuple:
        node = (p.get("spec") or {}).get("nodeName") or ""
        ready = is_pod_ready(p)
        ready_since = _ts((pod_condition(p, "Ready") or {}).get("lastTransitionTime")) if ready else 0.0
        return (
            1 if node else 0,                                   # unassigned first
            _PHASE_RANK.get(pod_phase(p), 3),                   # Pending < Unknown < Running
            1 if ready else 0,                                  # not ready first
            -(per_node[node] if node else 0),                   # more colocated siblings first
            -ready_since,                                       # ready for less time first
            -_restarts(p),                                      # more restarts first
            -_ts(meta(p).get("creationTimestamp")),             # newer first
            name_of(p),
        )

    return sorted(pods, key=key)


def slow_start_batches(count: int, initial: int = 1) -> list[int]:
    """controller.slowStartBatch sizes: 1, 2, 4, … until `count` are covered."""
    out, left, size = [], count, initial
    while left > 0:
        n = min(size, left)
        out.append(n)
        left -= n
        size *= 2
    return out


def pod_from_template(rs: dict) -> dict:
    """The Pod a ReplicaSet creates (controller.GetPodFromTemplate)."""
    tmpl = json_copy((rs.get("spec") or {}).get("template") or {})
    tmeta = tmpl.get("metadata") or {}
    md: dict[str, Any] = {"generateName": f"{name_of(rs)}-", "namespace": ns_of(rs)}
    if tmeta.get("labels"):
        md["labels"] = tmeta["labels"]
    if tmeta.get("annotations"):
        md["annotations"] = tmeta["annotations"]
    if tmeta.get("finalizers"):
        md["finalizers"] = tmeta["finalizers"]
    md["ownerReferences"] = [owner_ref({**rs, "apiVersion": "apps/v1", "kind": "ReplicaSet"})]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": tmpl.get("spec") or {}}


def rs_status(rs: dict, pods: list[dict]) -> dict:
    """calculateStatus: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration."""
    spec = rs.get("spec") or {}
    tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    mrs = int(spec.get("minReadySeconds") or 0)
    active = [p for p in pods if is_pod_active(p)]
    st: dict[str, Any] = {"replicas": len(active)}
    fully = sum(1 for p in active if all((meta(p).get("labels") or {}).get(k) == v for k, v in tlabels.items()))
    ready = sum(1 for p in active if is_pod_ready(p))
    avail = sum(1 for p in active if is_pod_available(p, mrs))
    if fully:
        st["fullyLabeledReplicas"] = fully
    if ready:
        st["readyReplicas"] = ready
    if avail:
        st["availableReplicas"] = avail
    st["observedGeneration"] = int(meta(rs).get("generation") or 1)
    conds = (rs.get("status") or {}).get("conditions")
    if conds:
        st["conditions"] = conds
    return st


class ReplicaSetController:
    """Syncs ReplicaSets; keys are (namespace, name)."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.exp = Expectations()
        self.recorder = mgr.recorder("replicaset-controller")
        self.queue = mgr.new_queue("replicaset", self.sync, workers=4)
        mgr.informer("replicasets").add_handler(self._on_rs)
        mgr.informer("pods").add_handler(self._on_pod)

    def _on_rs(self, etype: str, obj: dict, old: dict | None) -> None:
        if etype == "DELETED":
            self.exp.forget((ns_of(obj), name_of(obj)))
        self.queue.add((ns_of(obj), name_of(obj)))

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "ReplicaSet":
            return
        key = (ns_of(pod), ref.get("name", ""))
        self.exp.observe(key, etype, pod, old)
        self.queue.add(key)

    def owned_pods(self, rs: dict) -> list[dict]:
        return self.mgr.pods_controlled_by(rs)

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        rs = self.mgr.informer("replicasets").get(ns, name)
        if rs is None:
            return
        pods = self.owned_pods(rs)
        active = [p for p in pods if is_pod_active(p)]
        if self.exp.satisfied(key) and not meta(rs).get("deletionTimestamp"):
            await self._manage(key, rs, active)
        st = rs_status(rs, pods)
        if st != {k: v for k, v in (rs.get("status") or {}).items()}:
            try:
                new = json_copy(rs)
                new["status"] = st
                await self.mgr.client.replace(new, subresource="status")
            except errors.NotFound:
                return
            except errors.Conflict:
                self.queue.add_after(key, 0.05)
        mrs = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        if mrs > 0 and st.get("readyReplicas", 0) != st.get("availableReplicas", 0):
            self.queue.add_after(key, mrs)

    async def _manage(self, key: tuple[str, str], rs: dict, active: list[dict]) -> None:
        want = int((rs.get("spec") or {}).get("replicas", 1) if (rs.get("spec") or {}).get("replicas")
                   is not None else 1)
        diff = len(active) - want
        if diff < 0:
            n = min(-diff, BURST_REPLICAS)
            self.exp.expect(key, adds=n)
            made = 0
            for batch in slow_start_batches(n):
                results = await asyncio.gather(*(self._create(rs) for _ in range(batch)), return_exceptions=True)
                ok = sum(1 for r in results if r is True)
                made += ok
                if ok < batch:
                    # the rest will not be created now: stop expecting them (upstream skips the batches)
                    self.exp.lower(key, adds=n - made)
                    errs = [r for r in results if isinstance(r, BaseException)]
                    if errs:
                        raise errs[0]
                    break
        elif diff > 0:
            n = min(diff, BURST_REPLICAS)
            related = self.mgr.pods_in(ns_of(rs))
            victims = deletion_order(active, related)[:n]
            self.exp.expect(key, dels=n)
            results = await asyncio.gather(*(self._delete(rs, p) for p in victims), return_exceptions=True)
            errs = [r for r in results if isinstance(r, BaseException)]
            if errs:
                raise errs[0]

    async def _create(self, rs: dict) -> bool:
        pod = pod_from_template(rs)
        try:
            created = await self.mgr.client.create(pod, namespace=ns_of(rs))
        except errors.ApiError as exc:
            self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {exc.message}")
            raise
        self.recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {name_of(created)}")
        return True

    async def _delete(self, rs: dict, pod: dict) -> None:
        try:
            await self.mgr.client.delete("pods", name_of(pod), namespace=ns_of(pod))
        except errors.NotFound:
            self.exp.lower((ns_of(rs), name_of(rs)), dels=1)
            return
        self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")
