"""Server-side apply and managedFields bookkeeping."""

from __future__ import annotations

import copy

import pytest

from labkit.apiserver.apply import decode_fields, encode_fields, record_update, server_side_apply
from labkit.apiserver.patch import strategic_merge_patch
from labkit.errors import BadRequest, Conflict

T0, T1, T2 = "2024-05-01T10:00:00Z", "2024-05-01T10:05:00Z", "2024-05-01T10:10:00Z"


def headless_service() -> dict:
    """The article's headless Service, as `kubectl apply --server-side` sends it."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"labels": {"app": "nginx"}, "name": "nginx", "namespace": "default"},
            "spec": {"clusterIP": "None", "selector": {"app": "nginx"}}}


def statefulset(replicas: int = 2, image: str = "nginx:1.19") -> dict:
    """The article's StatefulSet."""
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"serviceName": "nginx", "replicas": replicas, "selector": {"matchLabels": {"app": "nginx"}},
                     "template": {"metadata": {"labels": {"app": "nginx"}},
                                  "spec": {"containers": [{"name": "nginx", "image": image}]}}}}


def deployment(replicas: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "nginx"}},
                     "template": {"metadata": {"labels": {"app": "nginx"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx:1.19",
                                                           "ports": [{"containerPort": 80}]}]}}}}


def stored(obj: dict, rv: str = "1") -> dict:
    """What the API server would store: server metadata and a few defaulted fields added."""
    out = copy.deepcopy(obj)
    out["metadata"].update({"uid": "9b6a-uid", "resourceVersion": rv, "creationTimestamp": T0})
    if out["kind"] == "Service":
        out["spec"].setdefault("sessionAffinity", "None")
        out["spec"].setdefault("type", "ClusterIP")
        out["status"] = {"loadBalancer": {}}
    return out


def entries(obj: dict) -> dict[tuple[str, str], dict]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def test_apply_creates_the_article_service_and_records_an_apply_entry() -> None:
    svc = server_side_apply(None, headless_service(), manager="kubectl", force=False, kind="Service", now=T0)
    assert svc["spec"] == {"clusterIP": "None", "selector": {"app": "nginx"}}
    assert svc["metadata"]["labels"] == {"app": "nginx"}
    assert svc["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T0, "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}},
                     "f:spec": {"f:clusterIP": {}, "f:selector": {}}}}]


def test_apply_of_the_statefulset_keys_containers_by_name() -> None:
    sts = server_side_apply(None, statefulset(), manager="kubectl", force=False, kind="StatefulSet", now=T0)
    fields = sts["metadata"]["managedFields"][0]["fieldsV1"]
    assert fields["f:spec"]["f:template"]["f:spec"]["f:containers"] == {
        'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}
    assert fields["f:spec"]["f:selector"] == {}  # a LabelSelector is atomic
    assert set(fields["f:spec"]) == {"f:serviceName", "f:replicas", "f:selector", "f:template"}


def test_reapply_with_a_changed_field_updates_it_and_the_time() -> None:
    live = stored(server_side_apply(None, statefulset(), manager="kubectl", force=False, kind="StatefulSet", now=T0))
    live["spec"]["podManagementPolicy"] = "OrderedReady"  # a server default: nobody owns it
    before = copy.deepcopy(live)
    out = server_side_apply(live, statefulset(replicas=3, image="nginx:1.20"), manager="kubectl", force=False,
                            kind="StatefulSet", now=T1)
    assert out["spec"]["replicas"] == 3
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "nginx", "image": "nginx:1.20"}]
    assert out["spec"]["podManagementPolicy"] == "OrderedReady"
    assert out["metadata"]["uid"] == "9b6a-uid"
    [entry] = out["metadata"]["managedFields"]
    assert entry["time"] == T1
    assert live == before  # the input is not modified


def test_unchanged_reapply_keeps_the_time() -> None:
    live = stored(server_side_apply(None, statefulset(), manager="kubectl", force=False, kind="StatefulSet", now=T0))
    out = server_side_apply(live, statefulset(), manager="kubectl", force=False, kind="StatefulSet", now=T1)
    assert out["metadata"]["managedFields"][0]["time"] == T0
    assert out["spec"] == live["spec"]


def test_a_field_dropped_from_the_applied_config_disappears() -> None:
    """The article re-applies Service `nginx` as an ExternalName Service without clusterIP and selector."""
    live = stored(server_side_apply(None, headless_service(), manager="kubectl", force=False, kind="Service", now=T0))
    external = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"labels": {"app": "nginx"}, "name": "nginx", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "www.iij.ad.jp"}}
    out = server_side_apply(live, external, manager="kubectl", force=False, kind="Service", now=T1)
    assert "selector" not in out["spec"]
    assert "clusterIP" not in out["spec"]
    assert out["spec"]["type"] == "ExternalName"
    assert out["spec"]["externalName"] == "www.iij.ad.jp"
    assert out["spec"]["sessionAffinity"] == "None"  # defaulted, never applied: stays
    assert out["status"] == {"loadBalancer": {}}
    [entry] = out["metadata"]["managedFields"]
    assert entry["fieldsV1"]["f:spec"] == {"f:externalName": {}, "f:type": {}}


def test_a_dropped_field_another_manager_also_owns_stays() -> None:
    live = stored(server_side_apply(None, headless_service(), manager="kubectl", force=False, kind="Service", now=T0))
    labelled = copy.deepcopy(live)
    labelled["metadata"]["labels"]["tier"] = "web"
    live = record_update(live, labelled, manager="kubectl-label", now=T1)
    config = headless_service()
    config["metadata"]["labels"] = {"tier": "web"}  # now applies tier, drops app
    out = server_side_apply(live, config, manager="kubectl", force=False, kind="Service", now=T2)
    assert out["metadata"]["labels"] == {"tier": "web"}  # app went: only kubectl owned it
    assert entries(out)[("kubectl-label", "Update")]["fieldsV1"] == {"f:metadata": {"f:labels": {"f:tier": {}}}}
    # Give up tier too: kubectl-label still owns it, so it stays.
    config["metadata"].pop("labels")
    out = server_side_apply(out, config, manager="kubectl", force=False, kind="Service", now=T2)
    assert out["metadata"]["labels"] == {"tier": "web"}


def test_conflict_with_client_side_apply_on_replicas() -> None:
    live = stored(record_update(None, deployment(replicas=1), manager="kubectl-client-side-apply", now=T0))
    with pytest.raises(Conflict) as info:
        server_side_apply(live, deployment(replicas=3), manager="kubectl", force=False, kind="Deployment", now=T1)
    error = info.value
    assert error.code == 409 and error.reason == "Conflict"
    assert error.message == \
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas'
    assert error.causes == [{"reason": "FieldManagerConflict",
                             "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
                             "field": ".spec.replicas"}]


def test_applying_the_same_value_shares_ownership() -> None:
    live = stored(record_update(None, deployment(replicas=1), manager="kubectl-client-side-apply", now=T0))
    out = server_side_apply(live, deployment(replicas=1), manager="kubectl", force=False, kind="Deployment", now=T1)
    owners = entries(out)
    assert "f:replicas" in owners[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" in owners[("kubectl-client-side-apply", "Update")]["fieldsV1"]["f:spec"]
    assert out["metadata"]["managedFields"][0]["operation"] == "Apply"  # Apply entries sort first


def test_force_takes_ownership() -> None:
    live = stored(record_update(None, deployment(replicas=1), manager="kubectl-client-side-apply", now=T0))
    out = server_side_apply(live, deployment(replicas=3), manager="kubectl", force=True, kind="Deployment", now=T1)
    assert out["spec"]["replicas"] == 3
    owners = entries(out)
    assert "f:replicas" in owners[("kubectl", "Apply")]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in owners[("kubectl-client-side-apply", "Update")]["fieldsV1"]["f:spec"]


def test_several_conflicts_are_listed_per_manager() -> None:
    live = stored(record_update(None, deployment(replicas=1), manager="kubectl-client-side-apply", now=T0))
    changed = deployment(replicas=3)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.20"
    with pytest.raises(Conflict) as info:
        server_side_apply(live, changed, manager="kubectl", force=False, kind="Deployment", now=T1)
    assert info.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="nginx"].image')


def test_client_side_apply_flow_records_an_update_for_the_patch() -> None:
    """kubectl apply (client-side) twice: POST, then the strategic merge PATCH of kubectl-contract.md §4."""
    live = stored(record_update(None, deployment(replicas=1), manager="kubectl-client-side-apply", now=T0))
    body = {"spec": {"replicas": 3, "template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}],
        "containers": [{"image": "nginx:1.20", "name": "nginx"}]}}}}
    patched = strategic_merge_patch(live, body, "Deployment")
    out = record_update(live, patched, manager="kubectl-client-side-apply", now=T1)
    [entry] = out["metadata"]["managedFields"]
    assert entry["time"] == T1
    assert out["spec"]["replicas"] == 3


def test_record_update_moves_changed_fields_to_the_writer() -> None:
    live = stored(server_side_apply(None, deployment(replicas=1), manager="kubectl", force=False,
                                    kind="Deployment", now=T0))
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 4
    scaled["status"] = {"replicas": 4}  # a main-resource write never owns status
    out = record_update(live, scaled, manager="kube-controller-manager", now=T1)
    owners = entries(out)
    assert owners[("kube-controller-manager", "Update")]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in owners[("kubectl", "Apply")]["fieldsV1"]["f:spec"]


def test_record_update_on_the_status_subresource() -> None:
    live = stored(record_update(None, deployment(), manager="kubectl-create", now=T0))
    new = copy.deepcopy(live)
    new["status"] = {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]}
    out = record_update(live, new, manager="kube-controller-manager", now=T1, subresource="status")
    entry = entries(out)[("kube-controller-manager", "Update")]
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:conditions": {".": {}, 'k:{"type":"Available"}': {
        ".": {}, "f:status": {}, "f:type": {}}}, "f:replicas": {}}}


def test_record_update_on_create_marks_new_maps_and_lists_like_the_api_server() -> None:
    out = record_update(None, stored(headless_service()), manager="kubectl-expose", now=T0)
    [entry] = out["metadata"]["managedFields"]
    assert entry["operation"] == "Update" and entry["apiVersion"] == "v1" and "subresource" not in entry
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {"f:clusterIP": {}, "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}}}


def test_an_update_that_changes_nothing_leaves_managed_fields_alone() -> None:
    live = stored(record_update(None, deployment(), manager="kubectl-create", now=T0))
    out = record_update(live, copy.deepcopy(live), manager="someone-else", now=T1)
    assert out["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_service_ports_are_keyed_by_port_and_protocol() -> None:
    config = headless_service()
    config["spec"] = {"ports": [{"port": 80, "targetPort": 8080}, {"port": 53, "protocol": "UDP"}]}
    out = server_side_apply(None, config, manager="kubectl", force=False, kind="Service", now=T0)
    ports = out["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"]
    assert set(ports) == {'k:{"port":80,"protocol":"TCP"}', 'k:{"port":53,"protocol":"UDP"}'}


def test_live_only_list_elements_keep_their_place() -> None:
    live = stored(server_side_apply(None, deployment(), manager="kubectl", force=False, kind="Deployment", now=T0))
    sidecar = copy.deepcopy(live)
    sidecar["spec"]["template"]["spec"]["containers"].insert(0, {"name": "sidecar", "image": "busybox"})
    live = record_update(live, sidecar, manager="injector", now=T1)
    out = server_side_apply(live, deployment(), manager="kubectl", force=False, kind="Deployment", now=T2)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["sidecar", "nginx"]


def test_applied_config_is_checked() -> None:
    bad = deployment()
    bad["apiVersion"] = "apps/v1beta1"
    with pytest.raises(BadRequest, match="Incorrect version specified in apply patch"):
        server_side_apply(None, bad, manager="kubectl", force=False, kind="Deployment", now=T0)
    bad = deployment()
    bad["metadata"]["managedFields"] = []
    with pytest.raises(BadRequest, match=r"metadata\.managedFields must be nil"):
        server_side_apply(None, bad, manager="kubectl", force=False, kind="Deployment", now=T0)


def test_fields_v1_round_trip() -> None:
    fields = {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
              "f:spec": {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}}}}}
    assert encode_fields(decode_fields(fields)) == fields
