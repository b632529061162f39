"""The PATCH content types: merge patch, JSON patch and strategic merge patch."""

from __future__ import annotations

import copy
import json

import pytest

from labkit.apiserver.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from labkit.errors import BadRequest, Invalid


def deployment() -> dict:
    """A Deployment as the API server stores it after `kubectl apply` (defaulted fields included)."""
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx"}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "nginx"}},
                         "template": {"metadata": {"labels": {"app": "nginx"}},
                                      "spec": {"containers": [{"name": "nginx", "image": "nginx:1.19"}]}}}}
    live = copy.deepcopy(manifest)
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(manifest) + "\n"}
    live["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    container = live["spec"]["template"]["spec"]["containers"][0]
    container.update({"imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                      "ports": [{"containerPort": 80, "protocol": "TCP"}],
                      "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]})
    live["spec"]["template"]["spec"]["tolerations"] = [{"key": "a", "operator": "Exists"}]
    live["metadata"]["finalizers"] = ["example.com/a", "example.com/b"]
    return live


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


# -- merge patch ---------------------------------------------------------------------------------------------


def test_merge_patch_merges_objects_replaces_lists_and_null_deletes() -> None:
    live = deployment()
    before = copy.deepcopy(live)
    out = merge_patch(live, {"spec": {"replicas": 2 + 1, "strategy": None},
                             "metadata": {"labels": {"tier": "web"}, "finalizers": ["x"]}})
    assert out["spec"]["replicas"] == 3
    assert "strategy" not in out["spec"]
    assert out["metadata"]["labels"] == {"app": "nginx", "tier": "web"}
    assert out["metadata"]["finalizers"] == ["x"]  # RFC 7386: a list is a value like any other
    assert live == before


def test_merge_patch_rejects_a_non_object() -> None:
    with pytest.raises(PatchError) as info:
        merge_patch(deployment(), [1])  # type: ignore[arg-type]
    assert info.value.code == 400
    assert isinstance(info.value.to_api_error(), BadRequest)


# -- JSON patch ----------------------------------------------------------------------------------------------


def test_json_patch_applies_operations_without_touching_the_input() -> None:
    live = deployment()
    before = copy.deepcopy(live)
    out = json_patch(live, [
        {"op": "test", "path": "/spec/replicas", "value": 2},
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/labels/tier", "value": "web"},
        {"op": "remove", "path": "/spec/template/spec/containers/0/env/0"},
    ])
    assert out["spec"]["replicas"] == 5
    assert out["metadata"]["labels"]["tier"] == "web"
    assert [e["name"] for e in containers(out)[0]["env"]] == ["B"]
    assert live == before


def test_json_patch_failed_test_is_a_422_worded_like_the_api_server() -> None:
    with pytest.raises(PatchError) as info:
        json_patch(deployment(), [{"op": "test", "path": "/spec/replicas", "value": 7}])
    assert info.value.code == 422
    assert str(info.value) == "testing value /spec/replicas failed: test failed"
    error = info.value.to_api_error()
    assert isinstance(error, Invalid)
    assert error.status()["message"] == "the server rejected our request due to an error in our request"
    assert error.causes == [{"message": "testing value /spec/replicas failed: test failed"}]


def test_json_patch_on_a_missing_path() -> None:
    with pytest.raises(PatchError) as info:
        json_patch(deployment(), [{"op": "replace", "path": "/spec/nothing/here", "value": 1}])
    assert info.value.code == 422
    assert str(info.value) == \
        'replace operation does not apply: doc is missing path: "/spec/nothing/here": missing value'


# -- strategic merge patch -------------------------------------------------------------------------------------


def test_kubectl_client_side_apply_body_updates_image_and_replicas() -> None:
    """The PATCH kubectl sends for `kubectl apply` of a changed manifest (kubectl-contract.md §4)."""
    live = deployment()
    before = copy.deepcopy(live)
    annotation = '{"apiVersion":"apps/v1","kind":"Deployment","...":"..."}\n'
    body = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": annotation}},
            "spec": {"replicas": 3, "template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [{"image": "nginx:1.20", "name": "nginx"}]}}}}
    out = strategic_merge_patch(live, body, "Deployment")

    assert out["spec"]["replicas"] == 3
    [container] = containers(out)
    assert container["image"] == "nginx:1.20"
    # The other fields of the container, defaulted by the server, survive the merge by name.
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == annotation
    assert "$setElementOrder/containers" not in out["spec"]["template"]["spec"]
    assert out["spec"]["strategy"] == live["spec"]["strategy"]
    assert live == before


def test_containers_merge_by_name_and_set_element_order_reorders() -> None:
    live = deployment()
    body = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}],
        "containers": [{"name": "sidecar", "image": "busybox"}]}}}}
    out = strategic_merge_patch(live, body, "Deployment")
    assert [c["name"] for c in containers(out)] == ["sidecar", "nginx"]
    assert containers(out)[1]["image"] == "nginx:1.19"


def test_patch_delete_directive_removes_a_list_element() -> None:
    live = strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {
        "containers": [{"name": "sidecar", "image": "busybox"}]}}}}, "Deployment")
    assert [c["name"] for c in containers(live)] == ["nginx", "sidecar"]
    out = strategic_merge_patch(live, {"spec": {"template": {"spec": {
        "containers": [{"name": "sidecar", "$patch": "delete"}]}}}}, "Deployment")
    assert [c["name"] for c in containers(out)] == ["nginx"]


def test_env_merges_by_name_and_null_deletes_a_field() -> None:
    body = {"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
         "imagePullPolicy": None}]}}}}
    out = strategic_merge_patch(deployment(), body, "Deployment")
    [container] = containers(out)
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "two"}, {"name": "C", "value": "3"}]
    assert "imagePullPolicy" not in container


def test_container_ports_merge_by_container_port() -> None:
    body = {"spec": {"template": {"spec": {"containers": [
        {"name": "nginx", "ports": [{"containerPort": 443}, {"containerPort": 80, "name": "http"}]}]}}}}
    out = strategic_merge_patch(deployment(), body, "Deployment")
    assert containers(out)[0]["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"},
                                           {"containerPort": 443}]


def test_service_ports_merge_by_port() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx"},
           "spec": {"selector": {"app": "nginx"}, "ports": [
               {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80},
               {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}]}}
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}, "Service")
    assert out["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                                    {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}]
    # The selector is a plain map for strategic merge: keys merge, null removes one.
    out = strategic_merge_patch(svc, {"spec": {"selector": {"app": None, "tier": "web"}}}, "Service")
    assert out["spec"]["selector"] == {"tier": "web"}


def test_lists_without_a_strategy_are_replaced() -> None:
    out = strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {
        "tolerations": [{"key": "b", "operator": "Exists"}]}}}}, "Deployment")
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_finalizers_are_a_merged_set_with_delete_from_primitive_list() -> None:
    live = deployment()
    out = strategic_merge_patch(live, {"metadata": {"finalizers": ["example.com/b", "example.com/c"]}}, "Deployment")
    assert out["metadata"]["finalizers"] == ["example.com/a", "example.com/b", "example.com/c"]
    out = strategic_merge_patch(live, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}},
                                "Deployment")
    assert out["metadata"]["finalizers"] == ["example.com/b"]


def test_retain_keys_clears_the_other_strategy_fields() -> None:
    """kubectl's patch for switching a Deployment to Recreate."""
    body = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None}}}
    out = strategic_merge_patch(deployment(), body, "Deployment")
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_patch_replace_directive_on_a_map_and_on_a_list() -> None:
    live = deployment()
    out = strategic_merge_patch(live, {"metadata": {"labels": {"$patch": "replace", "tier": "web"}}}, "Deployment")
    assert out["metadata"]["labels"] == {"tier": "web"}
    out = strategic_merge_patch(live, {"spec": {"template": {"spec": {"containers": [
        {"$patch": "replace"}, {"name": "only", "image": "busybox"}]}}}}, "Deployment")
    assert containers(out) == [{"name": "only", "image": "busybox"}]


def test_missing_merge_key_is_an_error() -> None:
    with pytest.raises(PatchError) as info:
        strategic_merge_patch(deployment(), {"spec": {"template": {"spec": {"containers": [
            {"image": "busybox"}]}}}}, "Deployment")
    assert str(info.value) == "map: map[image:busybox] does not contain declared merge key: name"


def test_owner_references_merge_by_uid() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": True}]}}
    out = strategic_merge_patch(pod, {"metadata": {"ownerReferences": [
        {"uid": "u1", "blockOwnerDeletion": True}, {"uid": "u2", "name": "other"}]}}, "Pod")
    assert out["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": True,
         "blockOwnerDeletion": True},
        {"uid": "u2", "name": "other"}]
