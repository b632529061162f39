"""DaemonSet, Job and CronJob with real kubectl, as the Kubernetes pages drive them ("Jobs", "Running
Automated Tasks with a CronJob", "DaemonSet", "Perform a Rolling Update on a DaemonSet")."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.integration

DAEMONSET = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: fluentd-elasticsearch
spec:
  selector:
    matchLabels:
      name: fluentd-elasticsearch
  template:
    metadata:
      labels:
        name: fluentd-elasticsearch
    spec:
      containers:
      - name: fluentd-elasticsearch
        image: busybox
        command: ["sleep", "infinity"]
"""


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


@pytest.mark.parametrize("version", ["1.28", "1.32", "1.33"])
def test_job_runs_to_completion(cluster: Cluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    assert k(*n, "create", "job", "hello", "--image=busybox", "--", "sh", "-c", "echo hello from the job",
             version=version).stdout.strip() == "job.batch/hello created"
    assert k(*n, "wait", "--for=condition=complete", "job/hello", "--timeout=60s",
             version=version).stdout.strip() == "job.batch/hello condition met"
    rows = _rows(k(*n, "get", "jobs", version=version).stdout)
    assert rows[0] == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert rows[1][:3] == ["hello", "Complete", "1/1"]
    (pod,) = _rows(k(*n, "get", "pods", "--selector=batch.kubernetes.io/job-name=hello", version=version).stdout)[1:]
    assert re.fullmatch(r"hello-[bcdfghjklmnpqrstvwxz2456789]{5}", pod[0]) and pod[2] == "Completed"
    assert k(*n, "logs", "job/hello", version=version).stdout == "hello from the job\n"
    job = json.loads(k(*n, "get", "job", "hello", "-o", "json", version=version).stdout)
    assert [c["type"] for c in job["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert job["spec"]["selector"]["matchLabels"] == {"batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}


def test_failing_job_stops_at_its_backoff_limit(cluster: Cluster, namespace: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    k(*n, "create", "-f", "-", input=json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fails"},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox", "command": ["sh", "-c", "exit 3"]}]}}}}))
    assert k(*n, "wait", "--for=condition=failed", "job/fails", "--timeout=60s").returncode == 0
    job = json.loads(k(*n, "get", "job", "fails", "-o", "json").stdout)
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == ("BackoffLimitExceeded",
                                                     "Job has reached the specified backoff limit")
    assert _rows(k(*n, "get", "job", "fails").stdout)[1][:3] == ["fails", "Failed", "0/1"]


def test_job_validation_messages(cluster: Cluster, namespace: str) -> None:
    proc = cluster.kubectl("-n", namespace, "create", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "always"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
    assert proc.returncode == 1
    assert ('The Job "always" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": supported '
            'values: "OnFailure", "Never"') in proc.stderr
    proc = cluster.kubectl("-n", namespace, "create", "cronjob", "bad", "--image=busybox", "--schedule=61 * * * *",
                           check=False)
    assert proc.returncode == 1
    assert 'spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61' in proc.stderr


def test_cronjob_and_job_from_cronjob(cluster: Cluster, namespace: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    assert k(*n, "create", "cronjob", "hello", "--image=busybox", "--schedule=*/1 * * * *", "--", "sh", "-c",
             "date; echo Hello from the Kubernetes cluster").stdout.strip() == "cronjob.batch/hello created"
    rows = _rows(k(*n, "get", "cronjob", "hello").stdout)
    assert rows[0] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert rows[1][:8] == ["hello", "*/1", "*", "*", "*", "*", "<none>", "False"]
    assert k(*n, "create", "job", "manual", "--from=cronjob/hello").stdout.strip() == "job.batch/manual created"
    k(*n, "wait", "--for=condition=complete", "job/manual", "--timeout=60s")
    assert "Hello from the Kubernetes cluster" in k(*n, "logs", "job/manual").stdout
    job = json.loads(k(*n, "get", "job", "manual", "-o", "json").stdout)
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    # deleting the CronJob takes its Jobs and their pods with it
    k(*n, "delete", "cronjob", "hello")
    wait_for(lambda: k(*n, "get", "jobs,pods", "-o", "name").stdout.strip() == "", "the cronjob's jobs and pods to go")


def test_daemonset_pod_per_node_and_rolling_update(cluster: Cluster, namespace: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    k(*n, "apply", "-f", "-", input=DAEMONSET)
    k(*n, "rollout", "status", "ds/fluentd-elasticsearch", "--timeout=60s")
    rows = _rows(k(*n, "get", "ds").stdout)
    assert rows[0] == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR", "AGE"]
    assert rows[1][:7] == ["fluentd-elasticsearch", "1", "1", "1", "1", "1", "<none>"]
    pods = json.loads(k(*n, "get", "pods", "-o", "json").stdout)["items"]
    (pod,) = pods
    assert pod["spec"]["nodeName"] == "labkit-control-plane"
    assert pod["metadata"]["labels"]["pod-template-generation"] == "1"
    k(*n, "set", "image", "ds/fluentd-elasticsearch", "fluentd-elasticsearch=alpine")
    k(*n, "rollout", "status", "ds/fluentd-elasticsearch", "--timeout=60s")
    pods = wait_for(lambda: [p for p in json.loads(k(*n, "get", "pods", "-o", "json").stdout)["items"]
                             if not p["metadata"].get("deletionTimestamp")], "the updated pod")
    assert [p["spec"]["containers"][0]["image"] for p in pods] == ["alpine"]
    assert pods[0]["metadata"]["labels"]["pod-template-generation"] == "2"
    rows = {r[0]: r for r in _rows(k("api-resources").stdout)[1:]}
    assert rows["daemonsets"][1:] == ["ds", "apps/v1", "true", "DaemonSet"]
    assert rows["cronjobs"][1:] == ["cj", "batch/v1", "true", "CronJob"]
    assert rows["jobs"][1:] == ["batch/v1", "true", "Job"]
