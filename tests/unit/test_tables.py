"""Tests for labkit.apiserver.tables: server-side Table printing as kube-apiserver does it.

Expected cells follow kubernetes/kubernetes pkg/printers/internalversion/printers.go (v1.32); the last
test renders a Table through the real kubectl 1.32 when it is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from labkit.apiserver.tables import column_definitions, human_duration, row_cells, to_table

NOW = datetime(2024, 5, 1, 10, 5, 0, tzinfo=UTC)
CREATED = "2024-05-01T10:00:00Z"  # five minutes before NOW


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, namespace: str | None = "default", created: str = CREATED, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "resourceVersion": "1026", "creationTimestamp": created}
    if namespace:
        m["namespace"] = namespace
    m.update(extra)
    return m


# ---------------------------------------------------------------------------------------------------------
# human_duration
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (-5, "<invalid>"),
        (-2, "<invalid>"),
        (-1.5, "0s"),  # up to 2 s of clock skew reads as "now"
        (0, "0s"),
        (19, "19s"),
        (19.9, "19s"),
        (119, "119s"),
        (120, "2m"),
        (194, "3m14s"),
        (599, "9m59s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 2 * 60 + 30, "5h2m"),
        (8 * 3600 + 59 * 60, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (51 * 3600, "2d3h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (737 * 86400, "2y7d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_human_duration(seconds: float, expected: str) -> None:
    assert human_duration(seconds) == expected


# ---------------------------------------------------------------------------------------------------------
# Column definitions
# ---------------------------------------------------------------------------------------------------------

EXPECTED_COLUMNS = {
    "namespaces": [("Name", 0), ("Status", 0), ("Age", 0)],
    "nodes": [("Name", 0), ("Status", 0), ("Roles", 0), ("Age", 0), ("Version", 0), ("Internal-IP", 1),
              ("External-IP", 1), ("OS-Image", 1), ("Kernel-Version", 1), ("Container-Runtime", 1)],
    "pods": [("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1), ("Node", 1),
             ("Nominated Node", 1), ("Readiness Gates", 1)],
    "services": [("Name", 0), ("Type", 0), ("Cluster-IP", 0), ("External-IP", 0), ("Port(s)", 0), ("Age", 0),
                 ("Selector", 1)],
    "endpoints": [("Name", 0), ("Endpoints", 0), ("Age", 0)],
    "events": [("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Subobject", 1), ("Source", 1),
               ("Message", 0), ("First Seen", 1), ("Count", 1), ("Name", 1)],
    "deployments": [("Name", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0), ("Age", 0),
                    ("Containers", 1), ("Images", 1), ("Selector", 1)],
    "replicasets": [("Name", 0), ("Desired", 0), ("Current", 0), ("Ready", 0), ("Age", 0), ("Containers", 1),
                    ("Images", 1), ("Selector", 1)],
    "statefulsets": [("Name", 0), ("Ready", 0), ("Age", 0), ("Containers", 1), ("Images", 1)],
    "endpointslices": [("Name", 0), ("AddressType", 0), ("Ports", 0), ("Endpoints", 0), ("Age", 0)],
}


@pytest.mark.parametrize("plural", sorted(EXPECTED_COLUMNS))
def test_column_names_order_and_priorities(plural: str) -> None:
    cols = column_definitions(plural)
    assert [(c["name"], c["priority"]) for c in cols] == EXPECTED_COLUMNS[plural]
    for c in cols:
        assert set(c) == {"name", "type", "format", "description", "priority"}
        assert c["description"]
        # Only the Name column carries format "name".
        assert c["format"] == ("name" if c["name"] == "Name" else "")


def test_column_types() -> None:
    types = {c["name"]: c["type"] for c in column_definitions("replicasets")}
    assert types == {"Name": "string", "Desired": "integer", "Current": "integer", "Ready": "integer",
                     "Age": "string", "Containers": "string", "Images": "string", "Selector": "string"}
    assert {c["name"]: c["type"] for c in column_definitions("pods")}["Restarts"] == "string"


def test_column_definitions_are_copies() -> None:
    column_definitions("pods")[0]["name"] = "mutated"
    assert column_definitions("pods")[0]["name"] == "Name"


# ---------------------------------------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------------------------------------


def service(name: str, spec: dict[str, Any], created: str = CREATED, status: dict | None = None) -> dict[str, Any]:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": meta(name, created=created, labels={"app": name}),
           "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


NGINX_SVC = service("nginx", {
    "type": "ClusterIP", "clusterIP": "10.96.12.34", "clusterIPs": ["10.96.12.34"],
    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "selector": {"app": "nginx"},
}, status={"loadBalancer": {}})


@pytest.mark.parametrize(
    ("svc", "expected"),
    [
        (NGINX_SVC, ["nginx", "ClusterIP", "10.96.12.34", "<none>", "80/TCP", "5m", "app=nginx"]),
        (service("nginx-headless", {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"],
                                    "selector": {"app": "nginx"}}),
         ["nginx-headless", "ClusterIP", "None", "<none>", "<none>", "5m", "app=nginx"]),
        (service("my-db", {"type": "ExternalName", "externalName": "my.database.example.com"}, created=ago(19)),
         ["my-db", "ExternalName", "<none>", "my.database.example.com", "<none>", "19s", "<none>"]),
        (service("web", {"type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                         "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP", "targetPort": 8080}],
                         "selector": {"tier": "web", "app": "shop"}}),
         ["web", "NodePort", "10.96.0.20", "<none>", "80:30080/TCP", "5m", "app=shop,tier=web"]),
        (service("dns", {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                         "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                   {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                                   {"name": "metrics", "port": 9153}],
                         "selector": {"k8s-app": "kube-dns"}}),
         ["dns", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP,9153/TCP", "5m", "k8s-app=kube-dns"]),
        (service("ext", {"type": "ClusterIP", "clusterIP": "10.96.0.30", "externalIPs": ["203.0.113.7"],
                         "ports": [{"port": 80, "protocol": "TCP"}]}),
         ["ext", "ClusterIP", "10.96.0.30", "203.0.113.7", "80/TCP", "5m", "<none>"]),
        (service("lb", {"type": "LoadBalancer", "clusterIP": "10.96.0.40",
                        "ports": [{"port": 80, "nodePort": 31000, "protocol": "TCP"}]}),
         ["lb", "LoadBalancer", "10.96.0.40", "<pending>", "80:31000/TCP", "5m", "<none>"]),
        (service("lb2", {"type": "LoadBalancer", "clusterIP": "10.96.0.41",
                         "ports": [{"port": 80, "nodePort": 31001, "protocol": "TCP"}]},
                 status={"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}),
         ["lb2", "LoadBalancer", "10.96.0.41", "203.0.113.10", "80:31001/TCP", "5m", "<none>"]),
        # Straight after creation, before defaulting filled the type in.
        (service("bare", {"ports": [{"port": 8080}]}),
         ["bare", "ClusterIP", "<none>", "<none>", "8080/TCP", "5m", "<none>"]),
    ],
    ids=lambda v: v["metadata"]["name"] if isinstance(v, dict) else None,
)
def test_service_cells(svc: dict[str, Any], expected: list[Any]) -> None:
    assert row_cells("services", svc, NOW) == expected


# ---------------------------------------------------------------------------------------------------------
# Endpoints and EndpointSlices
# ---------------------------------------------------------------------------------------------------------


def endpoints(subsets: list[dict[str, Any]] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("nginx")}
    if subsets is not None:
        obj["subsets"] = subsets
    return obj


def addrs(*ips: str) -> list[dict[str, Any]]:
    return [{"ip": ip, "targetRef": {"kind": "Pod", "name": f"p{i}"}} for i, ip in enumerate(ips)]


@pytest.mark.parametrize(
    ("subsets", "expected"),
    [
        ([{"addresses": addrs("10.244.0.5", "10.244.0.6"), "ports": [{"port": 80, "protocol": "TCP"}]}],
         "10.244.0.5:80,10.244.0.6:80"),
        ([{"addresses": addrs("10.244.0.5", "10.244.0.6")}], "10.244.0.5,10.244.0.6"),
        (None, "<none>"),
        ([], "<none>"),
        ([{"addresses": addrs(*(f"10.244.0.{i}" for i in range(1, 6))), "ports": [{"port": 80}]}],
         "10.244.0.1:80,10.244.0.2:80,10.244.0.3:80 + 2 more..."),
        # Each port of a subset repeats its addresses; the "more" count includes every pair.
        ([{"addresses": addrs("10.244.0.5", "10.244.0.6"), "ports": [{"name": "http", "port": 80},
                                                                      {"name": "https", "port": 443}]}],
         "10.244.0.5:80,10.244.0.6:80,10.244.0.5:443 + 1 more..."),
        # Not-ready addresses are not printed: the subset exists but prints as an empty cell.
        ([{"notReadyAddresses": addrs("10.244.0.5"), "ports": [{"port": 80}]}], ""),
        ([{"addresses": addrs("fd00::5"), "ports": [{"port": 80}]}], "[fd00::5]:80"),
    ],
)
def test_endpoints_cells(subsets: list[dict[str, Any]] | None, expected: str) -> None:
    assert row_cells("endpoints", endpoints(subsets), NOW) == ["nginx", expected, "5m"]


def endpoint_slice(ports: list[dict[str, Any]], eps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": meta("nginx-x7k2p", labels={"kubernetes.io/service-name": "nginx"}),
            "addressType": "IPv4", "ports": ports, "endpoints": eps}


def test_endpointslice_cells() -> None:
    eps = [{"addresses": ["10.244.0.5"], "conditions": {"ready": True}},
           {"addresses": ["10.244.0.6"], "conditions": {"ready": False}}]
    obj = endpoint_slice([{"name": "", "port": 80, "protocol": "TCP"}], eps)
    assert row_cells("endpointslices", obj, NOW) == ["nginx-x7k2p", "IPv4", "80", "10.244.0.5,10.244.0.6", "5m"]


def test_endpointslice_empty_and_many() -> None:
    empty = endpoint_slice([], [])
    del empty["ports"], empty["endpoints"]
    assert row_cells("endpointslices", empty, NOW) == ["nginx-x7k2p", "IPv4", "<unset>", "<unset>", "5m"]

    many = endpoint_slice(
        [{"port": 80}, {"name": "metrics"}, {}, {"port": 9000}, {"port": 9001}],
        [{"addresses": [f"10.244.0.{i}"]} for i in range(1, 5)],
    )
    assert row_cells("endpointslices", many, NOW) == [
        "nginx-x7k2p", "IPv4", "80,metrics,* + 2 more...", "10.244.0.1,10.244.0.2,10.244.0.3 + 1 more...", "5m"]


# ---------------------------------------------------------------------------------------------------------
# Pods
# ---------------------------------------------------------------------------------------------------------


def pod(name: str, status: dict[str, Any] | None, *, containers: int = 1, init: list[dict[str, Any]] | None = None,
        node: str | None = "labkit-control-plane", extra_spec: dict | None = None, **meta_extra: Any) -> dict:
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": "nginx"} for i in range(containers)]}
    if init:
        spec["initContainers"] = init
    if node:
        spec["nodeName"] = node
    spec.update(extra_spec or {})
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta(name, labels={"app": "nginx"}, **meta_extra),
           "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


RUNNING_CS = {"name": "c0", "ready": True, "started": True, "restartCount": 0,
              "state": {"running": {"startedAt": CREATED}}, "image": "nginx", "imageID": "", "containerID": ""}
READY_CONDITIONS = [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"},
                    {"type": "ContainersReady", "status": "True"}, {"type": "PodScheduled", "status": "True"}]


def running_status(**extra: Any) -> dict[str, Any]:
    status = {"phase": "Running", "conditions": READY_CONDITIONS, "podIP": "10.244.0.5",
              "podIPs": [{"ip": "10.244.0.5"}], "hostIP": "172.18.0.2", "containerStatuses": [RUNNING_CS]}
    status.update(extra)
    return status


def waiting(name: str, reason: str, restarts: int = 0, **extra: Any) -> dict[str, Any]:
    return {"name": name, "ready": False, "started": False, "restartCount": restarts,
            "state": {"waiting": {"reason": reason, "message": "..."}}, **extra}


def test_pod_running_with_wide_columns() -> None:
    assert row_cells("pods", pod("nginx-7b54d48599-2j79v", running_status()), NOW) == [
        "nginx-7b54d48599-2j79v", "1/1", "Running", "0", "5m", "10.244.0.5", "labkit-control-plane", "<none>",
        "<none>"]


def test_pod_straight_after_creation_has_no_status() -> None:
    obj = pod("web-0", None, node=None, created=NOW.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert row_cells("pods", obj, NOW) == ["web-0", "0/1", "Pending", "0", "0s", "<none>", "<none>", "<none>",
                                           "<none>"]


def test_pod_ip_from_pod_ips_only() -> None:
    status = running_status()
    del status["podIP"]
    assert row_cells("pods", pod("p", status), NOW)[5] == "10.244.0.5"


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "ContainerCreating"])
def test_pod_waiting_reason(reason: str) -> None:
    status = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
              "containerStatuses": [waiting("c0", reason)]}
    assert row_cells("pods", pod("bad", status), NOW)[:5] == ["bad", "0/1", reason, "0", "5m"]


def test_pod_crash_loop_back_off_with_restart_age() -> None:
    cs = waiting("c0", "CrashLoopBackOff", restarts=3,
                 lastState={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": ago(14),
                                           "finishedAt": ago(12)}})
    status = running_status(containerStatuses=[cs],
                            conditions=[{"type": "Ready", "status": "False"}])
    assert row_cells("pods", pod("crash", status), NOW)[:5] == ["crash", "0/1", "CrashLoopBackOff", "3 (12s ago)",
                                                                "5m"]


def test_pod_restarts_without_last_termination_time_are_a_bare_number() -> None:
    cs = dict(RUNNING_CS, restartCount=2)
    assert row_cells("pods", pod("p", running_status(containerStatuses=[cs])), NOW)[3] == "2"


def test_pod_completed_and_failed() -> None:
    done = {"phase": "Succeeded", "containerStatuses": [
        {"name": "c0", "ready": False, "restartCount": 0,
         "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": ago(60)}}}]}
    assert row_cells("pods", pod("job", done), NOW)[:4] == ["job", "0/1", "Completed", "0"]
    failed = {"phase": "Failed", "containerStatuses": [
        {"name": "c0", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}]}
    assert row_cells("pods", pod("job2", failed), NOW)[2] == "ExitCode:2"
    signalled = {"phase": "Failed", "containerStatuses": [
        {"name": "c0", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}
    assert row_cells("pods", pod("job3", signalled), NOW)[2] == "Signal:9"


def test_pod_completed_container_next_to_running_one_is_not_ready() -> None:
    done = {"name": "c0", "ready": False, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    live = dict(RUNNING_CS, name="c1")
    status = running_status(containerStatuses=[done, live], conditions=[{"type": "Ready", "status": "False"}])
    assert row_cells("pods", pod("mixed", status, containers=2), NOW)[1:3] == ["1/2", "NotReady"]
    status["conditions"] = READY_CONDITIONS
    assert row_cells("pods", pod("mixed", status, containers=2), NOW)[1:3] == ["1/2", "Running"]


def test_pod_terminating() -> None:
    obj = pod("nginx", running_status(), deletionTimestamp=ago(1), deletionGracePeriodSeconds=30)
    assert row_cells("pods", obj, NOW)[:3] == ["nginx", "1/1", "Terminating"]
    lost = pod("nginx", running_status(reason="NodeLost"), deletionTimestamp=ago(1))
    assert row_cells("pods", lost, NOW)[2] == "Unknown"
    done = pod("job", {"phase": "Succeeded"}, deletionTimestamp=ago(1))
    assert row_cells("pods", done, NOW)[2] == "Succeeded"


INIT = [{"name": "init-myservice", "image": "busybox"}, {"name": "init-mydb", "image": "busybox"}]


@pytest.mark.parametrize(
    ("init_statuses", "expected"),
    [
        ([{"name": "init-myservice", "ready": False, "restartCount": 0, "state": {"running": {}}},
          {"name": "init-mydb", "ready": False, "restartCount": 0,
           "state": {"waiting": {"reason": "PodInitializing"}}}], "Init:0/2"),
        ([{"name": "init-myservice", "ready": True, "restartCount": 0,
           "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
          {"name": "init-mydb", "ready": False, "restartCount": 0, "state": {"running": {}}}], "Init:1/2"),
        ([{"name": "init-myservice", "ready": False, "restartCount": 0,
           "state": {"waiting": {"reason": "ErrImagePull"}}}], "Init:ErrImagePull"),
        ([{"name": "init-myservice", "ready": False, "restartCount": 4,
           "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}], "Init:Error"),
        ([{"name": "init-myservice", "ready": False, "restartCount": 0,
           "state": {"terminated": {"exitCode": 3}}}], "Init:ExitCode:3"),
    ],
)
def test_pod_init_containers(init_statuses: list[dict[str, Any]], expected: str) -> None:
    status = {"phase": "Pending", "conditions": [{"type": "Initialized", "status": "False"}],
              "initContainerStatuses": init_statuses,
              "containerStatuses": [waiting("c0", "PodInitializing")]}
    cells = row_cells("pods", pod("myapp", status, init=INIT), NOW)
    assert cells[1:3] == ["0/1", expected]


def test_pod_init_restarts_count_while_initializing() -> None:
    status = {"phase": "Pending", "initContainerStatuses": [
        {"name": "init-myservice", "ready": False, "restartCount": 4,
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}},
         "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
    cells = row_cells("pods", pod("myapp", status, init=INIT), NOW)
    assert cells[2:4] == ["Init:CrashLoopBackOff", "4 (30s ago)"]


def test_pod_sidecar_counts_as_container() -> None:
    init = [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]
    status = running_status(initContainerStatuses=[
        {"name": "proxy", "ready": True, "started": True, "restartCount": 1,
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(100)}}, "state": {"running": {}}}])
    cells = row_cells("pods", pod("withsidecar", status, init=init), NOW)
    assert cells[1:4] == ["2/2", "Running", "1 (100s ago)"]


def test_pod_readiness_gates_and_nominated_node() -> None:
    status = running_status(nominatedNodeName="other-node", conditions=[
        *READY_CONDITIONS, {"type": "example.com/feature-1", "status": "True"},
        {"type": "example.com/feature-2", "status": "False"}])
    gates = {"readinessGates": [{"conditionType": "example.com/feature-1"},
                                {"conditionType": "example.com/feature-2"},
                                {"conditionType": "example.com/missing"}]}
    cells = row_cells("pods", pod("gated", status, extra_spec=gates), NOW)
    assert cells[7:] == ["other-node", "1/3"]


def test_pod_scheduling_gated() -> None:
    status = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                  "reason": "SchedulingGated"}]}
    assert row_cells("pods", pod("gated", status, node=None), NOW)[2] == "SchedulingGated"


# ---------------------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------------------

TEMPLATE = {"metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}


def test_deployment_cells() -> None:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("nginx", generation=1),
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "nginx"}}, "template": TEMPLATE},
           "status": {"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2}}
    assert row_cells("deployments", obj, NOW) == ["nginx", "2/2", 2, 2, "5m", "nginx", "nginx:1.25", "app=nginx"]


def test_new_deployment_without_status_and_two_containers() -> None:
    template = {"spec": {"containers": [{"name": "web", "image": "nginx"}, {"name": "log", "image": "busybox"}]}}
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web"),
           "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template}}
    assert row_cells("deployments", obj, NOW) == ["web", "0/3", 0, 0, "5m", "web,log", "nginx,busybox", "app=web"]


def test_replicaset_cells_and_selector_formatting() -> None:
    obj = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
           "metadata": meta("nginx-7b54d48599", labels={"app": "nginx", "pod-template-hash": "7b54d48599"}),
           "spec": {"replicas": 2, "template": TEMPLATE,
                    "selector": {"matchLabels": {"pod-template-hash": "7b54d48599", "app": "nginx"}}},
           "status": {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1, "availableReplicas": 1}}
    assert row_cells("replicasets", obj, NOW) == [
        "nginx-7b54d48599", 2, 2, 1, "5m", "nginx", "nginx:1.25", "app=nginx,pod-template-hash=7b54d48599"]

    obj["spec"]["selector"] = {"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["b", "a"]}, {"key": "env", "operator": "Exists"},
        {"key": "canary", "operator": "DoesNotExist"}, {"key": "zone", "operator": "NotIn", "values": ["z1"]}]}
    assert row_cells("replicasets", obj, NOW)[7] == "app=web,!canary,env,tier in (a,b),zone notin (z1)"
    obj["spec"]["selector"] = {}
    del obj["status"]
    assert row_cells("replicasets", obj, NOW)[1:4] == [2, 0, 0]
    assert row_cells("replicasets", obj, NOW)[7] == "<none>"


def test_statefulset_cells() -> None:
    obj = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("web"),
           "spec": {"replicas": 2, "serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
                    "template": {"spec": {"containers": [
                        {"name": "nginx", "image": "registry.k8s.io/nginx-slim:0.8"}]}}},
           "status": {"replicas": 2, "readyReplicas": 2, "currentReplicas": 2}}
    assert row_cells("statefulsets", obj, NOW) == ["web", "2/2", "5m", "nginx", "registry.k8s.io/nginx-slim:0.8"]
    del obj["status"]
    assert row_cells("statefulsets", obj, NOW)[1] == "0/2"


# ---------------------------------------------------------------------------------------------------------
# Events, namespaces, nodes
# ---------------------------------------------------------------------------------------------------------


def test_event_cells() -> None:
    obj = {"apiVersion": "v1", "kind": "Event", "metadata": meta("nginx-7b54d48599-2j79v.17c8a9b3c2d4e5f6"),
           "involvedObject": {"kind": "Pod", "namespace": "default", "name": "nginx-7b54d48599-2j79v",
                              "fieldPath": "spec.containers{nginx}"},
           "reason": "Pulled", "message": "Container image \"nginx\" already present on machine\n",
           "source": {"component": "kubelet", "host": "labkit-control-plane"},
           "firstTimestamp": ago(200), "lastTimestamp": ago(30), "count": 3, "type": "Normal"}
    assert row_cells("events", obj, NOW) == [
        "30s", "Normal", "Pulled", "pod/nginx-7b54d48599-2j79v", "spec.containers{nginx}",
        "kubelet, labkit-control-plane", "Container image \"nginx\" already present on machine", "3m20s", 3,
        "nginx-7b54d48599-2j79v.17c8a9b3c2d4e5f6"]


def test_event_from_events_api_style() -> None:
    # New-style events: eventTime instead of first/lastTimestamp, no count, reporting* instead of source.
    obj = {"apiVersion": "v1", "kind": "Event", "metadata": meta("nginx.1"),
           "involvedObject": {"kind": "Deployment", "namespace": "default", "name": "nginx"},
           "reason": "ScalingReplicaSet", "message": "Scaled up replica set nginx-7b54d48599 to 2",
           "eventTime": (NOW - timedelta(seconds=45)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
           "reportingController": "deployment-controller", "type": "Normal"}
    assert row_cells("events", obj, NOW) == [
        "45s", "Normal", "ScalingReplicaSet", "deployment/nginx", "", "deployment-controller",
        "Scaled up replica set nginx-7b54d48599 to 2", "45s", 1, "nginx.1"]

    obj["series"] = {"count": 7, "lastObservedTime": (NOW - timedelta(seconds=5)).isoformat()}
    cells = row_cells("events", obj, NOW)
    assert (cells[0], cells[8]) == ("5s", 7)

    del obj["eventTime"], obj["series"]
    obj["involvedObject"] = {"kind": "Node"}
    cells = row_cells("events", obj, NOW)
    assert (cells[0], cells[3], cells[7]) == ("<unknown>", "node", "<unknown>")


def test_namespace_cells() -> None:
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta("default", namespace=None),
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    assert row_cells("namespaces", obj, NOW) == ["default", "Active", "5m"]
    obj["status"]["phase"] = "Terminating"
    assert row_cells("namespaces", obj, NOW)[1] == "Terminating"


def test_node_cells() -> None:
    obj = {"apiVersion": "v1", "kind": "Node",
           "metadata": meta("labkit-control-plane", namespace=None, created=ago(3 * 86400 + 4 * 3600),
                            labels={"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master",
                                    "kubernetes.io/hostname": "labkit-control-plane"}),
           "spec": {"podCIDR": "10.244.0.0/24"},
           "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                     {"type": "Ready", "status": "True"}],
                      "addresses": [{"type": "InternalIP", "address": "172.18.0.2"},
                                    {"type": "Hostname", "address": "labkit-control-plane"}],
                      "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                                   "kernelVersion": "6.1.0-21-amd64", "containerRuntimeVersion": "labkit://0.1"}}}
    assert row_cells("nodes", obj, NOW) == [
        "labkit-control-plane", "Ready", "control-plane,master", "3d4h", "v1.32.0", "172.18.0.2", "<none>",
        "Debian GNU/Linux 12 (bookworm)", "6.1.0-21-amd64", "labkit://0.1"]

    obj["spec"]["unschedulable"] = True
    obj["status"]["conditions"][1]["status"] = "Unknown"
    assert row_cells("nodes", obj, NOW)[1] == "NotReady,SchedulingDisabled"


def test_node_without_status() -> None:
    obj = {"apiVersion": "v1", "kind": "Node", "metadata": meta("n1", namespace=None)}
    assert row_cells("nodes", obj, NOW) == ["n1", "Unknown", "<none>", "5m", "", "<none>", "<none>", "<unknown>",
                                            "<unknown>", "<unknown>"]


# ---------------------------------------------------------------------------------------------------------
# Whole tables
# ---------------------------------------------------------------------------------------------------------

SAMPLES = {
    "services": NGINX_SVC,
    "endpoints": endpoints([{"addresses": addrs("10.244.0.5"), "ports": [{"port": 80}]}]),
    "endpointslices": endpoint_slice([{"port": 80}], [{"addresses": ["10.244.0.5"]}]),
    "pods": pod("p", running_status()),
    "deployments": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("d"), "spec": {}},
    "replicasets": {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta("r"), "spec": {}},
    "statefulsets": {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("s"), "spec": {}},
    "events": {"apiVersion": "v1", "kind": "Event", "metadata": meta("e"), "involvedObject": {}},
    "namespaces": {"apiVersion": "v1", "kind": "Namespace", "metadata": meta("ns", namespace=None)},
    "nodes": {"apiVersion": "v1", "kind": "Node", "metadata": meta("n", namespace=None)},
}


@pytest.mark.parametrize("plural", sorted(SAMPLES))
def test_one_cell_per_column_and_json_serialisable(plural: str) -> None:
    table = to_table(plural, [SAMPLES[plural]], resource_version="1032", now=NOW)
    assert len(table["rows"][0]["cells"]) == len(table["columnDefinitions"])
    assert all(isinstance(c, (str, int)) for c in table["rows"][0]["cells"])
    json.dumps(table)


def test_minimal_objects_do_not_crash() -> None:
    for plural in SAMPLES:
        cells = row_cells(plural, {"metadata": {}}, NOW)
        assert len(cells) == len(column_definitions(plural))


def test_table_shape_with_metadata_objects() -> None:
    table = to_table("services", [NGINX_SVC], resource_version="1032", now=NOW)
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "1032"}
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    [row] = table["rows"]
    assert row == {
        "cells": ["nginx", "ClusterIP", "10.96.12.34", "<none>", "80/TCP", "5m", "app=nginx"],
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": NGINX_SVC["metadata"]},
    }
    # The row carries a copy: changing it does not change the stored object.
    row["object"]["metadata"]["labels"]["x"] = "y"
    assert "x" not in NGINX_SVC["metadata"]["labels"]


def test_table_include_object_none_and_object() -> None:
    none = to_table("services", [NGINX_SVC], include_object="None", now=NOW)
    assert none["rows"][0]["object"] is None
    assert none["metadata"] == {}
    full = to_table("services", [NGINX_SVC], include_object="Object", now=NOW)
    assert full["rows"][0]["object"] == NGINX_SVC
    assert to_table("services", [NGINX_SVC], include_object="", now=NOW)["rows"][0]["object"]["kind"] == (
        "PartialObjectMetadata")
    with pytest.raises(ValueError, match="unrecognized includeObject value"):
        to_table("services", [NGINX_SVC], include_object="Everything", now=NOW)


def test_table_without_columns_for_watch_events() -> None:
    table = to_table("services", [NGINX_SVC], with_columns=False, now=NOW)
    assert table["columnDefinitions"] is None
    assert "columnDefinitions" in json.loads(json.dumps(table))


def test_empty_list_table() -> None:
    table = to_table("pods", [], resource_version="7", now=NOW)
    assert table["rows"] == []
    assert len(table["columnDefinitions"]) == 9


def test_finished_pod_rows_carry_completed_condition() -> None:
    ok = pod("ok", {"phase": "Succeeded"})
    failed = pod("bad", {"phase": "Failed"})
    running = pod("run", running_status())
    rows = to_table("pods", [ok, failed, running], now=NOW)["rows"]
    assert rows[0]["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                      "message": "The pod has completed successfully."}]
    assert rows[1]["conditions"] == [{"type": "Completed", "status": "True", "reason": "Failed",
                                      "message": "The pod failed."}]
    assert "conditions" not in rows[2]


def test_unknown_resource_gets_default_columns() -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": meta("kube-root-ca.crt", created="2024-05-01T12:00:00+02:00")}
    table = to_table("leases.example", [lease], now=NOW)
    assert [(c["name"], c["type"]) for c in table["columnDefinitions"]] == [("Name", "string"),
                                                                            ("Created At", "date")]
    assert table["rows"][0]["cells"] == ["kube-root-ca.crt", "2024-05-01T10:00:00Z"]


def test_now_defaults_to_current_time_and_naive_now_is_utc() -> None:
    fresh = service("fresh", {"type": "ClusterIP"},
                    created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    age = to_table("services", [fresh])["rows"][0]["cells"][5]
    assert age in {"0s", "1s", "2s"}
    naive = NOW.replace(tzinfo=None)
    assert row_cells("services", NGINX_SVC, naive)[5] == "5m"


# ---------------------------------------------------------------------------------------------------------
# Through the real kubectl
# ---------------------------------------------------------------------------------------------------------

KUBECTL = shutil.which("kubectl.1.32") or (
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"
    if os.access("/usr/lib/google-cloud-sdk/bin/kubectl.1.32", os.X_OK) else None)

_DISCOVERY_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
_CORE_DISCOVERY = {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                   "items": [{"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
                       {"resource": "services", "responseKind": {"group": "", "version": "v1", "kind": "Service"},
                        "scope": "Namespaced", "verbs": ["get", "list", "watch"], "shortNames": ["svc"]}]}]}]}


class _FakeApiServer(BaseHTTPRequestHandler):
    """Answers discovery and `GET services` with a Table, like the measured contract requires."""

    table: dict[str, Any] = {}

    def do_GET(self) -> None:  # http.server dispatches on this name
        path = self.path.split("?")[0]
        if path == "/api":
            self._send(_CORE_DISCOVERY, _DISCOVERY_TYPE)
        elif path == "/apis":
            self._send({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                        "items": []}, _DISCOVERY_TYPE)
        elif path == "/api/v1/namespaces/default/services" and "as=Table" in self.headers.get("Accept", ""):
            self._send(self.table, "application/json")
        else:
            self.send_response(404)
            self.end_headers()

    def _send(self, body: dict[str, Any], content_type: str) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.skipif(KUBECTL is None, reason="kubectl 1.32 not installed")
def test_kubectl_prints_our_table(tmp_path: Path) -> None:
    my_db = service("my-db", {"type": "ExternalName", "externalName": "my.database.example.com"}, created=ago(19))
    _FakeApiServer.table = to_table("services", [NGINX_SVC, my_db], resource_version="1032", now=NOW)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
            "users": [{"name": "t", "user": {"token": "test"}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t", "namespace": "default"}}]}))
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}

        def kubectl(*args: str) -> str:
            done = subprocess.run([KUBECTL, *args, "--cache-dir", str(tmp_path / "cache")], env=env,
                                  capture_output=True, text=True, timeout=20)
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert kubectl("get", "svc") == (
            "NAME    TYPE           CLUSTER-IP    EXTERNAL-IP               PORT(S)   AGE\n"
            "nginx   ClusterIP      10.96.12.34   <none>                    80/TCP    5m\n"
            "my-db   ExternalName   <none>        my.database.example.com   <none>    19s\n")
        assert kubectl("get", "svc", "-o", "wide").splitlines()[1].split() == [
            "nginx", "ClusterIP", "10.96.12.34", "<none>", "80/TCP", "5m", "app=nginx"]
        assert kubectl("get", "svc", "--show-labels").splitlines()[1].split()[-1] == "app=nginx"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _services(count: int) -> list[dict[str, Any]]:
    """Services as stored, with managedFields, created a few seconds apart."""
    out = []
    for i in range(count):
        svc = json.loads(json.dumps(NGINX_SVC))
        svc["metadata"]["name"] = f"svc-{i}"
        svc["metadata"]["creationTimestamp"] = f"2024-05-01T10:00:{i % 7:02d}Z"
        svc["metadata"]["managedFields"] = [{
            "manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": "2024-05-01T10:00:00Z",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {
                ".": {}, "f:port": {}, "f:protocol": {}}}}}}]
        out.append(svc)
    return out


def test_metadata_rows_are_private_copies_of_each_object() -> None:
    services = _services(3)
    table = to_table("services", services, now=NOW)
    metas = [row["object"]["metadata"] for row in table["rows"]]
    assert metas == [svc["metadata"] for svc in services]
    assert [m["name"] for m in metas] == ["svc-0", "svc-1", "svc-2"]
    metas[0]["managedFields"][0]["fieldsV1"].clear()
    assert services[0]["metadata"]["managedFields"][0]["fieldsV1"]
    assert metas[1]["managedFields"][0]["fieldsV1"]


def test_shared_metadata_gives_the_same_table_without_copying() -> None:
    services = _services(5)
    copied = to_table("services", services, resource_version="9", now=NOW)
    shared = to_table("services", services, resource_version="9", now=NOW, copy_metadata=False)
    assert json.dumps(shared) == json.dumps(copied)
    assert all(row["object"]["metadata"] is svc["metadata"] for row, svc in zip(shared["rows"], services, strict=True))
    # Only PartialObjectMetadata rows are concerned.
    assert to_table("services", services, include_object="None", now=NOW, copy_metadata=False)["rows"][0][
        "object"] is None


def test_ages_of_many_rows_with_repeated_and_odd_timestamps() -> None:
    services = _services(8)
    services[5]["metadata"]["creationTimestamp"] = "2024-05-01T10:04:59.5+00:00"
    services[6]["metadata"]["creationTimestamp"] = "not a time"
    services[7]["metadata"]["creationTimestamp"] = "2024-05-01T12:04:00+02:00"
    ages = [row["cells"][5] for row in to_table("services", services, now=NOW)["rows"]]
    assert ages == ["5m", "4m59s", "4m58s", "4m57s", "4m56s", "0s", "<unknown>", "60s"]
    # The same timestamp, seen again later, ages with the clock.
    later = to_table("services", services[:1], now=NOW + timedelta(hours=1))["rows"][0]["cells"][5]
    assert later == "65m"
