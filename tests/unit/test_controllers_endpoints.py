"""Endpoints / EndpointSlice / mirroring planning: pure functions over dicts."""

from __future__ import annotations

from labkit.controllers import endpoints as ep
from labkit.controllers import endpointslice as es


def pod(name: str, ip: str = "", ready: bool = True, labels: dict | None = None, *, node: str = "labkit-control-plane",
        hostname: str = "", subdomain: str = "", ports: list | None = None, deleting: bool = False) -> dict:
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": labels or {"app": "nginx"},
                      "creationTimestamp": "2024-01-01T00:00:00Z"},
         "spec": {"nodeName": node, "containers": [{"name": "c", "ports": ports or []}]},
         "status": {"phase": "Running", "podIP": ip,
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                    "lastTransitionTime": "2024-01-01T00:00:05Z"}]}}
    if hostname:
        p["spec"]["hostname"] = hostname
    if subdomain:
        p["spec"]["subdomain"] = subdomain
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2024-01-01T00:01:00Z"
    return p


def svc(name: str = "nginx", ports: list | None = None, headless: bool = False, selector: dict | None = None,
        **extra: object) -> dict:
    spec = {"selector": {"app": "nginx"} if selector is None else selector,
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}] if ports is None else ports,
            "clusterIP": "None" if headless else "10.96.100.1", **extra}
    if selector == {}:
        del spec["selector"]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "uid": "svc-uid", "labels": {"app": "nginx"},
                         "creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": spec}


def test_article_flow_one_then_two_pods() -> None:
    s = svc()
    e = ep.plan_endpoints(s, [pod("nginx-a", "10.244.0.5")], None)
    assert e["metadata"]["name"] == "nginx" and e["metadata"]["labels"] == {"app": "nginx"}
    assert e["subsets"] == [{"addresses": [{"ip": "10.244.0.5", "nodeName": "labkit-control-plane",
                                            "targetRef": {"kind": "Pod", "namespace": "default", "name": "nginx-a",
                                                          "uid": "uid-nginx-a"}}],
                             "ports": [{"port": 80, "protocol": "TCP"}]}]
    assert e["metadata"]["annotations"][ep.TRIGGER_TIME] == "2024-01-01T00:00:05Z"
    # unchanged → no write
    assert ep.plan_endpoints(s, [pod("nginx-a", "10.244.0.5")], e) is None
    e2 = ep.plan_endpoints(s, [pod("nginx-a", "10.244.0.5"), pod("nginx-b", "10.244.0.6")], e)
    assert [a["ip"] for a in e2["subsets"][0]["addresses"]] == ["10.244.0.5", "10.244.0.6"]


def test_not_ready_terminating_no_ip_and_publish() -> None:
    pods = [pod("a", "10.244.0.5"), pod("b", "10.244.0.6", ready=False), pod("c", ""),
            pod("d", "10.244.0.8", deleting=True), pod("x", "10.244.0.9", labels={"app": "other"})]
    e = ep.plan_endpoints(svc(), pods, None)
    (ss,) = e["subsets"]
    assert [a["ip"] for a in ss["addresses"]] == ["10.244.0.5"]
    assert [a["ip"] for a in ss["notReadyAddresses"]] == ["10.244.0.6"]
    e = ep.plan_endpoints(svc(publishNotReadyAddresses=True), pods, None)
    assert [a["ip"] for a in e["subsets"][0]["addresses"]] == ["10.244.0.5", "10.244.0.6", "10.244.0.8"]


def test_headless_without_ports_and_hostnames() -> None:
    s = svc(headless=True, ports=[])
    pods = [pod("nginx-0", "10.244.0.7", hostname="nginx-0", subdomain="nginx"),
            pod("nginx-1", "10.244.0.8", hostname="nginx-1", subdomain="other")]
    e = ep.plan_endpoints(s, pods, None)
    assert e["metadata"]["labels"] == {"app": "nginx", ep.HEADLESS_LABEL: ""}
    (ss,) = e["subsets"]
    assert "ports" not in ss
    assert [a.get("hostname") for a in ss["addresses"]] == ["nginx-0", None]


def test_named_target_port_and_repack() -> None:
    s = svc(ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}])
    pods = [pod("a", "10.244.0.5", ports=[{"name": "web", "containerPort": 8080, "protocol": "TCP"}]),
            pod("b", "10.244.0.6", ports=[{"name": "web", "containerPort": 9090, "protocol": "TCP"}]),
            pod("c", "10.244.0.7")]
    e = ep.plan_endpoints(s, pods, None)
    got = {(ss["ports"][0]["port"], tuple(a["ip"] for a in ss["addresses"])) for ss in e["subsets"]}
    assert got == {(8080, ("10.244.0.5",)), (9090, ("10.244.0.6",))}
    assert e["subsets"][0]["ports"][0]["name"] == "http"


def test_selectorless_service_left_alone() -> None:
    assert ep.plan_endpoints(svc(selector={}), [pod("a", "10.244.0.5")], None) is None


def test_repack_merges_ports_of_same_addresses() -> None:
    a = {"ip": "10.0.0.1"}
    out = ep.repack_subsets([{"addresses": [a], "ports": [{"port": 80, "protocol": "TCP"}]},
                             {"addresses": [a], "ports": [{"port": 443, "protocol": "TCP"}]}])
    assert out == [{"addresses": [a], "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]}]


def test_slice_for_service() -> None:
    s = svc()
    pods = [pod("a", "10.244.0.5"), pod("b", "10.244.0.6", ready=False), pod("d", "10.244.0.8", deleting=True)]
    plan = es.plan_for_service(s, pods, [])
    (sl,) = plan.create
    assert sl["metadata"]["generateName"] == "nginx-"
    assert sl["metadata"]["labels"] == {"app": "nginx", es.SERVICE_NAME: "nginx", es.MANAGED_BY: es.CONTROLLER}
    assert sl["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "nginx",
                                                  "uid": "svc-uid", "controller": True, "blockOwnerDeletion": True}]
    assert sl["addressType"] == "IPv4"
    assert sl["ports"] == [{"name": "", "port": 80, "protocol": "TCP"}]
    conds = {e["addresses"][0]: e["conditions"] for e in sl["endpoints"]}
    assert conds == {"10.244.0.5": {"ready": True, "serving": True, "terminating": False},
                     "10.244.0.6": {"ready": False, "serving": False, "terminating": False},
                     "10.244.0.8": {"ready": False, "serving": True, "terminating": True}}
    # the stored slice is up to date: nothing to do
    stored = {**sl, "metadata": {**sl["metadata"], "name": "nginx-abcde"}}
    assert es.plan_for_service(s, pods, [stored]).empty()
    # one pod goes: an update in place, no new slice
    plan = es.plan_for_service(s, pods[:1], [stored])
    assert not plan.create and not plan.delete and len(plan.update) == 1
    assert [e["addresses"][0] for e in plan.update[0]["endpoints"]] == ["10.244.0.5"]


def test_placeholder_slice_for_service_without_endpoints() -> None:
    plan = es.plan_for_service(svc(), [], [])
    (sl,) = plan.create
    assert sl["endpoints"] is None and sl["ports"] is None
    stored = {**sl, "metadata": {**sl["metadata"], "name": "nginx-zzzzz"}}
    assert es.plan_for_service(svc(), [], [stored]).empty()
    # endpoints arrive: the placeholder (other port key) goes, a real slice is created
    plan = es.plan_for_service(svc(), [pod("a", "10.244.0.5")], [stored])
    assert plan.delete == ["nginx-zzzzz"] and len(plan.create) == 1


def test_slices_split_at_100() -> None:
    pods = [pod(f"p{i:03d}", f"10.244.{i // 200}.{i % 200 + 2}") for i in range(250)]
    plan = es.plan_for_service(svc(), pods, [])
    assert [len(s["endpoints"]) for s in plan.create] == [100, 100, 50]


def test_slice_hostname_rule() -> None:
    s = svc(headless=True, ports=[])
    plan = es.plan_for_service(s, [pod("nginx-0", "10.244.0.7", hostname="nginx-0", subdomain="nginx")], [])
    (sl,) = plan.create
    assert sl["endpoints"][0]["hostname"] == "nginx-0" and sl["ports"] is None
    assert sl["metadata"]["labels"][ep.HEADLESS_LABEL] == ""


def test_mirroring() -> None:
    s = svc(selector={}, headless=True, ports=[])
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": "nginx", "namespace": "default", "uid": "ep-uid", "labels": {"app": "nginx"},
                              "annotations": {es.LAST_APPLIED: "{}", "team": "a"}},
                 "subsets": [{"addresses": [{"ip": "203.0.113.10"}], "notReadyAddresses": [{"ip": "203.0.113.11"}],
                              "ports": [{"port": 80, "protocol": "TCP"}]}]}
    plan = es.plan_mirror(endpoints, s, [])
    (sl,) = plan.create
    assert sl["metadata"]["labels"] == {"app": "nginx", es.SERVICE_NAME: "nginx", es.MANAGED_BY: es.MIRROR_CONTROLLER}
    assert sl["metadata"]["annotations"] == {"team": "a"}
    assert sl["metadata"]["ownerReferences"][0]["kind"] == "Endpoints"
    assert [(e["addresses"][0], e["conditions"]["ready"]) for e in sl["endpoints"]] == [
        ("203.0.113.10", True), ("203.0.113.11", False)]
    assert sl["ports"] == [{"name": "", "port": 80, "protocol": "TCP"}]
    stored = {**sl, "metadata": {**sl["metadata"], "name": "nginx-q2w3e"}}
    assert es.plan_mirror(endpoints, s, [stored]).empty()
    # skip-mirror, a selector, or no Service: mirrored slices go
    skip = {**endpoints, "metadata": {**endpoints["metadata"], "labels": {es.SKIP_MIRROR: "true"}}}
    assert es.plan_mirror(skip, s, [stored]).delete == ["nginx-q2w3e"]
    assert es.plan_mirror(endpoints, svc(), [stored]).delete == ["nginx-q2w3e"]
    assert es.plan_mirror(endpoints, None, [stored]).delete == ["nginx-q2w3e"]
    assert es.plan_mirror(None, s, [stored]).delete == ["nginx-q2w3e"]
