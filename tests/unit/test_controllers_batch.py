"""DaemonSet, Job, TTL-after-finished and CronJob controllers over the in-memory fake API."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from labkit.controllers import cronjob, job
from labkit.controllers.util import fmt_time

from .test_controllers_manager import FakeApi, objs, settle, start

TEMPLATE = {"metadata": {"labels": {"app": "x"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}


def _ds() -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kube-proxy", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": copy.deepcopy(TEMPLATE)}}


def _job(name: str = "pi", **spec: object) -> dict:
    template = copy.deepcopy(TEMPLATE)
    template["metadata"]["labels"] = {"job-name": name}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"job-name": name}}, "template": template, **spec}}


async def _finish(api: FakeApi, phase: str) -> None:
    for (res, _ns, _name), pod in sorted(api.store.items()):
        if res == "pods" and not (pod.get("status") or {}).get("phase"):
            new = copy.deepcopy(pod)
            new["status"] = {"phase": phase, "containerStatuses": [
                {"name": "c", "state": {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1,
                                                       "finishedAt": fmt_time()}}}]}
            await api.replace(new, subresource="status")


def _conditions(obj: dict) -> list[tuple[str, str]]:
    return [(c["type"], c["reason"]) for c in (obj.get("status") or {}).get("conditions") or []]


async def test_daemonset_runs_one_pod_per_node_with_revision_labels() -> None:
    api, mgr = await start()
    try:
        await api.create(_ds())
        await settle(mgr)
        (pod,) = objs(api, "pods")
        assert pod["metadata"]["generateName"] == "kube-proxy-"
        assert set(pod["metadata"]["labels"]) == {"app", "controller-revision-hash", "pod-template-generation"}
        assert pod["spec"]["nodeName"] == "labkit-control-plane"
        terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["labkit-control-plane"]
        (ds,) = objs(api, "daemonsets")
        assert ds["status"]["desiredNumberScheduled"] == 1 and ds["status"]["currentNumberScheduled"] == 1
        # a second node gets its own pod; a node the selector excludes gets none
        ready = {"conditions": [{"type": "Ready", "status": "True"}]}
        await api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker"}, "status": ready})
        await api.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "tainted"},
                          "spec": {"taints": [{"key": "dedicated", "effect": "NoSchedule"}]}, "status": ready})
        await settle(mgr)
        assert sorted(p["spec"]["nodeName"] for p in objs(api, "pods")) == ["labkit-control-plane", "worker"]
    finally:
        await mgr.stop()


async def test_job_completes_with_completions_and_parallelism() -> None:
    api, mgr = await start()
    try:
        await api.create(_job(completions=3, parallelism=2, backoffLimit=6))
        await settle(mgr)
        assert len(objs(api, "pods")) == 2
        await _finish(api, "Succeeded")
        await settle(mgr)
        assert len(objs(api, "pods")) == 3  # one more for the last completion
        await _finish(api, "Succeeded")
        await settle(mgr)
        (done,) = objs(api, "jobs")
        assert done["status"]["succeeded"] == 3 and done["status"]["active"] == 0
        assert _conditions(done) == [("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "CompletionsReached")]
        assert done["status"]["completionTime"]
    finally:
        await mgr.stop()


async def test_job_fails_past_its_backoff_limit() -> None:
    api, mgr = await start()
    try:
        await api.create(_job(completions=1, parallelism=1, backoffLimit=0))
        await settle(mgr)
        await _finish(api, "Failed")
        await settle(mgr)
        (failed,) = objs(api, "jobs")
        assert _conditions(failed) == [("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")]
        assert failed["status"]["failed"] == 1
        assert len(objs(api, "pods")) == 1
    finally:
        await mgr.stop()


def test_pod_failure_backoff_doubles_up_to_ten_minutes() -> None:
    assert [job.failure_backoff(n) for n in (0, 1, 2, 3, 7, 8)] == [0, 10, 20, 40, 600, 600]


async def test_finished_job_with_ttl_zero_is_deleted() -> None:
    api, mgr = await start()
    try:
        await api.create(_job(completions=1, parallelism=1, ttlSecondsAfterFinished=0))
        await settle(mgr)
        await _finish(api, "Succeeded")
        await settle(mgr)
        assert objs(api, "jobs") == []
    finally:
        await mgr.stop()


async def test_cronjob_creates_the_job_of_its_latest_missed_time_and_trims_history() -> None:
    api, mgr = await start()
    try:
        cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello", "namespace": "default"},
              "spec": {"schedule": "*/1 * * * *", "concurrencyPolicy": "Allow", "successfulJobsHistoryLimit": 0,
                       "jobTemplate": {"spec": {"template": copy.deepcopy(TEMPLATE)}}}}
        created = await api.create(cj)
        # pretend it was created three minutes ago: one Job, for the most recent minute
        back = copy.deepcopy(created)
        back["metadata"]["creationTimestamp"] = fmt_time(datetime.now(UTC) - timedelta(minutes=3))
        api.store[("cronjobs", "default", "hello")] = back
        mgr.informer("cronjobs").notify("MODIFIED", back)
        await settle(mgr)
        (made,) = objs(api, "jobs")
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        assert made["metadata"]["name"] == cronjob.job_name("hello", minute)
        assert made["metadata"]["annotations"][cronjob.SCHEDULED_TIMESTAMP] == minute.isoformat().replace("+00:00",
                                                                                                          "Z")
        (cj_now,) = objs(api, "cronjobs")
        assert [a["name"] for a in cj_now["status"]["active"]] == [made["metadata"]["name"]]
        # once it completes, the history limit of 0 removes it
        done = copy.deepcopy(api.store[("jobs", "default", made["metadata"]["name"])])
        done["status"] = {"conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": fmt_time()}],
                          "completionTime": fmt_time()}
        await api.replace(done, subresource="status")
        await settle(mgr)
        assert objs(api, "jobs") == []
        (cj_now,) = objs(api, "cronjobs")
        assert not cj_now["status"].get("active") and cj_now["status"]["lastSuccessfulTime"]
    finally:
        await mgr.stop()


def test_completed_indexes_are_written_as_ranges() -> None:
    assert job.format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    assert job.format_indexes(set()) == ""


async def test_indexed_job_runs_one_pod_per_index() -> None:
    api, mgr = await start()
    try:
        await api.create(_job("idx", completions=3, parallelism=3, completionMode="Indexed"))
        await settle(mgr)
        pods = sorted(objs(api, "pods"), key=lambda p: p["metadata"]["generateName"])
        assert [p["metadata"]["generateName"] for p in pods] == ["idx-0-", "idx-1-", "idx-2-"]
        assert [p["metadata"]["annotations"][job.COMPLETION_INDEX] for p in pods] == ["0", "1", "2"]
        assert [p["spec"]["hostname"] for p in pods] == ["idx-0", "idx-1", "idx-2"]
        env = pods[1]["spec"]["containers"][0]["env"]
        assert env == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
        await _finish(api, "Succeeded")
        await settle(mgr)
        (done,) = objs(api, "jobs")
        assert done["status"]["completedIndexes"] == "0-2"
        assert _conditions(done)[-1] == ("Complete", "CompletionsReached")
    finally:
        await mgr.stop()
