"""Registry semantics (the REST verbs) against a real Store, without HTTP."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import errors, kinds
from labkit.apiserver.registry import Registry
from labkit.apiserver.selectors import parse_field_selector, parse_label_selector
from labkit.apiserver.storage import Store

NS = kinds.lookup("namespaces")
NODE = kinds.lookup("nodes")
POD = kinds.lookup("pods")
SVC = kinds.lookup("services")
DEPLOY = kinds.lookup("deployments")
CM_MANAGER = "test"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    store = Store(tmp_path / "s.db")
    reg = Registry(store, rng=random.Random(1))
    reg.create(NS, None, {"metadata": {"name": "default"}}, manager=CM_MANAGER)
    yield reg
    store.close()


def _svc(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}


def _pod(name: str, node: str | None = None, **labels: str) -> dict:
    spec: dict = {"containers": [{"name": "c", "image": "nginx"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "labels": labels}, "spec": spec}


def _deploy(name: str, replicas: int = 1) -> dict:
    return {"metadata": {"name": name}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def _node(registry: Registry, name: str, ready: bool) -> None:
    registry.create(NODE, None, {"metadata": {"name": name}}, manager=CM_MANAGER)
    node = registry.get(NODE, None, name)
    node = json.loads(json.dumps(node))
    node["status"] = {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    registry.update(NODE, None, name, node, sub="status", manager=CM_MANAGER)


def _names(items: list[dict]) -> list[str]:
    return [o["metadata"]["name"] for o in items]


# -- create -----------------------------------------------------------------------------------

def test_generate_name_appends_five_characters_of_the_upstream_alphabet(registry: Registry) -> None:
    obj = registry.create(SVC, "default", {"metadata": {"generateName": "web-"}, "spec": {"ports": [{"port": 80}]}},
                          manager=CM_MANAGER)
    name = obj["metadata"]["name"]
    assert name.startswith("web-") and len(name) == len("web-") + 5
    assert set(name[4:]) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert obj["metadata"]["generateName"] == "web-"


def test_create_needs_a_name_or_generate_name(registry: Registry) -> None:
    with pytest.raises(errors.Invalid) as info:
        registry.create(SVC, "default", {"metadata": {}, "spec": {"ports": [{"port": 80}]}}, manager=CM_MANAGER)
    assert info.value.causes[0]["field"] == "metadata.name"


def test_create_in_a_missing_namespace_is_not_found(registry: Registry) -> None:
    with pytest.raises(errors.NotFound) as info:
        registry.create(SVC, "x", _svc("a"), manager=CM_MANAGER)
    assert info.value.code == 404 and info.value.message == 'namespaces "x" not found'


def test_create_in_a_terminating_namespace_is_forbidden(registry: Registry) -> None:
    registry.create(NS, None, {"metadata": {"name": "gone"}}, manager=CM_MANAGER)
    registry.delete(NS, None, "gone", {})
    with pytest.raises(errors.Forbidden) as info:
        registry.create(SVC, "gone", _svc("a"), manager=CM_MANAGER)
    assert info.value.code == 403
    assert info.value.message == "unable to create new content in namespace gone because it is being terminated"


def test_create_twice_is_already_exists(registry: Registry) -> None:
    registry.create(SVC, "default", _svc("a"), manager=CM_MANAGER)
    with pytest.raises(errors.AlreadyExists) as info:
        registry.create(SVC, "default", _svc("a"), manager=CM_MANAGER)
    assert info.value.code == 409 and info.value.message == 'services "a" already exists'


def test_created_objects_get_server_metadata(registry: Registry) -> None:
    body = _svc("a")
    body["metadata"].update(uid="mine", creationTimestamp="2000-01-01T00:00:00Z")
    obj = registry.create(SVC, "default", body, manager=CM_MANAGER)
    meta = obj["metadata"]
    assert meta["uid"] != "mine" and meta["creationTimestamp"] != "2000-01-01T00:00:00Z"
    assert meta["namespace"] == "default" and int(meta["resourceVersion"]) == registry.store.rv
    assert obj["apiVersion"] == "v1" and obj["kind"] == "Service"


# -- update -----------------------------------------------------------------------------------

def test_stale_resource_version_conflicts(registry: Registry) -> None:
    first = registry.create(SVC, "default", _svc("a"), manager=CM_MANAGER)
    changed = json.loads(json.dumps(first))
    changed["metadata"]["labels"] = {"v": "2"}
    registry.update(SVC, "default", "a", changed, manager=CM_MANAGER)
    stale = json.loads(json.dumps(first))
    stale["metadata"]["labels"] = {"v": "3"}
    with pytest.raises(errors.Conflict) as info:
        registry.update(SVC, "default", "a", stale, manager=CM_MANAGER)
    assert info.value.code == 409
    assert info.value.message == ('Operation cannot be fulfilled on services "a": the object has been modified; '
                                  "please apply your changes to the latest version and try again")


def test_update_without_resource_version_is_unconditional(registry: Registry) -> None:
    obj = registry.create(SVC, "default", _svc("a"), manager=CM_MANAGER)
    body = json.loads(json.dumps(obj))
    del body["metadata"]["resourceVersion"]
    body["metadata"]["labels"] = {"v": "2"}
    updated, created = registry.update(SVC, "default", "a", body, manager=CM_MANAGER)
    assert not created and updated["metadata"]["labels"] == {"v": "2"}


def test_no_op_update_keeps_resource_version(registry: Registry) -> None:
    obj = registry.create(SVC, "default", _svc("a"), manager=CM_MANAGER)
    rv = registry.store.rv
    same, _ = registry.update(SVC, "default", "a", json.loads(json.dumps(obj)), manager=CM_MANAGER)
    assert same["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    assert registry.store.rv == rv


def test_generation_counts_spec_changes_of_apps_kinds_only(registry: Registry) -> None:
    dep = registry.create(DEPLOY, "default", _deploy("web"), manager=CM_MANAGER)
    assert dep["metadata"]["generation"] == 1
    relabelled = json.loads(json.dumps(dep))
    relabelled["metadata"]["labels"] = {"x": "y"}
    dep, _ = registry.update(DEPLOY, "default", "web", relabelled, manager=CM_MANAGER)
    assert dep["metadata"]["generation"] == 1
    scaled = json.loads(json.dumps(dep))
    scaled["spec"]["replicas"] = 3
    dep, _ = registry.update(DEPLOY, "default", "web", scaled, manager=CM_MANAGER)
    assert dep["metadata"]["generation"] == 2
    svc = registry.create(SVC, "default", _svc("a"), manager=CM_MANAGER)
    svc["spec"]["ports"] = [{"port": 81}]
    svc, _ = registry.update(SVC, "default", "a", svc, manager=CM_MANAGER)
    assert "generation" not in svc["metadata"]


def test_status_subresource_writes_only_status(registry: Registry) -> None:
    dep = registry.create(DEPLOY, "default", _deploy("web"), manager=CM_MANAGER)
    body = json.loads(json.dumps(dep))
    body["status"] = {"replicas": 1, "readyReplicas": 1}
    body["spec"]["replicas"] = 5
    body["metadata"]["labels"] = {"sneaky": "yes"}
    dep, _ = registry.update(DEPLOY, "default", "web", body, sub="status", manager=CM_MANAGER)
    assert dep["status"] == {"replicas": 1, "readyReplicas": 1}
    assert dep["spec"]["replicas"] == 1 and "labels" not in dep["metadata"]
    assert dep["metadata"]["generation"] == 1


def test_main_resource_update_ignores_status(registry: Registry) -> None:
    dep = registry.create(DEPLOY, "default", _deploy("web"), manager=CM_MANAGER)
    body = json.loads(json.dumps(dep))
    body["status"] = {"replicas": 7}
    body["spec"]["replicas"] = 2
    dep, _ = registry.update(DEPLOY, "default", "web", body, manager=CM_MANAGER)
    assert dep["spec"]["replicas"] == 2 and dep["status"] == {}


def test_update_of_a_missing_object_is_not_found_except_create_on_update_kinds(registry: Registry) -> None:
    with pytest.raises(errors.NotFound):
        registry.update(SVC, "default", "nope", _svc("nope"), manager=CM_MANAGER)
    ep = {"metadata": {"name": "manual"}, "subsets": [{"addresses": [{"ip": "10.244.0.9"}], "ports": [{"port": 80}]}]}
    obj, created = registry.update(kinds.lookup("endpoints"), "default", "manual", ep, manager=CM_MANAGER)
    assert created and obj["subsets"][0]["addresses"] == [{"ip": "10.244.0.9"}]


# -- patch ------------------------------------------------------------------------------------

def test_merge_patch_with_stale_resource_version_conflicts(registry: Registry) -> None:
    registry.create(SVC, "default", _svc("a"), manager=CM_MANAGER)
    patch = json.dumps({"metadata": {"resourceVersion": "1", "labels": {"x": "y"}}}).encode()
    with pytest.raises(errors.Conflict):
        registry.patch(SVC, "default", "a", patch, "application/merge-patch+json", manager=CM_MANAGER)
    obj, _ = registry.patch(SVC, "default", "a", b'{"metadata":{"labels":{"x":"y"}}}',
                            "application/merge-patch+json", manager=CM_MANAGER)
    assert obj["metadata"]["labels"] == {"x": "y"}


def test_patch_of_a_missing_object_is_not_found(registry: Registry) -> None:
    with pytest.raises(errors.NotFound):
        registry.patch(SVC, "default", "nope", b"{}", "application/merge-patch+json", manager=CM_MANAGER)


# -- finalizers and deletion ------------------------------------------------------------------

def test_delete_with_a_finalizer_marks_and_removing_the_last_one_deletes(registry: Registry) -> None:
    body = _svc("a")
    body["metadata"]["finalizers"] = ["example.com/hold", "example.com/other"]
    registry.create(SVC, "default", body, manager=CM_MANAGER)
    marked = registry.delete(SVC, "default", "a", {})
    assert marked["metadata"]["deletionTimestamp"] and marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert registry.store.get(("", "services"), "default", "a") is not None
    # No new finalizers once deletion started.
    more = json.loads(json.dumps(marked))
    more["metadata"]["finalizers"].append("example.com/late")
    with pytest.raises(errors.Invalid):
        registry.update(SVC, "default", "a", more, manager=CM_MANAGER)
    one_left, _ = registry.patch(SVC, "default", "a", b'{"metadata":{"finalizers":["example.com/other"]}}',
                                 "application/merge-patch+json", manager=CM_MANAGER)
    assert one_left["metadata"]["finalizers"] == ["example.com/other"]
    events = []
    registry.store.subscribe(events.append)
    registry.patch(SVC, "default", "a", b'{"metadata":{"finalizers":null}}', "application/merge-patch+json",
                   manager=CM_MANAGER)
    assert registry.store.get(("", "services"), "default", "a") is None
    assert [e.type for e in events] == ["DELETED"]
    with pytest.raises(errors.NotFound):
        registry.get(SVC, "default", "a")


def test_delete_without_finalizers_removes_at_once(registry: Registry) -> None:
    registry.create(SVC, "default", _svc("a"), manager=CM_MANAGER)
    gone = registry.delete(SVC, "default", "a", {"propagationPolicy": "Background"})
    assert int(gone["metadata"]["resourceVersion"]) == registry.store.rv
    with pytest.raises(errors.NotFound):
        registry.delete(SVC, "default", "a", {})


@pytest.mark.parametrize(("opts", "finalizer"), [
    ({"propagationPolicy": "Foreground"}, "foregroundDeletion"),
    ({"propagationPolicy": "Orphan"}, "orphan"),
    ({"orphanDependents": True}, "orphan"),
])
def test_propagation_policies_add_their_finalizer(registry: Registry, opts: dict, finalizer: str) -> None:
    registry.create(DEPLOY, "default", _deploy("web"), manager=CM_MANAGER)
    marked = registry.delete(DEPLOY, "default", "web", opts)
    assert marked["metadata"]["finalizers"] == [finalizer]
    assert marked["metadata"]["deletionTimestamp"]
    assert registry.get(DEPLOY, "default", "web")["metadata"]["finalizers"] == [finalizer]


def test_unknown_propagation_policy_is_invalid(registry: Registry) -> None:
    registry.create(SVC, "default", _svc("a"), manager=CM_MANAGER)
    with pytest.raises(errors.Invalid):
        registry.delete(SVC, "default", "a", {"propagationPolicy": "Sideways"})


def test_delete_preconditions(registry: Registry) -> None:
    registry.create(SVC, "default", _svc("a"), manager=CM_MANAGER)
    with pytest.raises(errors.Conflict, match="Precondition failed: UID in precondition: nope"):
        registry.delete(SVC, "default", "a", {"preconditions": {"uid": "nope"}})


def test_pod_on_a_ready_node_is_deleted_gracefully(registry: Registry) -> None:
    _node(registry, "n1", ready=True)
    registry.create(POD, "default", _pod("p", node="n1"), manager=CM_MANAGER)
    marked = registry.delete(POD, "default", "p", {})
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert marked["metadata"]["deletionTimestamp"]
    assert registry.get(POD, "default", "p")["metadata"]["deletionTimestamp"]
    # The kubelet finishes with grace 0.
    registry.delete(POD, "default", "p", {"gracePeriodSeconds": 0})
    with pytest.raises(errors.NotFound):
        registry.get(POD, "default", "p")


@pytest.mark.parametrize("node", [None, "missing", "notready"])
def test_pod_without_a_ready_node_is_deleted_at_once(registry: Registry, node: str | None) -> None:
    _node(registry, "notready", ready=False)
    registry.create(POD, "default", _pod("p", node=node), manager=CM_MANAGER)
    registry.delete(POD, "default", "p", {})
    with pytest.raises(errors.NotFound):
        registry.get(POD, "default", "p")


def test_namespace_deletion_terminates_then_finalize_removes_it(registry: Registry) -> None:
    ns = registry.create(NS, None, {"metadata": {"name": "lab"}}, manager=CM_MANAGER)
    assert ns["spec"]["finalizers"] == ["kubernetes"] and ns["status"]["phase"] == "Active"
    terminating = registry.delete(NS, None, "lab", {})
    assert terminating["status"]["phase"] == "Terminating" and terminating["metadata"]["deletionTimestamp"]
    assert registry.get(NS, None, "lab")["status"]["phase"] == "Terminating"
    body = json.loads(json.dumps(terminating))
    body["spec"]["finalizers"] = []
    registry.update(NS, None, "lab", body, sub="finalize", manager=CM_MANAGER)
    with pytest.raises(errors.NotFound):
        registry.get(NS, None, "lab")


def test_namespace_main_resource_cannot_drop_spec_finalizers(registry: Registry) -> None:
    ns = registry.create(NS, None, {"metadata": {"name": "lab"}}, manager=CM_MANAGER)
    body = json.loads(json.dumps(ns))
    body["spec"]["finalizers"] = []
    ns, _ = registry.update(NS, None, "lab", body, manager=CM_MANAGER)
    assert ns["spec"]["finalizers"] == ["kubernetes"]


# -- subresources -----------------------------------------------------------------------------

def test_scale_get_and_patch(registry: Registry) -> None:
    registry.create(DEPLOY, "default", _deploy("web", replicas=2), manager=CM_MANAGER)
    scale = registry.get_scale(DEPLOY, "default", "web")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 0, "selector": "app=web"}
    patched, _ = registry.patch(DEPLOY, "default", "web", b'{"spec":{"replicas":4}}',
                                "application/merge-patch+json", sub="scale", manager=CM_MANAGER)
    assert patched["kind"] == "Scale" and patched["spec"]["replicas"] == 4
    dep = registry.get(DEPLOY, "default", "web")
    assert dep["spec"]["replicas"] == 4 and dep["metadata"]["generation"] == 2
    assert patched["metadata"]["resourceVersion"] == dep["metadata"]["resourceVersion"]


def test_scale_put_checks_resource_version_and_replicas(registry: Registry) -> None:
    registry.create(DEPLOY, "default", _deploy("web"), manager=CM_MANAGER)
    scale = registry.get_scale(DEPLOY, "default", "web")
    with pytest.raises(errors.Invalid):
        registry.put_scale(DEPLOY, "default", "web", {"spec": {"replicas": -1}}, manager=CM_MANAGER)
    scale["spec"]["replicas"] = 3
    assert registry.put_scale(DEPLOY, "default", "web", scale, manager=CM_MANAGER)["spec"]["replicas"] == 3
    with pytest.raises(errors.Conflict):
        registry.put_scale(DEPLOY, "default", "web", scale, manager=CM_MANAGER)  # its resourceVersion is stale now


def test_binding_sets_the_node_once(registry: Registry) -> None:
    registry.create(POD, "default", _pod("p"), manager=CM_MANAGER)
    result = registry.bind("default", "p", {"target": {"kind": "Node", "name": "n1"}})
    assert result["status"] == "Success"
    pod = registry.get(POD, "default", "p")
    assert pod["spec"]["nodeName"] == "n1"
    assert [c["type"] for c in pod["status"]["conditions"]] == ["PodScheduled"]
    with pytest.raises(errors.Conflict, match='pod p is already assigned to node "n1"'):
        registry.bind("default", "p", {"target": {"kind": "Node", "name": "n2"}})


# -- collections ------------------------------------------------------------------------------

def test_delete_collection_by_label_and_field_selector(registry: Registry) -> None:
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        registry.create(SVC, "default", _svc(name, tier=tier), manager=CM_MANAGER)
    result = registry.delete_collection(SVC, "default", parse_label_selector("tier=web"),
                                        parse_field_selector("metadata.name!=b", "services"), {})
    assert result["kind"] == "ServiceList" and _names(result["items"]) == ["a"]
    remaining, _, _, _ = registry.list(SVC, "default", [], [])
    assert _names(remaining) == ["b", "c"]


def test_list_pages_with_limit_and_continue(registry: Registry) -> None:
    for i in range(5):
        registry.create(SVC, "default", _svc(f"s{i}", app="x" if i % 2 == 0 else "y"), manager=CM_MANAGER)
    page, rv, token, remaining = registry.list(SVC, "default", [], [], limit=2)
    assert _names(page) == ["s0", "s1"] and token and remaining == 3 and rv == registry.store.rv
    page, _, token, remaining = registry.list(SVC, "default", [], [], limit=2, cont=token)
    assert _names(page) == ["s2", "s3"] and token and remaining == 1
    page, _, token, remaining = registry.list(SVC, "default", [], [], limit=2, cont=token)
    assert _names(page) == ["s4"] and token is None and remaining == 0
    selected, _, _, _ = registry.list(SVC, "default", parse_label_selector("app=x"), [])
    assert _names(selected) == ["s0", "s2", "s4"]
    with pytest.raises(errors.BadRequest):
        registry.list(SVC, "default", [], [], limit=2, cont="%%%")


def test_pod_with_a_finalizer_goes_when_its_grace_is_over_and_the_finalizer_is_removed(registry: Registry) -> None:
    _node(registry, "n1", ready=True)
    body = _pod("p", node="n1")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    registry.create(POD, "default", body, manager=CM_MANAGER)
    registry.delete(POD, "default", "p", {})  # graceful: 30 s
    unfinalized, _ = registry.patch(POD, "default", "p", b'{"metadata":{"finalizers":null}}',
                                    "application/merge-patch+json", manager=CM_MANAGER)
    assert unfinalized["metadata"]["deletionGracePeriodSeconds"] == 30  # still waits for its kubelet
    # The kubelet's final delete (grace 0) removes it: no finalizer is left.
    registry.delete(POD, "default", "p", {"gracePeriodSeconds": 0})
    with pytest.raises(errors.NotFound):
        registry.get(POD, "default", "p")


def test_grace_zero_delete_of_a_finalized_pod_ends_its_grace(registry: Registry) -> None:
    _node(registry, "n1", ready=True)
    body = _pod("p", node="n1")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    registry.create(POD, "default", body, manager=CM_MANAGER)
    registry.delete(POD, "default", "p", {})
    forced = registry.delete(POD, "default", "p", {"gracePeriodSeconds": 0})
    assert forced["metadata"]["deletionGracePeriodSeconds"] == 0
    registry.patch(POD, "default", "p", b'{"metadata":{"finalizers":null}}', "application/merge-patch+json",
                   manager=CM_MANAGER)
    with pytest.raises(errors.NotFound):
        registry.get(POD, "default", "p")
