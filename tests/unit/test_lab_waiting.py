"""`lab.wait_for(rollout=...)`: kubectl rollout status's viewers, then the pods themselves (no cluster: a fake
Lab answers with the objects a test gives it)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from labkit.lab.waiting import _rollout


class FakeLab:
    def __init__(self, workload: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        self.workload, self.pods = workload, pods

    def resource(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return copy.deepcopy(self.workload)

    def resources(self, kind: str, *, namespace: str | None = None, **_: Any) -> list[dict[str, Any]]:
        assert kind == "pods"
        return copy.deepcopy(self.pods)


def pod(name: str, ready: bool = True, deleting: bool = False, app: str = "web") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app": app}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}


def statefulset(replicas: int = 2, generation: int = 1, **status: Any) -> dict[str, Any]:
    st = {"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas,
          "currentRevision": "web-1", "updateRevision": "web-1", **status}
    return {"kind": "StatefulSet", "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}}, "status": st}


def deployment(want: int = 2, **status: Any) -> dict[str, Any]:
    replicas = want
    st = {"observedGeneration": 2, "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": replicas,
          "availableReplicas": replicas, **status}
    return {"kind": "Deployment", "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}}, "status": st}


def rollout(workload: dict[str, Any], pods: list[dict[str, Any]]) -> tuple[bool, str]:
    done, seen, _ = _rollout(FakeLab(workload, pods), "lab", f"{workload['kind'].lower()}/web")  # type: ignore[arg-type]
    return done, seen


def test_a_finished_rollout_is_done() -> None:
    assert rollout(statefulset(), [pod("web-0"), pod("web-1"), pod("other-0", app="other")])[0]
    assert rollout(deployment(), [pod("web-7b54d48599-2j79v"), pod("web-7b54d48599-x8kfq")])[0]


def test_a_deleted_pod_counted_ready_by_a_stale_status_is_not_done() -> None:
    # web-0 deleted: its replacement is not Ready yet, the StatefulSet's status still counts 2 ready
    done, seen = rollout(statefulset(), [pod("web-0", ready=False), pod("web-1")])
    assert not done and "web-0 not Ready" in seen
    # ... or the replacement does not exist yet (the old one terminating)
    done, seen = rollout(statefulset(), [pod("web-0", deleting=True), pod("web-1")])
    assert not done and seen == "the status says done; pods: web-1"
    # a Deployment's replacement pod, not Ready yet, beside the status's "2 available"
    assert not rollout(deployment(), [pod("web-a"), pod("web-b", ready=False)])[0]


def test_the_status_viewers_of_kubectl() -> None:
    assert rollout(statefulset(generation=2), [pod("web-0"), pod("web-1")]) == (
        False, "waiting for the StatefulSet's spec update to be observed")
    assert rollout(statefulset(observedGeneration=0, generation=0), [pod("web-0"), pod("web-1")])[1].startswith(
        "waiting for the StatefulSet's spec update")
    assert rollout(statefulset(3, readyReplicas=2), [pod("web-0"), pod("web-1")]) == (False, "2 of 3 pods ready")
    partitioned = statefulset(3, updatedReplicas=1)
    partitioned["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 1
    assert rollout(partitioned, [pod("web-0"), pod("web-1"), pod("web-2")]) == (
        False, "1 out of 2 new pods have been updated")
    partitioned["status"]["updatedReplicas"] = 2  # web-0 stays at the old revision: done all the same
    assert rollout(partitioned, [pod("web-0"), pod("web-1"), pod("web-2")])[0]
    assert rollout(deployment(3, updatedReplicas=2), []) == (False, "2 out of 3 new replicas have been updated")
    assert rollout(deployment(2, replicas=3), []) == (False, "1 old replicas are pending termination")
    assert rollout(deployment(2, availableReplicas=1), []) == (False, "1 of 2 updated replicas are available")
    # scaled down: the status is done, a pod beyond the new size is still there (not yet being deleted)
    assert not rollout(statefulset(1), [pod("web-0"), pod("web-1")])[0]


def test_no_rollout_status_for_other_strategies_and_kinds() -> None:
    on_delete = statefulset()
    on_delete["spec"]["updateStrategy"] = {"type": "OnDelete"}
    with pytest.raises(ValueError, match="only available for RollingUpdate"):
        rollout(on_delete, [])
    with pytest.raises(ValueError, match="no rollout status for a ReplicaSet"):
        rollout({**deployment(), "kind": "ReplicaSet"}, [])
