"""Acceptance of the embedded node agent ("kubelet") through the real kubectl.

Requests to pod IPs only ever run inside pods (`kubectl exec`), never from the host's namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.node.cleanup import cluster_netns
from labkit.node.names import Names, cluster_prefix

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nsenter", "unshare", "nft")),
                       reason="needs root and ip/nsenter/unshare/nft"),
]

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"


class NodeAgent:
    """The node agent of the session cluster: the supervisor's, or one this module runs beside it."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None
        status = json.loads((cluster.home / "run" / "status.json").read_text())
        if "node" not in status:
            self.start()

    def start(self) -> None:
        log = open(self.cluster.home / "logs" / "test-node-agent.log", "ab")  # noqa: SIM115 - kept for the process
        self.proc = subprocess.Popen([sys.executable, "-m", "labkit.node", "--kubeconfig", str(self.cluster.kubeconfig),
                                      "--home", str(self.cluster.home)], stdout=log, stderr=log)

    def pid(self) -> int:
        if self.proc is not None:
            return self.proc.pid
        return int(json.loads((self.cluster.home / "run" / "status.json").read_text())["node"]["pid"])

    def kill_hard(self) -> None:
        """SIGKILL the agent; it comes back (the supervisor restarts it, or we do)."""
        old = self.pid()
        os.kill(old, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
            self.start()
        else:
            wait_until(lambda: self.pid() != old, 20, "the supervisor to restart the node agent")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def node_agent(cluster: Any) -> Iterator[NodeAgent]:
    agent = NodeAgent(cluster)
    wait_until(lambda: "Ready" in cluster.kubectl("get", "node", "labkit-control-plane", check=False).stdout
               and "NotReady" not in cluster.kubectl("get", "node", "labkit-control-plane").stdout, 30, "node Ready")
    yield agent
    agent.stop()


@pytest.fixture
def ns(cluster: Any, node_agent: NodeAgent) -> Iterator[str]:
    name = f"node-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def get_pod(cluster: Any, ns: str, name: str) -> dict:
    return json.loads(cluster.kubectl("-n", ns, "get", "pod", name, "-o", "json").stdout)


def apply(cluster: Any, ns: str, *objs: dict) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                  "items": list(objs)}))


def pod_spec(name: str, containers: list[dict], labels: dict | None = None, **spec: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": containers, **spec}}


def netexec(name: str, **extra: Any) -> dict:
    return pod_spec(name, [{"name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"], **extra}],
                    {"app": "netexec"})


def wait_ready(cluster: Any, ns: str, *names: str, timeout: int = 30) -> None:
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", *(f"pod/{n}" for n in names), f"--timeout={timeout}s")


def container_status(cluster: Any, ns: str, name: str) -> dict:
    statuses = (get_pod(cluster, ns, name).get("status") or {}).get("containerStatuses") or [{}]
    return statuses[0]


# -------------------------------------------------------------------------------------------- tests
def test_nginx_pods_run_with_pod_ips(cluster: Any, ns: str) -> None:
    cluster.kubectl("-n", ns, "create", "deployment", "nginx", "--image=nginx:1.19", "--replicas=2")
    wait_until(lambda: len(cluster.kubectl("-n", ns, "get", "pods", "-l", "app=nginx", "-o", "name").stdout.split())
               == 2, 30, "two nginx pods")
    cluster.kubectl("-n", ns, "wait", "--for=condition=Ready", "pod", "-l", "app=nginx", "--timeout=30s")
    out = cluster.kubectl("-n", ns, "get", "pods", "--selector=app=nginx", "-o", "wide").stdout
    lines = out.strip().splitlines()
    assert lines[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    for line in lines[1:]:
        cols = line.split()
        assert cols[1:4] == ["1/1", "Running", "0"]
        assert ipaddress.ip_address(cols[5]) in ipaddress.ip_network("10.244.0.0/24")
        assert cols[6] == "labkit-control-plane"
    pod = json.loads(cluster.kubectl("-n", ns, "get", "pods", "-l", "app=nginx", "-o", "json").stdout)["items"][0]
    st = pod["status"]
    assert st["hostIP"] == "172.18.0.2" and st["podIPs"] == [{"ip": st["podIP"]}]
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True", "ContainersReady": "True",
        "PodScheduled": "True"}
    cs = st["containerStatuses"][0]
    assert cs["image"] == "docker.io/library/nginx:1.19" and cs["started"] is True
    assert cs["containerID"].startswith("containerd://") and "running" in cs["state"]
    events = cluster.kubectl("-n", ns, "get", "events", "--field-selector",
                             f"involvedObject.name={pod['metadata']['name']}", "-o", "json").stdout
    reasons = {e["reason"]: e["message"] for e in json.loads(events)["items"]}
    assert reasons["Pulled"] == 'Container image "nginx:1.19" already present on machine'
    assert reasons["Created"] == "Created container: nginx" and reasons["Started"] == "Started container nginx"


def test_exec_reaches_another_pods_hostname_by_ip_and_sees_cluster_dns(cluster: Any, ns: str) -> None:
    apply(cluster, ns, netexec("client"), netexec("server"))
    wait_ready(cluster, ns, "client", "server")
    ip = get_pod(cluster, ns, "server")["status"]["podIP"]
    if shutil.which("curl"):
        cmd = ["curl", "-s", f"http://{ip}:8080/hostname"]
    else:
        cmd = ["python3", "-c", f"import urllib.request; print(urllib.request.urlopen("
                                     f"'http://{ip}:8080/hostname').read().decode(), end='')"]
    assert cluster.kubectl("-n", ns, "exec", "client", "--", *cmd).stdout.strip() == "server"
    resolv = cluster.kubectl("-n", ns, "exec", "client", "--", "cat", "/etc/resolv.conf").stdout
    assert resolv == (f"search {ns}.svc.cluster.local svc.cluster.local cluster.local\n"
                      "nameserver 10.96.0.10\noptions ndots:5\n")
    env = cluster.kubectl("-n", ns, "exec", "client", "--", "env").stdout.splitlines()
    assert "KUBERNETES_SERVICE_HOST=10.96.0.1" in env and "KUBERNETES_SERVICE_PORT=443" in env


def endpoint_ips(cluster: Any, ns: str, name: str) -> tuple[list[str], list[str]]:
    ep = json.loads(cluster.kubectl("-n", ns, "get", "endpoints", name, "-o", "json").stdout)
    ready, unready = [], []
    for subset in ep.get("subsets") or []:
        ready += [a["ip"] for a in subset.get("addresses") or []]
        unready += [a["ip"] for a in subset.get("notReadyAddresses") or []]
    return ready, unready


def test_failing_readiness_probe_takes_the_pod_out_of_the_endpoints(cluster: Any, ns: str) -> None:
    flag = f"/tmp/labkit-test-ready-{uuid.uuid4().hex}"  # pods share the host's filesystem
    probe = {"exec": {"command": ["cat", flag]}, "periodSeconds": 1, "failureThreshold": 1}
    apply(cluster, ns, netexec("web", readinessProbe=probe),
          {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "netexec"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    try:
        wait_until(lambda: get_pod(cluster, ns, "web").get("status", {}).get("podIP"), 30, "a pod IP")
        ip = get_pod(cluster, ns, "web")["status"]["podIP"]
        wait_until(lambda: endpoint_ips(cluster, ns, "web") == ([], [ip]), 30, "a not-ready endpoint")
        cluster.kubectl("-n", ns, "exec", "web", "--", "touch", flag)
        wait_until(lambda: endpoint_ips(cluster, ns, "web") == ([ip], []), 30, "the pod to become ready")
        cluster.kubectl("-n", ns, "exec", "web", "--", "rm", flag)
        wait_until(lambda: endpoint_ips(cluster, ns, "web") == ([], [ip]), 30, "the pod to drop out")
        events = cluster.kubectl("-n", ns, "get", "events", "--field-selector", "reason=Unhealthy").stdout
        assert "Readiness probe failed: cat:" in events
        cluster.kubectl("-n", ns, "exec", "web", "--", "touch", flag)
        wait_until(lambda: endpoint_ips(cluster, ns, "web") == ([ip], []), 30, "the pod to come back")
    finally:
        Path(flag).unlink(missing_ok=True)


def test_unknown_image_gives_image_pull_backoff_with_the_message(cluster: Any, ns: str) -> None:
    apply(cluster, ns, pod_spec("bad", [{"name": "app", "image": "quay.io/acme/nosuch:1.0"}]))
    waiting = wait_until(lambda: (container_status(cluster, ns, "bad").get("state") or {}).get("waiting", {})
                         .get("reason") == "ImagePullBackOff" and container_status(cluster, ns, "bad"), 20,
                         "ImagePullBackOff")["state"]["waiting"]
    assert waiting["message"].startswith('Back-off pulling image "quay.io/acme/nosuch:1.0": ErrImagePull: ')
    assert "cannot pull images" in waiting["message"]
    row = cluster.kubectl("-n", ns, "get", "pod", "bad", "--no-headers").stdout.split()
    assert row[1:3] == ["0/1", "ImagePullBackOff"]
    assert get_pod(cluster, ns, "bad")["status"]["phase"] == "Pending"


def test_crashing_container_restarts_with_growing_back_off(cluster: Any, ns: str) -> None:
    apply(cluster, ns, pod_spec("crash", [{"name": "app", "image": "busybox", "command": ["sh", "-c", "exit 3"]}]))
    uid = get_pod(cluster, ns, "crash")["metadata"]["uid"]

    def waiting_message() -> str:
        return ((container_status(cluster, ns, "crash").get("state") or {}).get("waiting") or {}).get("message", "")

    first = wait_until(lambda: "back-off 10s" in waiting_message() and container_status(cluster, ns, "crash"), 20,
                       "the first back-off")
    assert first["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert first["state"]["waiting"]["message"] == \
        f"back-off 10s restarting failed container=app pod=crash_{ns}({uid})"
    assert first["lastState"]["terminated"]["exitCode"] == 3 and first["lastState"]["terminated"]["reason"] == "Error"
    second = wait_until(lambda: "back-off 20s" in waiting_message() and container_status(cluster, ns, "crash"), 30,
                        "the doubled back-off")
    assert second["restartCount"] > first["restartCount"]
    assert "CrashLoopBackOff" in cluster.kubectl("-n", ns, "get", "pod", "crash").stdout
    logs = cluster.kubectl("-n", ns, "get", "events", "--field-selector", "reason=BackOff").stdout
    assert "Back-off restarting failed container app in pod" in logs


def nice_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def pod_processes(cluster: Any, pod: dict) -> list[int]:
    netns = Names.for_home(cluster.home).pod_netns(pod["metadata"]["uid"])
    return [int(p) for p in subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                                           text=True).stdout.split()]


def test_pods_compete_for_cpu_with_the_weight_their_requests_give(cluster: Any, ns: str) -> None:
    """kubelet turns CPU requests into cgroup cpu.shares; labkit into the equivalent nice value."""
    apply(cluster, ns, netexec("weighted", resources={"requests": {"cpu": "50m"}}), netexec("besteffort"))
    wait_ready(cluster, ns, "weighted", "besteffort")
    for name, nice in (("weighted", 7), ("besteffort", 19)):
        pids = pod_processes(cluster, get_pod(cluster, ns, name))
        assert pids and {nice_of(p) for p in pids} == {nice}, name
        # what `kubectl exec` runs shares the container's weight
        stat = cluster.kubectl("-n", ns, "exec", name, "--", "cat", "/proc/self/stat").stdout
        assert int(stat.rsplit(")", 1)[1].split()[16]) == nice
    # CoreDNS requests 100m, as in kind: nice 4 beside the control plane's 0 (kube-apiserver's 250m)
    dns = json.loads(cluster.kubectl("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o",
                                     "json").stdout)["items"]
    assert dns and all({nice_of(p) for p in pod_processes(cluster, pod)} == {4} for pod in dns)


def test_graceful_termination_and_nothing_leaks(cluster: Any, ns: str) -> None:
    prefix = cluster_prefix(cluster.home)
    netns_before = set(cluster_netns(prefix))
    apply(cluster, ns, pod_spec("stubborn", [{"name": "app", "image": "busybox",
                                              "command": ["sh", "-c", "trap '' TERM; sleep 1000"]}],
                                terminationGracePeriodSeconds=2),
          netexec("quick"))
    wait_ready(cluster, ns, "stubborn", "quick")
    new_netns = set(cluster_netns(prefix)) - netns_before
    assert len(new_netns) == 2
    pod_pids = {int(p) for n in new_netns
                for p in subprocess.run(["ip", "netns", "pids", n], capture_output=True, text=True).stdout.split()}
    assert len(pod_pids) >= 2
    veths = [f"veth{get_pod(cluster, ns, n)['metadata']['uid'][:8]}" for n in ("stubborn", "quick")]
    assert all(v in subprocess.run(["ip", "-n", f"{prefix}-node", "-o", "link"], capture_output=True,
                                   text=True).stdout for v in veths)
    started = time.monotonic()
    cluster.kubectl("-n", ns, "delete", "pod", "stubborn", "quick", "--wait=false")
    assert "Terminating" in cluster.kubectl("-n", ns, "get", "pod", "stubborn").stdout
    wait_until(lambda: not cluster.kubectl("-n", ns, "get", "pods", "-o", "name").stdout.strip(), 20, "deletion")
    assert time.monotonic() - started >= 1.5  # the stubborn container got its grace period before SIGKILL
    assert not (set(cluster_netns(prefix)) & new_netns)
    wait_until(lambda: not [p for p in pod_pids if alive(p)], 5, "the pods' processes to end")
    node_links = subprocess.run(["ip", "-n", f"{prefix}-node", "-o", "link"], capture_output=True, text=True).stdout
    assert not [v for v in veths if v in node_links]
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not [v for v in veths if v in host_links]  # and the host namespace never had any


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_agent_killed_and_restarted_adopts_running_containers(cluster: Any, ns: str, node_agent: NodeAgent) -> None:
    apply(cluster, ns, netexec("survivor"))
    wait_ready(cluster, ns, "survivor")
    before = container_status(cluster, ns, "survivor")
    node_agent.kill_hard()
    apply(cluster, ns, netexec("newcomer"))
    wait_ready(cluster, ns, "newcomer")
    after = container_status(cluster, ns, "survivor")
    assert after["containerID"] == before["containerID"] and after["restartCount"] == 0
    assert after["state"]["running"]["startedAt"] == before["state"]["running"]["startedAt"]
    prefix = cluster_prefix(cluster.home)
    uid = get_pod(cluster, ns, "survivor")["metadata"]["uid"]
    # one process per container: no duplicate was started beside the adopted one
    pod_netns = [n for n in cluster_netns(prefix) if n.endswith(uid[:8])]
    assert len(pod_netns) == 1
    pids = subprocess.run(["ip", "netns", "pids", pod_netns[0]], capture_output=True, text=True).stdout.split()
    assert len(pids) == 1
