"""Validation of DaemonSet (apps), Job and CronJob (batch), with upstream's texts.

pkg/apis/apps/validation/validation.go (ValidateDaemonSet*) and pkg/apis/batch/validation/validation.go
(ValidateJob*, ValidateCronJob*), Kubernetes 1.32. Shared rules and the cause builders live in validation.py.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from labkit import cron
from labkit.apiserver.validation import (
    FIELD_IMMUTABLE,
    Cause,
    GoValue,
    _d,
    _go_quote,
    _nonnegative,
    _s,
    _validate_positive_int_or_percent,
    _validate_selector_required,
    _validate_template_for_controller,
    forbidden,
    go_map,
    invalid,
    label_selector_repr,
    name_is_dns_subdomain,
    not_supported,
    required,
    validate_annotations,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
    validate_pod_template,
)

# A CronJob's Jobs are named <cronjob>-<11 digits>, and a Job name must leave room for its pods' suffix.
CRONJOB_NAME_MAX = 52


def _positive(value: Any, field: str) -> list[Cause]:
    if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
        return [invalid(field, value, "must be greater than 0")]
    return []


# ---------------------------------------------------------------------------------------------------- DaemonSet


def validate_daemon_set(obj: dict, old: dict | None) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs += validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    errs += _validate_selector_required(spec, "daemonset")
    errs += _validate_template_for_controller(spec.get("template"), spec.get("selector"), "spec.template",
                                              check_restart=True)
    us = _d(spec.get("updateStrategy"))
    utype = _s(us.get("type"))
    if utype == "RollingUpdate":
        ru = us.get("rollingUpdate")
        if not isinstance(ru, dict):
            errs.append(required("spec.updateStrategy.rollingUpdate"))
        else:
            p = "spec.updateStrategy.rollingUpdate"
            errs += _validate_positive_int_or_percent(ru.get("maxUnavailable"), f"{p}.maxUnavailable")
            errs += _validate_positive_int_or_percent(ru.get("maxSurge"), f"{p}.maxSurge")
    elif utype != "OnDelete":
        errs.append(not_supported("spec.updateStrategy", GoValue(
            f"apps.DaemonSetUpdateStrategy{{Type:{_go_quote(utype)}, RollingUpdate:(*apps.RollingUpdateDaemonSet)"
            "(nil)}"), ("OnDelete", "RollingUpdate")))
    errs += _nonnegative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    errs += _nonnegative(spec.get("revisionHistoryLimit"), "spec.revisionHistoryLimit")
    if old is not None:
        old_sel = _d(old.get("spec")).get("selector")
        if spec.get("selector") != old_sel:
            errs.append(invalid("spec.selector", label_selector_repr(spec.get("selector")), FIELD_IMMUTABLE))
    return errs


# ---------------------------------------------------------------------------------------------------- Job


def _validate_job_spec(spec: dict, field: str, *, generated_selector: bool) -> list[Cause]:
    errs: list[Cause] = []
    errs += _nonnegative(spec.get("parallelism"), f"{field}.parallelism")
    errs += _nonnegative(spec.get("completions"), f"{field}.completions")
    errs += _positive(spec.get("activeDeadlineSeconds"), f"{field}.activeDeadlineSeconds")
    errs += _nonnegative(spec.get("backoffLimit"), f"{field}.backoffLimit")
    errs += _nonnegative(spec.get("ttlSecondsAfterFinished"), f"{field}.ttlSecondsAfterFinished")
    mode = spec.get("completionMode")
    if mode not in (None, "NonIndexed", "Indexed"):
        errs.append(not_supported(f"{field}.completionMode", mode, ("NonIndexed", "Indexed")))
    if mode == "Indexed" and spec.get("completions") is None:
        errs.append(required(f"{field}.completions", "when completion mode is Indexed"))
    template = _d(spec.get("template"))
    selector = spec.get("selector")
    if generated_selector:
        if not isinstance(selector, dict):
            errs.append(required(f"{field}.selector"))
        labels = _d(_d(template.get("metadata")).get("labels"))
        match = _d(_d(selector).get("matchLabels"))
        if match and not all(labels.get(k) == v for k, v in match.items()):
            errs.append(invalid(f"{field}.template.metadata.labels", go_map(labels),
                                "`selector` does not match template `labels`"))
    errs += validate_pod_template(template, f"{field}.template")
    rp = _s(_d(template.get("spec")).get("restartPolicy"))
    if rp not in ("OnFailure", "Never"):
        errs.append(not_supported(f"{field}.template.spec.restartPolicy", rp, ("OnFailure", "Never")))
    return errs


def validate_job(obj: dict, old: dict | None) -> list[Cause]:
    spec = _d(obj.get("spec"))
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs += validate_object_meta(obj.get("metadata"), True, name_is_dns_subdomain)
    errs += _validate_job_spec(spec, "spec", generated_selector=True)
    if old is not None:
        ospec = _d(old.get("spec"))
        if spec.get("selector") != ospec.get("selector"):
            errs.append(invalid("spec.selector", label_selector_repr(spec.get("selector")), FIELD_IMMUTABLE))
        if spec.get("completionMode") != ospec.get("completionMode"):
            errs.append(invalid("spec.completionMode", spec.get("completionMode"), FIELD_IMMUTABLE))
        if spec.get("completionMode") != "Indexed" and spec.get("completions") != ospec.get("completions"):
            errs.append(invalid("spec.completions", spec.get("completions"), FIELD_IMMUTABLE))
        suspended = bool(ospec.get("suspend")) and not (old.get("status") or {}).get("startTime")
        if spec.get("template") != ospec.get("template") and not suspended:
            errs.append(invalid("spec.template", GoValue("core.PodTemplateSpec{...}"), FIELD_IMMUTABLE))
    return errs


# ---------------------------------------------------------------------------------------------------- CronJob


def _validate_schedule(schedule: str, time_zone: Any) -> list[Cause]:
    if not schedule:
        return [required("spec.schedule")]
    errs: list[Cause] = []
    try:
        cron.parse(schedule)
    except cron.CronError as exc:
        errs.append(invalid("spec.schedule", schedule, str(exc)))
    if "TZ" in schedule:
        errs.append(invalid("spec.schedule", schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field "
                                                       "instead"))
    if isinstance(time_zone, str):
        try:
            if time_zone.lower() == "local" or not time_zone:
                raise ZoneInfoNotFoundError(time_zone)
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            errs.append(invalid("spec.timeZone", time_zone, "unknown time zone " + time_zone))
    return errs


def validate_cron_job(obj: dict, old: dict | None) -> list[Cause]:
    spec = _d(obj.get("spec"))
    meta = _d(obj.get("metadata"))
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs += validate_object_meta(meta, True, name_is_dns_subdomain)
    name = _s(meta.get("name"))
    if len(name) > CRONJOB_NAME_MAX:
        errs.append(invalid("metadata.name", name, f"must be no more than {CRONJOB_NAME_MAX} characters"))
    errs += _validate_schedule(_s(spec.get("schedule")), spec.get("timeZone"))
    errs += _nonnegative(spec.get("startingDeadlineSeconds"), "spec.startingDeadlineSeconds")
    policy = _s(spec.get("concurrencyPolicy"))
    if policy not in ("Allow", "Forbid", "Replace"):
        if not policy:
            errs.append(required("spec.concurrencyPolicy"))
        else:
            errs.append(not_supported("spec.concurrencyPolicy", policy, ("Allow", "Forbid", "Replace")))
    errs += _nonnegative(spec.get("successfulJobsHistoryLimit"), "spec.successfulJobsHistoryLimit")
    errs += _nonnegative(spec.get("failedJobsHistoryLimit"), "spec.failedJobsHistoryLimit")
    job_template = _d(spec.get("jobTemplate"))
    job_meta = _d(job_template.get("metadata"))
    errs += validate_labels(job_meta.get("labels"), "spec.jobTemplate.metadata.labels")
    errs += validate_annotations(job_meta.get("annotations"), "spec.jobTemplate.metadata.annotations")
    job_spec = _d(job_template.get("spec"))
    if job_spec.get("manualSelector") or job_spec.get("selector") is not None:
        errs.append(forbidden("spec.jobTemplate.spec.selector", "`selector` will be auto-generated"))
    errs += _validate_job_spec(job_spec, "spec.jobTemplate.spec", generated_selector=False)
    return errs
