"""The kubelet's pure logic (environment, back-off, pod status) and its probes (on loopback only)."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from labkit.node import status as s
from labkit.node.nsutil import NetnsSockets
from labkit.node.probes import Prober, ProbeResult, probe_loop, resolve_port


def svc(name: str, ns: str, ip: str | None, ports: list[dict]) -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": ports}}


KUBERNETES = svc("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443, "protocol": "TCP"}])


def pod(ns: str = "default", **spec) -> dict:
    return {"metadata": {"name": "web-0", "namespace": ns, "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "labkit-control-plane", **spec}}


# ---------------------------------------------------------------------------------------------- env
def test_service_env_names_like_envvars_from_services():
    env = s.service_env([svc("my-svc", "default", "10.96.5.5", [{"name": "http", "port": 80, "protocol": "TCP"},
                                                                 {"port": 53, "protocol": "UDP"}])])
    assert env == {
        "MY_SVC_SERVICE_HOST": "10.96.5.5", "MY_SVC_SERVICE_PORT": "80", "MY_SVC_SERVICE_PORT_HTTP": "80",
        "MY_SVC_PORT": "tcp://10.96.5.5:80",
        "MY_SVC_PORT_80_TCP": "tcp://10.96.5.5:80", "MY_SVC_PORT_80_TCP_PROTO": "tcp",
        "MY_SVC_PORT_80_TCP_PORT": "80", "MY_SVC_PORT_80_TCP_ADDR": "10.96.5.5",
        "MY_SVC_PORT_53_UDP": "udp://10.96.5.5:53", "MY_SVC_PORT_53_UDP_PROTO": "udp",
        "MY_SVC_PORT_53_UDP_PORT": "53", "MY_SVC_PORT_53_UDP_ADDR": "10.96.5.5",
    }


def test_headless_services_and_other_namespaces_give_no_variables():
    services = [KUBERNETES, svc("headless", "default", "None", [{"port": 80}]),
                svc("other", "elsewhere", "10.96.7.7", [{"port": 80}])]
    env = s.service_env_map(pod(), services)
    assert "HEADLESS_SERVICE_HOST" not in env and "OTHER_SERVICE_HOST" not in env
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"


def test_enable_service_links_false_keeps_only_the_kubernetes_service():
    services = [KUBERNETES, svc("web", "team", "10.96.3.3", [{"port": 80}])]
    assert "WEB_SERVICE_HOST" in s.service_env_map(pod("team"), services)
    env = s.service_env_map(pod("team", enableServiceLinks=False), services)
    assert "WEB_SERVICE_HOST" not in env and env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"


def test_container_env_field_refs_expansion_and_precedence():
    container = {"env": [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "GREETING", "value": "hi $(POD) $$(POD) $(MISSING)"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": "8443"},
    ]}
    env = s.container_env(pod(), container, [KUBERNETES], pod_ip="10.244.0.7")
    assert env["POD"] == "web-0" and env["NS"] == "default" and env["IP"] == "10.244.0.7"
    assert env["HOST"] == "172.18.0.2" and env["NODE"] == "labkit-control-plane" and env["APP"] == "web"
    assert env["GREETING"] == "hi web-0 $(POD) $(MISSING)"
    assert env["KUBERNETES_SERVICE_PORT"] == "8443"  # explicit env wins over service links
    assert s.container_command({"command": ["echo", "$(POD)"], "args": ["$(IP)"]}, env) == (["echo", "web-0"],
                                                                                          ["10.244.0.7"])


# ------------------------------------------------------------------------------------------ back-off
def test_backoff_doubles_to_the_cap_and_resets_after_twice_the_cap():
    b = s.Backoff()
    key = ("uid", "app")
    assert not b.in_backoff_since(key, 0.0, 1.0)  # first crash: restart at once
    assert [b.next(key, t) for t in (0, 1, 2, 3, 4, 5, 6, 7)] == [10, 20, 40, 80, 160, 300, 300, 300]
    assert b.in_backoff_since(key, 7.0, 300.0) and not b.in_backoff_since(key, 7.0, 307.5)
    assert b.next(key, 7 + 601) == 10  # idle for more than 10 minutes


def test_crashloop_messages_and_durations():
    assert [s.go_duration(x) for x in (10, 80, 160, 300, 3600)] == ["10s", "1m20s", "2m40s", "5m0s", "1h0m0s"]
    assert s.pod_ref(pod()) == "web-0_default(u-1)"


# --------------------------------------------------------------------------------------- pod status
def cs(name: str, state: dict, last: dict | None = None, ready: bool = False) -> dict:
    return {"name": name, "state": state, "lastState": last or {}, "ready": ready}


RUNNING = {"running": {"startedAt": "2024-01-01T00:00:00Z"}}
CRASHLOOP = {"waiting": {"reason": "CrashLoopBackOff"}}
DONE0 = {"terminated": {"exitCode": 0}}
DONE1 = {"terminated": {"exitCode": 1}}


@pytest.mark.parametrize(("policy", "statuses", "phase"), [
    ("Always", [cs("a", {"waiting": {"reason": "ContainerCreating"}})], "Pending"),
    ("Always", [cs("a", {"waiting": {"reason": "ImagePullBackOff"}}), cs("b", RUNNING)], "Pending"),
    ("Always", [cs("a", RUNNING)], "Running"),
    ("Always", [cs("a", CRASHLOOP, {"terminated": {"exitCode": 1}})], "Running"),
    ("Never", [cs("a", DONE0)], "Succeeded"),
    ("Never", [cs("a", DONE0), cs("b", DONE1)], "Failed"),
    ("OnFailure", [cs("a", DONE0)], "Succeeded"),
    ("Never", [cs("a", RUNNING), cs("b", DONE1)], "Running"),
])
def test_pod_phase_like_get_phase(policy: str, statuses: list, phase: str):
    assert s.pod_phase(policy, statuses) == phase


def test_conditions_keep_transition_times_and_the_schedulers_condition():
    p = pod()
    p["status"] = {"conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "T0"},
        {"type": "Initialized", "status": "True", "lastTransitionTime": "T1"},
        {"type": "Ready", "status": "True", "lastTransitionTime": "T1"}]}
    conds = s.pod_conditions(p, [cs("a", RUNNING, ready=False), cs("b", RUNNING, ready=True)], "Running", True, "T2")
    by_type = {c["type"]: c for c in conds}
    assert [c["type"] for c in conds] == ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                          "PodScheduled"]
    assert by_type["Initialized"]["lastTransitionTime"] == "T1"
    assert by_type["Ready"] == {"type": "Ready", "status": "False", "lastProbeTime": None,
                                "lastTransitionTime": "T2", "reason": "ContainersNotReady",
                                "message": "containers with unready status: [a]"}
    assert by_type["PodScheduled"]["lastTransitionTime"] == "T0"
    done = {c["type"]: c for c in s.pod_conditions(p, [cs("a", DONE0)], "Succeeded", True, "T3")}
    assert done["Ready"]["reason"] == "PodCompleted"


def test_image_identities_and_qos():
    assert s.runtime_image("nginx:1.19") == "docker.io/library/nginx:1.19"
    assert s.runtime_image("registry.k8s.io/e2e-test-images/agnhost:2.52") == \
        "registry.k8s.io/e2e-test-images/agnhost:2.52"
    assert s.image_id("nginx:1.19").startswith("docker.io/library/nginx@sha256:")
    assert len(s.image_id("nginx:1.19").split(":")[-1]) == 64
    cid = s.container_id("u", "app", 0)
    assert cid.startswith("containerd://") and len(cid) == len("containerd://") + 64
    assert cid != s.container_id("u", "app", 1)
    assert s.qos_class(pod(containers=[{"name": "a"}])) == "BestEffort"
    limits = {"cpu": "1", "memory": "1Gi"}
    assert s.qos_class(pod(containers=[{"name": "a", "resources": {"limits": limits}}])) == "Guaranteed"
    assert s.qos_class(pod(containers=[{"name": "a", "resources": {"requests": {"cpu": "1"}}}])) == "Burstable"


def test_normalized_drops_nulls_for_change_detection():
    assert s.normalized({"a": None, "b": [{"c": None, "d": 1}]}) == {"b": [{"d": 1}]}


# ------------------------------------------------------------------------------------------- probes
def test_named_ports_resolve_from_the_container():
    c = {"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port("http", c) == 8080 and resolve_port(81, c) == 81 and resolve_port("82", c) == 82
    with pytest.raises(ValueError):
        resolve_port("nope", c)


async def test_probe_loop_counts_thresholds_and_reports_changes_only():
    outcomes = iter([True, False, False, False, False, True, True, True])
    results: list[tuple[str, bool]] = []
    failures: list[str] = []
    done = asyncio.Event()

    async def once() -> ProbeResult:
        try:
            return ProbeResult(next(outcomes), "boom")
        except StopIteration:
            done.set()
            await asyncio.sleep(3600)
            raise

    probe = {"periodSeconds": 0.001, "failureThreshold": 3, "successThreshold": 2}
    task = asyncio.create_task(probe_loop("liveness", probe, once, lambda k, ok: results.append((k, ok)),
                                          lambda k, m: failures.append(m), started_at=0.0))
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    # success x1 (< threshold 2) → nothing; 3 failures → False; 4th failure → no new report; 2 successes → True
    assert results == [("liveness", False), ("liveness", True)]
    assert failures == ["boom"] * 4


@pytest.fixture
def http_server():
    """A tiny HTTP server on loopback answering /ok with 200 and anything else with 503."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        while (await reader.readline()).strip():
            pass
        code = 200 if b" /ok " in line else 503
        writer.write(f"HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()
    return handle


async def test_http_tcp_and_exec_probes_on_loopback(http_server):
    server = await asyncio.start_server(http_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sockets = NetnsSockets("/proc/self/ns/net")  # this test's own namespace, loopback only
    prober = Prober(sockets, lambda argv: argv)
    container = {"name": "web", "ports": [{"name": "http", "containerPort": port}]}
    try:
        ok = await prober.run({"httpGet": {"path": "/ok", "port": "http", "host": "127.0.0.1"}}, container, "")
        bad = await prober.run({"httpGet": {"path": "/no", "port": port}}, container, "127.0.0.1")
        tcp = await prober.run({"tcpSocket": {"port": port}}, container, "127.0.0.1")
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]
        free.close()
        refused = await prober.run({"tcpSocket": {"port": closed_port}}, container, "127.0.0.1")
        exec_ok = await prober.run({"exec": {"command": [sys.executable, "-c", "print('fine')"]}}, container, "")
        exec_bad = await prober.run({"exec": {"command": [sys.executable, "-c", "import sys; print('no'); "
                                                          "sys.exit(1)"]}}, container, "")
        slow = await prober.run({"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 0.2}, container, "")
    finally:
        server.close()
        sockets.close()
    assert ok == ProbeResult(True)
    assert bad == ProbeResult(False, "HTTP probe failed with statuscode: 503")
    assert tcp.ok
    assert refused == ProbeResult(False, f"dial tcp 127.0.0.1:{closed_port}: connect: connection refused")
    assert exec_ok == ProbeResult(True, "fine\n") and exec_bad == ProbeResult(False, "no\n")
    assert not slow.ok and "timed out" in slow.message


@pytest.mark.parametrize(("quantity", "millis"), [("100m", 100), ("0.1", 100), ("1", 1000), ("1.5", 1500), ("2", 2000),
                                                  ("0.0001", 1), (0.5, 500), ("1k", 1_000_000), ("lots", 0)])
def test_cpu_quantities_in_millicores_round_up(quantity: object, millis: int) -> None:
    assert s.cpu_millis(quantity) == millis


def _pod_requesting(*cpus: str | None, limit: str | None = None) -> dict:
    containers = [{"name": f"c{i}", "resources": {"requests": {"cpu": c}} if c else {}} for i, c in enumerate(cpus)]
    if limit:
        containers.append({"name": "limited", "resources": {"limits": {"cpu": limit}}})
    return {"spec": {"containers": containers}}


def test_cpu_weight_follows_kubelets_shares_from_requests() -> None:
    assert s.cpu_nice(_pod_requesting()) == 19                # BestEffort: 2 shares
    assert s.cpu_nice(_pod_requesting(None)) == 19
    assert s.cpu_nice(_pod_requesting("100m")) == 4           # CoreDNS: 102 shares against the API server's 256
    assert s.cpu_nice(_pod_requesting("50m")) == 7
    assert s.cpu_nice(_pod_requesting("250m")) == 0           # kube-apiserver's request: labkit's own weight
    assert s.cpu_nice(_pod_requesting("100m", "100m")) == 1   # the containers' requests add up
    assert s.cpu_nice(_pod_requesting(limit="100m")) == 4     # a request defaults to the limit
    assert s.cpu_nice(_pod_requesting("4")) == 0              # never below labkit's own processes
