"""Job controller and TTL-after-finished controller (upstream pkg/controller/job, pkg/controller/ttlafterfinished).

Job: runs `parallelism` pods at a time (never more than the completions still missing) until `completions` pods
succeeded, or, without `completions`, until one succeeded and the rest finished. Pods are made from the template
with `generateName: <job>-` and a controller ownerReference. A failed pod (restartPolicy Never) is replaced after
the pod failure back-off (10 s, doubling per failure, at most 10 min); once failures exceed `backoffLimit` (with
OnFailure: once the containers' restarts reach it) or the Job outlives `activeDeadlineSeconds`, its running pods
are deleted and it fails. Conditions as Kubernetes 1.32 writes them: `SuccessCriteriaMet` then `Complete`
(reason `CompletionsReached`), or `FailureTarget` then `Failed` (`BackoffLimitExceeded`, `DeadlineExceeded`).
Status counts `active`, `ready`, `succeeded`, `failed`, `terminating`; `startTime` and `completionTime`.
An Indexed Job runs one pod per completion index (`<job>-<index>-xxxxx`, hostname `<job>-<index>`, the index in
the `batch.kubernetes.io/job-completion-index` annotation and label and in `JOB_COMPLETION_INDEX`) until every
index succeeded (`completedIndexes`). Not implemented: podFailurePolicy, successPolicy, backoffLimitPerIndex.
Events: `SuccessfulCreate` "Created pod: <name>", `SuccessfulDelete`, `Completed` "Job completed",
`BackoffLimitExceeded`, `DeadlineExceeded`. A suspended Job keeps no pods.

TTL-after-finished: a finished Job with `ttlSecondsAfterFinished` is deleted (foreground) that long after it
finished. Known difference: pods carry no `batch.kubernetes.io/job-tracking` finalizer (labkit's Job controller
counts finished pods from the pods themselves, and nothing here deletes them behind its back).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from labkit import errors

from .replicaset import Expectations
from .util import (
    controller_ref,
    fmt_time,
    is_pod_active,
    is_pod_ready,
    json_copy,
    meta,
    name_of,
    now,
    ns_of,
    owner_ref,
    parse_time,
    pod_phase,
)

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger(__name__)

POD_FAILURE_BACKOFF = 10.0  # DefaultJobPodFailureBackOff
MAX_POD_FAILURE_BACKOFF = 600.0  # MaxJobPodFailureBackOff
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def has_condition(job: dict, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def is_finished(job: dict) -> bool:
    return has_condition(job, "Complete") or has_condition(job, "Failed")


def finish_time(job: dict) -> datetime | None:
    """When a finished Job finished: its completionTime, or when its Complete/Failed condition became true."""
    status = job.get("status") or {}
    if status.get("completionTime"):
        return parse_time(status["completionTime"])
    for c in status.get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return parse_time(c.get("lastTransitionTime"))
    return None


def _condition(ctype: str, reason: str, message: str, at: str) -> dict:
    return {"type": ctype, "status": "True", "lastProbeTime": at, "lastTransitionTime": at, "reason": reason,
            "message": message}


def pod_from_template(job: dict, index: int | None = None) -> dict:
    """A pod of the Job; for an Indexed Job, the pod of completion index `index`."""
    template = json_copy((job.get("spec") or {}).get("template") or {})
    tmeta = template.get("metadata") or {}
    prefix = f"{name_of(job)}-" if index is None else f"{name_of(job)}-{index}-"
    md: dict[str, Any] = {"generateName": prefix, "namespace": ns_of(job),
                          "ownerReferences": [owner_ref({**job, "apiVersion": "batch/v1", "kind": "Job"})]}
    for key in ("labels", "annotations", "finalizers"):
        if tmeta.get(key):
            md[key] = tmeta[key]
    spec = template.get("spec") or {}
    if index is not None:
        # addCompletionIndexAnnotation / Label, the JOB_COMPLETION_INDEX variable, and the hostname.
        md["annotations"] = {**(md.get("annotations") or {}), COMPLETION_INDEX: str(index)}
        md["labels"] = {**(md.get("labels") or {}), COMPLETION_INDEX: str(index)}
        env = {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}}}
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in c.get("env") or []):
                c["env"] = [*(c.get("env") or []), env]
        spec.setdefault("hostname", f"{name_of(job)}-{index}")
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}


def pod_index(pod: dict) -> int | None:
    value = (meta(pod).get("annotations") or {}).get(COMPLETION_INDEX)
    return int(value) if value is not None and value.isdigit() else None


def format_indexes(indexes: set[int]) -> str:
    """status.completedIndexes: sorted, consecutive runs as ranges ("1,3-5,7")."""
    out: list[str] = []
    for i in sorted(indexes):
        if out and out[-1].split("-")[-1] == str(i - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ",".join(out)


def _finished_at(pod: dict) -> datetime | None:
    times = [parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
             for cs in (pod.get("status") or {}).get("containerStatuses") or []]
    known = [t for t in times if t is not None]
    return max(known) if known else parse_time(meta(pod).get("creationTimestamp"))


def _restarts(pods: list[dict]) -> int:
    return sum(int(cs.get("restartCount") or 0) for p in pods
               for key in ("containerStatuses", "initContainerStatuses")
               for cs in (p.get("status") or {}).get(key) or [])


def failure_backoff(failed: int) -> float:
    """The delay before the next pod after `failed` failures (the pod failure back-off)."""
    if failed <= 0:
        return 0.0
    return min(POD_FAILURE_BACKOFF * 2 ** (failed - 1), MAX_POD_FAILURE_BACKOFF)


class JobController:
    """Keys are (namespace, name) of Jobs."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.exp = Expectations()
        self.recorder = mgr.recorder("job-controller")
        self.queue = mgr.new_queue("job", self.sync, workers=2)
        mgr.informer("jobs").add_handler(self._on_job)
        mgr.informer("pods").add_handler(self._on_pod)

    def _on_job(self, etype: str, job: dict, old: dict | None) -> None:
        key = (ns_of(job), name_of(job))
        if etype == "DELETED":
            self.exp.forget(key)
        self.queue.add(key)

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        ref = controller_ref(pod)
        if ref is None or ref.get("kind") != "Job":
            return
        key = (ns_of(pod), ref.get("name", ""))
        self.exp.observe(key, etype, pod, old)
        self.queue.add(key)

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        job = self.mgr.informer("jobs").get(ns, name)
        if job is None or is_finished(job) or not (job.get("spec") or {}).get("selector"):
            return  # (the API server always generates a selector; without one the Job would select nothing)
        spec = job.get("spec") or {}
        pods = self.mgr.pods_controlled_by(job)
        active = [p for p in pods if is_pod_active(p)]
        indexed = spec.get("completionMode") == "Indexed"
        succeeded_pods = [p for p in pods if pod_phase(p) == "Succeeded"]
        done_indexes = {i for p in succeeded_pods if (i := pod_index(p)) is not None}
        succeeded = len(done_indexes) if indexed else len(succeeded_pods)
        failed_pods = [p for p in pods if pod_phase(p) == "Failed"]
        failed = len(failed_pods)
        moment = now()
        stamp = fmt_time(moment)
        status = json_copy(job.get("status") or {})
        suspended = bool(spec.get("suspend"))
        if not status.get("startTime") and not suspended:
            status["startTime"] = stamp
        started = parse_time(status.get("startTime"))
        completions = spec.get("completions")
        backoff_limit = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)
        restart_policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")

        failure: tuple[str, str] | None = None
        if failed > backoff_limit or (restart_policy == "OnFailure" and backoff_limit >= 0
                                      and active and _restarts(active) >= max(backoff_limit, 1)):
            failure = BACKOFF_LIMIT_EXCEEDED
        elif spec.get("activeDeadlineSeconds") and started is not None and not suspended \
                and moment >= started + timedelta(seconds=int(spec["activeDeadlineSeconds"])):
            failure = DEADLINE_EXCEEDED
        complete = (succeeded >= completions) if completions is not None else (succeeded > 0 and not active)
        conditions = list(status.get("conditions") or [])
        if failure is not None:
            await self._delete_pods(job, active)
            conditions += [_condition("FailureTarget", *failure, stamp), _condition("Failed", *failure, stamp)]
            self.recorder.event(job, "Warning", failure[0], failure[1])
        elif complete:
            await self._delete_pods(job, active)
            conditions += [_condition("SuccessCriteriaMet", *COMPLETIONS_REACHED, stamp),
                           _condition("Complete", *COMPLETIONS_REACHED, stamp)]
            status["completionTime"] = stamp
            self.recorder.event(job, "Normal", "Completed", "Job completed")
        elif self.exp.satisfied(key):
            await self._manage(key, job, active, succeeded, failed_pods, moment, done_indexes if indexed else None)
        if conditions:
            status["conditions"] = conditions
        status["active"] = 0 if (failure or complete) else len(active)
        status["ready"] = sum(1 for p in active if is_pod_ready(p)) if not (failure or complete) else 0
        status["succeeded"] = succeeded
        if indexed:
            status["completedIndexes"] = format_indexes(done_indexes)
        status["failed"] = failed
        status["terminating"] = sum(1 for p in pods if meta(p).get("deletionTimestamp")
                                    and pod_phase(p) not in ("Succeeded", "Failed"))
        status["uncountedTerminatedPods"] = {}
        if not await self.mgr.write_status(job, status):
            self.queue.add_after(key, 0.05)
            return
        if spec.get("activeDeadlineSeconds") and started is not None and not (failure or complete):
            left = (started + timedelta(seconds=int(spec["activeDeadlineSeconds"])) - moment).total_seconds()
            self.queue.add_after(key, max(left, 0.05))

    async def _manage(self, key: tuple[str, str], job: dict, active: list[dict], succeeded: int,
                      failed_pods: list[dict], moment: datetime, done_indexes: set[int] | None) -> None:
        spec = job.get("spec") or {}
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        completions = spec.get("completions")
        if spec.get("suspend"):
            want = 0
        elif completions is None:
            want = 0 if succeeded else parallelism
        else:
            want = max(0, min(parallelism, int(completions) - succeeded))
        diff = want - len(active)
        if diff > 0 and failed_pods:
            last = max((_finished_at(p) for p in failed_pods), default=None, key=lambda t: t or moment)
            wait = failure_backoff(len(failed_pods)) - ((moment - last).total_seconds() if last else 0.0)
            if wait > 0:
                self.queue.add_after(key, wait)
                return
        if diff > 0:
            indexes: list[int | None] = [None] * diff
            if done_indexes is not None:  # Indexed: the lowest indexes neither done nor running
                running = {pod_index(p) for p in active}
                indexes = [i for i in range(int(completions or 0)) if i not in done_indexes and i not in running]
                indexes = indexes[:diff]
                diff = len(indexes)
            self.exp.expect(key, adds=diff)
            results = await asyncio.gather(*(self._create(job, i) for i in indexes), return_exceptions=True)
            made = sum(1 for r in results if r is True)
            if made < diff:
                self.exp.lower(key, adds=diff - made)
                errs = [r for r in results if isinstance(r, BaseException)]
                if errs:
                    raise errs[0]
        elif diff < 0:
            await self._delete_pods(job, sorted(active, key=lambda p: meta(p).get("creationTimestamp") or "")[diff:])

    async def _create(self, job: dict, index: int | None = None) -> bool:
        try:
            created = await self.mgr.client.create(pod_from_template(job, index), namespace=ns_of(job))
        except errors.ApiError as exc:
            self.recorder.event(job, "Warning", "FailedCreate", f"Error creating: {exc.message}")
            raise
        self.recorder.event(job, "Normal", "SuccessfulCreate", f"Created pod: {name_of(created)}")
        return True

    async def _delete_pods(self, job: dict, pods: list[dict]) -> None:
        for pod in pods:
            try:
                await self.mgr.client.delete("pods", name_of(pod), namespace=ns_of(pod))
            except errors.NotFound:
                continue
            self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")


class TTLAfterFinishedController:
    """Deletes finished Jobs `ttlSecondsAfterFinished` after they finished."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.queue = mgr.new_queue("ttl-after-finished", self.sync, workers=1)
        mgr.informer("jobs").add_handler(self._on_job)

    def _on_job(self, etype: str, job: dict, old: dict | None) -> None:
        if etype != "DELETED" and (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None \
                and is_finished(job):
            self.queue.add((ns_of(job), name_of(job)))

    async def sync(self, key: tuple[str, str]) -> None:
        job = self.mgr.informer("jobs").get(*key)
        if job is None or meta(job).get("deletionTimestamp") or not is_finished(job):
            return
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        finished = finish_time(job)
        if ttl is None or finished is None:
            return
        left = (finished + timedelta(seconds=int(ttl)) - now()).total_seconds()
        if left > 0:
            self.queue.add_after(key, left)
            return
        try:
            await self.mgr.client.delete("jobs", key[1], namespace=key[0], propagation_policy="Foreground",
                                         preconditions={"uid": meta(job).get("uid")})
        except (errors.NotFound, errors.Conflict):
            pass
