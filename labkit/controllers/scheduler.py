"""A trivial scheduler: bind each unscheduled pod to a Ready node (the first by name).

It binds through the pods/binding subresource like kube-scheduler (falling back to a merge patch of
spec.nodeName where binding is not served) and records the `PodScheduled` condition and a
`Scheduled` event "Successfully assigned <ns>/<pod> to <node>" from `default-scheduler`.
Pods wait, unscheduled, while no node is Ready; a node turning Ready requeues them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from labkit import errors

from .util import fmt_time, json_copy, meta, name_of, ns_of

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger(__name__)


def node_ready(node: dict) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def needs_scheduling(pod: dict) -> bool:
    spec = pod.get("spec") or {}
    return not spec.get("nodeName") and not meta(pod).get("deletionTimestamp") and \
        (spec.get("schedulerName") or "default-scheduler") == "default-scheduler"


def _required_node_names(pod: dict) -> set[str] | None:
    """The node names a required node affinity on `metadata.name` allows (how DaemonSet pods are pinned)."""
    terms = ((((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    names: set[str] | None = None
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("operator") == "In":
                names = (names or set()) | set(field.get("values") or [])
    return names


def fits(pod: dict, node: dict) -> bool:
    """The NodeName, NodeSelector and NodeAffinity (matchFields on metadata.name) filters."""
    labels = meta(node).get("labels") or {}
    if any(labels.get(k) != v for k, v in ((pod.get("spec") or {}).get("nodeSelector") or {}).items()):
        return False
    names = _required_node_names(pod)
    return names is None or name_of(node) in names


class Scheduler:
    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.recorder = mgr.recorder("default-scheduler")
        self.queue = mgr.new_queue("scheduler", self.sync, workers=4)
        mgr.informer("pods").add_handler(self._on_pod)
        mgr.informer("nodes").add_handler(self._on_node)

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        if etype != "DELETED" and needs_scheduling(pod):
            self.queue.add((ns_of(pod), name_of(pod)))

    def _on_node(self, etype: str, node: dict, old: dict | None) -> None:
        if etype != "DELETED" and node_ready(node):
            for pod in self.mgr.informer("pods").items():
                if needs_scheduling(pod):
                    self.queue.add((ns_of(pod), name_of(pod)))

    def pick_node(self, pod: dict | None = None) -> str | None:
        ready = sorted(name_of(n) for n in self.mgr.informer("nodes").items()
                       if node_ready(n) and (pod is None or fits(pod, n)))
        return ready[0] if ready else None

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        pod = self.mgr.informer("pods").get(ns, name)
        if pod is None or not needs_scheduling(pod):
            return
        node = self.pick_node(pod)
        if node is None:
            return
        client = self.mgr.client
        try:
            try:
                await client.bind_pod(ns, name, node)
            except (errors.NotFound, errors.MethodNotAllowed) as exc:
                if isinstance(exc, errors.NotFound) and "binding" not in exc.message:
                    raise
                await client.patch("pods", name, {"spec": {"nodeName": node}}, namespace=ns)
        except errors.NotFound:
            return
        except (errors.Conflict, errors.Invalid):
            return  # bound meanwhile
        conds = [c for c in json_copy((pod.get("status") or {}).get("conditions") or [])
                 if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                      "lastTransitionTime": fmt_time()})
        try:
            await client.patch("pods", name, {"status": {"conditions": conds}}, namespace=ns, subresource="status")
        except errors.ApiError as exc:
            log.debug("PodScheduled condition for %s/%s not written: %s", ns, name, exc)
        self.recorder.event({**pod, "apiVersion": "v1", "kind": "Pod"}, "Normal", "Scheduled",
                            f"Successfully assigned {ns}/{name} to {node}")
