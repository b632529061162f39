"""Server-side apply and managedFields bookkeeping."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from labkit import kinds
from labkit.apiserver import apply as apply_module
from labkit.apiserver.apply import compare, decode_fields, encode_fields, record_update, server_side_apply
from labkit.apiserver.patch import DEFAULT, Field, schema_for, strategic_merge_patch
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


# ---------------------------------------------------------------------------------------------------------------
# The optimised record_update against the straightforward implementation it replaced (kept here as an oracle):
# every path walked, every set built from scratch, every fieldsV1 decoded and encoded again. The managedFields
# must come out identical, key order included.
# ---------------------------------------------------------------------------------------------------------------

_GONE: Any = object()


def _oracle_item_pe(item: Any, schema: Field) -> tuple[str, str]:
    if schema.list_type == "set":
        return ("v", json.dumps(item, separators=(",", ":")))
    key = {name: item[name] if name in item else schema.key_defaults[name] for name in sorted(schema.keys)}
    return ("k", json.dumps(key, separators=(",", ":"), sort_keys=True))


def _oracle_compare(old: Any, new: Any, schema: Field) -> tuple[set, set, set]:
    added: set = set()
    modified: set = set()
    removed: set = set()

    def shape(o: Any, n: Any, s: Field) -> str:
        present = [v for v in (o, n) if v is not _GONE and v is not None]
        if not present or s.atomic:
            return "leaf"
        if all(isinstance(v, dict) for v in present):
            return "object" if any(present) else "leaf"
        if all(isinstance(v, list) for v in present) and s.list_type in ("map", "set"):
            return "list" if any(present) else "leaf"
        return "leaf"

    def walk(o: Any, n: Any, s: Field, p: tuple) -> None:
        kind = shape(o, n, s)
        if kind == "leaf":
            if o is _GONE:
                added.add(p)
            elif n is _GONE:
                removed.add(p)
            elif o != n:
                modified.add(p)
            return
        if kind == "object":
            lo, ln = (o if isinstance(o, dict) else {}), (n if isinstance(n, dict) else {})
            for name in {**lo, **ln}:
                walk(lo.get(name, _GONE), ln.get(name, _GONE), s.child(name), (*p, ("f", name)))
        else:
            lo = {_oracle_item_pe(v, s): v for v in o} if isinstance(o, list) else {}
            ln = {_oracle_item_pe(v, s): v for v in n} if isinstance(n, list) else {}
            element = s.element() if s.list_type == "map" else DEFAULT
            for pe in {**lo, **ln}:
                walk(lo.get(pe, _GONE), ln.get(pe, _GONE), element, (*p, pe))
        if p and o is _GONE:
            added.add(p)
        elif p and n is _GONE:
            removed.add(p)

    walk(old, new, schema, ())
    return added, modified, removed


def _oracle_encode(paths: set) -> dict:
    def finish(node: dict) -> dict:
        children = {k: finish(v) for k, v in node.items() if k != "."}
        return {".": {}, **children} if "." in node and children else children

    root: dict = {}
    for path in sorted(paths, key=lambda p: tuple(("fkvi".index(k) if k in "fkvi" else 4, t) for k, t in p)):
        node = root
        for kind, text in path:
            node = node.setdefault(f"{kind}:{text}", {})
        node["."] = {}
    return finish(root)


def _oracle_record_update(old: dict | None, new: dict, *, manager: str, now: str, subresource: str = "") -> dict:
    """record_update as it was first written, for the test below."""
    kind = new["kind"]
    schema = schema_for(kind)
    api_version = kinds.lookup(kind).api_version
    zero = apply_module._ZERO.get(kind, {})

    def fill(obj: dict) -> dict:
        def walk(target: dict, z: dict) -> None:
            for name, value in z.items():
                if isinstance(value, dict):
                    target.setdefault(name, {})
                    if isinstance(target[name], dict):
                        walk(target[name], value)
        out = copy.deepcopy(obj)
        out.get("metadata", {}).pop("managedFields", None)
        walk(out, zero)
        return out

    def decoded(obj: dict | None) -> list[dict]:
        return [{"manager": e["manager"], "operation": e.get("operation", "Update"), "apiVersion": e.get("apiVersion"),
                 "subresource": e.get("subresource", ""), "time": e.get("time"),
                 "fields": decode_fields(e.get("fieldsV1") or {})}
                for e in ((obj or {}).get("metadata") or {}).get("managedFields") or []]

    sent = new["metadata"].get("managedFields")
    live = ((old or {}).get("metadata") or {}).get("managedFields")
    managers = decoded(old) if sent is None or sent == live else [] if sent == [{}] else decoded(new)
    before = fill(old) if old is not None else copy.deepcopy(apply_module._ZERO[kind])
    added, modified, removed = _oracle_compare(before, fill(new), schema)
    reset = "spec" if subresource == "status" else "status"
    changed = {p for p in (added | modified) - apply_module._STRIPPED if not p or p[0] != ("f", reset)}
    me = {"manager": manager, "operation": "Update", "apiVersion": api_version, "subresource": subresource,
          "time": now, "fields": set()}
    same = ("manager", "operation", "apiVersion", "subresource")
    previous = next((m for m in managers if all(m[k] == me[k] for k in same)), None)
    for m in managers:
        m["fields"] = m["fields"] - changed - removed
    if changed:
        me["fields"] = changed | (previous["fields"] if previous else set())
    elif previous is not None:
        me["fields"], me["time"] = previous["fields"], previous["time"]
    result = [m for m in managers if m is not previous and m["fields"]] + ([me] if me["fields"] else [])
    result.sort(key=lambda m: (m["operation"], m["time"] or "", m["manager"], m["apiVersion"], m["subresource"]))
    out = copy.deepcopy(new)
    out["metadata"].pop("managedFields", None)
    if result:
        out["metadata"]["managedFields"] = [
            {"manager": m["manager"], "operation": m["operation"], "apiVersion": m["apiVersion"],
             **({"time": m["time"]} if m["time"] else {}), "fieldsType": "FieldsV1",
             "fieldsV1": _oracle_encode(m["fields"]), **({"subresource": m["subresource"]} if m["subresource"] else {})}
            for m in result]
    return out


def pod(name: str = "web-7b54d48599-gx87d") -> dict:
    """A pod as the ReplicaSet controller creates it, after defaulting."""
    return stored({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "generateName": "web-7b54d48599-", "namespace": "default",
        "labels": {"app": "web", "pod-template-hash": "7b54d48599"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7b54d48599",
                             "uid": "d0c1-uid", "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25", "imagePullPolicy": "IfNotPresent",
                                 "ports": [{"containerPort": 80, "protocol": "TCP"}],
                                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                                 "readinessProbe": {"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
                                                    "periodSeconds": 10},
                                 "resources": {"limits": {"cpu": "100m"}},
                                 "terminationMessagePath": "/dev/termination-log"}],
                 "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                 "securityContext": {}, "terminationGracePeriodSeconds": 30,
                 "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300}]}})


def pod_status(ip: str, ready: bool) -> dict:
    """The status the node agent writes for a running pod."""
    state = "True" if ready else "False"
    return {"phase": "Running", "hostIP": "10.0.0.1", "hostIPs": [{"ip": "10.0.0.1"}], "podIP": ip,
            "podIPs": [{"ip": ip}], "startTime": T0, "qosClass": "Burstable",
            "conditions": [{"type": t, "status": state if t in ("Ready", "ContainersReady") else "True",
                            "lastProbeTime": None, "lastTransitionTime": T1}
                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
            "containerStatuses": [{"name": "nginx", "image": "nginx:1.25", "imageID": "labkit://nginx", "ready": ready,
                                   "started": True, "restartCount": 0, "state": {"running": {"startedAt": T1}},
                                   "lastState": {}}]}


def endpoint_slice() -> dict:
    return stored({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {
        "name": "web-ftb9q", "namespace": "default", "generateName": "web-",
        "labels": {"kubernetes.io/service-name": "web"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "5e1-uid",
                             "controller": True, "blockOwnerDeletion": True}]},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [f"10.244.0.{i}"], "conditions": {"ready": True, "serving": True},
                       "targetRef": {"kind": "Pod", "namespace": "default", "name": f"web-{i}"}} for i in (2, 3)],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]})


def _writes() -> Iterator[tuple[dict | None, dict, dict]]:
    """A realistic history of writes, each as (old, new, record_update keywords); old is the last result."""
    def edit(obj: dict, change: Callable[[dict], None]) -> dict:
        out = copy.deepcopy(obj)
        change(out)
        return out

    for make in (pod, lambda: stored(deployment(3)), endpoint_slice, lambda: stored(headless_service()),
                 lambda: stored(statefulset())):
        first = make()
        live = yield None, first, {"manager": "kube-controller-manager", "now": T0}
        kubelet = {"manager": "kubelet", "subresource": "status"}
        steps: list[tuple[Callable[[dict], None], dict]] = [
            (lambda o: o.update(status=pod_status("10.244.0.2", False)), kubelet),
            (lambda o: o.update(status=pod_status("10.244.0.2", True)), kubelet),
            (lambda o: None, kubelet),  # nothing changes
            (lambda o: o["metadata"].setdefault("labels", {}).update(tier="front"), {"manager": "kubectl-label"}),
            (lambda o: o["metadata"]["labels"].pop("tier"), {"manager": "kubectl-label"}),
            (lambda o: o["metadata"].update(finalizers=["example.com/f"]), {"manager": "kubectl-edit"}),
            (lambda o: o.get("spec", {}).update(replicas=5), {"manager": "kubectl", "subresource": "scale"}),
            (lambda o: o.get("endpoints", [{}])[0].update(conditions={"ready": False}), {"manager": "eps"}),
            # A client sending back the managedFields it read, in another key order: they are re-encoded.
            (lambda o: [e.update(fieldsV1=dict(reversed(e["fieldsV1"].items())))
                        for e in o["metadata"].get("managedFields", [])], {"manager": "kubectl-edit"}),
            (lambda o: o["metadata"].update(managedFields=[{}], annotations={"a": "b"}), {"manager": "reset"}),
        ]
        for step, (change, kw) in enumerate(steps):
            live = yield live, edit(live, change), {**kw, "now": f"2024-05-01T11:00:{step:02d}Z"}


@pytest.mark.parametrize("kind", ["Pod", "Deployment", "EndpointSlice", "Service", "StatefulSet"])
def test_record_update_matches_the_straightforward_implementation(kind: str) -> None:
    writes = _writes()
    old, new, kw = next(writes)
    compared = 0
    try:
        while True:
            if new["kind"] == kind:
                expected = _oracle_record_update(copy.deepcopy(old), copy.deepcopy(new), **kw)
                out = record_update(old, new, **kw)
                assert json.dumps(out) == json.dumps(expected)  # the same object, key order included
                compared += 1
            else:
                out = record_update(old, new, **kw)
            old, new, kw = writes.send(out)
    except StopIteration:
        pass
    assert compared == 11


def test_record_update_copies_and_does_not_modify_its_inputs() -> None:
    live = stored(record_update(None, pod(), manager="kube-controller-manager", now=T0))
    new = copy.deepcopy(live)
    new["status"] = pod_status("10.244.0.2", True)
    snapshot_live, snapshot_new = copy.deepcopy(live), copy.deepcopy(new)
    out = record_update(live, new, manager="kubelet", now=T1, subresource="status")
    assert live == snapshot_live and new == snapshot_new
    out["status"]["conditions"][0]["status"] = "Unknown"
    out["metadata"]["managedFields"][0]["fieldsV1"]["f:x"] = {}
    assert new["status"]["conditions"][0]["status"] == "True"
    again = record_update(live, new, manager="kubelet", now=T1, subresource="status")
    assert "f:x" not in again["metadata"]["managedFields"][0]["fieldsV1"]  # shared encodings are not handed out


def test_equal_subtrees_are_skipped_but_what_changed_inside_them_is_not() -> None:
    schema = schema_for("Pod")
    old = pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["env"][1]["value"] = "3"
    new["spec"]["containers"][0]["env"].append({"name": "C", "value": "4"})
    added, modified, removed = compare(old, new, schema)
    env = (("f", "spec"), ("f", "containers"), ("k", '{"name":"nginx"}'), ("f", "env"))
    assert modified == {(*env, ("k", '{"name":"B"}'), ("f", "value"))}
    assert added == {(*env, ("k", '{"name":"C"}')), (*env, ("k", '{"name":"C"}'), ("f", "name")),
                     (*env, ("k", '{"name":"C"}'), ("f", "value"))}
    assert removed == set()
    assert compare(old, copy.deepcopy(old), schema) == (set(), set(), set())
