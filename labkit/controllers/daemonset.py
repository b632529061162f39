"""DaemonSet controller (upstream pkg/controller/daemon): one pod per eligible node.

A node is eligible when the template's nodeSelector matches its labels and the pod tolerates its NoSchedule /
NoExecute taints. Each daemon pod is made from the template with `generateName: <ds>-`, the labels
`controller-revision-hash` (the template's hash, as the DaemonSet's ControllerRevision names it) and
`pod-template-generation`, a controller ownerReference, a required node affinity on `metadata.name` (the default
scheduler places it) and the tolerations upstream adds to every daemon pod. Pods on nodes that are gone or no
longer eligible are deleted, as are extra pods on a node; a pod of an older template is replaced
(RollingUpdate, one node at a time as maxUnavailable 1 allows; OnDelete leaves it). Events:
`SuccessfulCreate` "Created pod: <name>", `SuccessfulDelete` "Deleted pod: <name>".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from labkit import errors

from .replicaset import Expectations
from .util import (
    compute_hash,
    controller_ref,
    is_pod_active,
    is_pod_available,
    is_pod_ready,
    json_copy,
    meta,
    name_of,
    ns_of,
    owner_ref,
)

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger(__name__)

REVISION_HASH = "controller-revision-hash"
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"

# util.AddOrUpdateDaemonPodTolerations: what every daemon pod tolerates.
_DAEMON_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
_HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                            "effect": "NoSchedule"}


def template_hash(ds: dict) -> str:
    spec = ds.get("spec") or {}
    return compute_hash(spec.get("template") or {}, (ds.get("status") or {}).get("collisionCount"))


def _tolerates(tolerations: list[dict], taint: dict) -> bool:
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t.get("key") == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def should_run_on(ds: dict, node: dict) -> bool:
    """NodeShouldRunDaemonPod: nodeSelector matches and every NoSchedule/NoExecute taint is tolerated."""
    tspec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    labels = meta(node).get("labels") or {}
    if any(labels.get(k) != v for k, v in (tspec.get("nodeSelector") or {}).items()):
        return False
    tolerations = [*(tspec.get("tolerations") or []), *_DAEMON_TOLERATIONS]
    return all(_tolerates(tolerations, taint) for taint in (node.get("spec") or {}).get("taints") or []
               if taint.get("effect") in ("NoSchedule", "NoExecute"))


def new_pod(ds: dict, node_name: str) -> dict:
    """The daemon pod for a node (controller.GetPodFromTemplate + the daemon's affinity and tolerations)."""
    template = json_copy((ds.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    generation = (meta(ds).get("annotations") or {}).get(TEMPLATE_GENERATION, "1")
    labels = {**(tmeta.get("labels") or {}), REVISION_HASH: template_hash(ds),
              TEMPLATE_GENERATION_LABEL: generation}
    md: dict[str, Any] = {"generateName": f"{name_of(ds)}-", "namespace": ns_of(ds), "labels": labels,
                          "ownerReferences": [owner_ref({**ds, "apiVersion": "apps/v1", "kind": "DaemonSet"})]}
    if tmeta.get("annotations"):
        md["annotations"] = tmeta["annotations"]
    spec = template.get("spec") or {}
    spec["affinity"] = {**(spec.get("affinity") or {}), "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}}}
    tolerations = list(spec.get("tolerations") or [])
    wanted = [*_DAEMON_TOLERATIONS, *([_HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])]
    for t in wanted:
        if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in tolerations):
            tolerations.append(dict(t))
    spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}


def pod_node(pod: dict) -> str:
    """The node a daemon pod is for: its nodeName once bound, else its node affinity's value."""
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        return node
    terms = ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return field["values"][0]
    return ""


def ds_status(ds: dict, nodes: list[dict], pods: list[dict]) -> dict:
    """The status upstream's updateDaemonSetStatus writes."""
    want = {name_of(n) for n in nodes if should_run_on(ds, n)}
    current_hash = template_hash(ds)
    mrs = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
    by_node: dict[str, list[dict]] = {}
    for p in pods:
        if is_pod_active(p):
            by_node.setdefault(pod_node(p), []).append(p)
    scheduled = {n for n in by_node if n in want}
    ready = sum(1 for n in scheduled if any(is_pod_ready(p) for p in by_node[n]))
    available = sum(1 for n in scheduled if any(is_pod_available(p, mrs) for p in by_node[n]))
    updated = sum(1 for n in scheduled
                  if any((meta(p).get("labels") or {}).get(REVISION_HASH) == current_hash for p in by_node[n]))
    status: dict[str, Any] = {
        "currentNumberScheduled": len(scheduled),
        "numberMisscheduled": len([n for n in by_node if n not in want]),
        "desiredNumberScheduled": len(want),
        "numberReady": ready,
        "observedGeneration": int(meta(ds).get("generation") or 1),
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
    }
    if len(want) - available > 0:
        status["numberUnavailable"] = len(want) - available
    old = ds.get("status") or {}
    for key in ("collisionCount", "conditions"):
        if old.get(key) is not None:
            status[key] = old[key]
    return status


class DaemonSetController:
    """Keys are (namespace, name) of DaemonSets."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.recorder = mgr.recorder("daemonset-controller")
        self.exp = Expectations()  # creations and deletions not yet seen by the pod informer
        self.queue = mgr.new_queue("daemonset", self.sync, workers=2)
        mgr.informer("daemonsets").add_handler(lambda etype, ds, old: self.queue.add((ns_of(ds), name_of(ds))))
        mgr.informer("pods").add_handler(self._on_pod)
        mgr.informer("nodes").add_handler(self._on_node)

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        ref = controller_ref(pod)
        if ref is not None and ref.get("kind") == "DaemonSet":
            key = (ns_of(pod), ref.get("name", ""))
            self.exp.observe(key, etype, pod, old)
            self.queue.add(key)

    def _on_node(self, etype: str, node: dict, old: dict | None) -> None:
        if old is not None and meta(old).get("labels") == meta(node).get("labels") \
                and (old.get("spec") or {}).get("taints") == (node.get("spec") or {}).get("taints"):
            return
        for ds in self.mgr.informer("daemonsets").items():
            self.queue.add((ns_of(ds), name_of(ds)))

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        ds = self.mgr.informer("daemonsets").get(ns, name)
        if ds is None:
            return
        nodes = self.mgr.informer("nodes").items()
        pods = self.mgr.pods_controlled_by(ds)
        if self.exp.satisfied(key) and not meta(ds).get("deletionTimestamp"):
            await self._manage(key, ds, nodes, pods)
        status = ds_status(ds, nodes, pods)
        if not await self.mgr.write_status(ds, status):
            self.queue.add_after(key, 0.05)
        mrs = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        if mrs and status["numberReady"] != status["numberAvailable"]:
            self.queue.add_after(key, mrs)

    async def _manage(self, key: tuple[str, str], ds: dict, nodes: list[dict], pods: list[dict]) -> None:
        want = {name_of(n) for n in nodes if should_run_on(ds, n)}
        current_hash = template_hash(ds)
        rolling = ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
        by_node: dict[str, list[dict]] = {}
        for p in pods:
            if is_pod_active(p):
                by_node.setdefault(pod_node(p), []).append(p)
        create, delete = [], []
        for node in sorted(want):
            running = by_node.get(node, [])
            if not running:
                create.append(node)
                continue
            # Keep one pod per node: the newest template first, then the oldest pod.
            running.sort(key=lambda p: ((meta(p).get("labels") or {}).get(REVISION_HASH) != current_hash,
                                        meta(p).get("creationTimestamp") or ""))
            delete += running[1:]
        delete += [p for n, ps in by_node.items() if n not in want for p in ps]
        if rolling and not create and not delete:
            # RollingUpdate with maxUnavailable 1 (and no surge): replace one outdated pod at a time, once every
            # daemon pod is available again.
            outdated = [ps[0] for n, ps in sorted(by_node.items()) if n in want
                        and (meta(ps[0]).get("labels") or {}).get(REVISION_HASH) != current_hash]
            all_ready = all(is_pod_ready(ps[0]) for n, ps in by_node.items() if n in want)
            if outdated and all_ready:
                delete.append(outdated[0])
        self.exp.expect(key, adds=len(create), dels=len(delete))
        for node in create:
            pod = new_pod(ds, node)
            try:
                created = await self.mgr.client.create(pod, namespace=ns_of(ds))
            except errors.ApiError as exc:
                self.exp.lower(key, adds=1)
                self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {exc.message}")
                raise
            self.recorder.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {name_of(created)}")
        for pod in delete:
            try:
                await self.mgr.client.delete("pods", name_of(pod), namespace=ns_of(pod))
            except errors.NotFound:
                self.exp.lower(key, dels=1)
                continue
            self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")
