"""Deployment / ReplicaSet / StatefulSet / hashing decisions: pure functions over dicts."""

from __future__ import annotations

from labkit.controllers import deployment as dp
from labkit.controllers import replicaset as rsc
from labkit.controllers import statefulset as ss
from labkit.controllers.util import compute_hash, fnv32a, int_or_percent, safe_encode, selector_matches


def test_fnv_and_safe_encode_match_go() -> None:
    assert fnv32a(b"") == 0x811C9DC5
    assert fnv32a(b"a") == 0xE40C292C  # Go: fnv.New32a().Write([]byte("a")).Sum32()
    # the decimal Sum32 3610804155 encodes to upstream's example hash
    assert safe_encode("3610804155") == "7b54d48599"


def test_compute_hash_is_stable_and_template_sensitive() -> None:
    t = {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.19"}]}}
    h = compute_hash(t)
    assert h == compute_hash({"spec": t["spec"], "metadata": t["metadata"]})
    assert h != compute_hash({**t, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.20"}]}})
    assert h != compute_hash(t, 1)
    assert 1 <= len(h) <= 10 and set(h) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_int_or_percent_and_fenceposts() -> None:
    assert int_or_percent("25%", 1, True) == 1 and int_or_percent("25%", 1, False) == 0
    assert int_or_percent("25%", 10, True) == 3 and int_or_percent("25%", 10, False) == 2
    d = {"spec": {"replicas": 1}}
    assert dp.resolve_fenceposts(d) == (1, 0)


def test_new_rs_replicas_for_a_new_deployment_and_rollout() -> None:
    d = {"spec": {"replicas": 4}}
    assert dp.new_rs_new_replicas(d, [], None) == 4
    old = {"spec": {"replicas": 4}}
    new = {"spec": {"replicas": 0}}
    # 4 + maxSurge 1 = 5 pods at most: the new set may get 1
    assert dp.new_rs_new_replicas(d, [old, new], new) == 1


def test_find_new_rs_ignores_hash_label() -> None:
    tmpl = {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"image": "nginx:1.19"}]}}
    d = {"spec": {"template": tmpl}}
    rs = {"metadata": {"name": "nginx-abc"}, "spec": {"template": dp.new_rs_template(d, "abc")}}
    other = {"metadata": {"name": "nginx-old"},
             "spec": {"template": {"metadata": {"labels": {"app": "nginx", "pod-template-hash": "old"}},
                                   "spec": {"containers": [{"image": "nginx:1.18"}]}}}}
    assert dp.find_new_rs(d, [other, rs]) is rs
    assert dp.find_new_rs(d, [other]) is None


def test_deployment_status_and_conditions() -> None:
    d = {"metadata": {"generation": 2}, "spec": {"replicas": 2}}
    rs = {"metadata": {"name": "nginx-7b54d48599"}, "spec": {"replicas": 2},
          "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}}
    st = dp.calculate_status(d, [rs], rs, {})
    assert st["observedGeneration"] == 2 and st["replicas"] == 2 and st["updatedReplicas"] == 2
    assert "unavailableReplicas" not in st
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Available"]["message"] == "Deployment has minimum availability."
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conds["Progressing"]["message"] == 'ReplicaSet "nginx-7b54d48599" has successfully progressed.'
    rs0 = {"metadata": {"name": "nginx-x"}, "spec": {"replicas": 2}, "status": {"replicas": 2}}
    st = dp.calculate_status(d, [rs0], rs0, {})
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Available"] == "MinimumReplicasUnavailable"
    assert st["unavailableReplicas"] == 2


def test_cleanup_keeps_revision_history_limit() -> None:
    olds = [{"metadata": {"name": f"r{i}", "annotations": {dp.REVISION: str(i)}}, "spec": {"replicas": 0},
             "status": {"replicas": 0}} for i in range(1, 5)]
    d = {"spec": {"revisionHistoryLimit": 2}}
    assert [r["metadata"]["name"] for r in dp.cleanup_candidates(d, olds)] == ["r1", "r2"]


def _pod(name: str, *, node: str = "n", phase: str = "Running", ready: bool = True,
         created: str = "2024-01-01T00:00:00Z", ready_at: str = "2024-01-01T00:00:00Z") -> dict:
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                                       "lastTransitionTime": ready_at}]}}


def test_replicaset_deletion_order() -> None:
    pods = [
        _pod("old-ready"),
        _pod("new-ready", created="2024-01-02T00:00:00Z", ready_at="2024-01-02T00:00:00Z"),
        _pod("not-ready", ready=False),
        _pod("pending", phase="Pending", ready=False),
        _pod("unscheduled", node="", phase="Pending", ready=False),
    ]
    order = [p["metadata"]["name"] for p in rsc.deletion_order(pods)]
    assert order == ["unscheduled", "pending", "not-ready", "new-ready", "old-ready"]


def test_slow_start_and_pod_template() -> None:
    assert rsc.slow_start_batches(10) == [1, 2, 4, 3]
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": "nginx-7b54d48599", "namespace": "default", "uid": "u1"},
          "spec": {"template": {"metadata": {"labels": {"app": "nginx", "pod-template-hash": "7b54d48599"}},
                                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.19"}]}}}}
    p = rsc.pod_from_template(rs)
    assert p["metadata"]["generateName"] == "nginx-7b54d48599-"
    assert p["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                 "name": "nginx-7b54d48599", "uid": "u1", "controller": True,
                                                 "blockOwnerDeletion": True}]
    st = rsc.rs_status({**rs, "metadata": {**rs["metadata"], "generation": 3}},
                       [{**_pod("a"), "metadata": {"name": "a", "labels": {"app": "nginx",
                                                                           "pod-template-hash": "7b54d48599"}}}])
    assert st == {"replicas": 1, "fullyLabeledReplicas": 1, "readyReplicas": 1, "availableReplicas": 1,
                  "observedGeneration": 3}


def test_expectations() -> None:
    e = rsc.Expectations()
    assert e.satisfied("k")
    e.expect("k", adds=2)
    assert not e.satisfied("k")
    e.lower("k", adds=1)
    assert not e.satisfied("k")
    e.lower("k", adds=1)
    assert e.satisfied("k")


def _sts(replicas: int, policy: str = "OrderedReady") -> dict:
    return {"metadata": {"name": "web", "namespace": "default", "uid": "s1", "generation": 1},
            "spec": {"replicas": replicas, "serviceName": "nginx", "podManagementPolicy": policy,
                     "selector": {"matchLabels": {"app": "nginx"}},
                     "template": {"metadata": {"labels": {"app": "nginx"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx:1.19"}]}}}}


def _sts_pod(sts: dict, i: int, ready: bool = True, rev: str | None = None) -> dict:
    p = ss.new_pod(sts, i)
    if rev:
        p["metadata"]["labels"][ss.REVISION_LABEL] = rev
    p["status"] = {"phase": "Running" if ready else "Pending",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    return p


def test_statefulset_ordered_create_and_scale_down() -> None:
    s = _sts(2)
    acts = ss.plan(s, [])
    assert [(a.verb, a.name) for a in acts] == [("create", "web-0")]
    assert ss.plan(s, [_sts_pod(s, 0, ready=False)]) == []  # waits for web-0
    assert [(a.verb, a.name) for a in ss.plan(s, [_sts_pod(s, 0)])] == [("create", "web-1")]
    pods = [_sts_pod(s, i) for i in range(3)]
    assert [(a.verb, a.name) for a in ss.plan(s, pods)] == [("delete", "web-2")]
    assert [(a.verb, a.name) for a in ss.plan(_sts(2, "Parallel"), [])] == [("create", "web-0"), ("create", "web-1")]


def test_statefulset_pod_identity_and_status() -> None:
    s = _sts(2)
    p = ss.new_pod(s, 1)
    assert p["metadata"]["name"] == "web-1"
    assert p["spec"]["hostname"] == "web-1" and p["spec"]["subdomain"] == "nginx"
    labels = p["metadata"]["labels"]
    assert labels[ss.POD_NAME_LABEL] == "web-1" and labels[ss.POD_INDEX_LABEL] == "1"
    assert labels[ss.REVISION_LABEL] == ss.update_revision(s) and labels[ss.REVISION_LABEL].startswith("web-")
    st = ss.sts_status(s, [_sts_pod(s, 0), _sts_pod(s, 1)])
    assert st["replicas"] == 2 and st["readyReplicas"] == 2 and st["availableReplicas"] == 2
    assert st["currentRevision"] == st["updateRevision"] == ss.update_revision(s)


def test_statefulset_rolling_update_from_highest_ordinal() -> None:
    s = _sts(2)
    pods = [_sts_pod(s, 0, rev="web-old"), _sts_pod(s, 1, rev="web-old")]
    assert [(a.verb, a.name) for a in ss.plan(s, pods)] == [("delete", "web-1")]


def test_label_selector() -> None:
    sel = {"matchLabels": {"app": "x"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}
    assert selector_matches(sel, {"app": "x", "tier": "a"})
    assert not selector_matches(sel, {"app": "x"})
    assert selector_matches({}, {"any": "thing"}) and not selector_matches(None, {})
