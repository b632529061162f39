"""StatefulSet controller (upstream pkg/controller/statefulset): pods `<sts>-0 … <sts>-(N-1)`.

Each pod gets `spec.hostname = <pod name>`, `spec.subdomain = spec.serviceName`, the labels
`statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and `controller-revision-hash`
(`<sts>-<hash of the template>`), and a controller ownerReference. With `OrderedReady` (the default)
pod i is created only once pods 0..i-1 are Running and Ready, scale-down deletes the highest ordinal
first and one at a time, and a rolling update replaces pods from the highest ordinal down (above
`partition`). `Parallel` creates and deletes without waiting. A deleted pod comes back with the same
name. Failed pods are deleted and recreated. Events: `SuccessfulCreate` "create Pod web-0 in
StatefulSet web successful", `SuccessfulDelete` "delete Pod web-1 in StatefulSet web successful".
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit import errors

from .util import (
    compute_hash,
    controller_ref,
    is_pod_available,
    is_pod_ready,
    is_terminating,
    json_copy,
    meta,
    name_of,
    ns_of,
    owner_ref,
    pod_phase,
)

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger(__name__)

REVISION_LABEL = "controller-revision-hash"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


@dataclass
class Action:
    """One write: create the pod of an ordinal, or delete a pod by name."""

    verb: str  # "create" | "delete"
    ordinal: int
    name: str


def ordinal_of(sts_name: str, pod_name: str) -> int | None:
    m = re.fullmatch(re.escape(sts_name) + r"-(\d+)", pod_name)
    return int(m.group(1)) if m else None


def update_revision(sts: dict) -> str:
    spec = sts.get("spec") or {}
    collision = (sts.get("status") or {}).get("collisionCount")
    return f"{name_of(sts)}-{compute_hash(spec.get('template') or {}, collision)}"


def running_and_ready(pod: dict) -> bool:
    return pod_phase(pod) == "Running" and is_pod_ready(pod)


def replicas_of(sts: dict) -> int:
    r = (sts.get("spec") or {}).get("replicas")
    return 1 if r is None else int(r)


def plan(sts: dict, pods: list[dict]) -> list[Action]:
    """The writes to do now (OrderedReady: at most one; Parallel: all)."""
    spec = sts.get("spec") or {}
    name = name_of(sts)
    n = replicas_of(sts)
    parallel = spec.get("podManagementPolicy") == "Parallel"
    by_ord: dict[int, dict] = {}
    for p in pods:
        o = ordinal_of(name, name_of(p))
        if o is not None:
            by_ord[o] = p
    acts: list[Action] = []
    for i in range(n):
        pod = by_ord.get(i)
        pname = f"{name}-{i}"
        if pod is None:
            acts.append(Action("create", i, pname))
            if not parallel:
                return acts
            continue
        if pod_phase(pod) == "Failed" and not is_terminating(pod):
            acts.append(Action("delete", i, pname))
            if not parallel:
                return acts
            continue
        if not parallel and (is_terminating(pod) or not running_and_ready(pod)):
            return acts
    condemned = sorted((o for o in by_ord if o >= n), reverse=True)
    for o in condemned:
        pod = by_ord[o]
        if is_terminating(pod):
            if not parallel:
                return acts
            continue
        if not parallel and any(not running_and_ready(by_ord[j]) for j in by_ord if j != o and j < o):
            return acts
        acts.append(Action("delete", o, name_of(pod)))
        if not parallel:
            return acts
    if acts:
        return acts
    strat = spec.get("updateStrategy") or {}
    if (strat.get("type") or "RollingUpdate") != "RollingUpdate":
        return acts
    partition = int((strat.get("rollingUpdate") or {}).get("partition") or 0)
    rev = update_revision(sts)
    if any(is_terminating(by_ord[i]) or not running_and_ready(by_ord[i]) for i in range(n) if i in by_ord):
        return acts
    for i in range(n - 1, partition - 1, -1):
        pod = by_ord.get(i)
        if pod is not None and (meta(pod).get("labels") or {}).get(REVISION_LABEL) != rev:
            acts.append(Action("delete", i, name_of(pod)))
            return acts
    return acts


def new_pod(sts: dict, ordinal: int) -> dict:
    spec = sts.get("spec") or {}
    tmpl = json_copy(spec.get("template") or {})
    tmeta = tmpl.get("metadata") or {}
    pname = f"{name_of(sts)}-{ordinal}"
    labels = dict(tmeta.get("labels") or {})
    labels[REVISION_LABEL] = update_revision(sts)
    labels[POD_NAME_LABEL] = pname
    labels[POD_INDEX_LABEL] = str(ordinal)
    md: dict[str, Any] = {"name": pname, "namespace": ns_of(sts), "labels": labels,
                          "ownerReferences": [owner_ref({**sts, "apiVersion": "apps/v1", "kind": "StatefulSet"})]}
    if tmeta.get("annotations"):
        md["annotations"] = tmeta["annotations"]
    pspec = tmpl.get("spec") or {}
    pspec["hostname"] = pname
    if spec.get("serviceName"):
        pspec["subdomain"] = spec["serviceName"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": pspec}


def sts_status(sts: dict, pods: list[dict]) -> dict:
    rev = update_revision(sts)
    old = sts.get("status") or {}
    current_rev = old.get("currentRevision") or rev
    mrs = int((sts.get("spec") or {}).get("minReadySeconds") or 0)
    replicas = ready = available = current = updated = 0
    for p in pods:
        replicas += 1
        if running_and_ready(p):
            ready += 1
            if is_pod_available(p, mrs):
                available += 1
        if not is_terminating(p):
            h = (meta(p).get("labels") or {}).get(REVISION_LABEL)
            if h == current_rev:
                current += 1
            if h == rev:
                updated += 1
    n = replicas_of(sts)
    if updated == n and ready == n and replicas == n:
        current_rev, current = rev, updated
    st: dict[str, Any] = {"observedGeneration": int(meta(sts).get("generation") or 1), "replicas": replicas}
    if ready:
        st["readyReplicas"] = ready
    if current:
        st["currentReplicas"] = current
    if updated:
        st["updatedReplicas"] = updated
    st["currentRevision"] = current_rev
    st["updateRevision"] = rev
    st["collisionCount"] = int(old.get("collisionCount") or 0)
    st["availableReplicas"] = available
    return st


class StatefulSetController:
    """Syncs StatefulSets; keys are (namespace, name)."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.recorder = mgr.recorder("statefulset-controller")
        self.queue = mgr.new_queue("statefulset", self.sync, workers=2)
        mgr.informer("statefulsets").add_handler(lambda e, o, old: self.queue.add((ns_of(o), name_of(o))))
        mgr.informer("pods").add_handler(self._on_pod)

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        ref = controller_ref(pod)
        if ref and ref.get("kind") == "StatefulSet":
            self.queue.add((ns_of(pod), ref.get("name", "")))

    def owned_pods(self, sts: dict) -> list[dict]:
        uid = meta(sts).get("uid")
        return [p for p in self.mgr.pods_in(ns_of(sts))
                if (controller_ref(p) or {}).get("uid") == uid and ordinal_of(name_of(sts), name_of(p)) is not None]

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        sts = self.mgr.informer("statefulsets").get(ns, name)
        if sts is None or meta(sts).get("deletionTimestamp"):
            return
        pods = self.owned_pods(sts)
        for act in plan(sts, pods):
            if act.verb == "create":
                try:
                    await self.mgr.client.create(new_pod(sts, act.ordinal), namespace=ns)
                except errors.AlreadyExists:
                    continue  # the informer had not caught up; the pod exists
                except errors.ApiError as exc:
                    self.recorder.event(sts, "Warning", "FailedCreate",
                                        f"create Pod {act.name} in StatefulSet {name} failed error: {exc.message}")
                    raise
                self.recorder.event(sts, "Normal", "SuccessfulCreate",
                                    f"create Pod {act.name} in StatefulSet {name} successful")
            else:
                try:
                    await self.mgr.client.delete("pods", act.name, namespace=ns)
                except errors.NotFound:
                    continue
                self.recorder.event(sts, "Normal", "SuccessfulDelete",
                                    f"delete Pod {act.name} in StatefulSet {name} successful")
        st = sts_status(sts, pods)
        if st != (sts.get("status") or {}):
            new = json_copy(sts)
            new["status"] = st
            new["metadata"].pop("resourceVersion", None)
            try:
                await self.mgr.client.replace(new, subresource="status")
            except errors.NotFound:
                return
