"""CronJob controller (upstream pkg/controller/cronjob, the v2 controller): Jobs on a cron schedule.

At each scheduled time (in `spec.timeZone`, else the controller's zone, UTC as on kind) it creates the Job
`<cronjob>-<scheduled time in minutes since the epoch>` from `spec.jobTemplate`, owned by the CronJob and
annotated `batch.kubernetes.io/cronjob-scheduled-timestamp`; it tracks them in `status.active`, sets
`lastScheduleTime` and `lastSuccessfulTime`, honours `suspend`, `startingDeadlineSeconds` and
`concurrencyPolicy` (Allow, Forbid, Replace), and deletes finished Jobs beyond `successfulJobsHistoryLimit` and
`failedJobsHistoryLimit`, oldest first. Missed times while it was down: only the most recent one runs, as upstream.
Events: `SuccessfulCreate` "Created job <name>", `SawCompletedJob` "Saw completed job: <name>, condition:
Complete", `SuccessfulDelete` "Deleted job <name>", `MissSchedule`, `JobAlreadyActive`, `UnexpectedJob`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from labkit import cron, errors

from .job import finish_time, has_condition, is_finished
from .util import controller_ref, fmt_time, json_copy, meta, name_of, now, ns_of, owner_ref, parse_time

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger(__name__)

SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100  # upstream gives up counting missed times beyond this, with an event


def job_name(cronjob: str, scheduled: datetime) -> str:
    """getJobName: the CronJob's name and the scheduled time in whole minutes since the epoch."""
    return f"{cronjob}-{int(scheduled.timestamp()) // 60}"


def _zone(cj: dict) -> Any:
    tz = (cj.get("spec") or {}).get("timeZone")
    try:
        return ZoneInfo(tz) if tz else UTC
    except (ValueError, KeyError):
        return None


def most_recent_schedule(cj: dict, schedule: cron.Schedule, at: datetime) -> tuple[datetime | None, int]:
    """The latest scheduled time not after `at` that has not run yet, and how many such times were missed."""
    spec, status = cj.get("spec") or {}, cj.get("status") or {}
    zone = _zone(cj) or UTC
    earliest = parse_time(status.get("lastScheduleTime")) or parse_time(meta(cj).get("creationTimestamp")) or at
    deadline = spec.get("startingDeadlineSeconds")
    if deadline is not None:
        earliest = max(earliest, at - timedelta(seconds=int(deadline)))
    t = schedule.next_after(earliest.astimezone(zone))
    latest, missed = None, 0
    while t is not None and t <= at:
        latest, missed = t, missed + 1
        if missed > MAX_MISSED:
            break
        t = schedule.next_after(t)
    return latest, missed


class CronJobController:
    """Keys are (namespace, name) of CronJobs."""

    def __init__(self, mgr: Manager) -> None:
        self.mgr = mgr
        self.recorder = mgr.recorder("cronjob-controller")
        self.queue = mgr.new_queue("cronjob", self.sync, workers=1)
        mgr.informer("cronjobs").add_handler(lambda etype, cj, old: self.queue.add((ns_of(cj), name_of(cj))))
        mgr.informer("jobs").add_handler(self._on_job)

    def _on_job(self, etype: str, job: dict, old: dict | None) -> None:
        ref = controller_ref(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.queue.add((ns_of(job), ref.get("name", "")))

    def _jobs_of(self, cj: dict) -> list[dict]:
        uid = meta(cj).get("uid")
        return [j for j in self.mgr.informer("jobs").items()
                if ns_of(j) == ns_of(cj) and (controller_ref(j) or {}).get("uid") == uid]

    async def sync(self, key: tuple[str, str]) -> None:
        cj = self.mgr.informer("cronjobs").get(*key)
        if cj is None or meta(cj).get("deletionTimestamp"):
            return
        spec = cj.get("spec") or {}
        status = json_copy(cj.get("status") or {})
        jobs = self._jobs_of(cj)
        by_uid = {meta(j).get("uid"): j for j in jobs}
        active: list[dict] = []
        for ref in status.get("active") or []:
            job = by_uid.get(ref.get("uid"))
            if job is not None and not is_finished(job):
                active.append(ref)
        listed = {ref.get("uid") for ref in status.get("active") or []}
        for job in jobs:
            uid = meta(job).get("uid")
            if is_finished(job):
                if uid in listed:
                    outcome = "Complete" if has_condition(job, "Complete") else "Failed"
                    self.recorder.event(cj, "Normal", "SawCompletedJob",
                                        f"Saw completed job: {name_of(job)}, condition: {outcome}")
                if has_condition(job, "Complete"):
                    done = finish_time(job)
                    last = parse_time(status.get("lastSuccessfulTime"))
                    if done is not None and (last is None or done > last):
                        status["lastSuccessfulTime"] = fmt_time(done)
            elif uid not in listed:
                active.append(self._ref(job))
        status["active"] = active
        await self._cleanup(cj, jobs)

        moment = now()
        requeue: float | None = None
        zone = _zone(cj)
        try:
            schedule = cron.parse(spec.get("schedule", ""))
        except cron.CronError as exc:
            self.recorder.event(cj, "Warning", "UnparseableSchedule", f"unparseable schedule: "
                                f"{spec.get('schedule')!r} : {exc}")
            schedule = None
        if zone is None:
            self.recorder.event(cj, "Warning", "UnknownTimeZone", f"invalid timeZone: {spec.get('timeZone')!r}")
        elif schedule is not None and not spec.get("suspend"):
            scheduled, missed = most_recent_schedule(cj, schedule, moment)
            if missed > MAX_MISSED:
                self.recorder.event(cj, "Warning", "TooManyMissedTimes", "too many missed start times. Set or "
                                    "decrease .spec.startingDeadlineSeconds or check clock skew")
            if scheduled is not None:
                await self._start(cj, scheduled, moment, status, active)
            following = schedule.next_after(moment.astimezone(zone))
            if following is not None:
                requeue = (following - moment).total_seconds() + 0.1
        status = {k: v for k, v in status.items() if v not in (None, [])}  # as the API stores it (omitempty)
        if not await self.mgr.write_status(cj, status):
            self.queue.add_after(key, 0.05)
            return
        if requeue is not None:
            self.queue.add_after(key, requeue)

    @staticmethod
    def _ref(job: dict) -> dict:
        md = meta(job)
        return {"kind": "Job", "namespace": md.get("namespace"), "name": md.get("name"), "uid": md.get("uid"),
                "apiVersion": "batch/v1", "resourceVersion": md.get("resourceVersion")}

    async def _start(self, cj: dict, scheduled: datetime, moment: datetime, status: dict,
                     active: list[dict]) -> None:
        spec = cj.get("spec") or {}
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + timedelta(seconds=int(deadline)) < moment:
            self.recorder.event(cj, "Warning", "MissSchedule",
                                f"Missed scheduled time to start a job: {scheduled.astimezone(UTC).isoformat()}")
            return
        name = job_name(name_of(cj), scheduled)
        if any(ref.get("name") == name for ref in active) or \
                self.mgr.informer("jobs").get(ns_of(cj), name) is not None:
            return  # this time already ran
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and active:
            self.recorder.event(cj, "Normal", "JobAlreadyActive", "Not starting job because prior execution is "
                                "running and concurrency policy is Forbid")
            return
        if policy == "Replace":
            for ref in list(active):
                await self._delete(cj, ref.get("name", ""))
                active.remove(ref)
        template = json_copy(spec.get("jobTemplate") or {})
        tmeta = template.get("metadata") or {}
        zone = _zone(cj) or UTC
        annotations = {**(tmeta.get("annotations") or {}),
                       SCHEDULED_TIMESTAMP: scheduled.astimezone(zone).isoformat().replace("+00:00", "Z")}
        md: dict[str, Any] = {"name": name, "namespace": ns_of(cj), "annotations": annotations,
                              "ownerReferences": [owner_ref({**cj, "apiVersion": "batch/v1", "kind": "CronJob"})]}
        if tmeta.get("labels"):
            md["labels"] = tmeta["labels"]
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": md, "spec": template.get("spec") or {}}
        try:
            created = await self.mgr.client.create(job, namespace=ns_of(cj))
        except errors.AlreadyExists:
            return
        except errors.ApiError as exc:
            self.recorder.event(cj, "Warning", "FailedCreate", f"Error creating job: {exc.message}")
            raise
        self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {name}")
        active.append(self._ref(created))
        status["lastScheduleTime"] = fmt_time(scheduled.astimezone(UTC))

    async def _cleanup(self, cj: dict, jobs: list[dict]) -> None:
        """Delete finished Jobs beyond the history limits, the ones that finished first."""
        spec = cj.get("spec") or {}
        for outcome, limit_key in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(limit_key)
            if limit is None:
                continue
            done = [j for j in jobs if has_condition(j, outcome) and not meta(j).get("deletionTimestamp")]
            done.sort(key=lambda j: (finish_time(j) or datetime.min.replace(tzinfo=UTC), name_of(j)))
            for job in done[:max(len(done) - int(limit), 0)]:
                await self._delete(cj, name_of(job))

    async def _delete(self, cj: dict, name: str) -> None:
        try:
            await self.mgr.client.delete("jobs", name, namespace=ns_of(cj), propagation_policy="Background")
        except errors.NotFound:
            return
        self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {name}")
