"""What the DaemonSet and Job registry strategies add to an object on write (pkg/registry/apps/daemonset,
pkg/registry/batch/job strategy.go), beyond defaulting.

- A Job whose `manualSelector` is not true gets a generated selector: its template is labelled
  `batch.kubernetes.io/controller-uid` / `controller-uid` (the Job's uid) and `batch.kubernetes.io/job-name` /
  `job-name`, and `spec.selector.matchLabels` selects `batch.kubernetes.io/controller-uid`.
- A DaemonSet carries its template generation (1 on create, +1 whenever `spec.template` changes) in the
  annotation `deprecated.daemonset.template.generation`, where the v1 API keeps the internal field; its pods
  are labelled `pod-template-generation` with it.
"""

from __future__ import annotations

from typing import Any

JOB_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")
JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
JOB_SELECTOR_LABEL = "batch.kubernetes.io/controller-uid"
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def _obj(parent: dict, key: str) -> dict[str, Any]:
    if not isinstance(parent.get(key), dict):
        parent[key] = {}
    return parent[key]


def _generate_job_selector(job: dict) -> None:
    meta = job["metadata"]
    spec = _obj(job, "spec")
    labels = _obj(_obj(_obj(spec, "template"), "metadata"), "labels")
    for key in JOB_NAME_LABELS:
        labels.setdefault(key, meta["name"])  # a label the user set stays (validation rejects a conflict)
    for key in JOB_UID_LABELS:
        labels.setdefault(key, meta["uid"])
    _obj(_obj(spec, "selector"), "matchLabels").setdefault(JOB_SELECTOR_LABEL, meta["uid"])


def prepare_for_create(plural: str, obj: dict) -> None:
    if plural == "jobs" and not (obj.get("spec") or {}).get("manualSelector"):
        _generate_job_selector(obj)
    elif plural == "daemonsets":
        annotations = _obj(obj["metadata"], "annotations")
        if int(annotations.get(TEMPLATE_GENERATION) or 0) < 1:
            annotations[TEMPLATE_GENERATION] = "1"


def prepare_for_update(plural: str, new: dict, old: dict) -> None:
    if plural != "daemonsets":
        return
    generation = int(((old["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION)) or 1)
    if (new.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
        generation += 1
    _obj(new["metadata"], "annotations")[TEMPLATE_GENERATION] = str(generation)
