"""normalize(): objects come back as Go's decode/encode round trip leaves them (encoding/json's rules)."""

from __future__ import annotations

import copy
from pathlib import Path

from labkit import kinds
from labkit.apiserver import defaults
from labkit.apiserver.normalize import normalize
from labkit.apiserver.registry import Registry
from labkit.apiserver.storage import Store

SVC = kinds.lookup("services")
POD = kinds.lookup("pods")
DEPLOY = kinds.lookup("deployments")
SLICE = kinds.lookup("endpointslices")


def test_empty_omitempty_fields_vanish() -> None:
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "a", "labels": {}, "annotations": None, "finalizers": [], "generateName": ""},
           "spec": {"selector": {}, "clusterIP": "", "externalIPs": [], "ports": [
               {"name": "", "port": 80, "nodePort": 0, "protocol": "TCP", "targetPort": 80}]},
           "status": {"loadBalancer": {}}}
    assert normalize(SVC, svc) == {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "creationTimestamp": None},
        "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]},
        "status": {"loadBalancer": {}}}


def test_input_is_not_changed() -> None:
    svc = {"metadata": {"name": "a", "labels": {}}, "spec": {"selector": {}}}
    before = copy.deepcopy(svc)
    normalize(SVC, svc)
    assert svc == before


def test_pointer_fields_keep_a_present_zero_and_drop_null() -> None:
    dep = {"metadata": {"name": "d"}, "spec": {"replicas": 0, "paused": False, "revisionHistoryLimit": None,
                                                "selector": {"matchLabels": {"app": "d"}}}}
    spec = normalize(DEPLOY, dep)["spec"]
    assert spec["replicas"] == 0  # *int32: a zero that was sent stays
    assert "paused" not in spec  # bool, omitempty: false vanishes
    assert "revisionHistoryLimit" not in spec  # nil pointer, omitempty


def test_non_pointer_structs_are_always_written() -> None:
    dep = {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {
        "metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    out = normalize(DEPLOY, dep)
    assert out["spec"]["strategy"] == {}
    assert out["spec"]["template"]["metadata"] == {"labels": {"app": "d"}, "creationTimestamp": None}
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "c", "image": "nginx", "resources": {}}]
    assert out["status"] == {}


def test_fields_without_omitempty_are_written_as_go_zero_values() -> None:
    out = normalize(SLICE, {"metadata": {"name": "s"}, "addressType": "IPv4"})
    assert out["endpoints"] is None and out["ports"] is None  # nil slices without omitempty: null
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]},
           "status": {"conditions": [{"type": "Ready", "status": "True"}],
                      "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "restartCount": 0}]}}
    status = normalize(POD, pod)["status"]
    assert status["conditions"] == [{"type": "Ready", "status": "True", "lastProbeTime": None,
                                     "lastTransitionTime": None}]
    assert status["containerStatuses"][0]["ready"] is False  # bool without omitempty
    assert status["containerStatuses"][0]["imageID"] == ""
    assert status["containerStatuses"][0]["state"] == {}  # a non-pointer struct


def test_special_types_zero_values_and_time_encoding() -> None:
    pod = {"metadata": {"name": "p", "creationTimestamp": "2024-05-01T12:00:00.250+02:00"},
           "spec": {"containers": [{"name": "c", "image": "i", "env": [
               {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}]}}
    out = normalize(POD, pod)
    assert out["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"  # RFC 3339 seconds, UTC
    ref = out["spec"]["containers"][0]["env"][0]["valueFrom"]["resourceFieldRef"]
    assert ref == {"resource": "limits.cpu", "divisor": "0"}  # a zero Quantity is "0"


def test_unknown_fields_are_dropped_and_reported() -> None:
    pod = {"metadata": {"name": "p", "labels": {"x": "y"}, "bogus": 1},
           "spec": {"containers": [{"name": "c", "image": "i", "imagee": "j"}], "extra": {"a": 1}}}
    dropped: list[str] = []
    out = normalize(POD, pod, dropped)
    assert dropped == ["metadata.bogus", "spec.containers[0].imagee", "spec.extra"]
    assert "bogus" not in out["metadata"] and out["metadata"]["labels"] == {"x": "y"}
    assert "imagee" not in out["spec"]["containers"][0] and "extra" not in out["spec"]


def test_inlined_structs_keep_their_fields() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "i",
                        "readinessProbe": {"httpGet": {"port": 80, "path": "/"}, "periodSeconds": 0}}],
        "volumes": [{"name": "v", "emptyDir": {}}]}}
    out = normalize(POD, pod)
    assert out["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]  # a pointer struct that was sent stays
    assert out["spec"]["containers"][0]["readinessProbe"] == {"httpGet": {"port": 80, "path": "/"}}


def test_annotations_and_wrongly_typed_values_are_untouched() -> None:
    applied = '{"apiVersion":"v1","kind":"Service","metadata":{"labels":{}}}\n'
    svc = {"metadata": {"name": "a", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied}},
           "spec": {"ports": "not-a-list"}}
    out = normalize(SVC, svc)
    assert out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == applied
    assert out["spec"]["ports"] == "not-a-list"  # left for validation to reject


def test_normalising_twice_changes_nothing() -> None:
    dep = {"metadata": {"name": "d", "labels": {}}, "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {
        "metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    once = normalize(DEPLOY, dep)
    assert normalize(DEPLOY, once) == once


def test_registry_stores_normalised_objects(tmp_path: Path) -> None:
    registry = Registry(Store(tmp_path / "s.db"))
    registry.create(kinds.lookup("namespaces"), None, {"metadata": {"name": "default"}}, manager="t")
    body = {"metadata": {"name": "a", "labels": {}}, "spec": {"selector": {}, "ports": [{"port": 80}], "bogus": 1}}
    dropped: list[str] = []
    created = registry.create(SVC, "default", body, manager="t", warnings=dropped)
    assert "labels" not in created["metadata"] and "selector" not in created["spec"]
    assert "bogus" not in created["spec"] and dropped == ["spec.bogus"]
    assert created["status"] == {"loadBalancer": {}}
    # An update that only re-adds empty fields is a no-op: the resourceVersion stays.
    again = copy.deepcopy(created)
    again["metadata"]["labels"] = {}
    again["spec"]["selector"] = {}
    updated, _ = registry.update(SVC, "default", "a", again, manager="t")
    assert updated["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def running_pod() -> dict:
    """A defaulted pod of a ReplicaSet, with a running pod's status (bench_apiserver.py times normalising it)."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "web-7b54d48599-2j79v", "namespace": "default", "labels": {"app": "web", "pod-template-hash": "x"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7b54d48599", "uid": "u",
                             "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.19", "ports": [{"containerPort": 80}],
                                 "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}}
    defaults.apply_defaults(POD, pod)
    pod["status"] = {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}], "conditions": [
        {"type": t, "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}
        for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]}
    return pod


def test_a_normalised_pod_is_normalised_already() -> None:
    # What the API server stored comes back through the same decode/encode unchanged, and the input is untouched.
    pod = running_pod()
    before = copy.deepcopy(pod)
    once = normalize(POD, pod)
    assert pod == before
    assert normalize(POD, copy.deepcopy(once)) == once
    assert once["status"]["podIP"] == "10.244.0.5" and once["spec"]["containers"][0]["image"] == "nginx:1.19"
