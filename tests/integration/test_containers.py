"""Pods as containers, tried as a learner tries them with kubectl, asserting what a kind cluster shows (issue 14).

A pod's containers have a root filesystem, a process tree and privileges of their own; toolbox images run their
command; attach, `kubectl run -it --rm`, exec with a terminal, cp, port-forward, pods/proxy and services/proxy,
`kubectl debug` work; volumes are mounted where the spec says; the cluster lives and dies as a whole.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from labkit.backends import embedded
from labkit.node.cleanup import cluster_netns, cluster_processes
from labkit.node.names import cluster_prefix, registered
from tests.conftest import kubectl_binary, wait_for

pytestmark = pytest.mark.integration

DOCKER_DEFAULT_CAPS = "00000000a80425fb"  # CapEff of a container on kind: Docker's default set


def sleeper(cluster: Any, ns: str, name: str, *extra: str) -> None:
    cluster.kubectl("run", name, "-n", ns, "--image=busybox", *extra, "--", "sleep", "3600")
    cluster.kubectl("wait", "-n", ns, "--for=condition=Ready", f"pod/{name}", "--timeout=60s")


def sh(cluster: Any, ns: str, pod: str, script: str, check: bool = True, container: str | None = None
       ) -> subprocess.CompletedProcess[str]:
    where = ["-c", container] if container else []
    return cluster.kubectl("exec", "-n", ns, pod, *where, "--", "sh", "-c", script, check=check)


def apply(cluster: Any, ns: str, obj: dict) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def pod_json(cluster: Any, ns: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", "pod", "-n", ns, name, "-o", "json").stdout)


def in_terminal(cluster: Any, args: list[str], script: list[tuple[str, bytes]], timeout: float = 60
                ) -> tuple[int, str]:
    """Run kubectl on a terminal of its own; for each (expected text, keys) wait until the output shows the text,
    then type the keys. Returns kubectl's exit code and everything it printed."""
    master, slave = os.openpty()
    binary = kubectl_binary("1.32")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    proc = subprocess.Popen([str(binary), f"--cache-dir={cluster.cache_dir / '1.32'}", *args], stdin=slave,
                            stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout

    def read_until(done: Any) -> None:
        nonlocal output
        while not done() and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: kubectl closed the terminal
                    return
                if not chunk:
                    return
                output += chunk

    try:
        for expected, keys in script:
            read_until(lambda e=expected: e.encode() in output)
            assert expected.encode() in output, f"never saw {expected!r} in {output!r}"
            os.write(master, keys)
        read_until(lambda: proc.poll() is not None)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        read_until(lambda: True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, output.decode(errors="replace")


# ------------------------------------------------------------------------------------------------ isolation
def test_a_pod_sees_its_own_files_processes_and_privileges(cluster: Any, namespace: str) -> None:
    marker = Path("/tmp") / f"labkit-host-marker-{uuid.uuid4().hex[:8]}"
    marker.write_text("the host's")
    try:
        sleeper(cluster, namespace, "a")
        sleeper(cluster, namespace, "b")
        top = sh(cluster, namespace, "a", "ls /").stdout.split()
        assert {"bin", "etc", "proc", "tmp", "usr", "var"} <= set(top) and "work" not in top
        assert sh(cluster, namespace, "a", "ls -A /tmp /root /home").stdout.split() == ["/home:", "/root:", "/tmp:"]
        assert marker.name not in sh(cluster, namespace, "a", "ls /tmp").stdout
        # A file written in one pod's /tmp is neither in the host's nor in another pod's.
        sh(cluster, namespace, "a", "echo mine > /tmp/pod-a-file")
        assert not Path("/tmp/pod-a-file").exists()
        assert sh(cluster, namespace, "b", "ls /tmp/pod-a-file", check=False).returncode != 0
        # The host's system directories are read-only.
        usr = sh(cluster, namespace, "a", "touch /usr/labkit-test", check=False)
        assert usr.returncode != 0 and "Read-only file system" in usr.stderr
        # The container's command is PID 1 and only the pod's processes are visible; a host process is not.
        ps = sh(cluster, namespace, "a", "ps -e -o pid=,comm=").stdout.split("\n")
        assert ps[0].split() == ["1", "sleep"] and len([line for line in ps if line.strip()]) == 3
        kill = sh(cluster, namespace, "a", f"kill -0 {os.getpid()}", check=False)
        assert kill.returncode != 0 and "No such process" in kill.stderr
        status = sh(cluster, namespace, "a", "grep CapEff /proc/1/status").stdout.split()
        assert status == ["CapEff:", DOCKER_DEFAULT_CAPS]
        etc = sh(cluster, namespace, "a", "cat /etc/hostname; head -1 /etc/resolv.conf").stdout
        assert etc == f"a\nsearch {namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
    finally:
        marker.unlink()


def test_security_context_honoured_or_refused(cluster: Any, namespace: str) -> None:
    apply(cluster, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "netadmin"}, "spec": {
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                        "securityContext": {"capabilities": {"add": ["NET_ADMIN"]},
                                            "readOnlyRootFilesystem": True}}]}})
    apply(cluster, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "priv"}, "spec": {
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                        "securityContext": {"privileged": True}}]}})
    sleeper(cluster, namespace, "plain")
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/netadmin", "--timeout=60s")
    assert sh(cluster, namespace, "netadmin", "ip link set lo mtu 60000 && echo ok").stdout == "ok\n"
    denied = sh(cluster, namespace, "plain", "ip link set lo mtu 60000", check=False)
    assert denied.returncode != 0 and "not permitted" in denied.stderr
    ro = sh(cluster, namespace, "netadmin", "touch /tmp/x", check=False)
    assert "Read-only file system" in ro.stderr

    def refused() -> str:
        waiting = pod_json(cluster, namespace, "priv")["status"]["containerStatuses"][0]["state"].get("waiting", {})
        return waiting.get("reason") == "CreateContainerConfigError" and waiting["message"]

    assert "privileged" in wait_for(refused, "the privileged container refused")


# ------------------------------------------------------------------------------------------------- commands
def test_run_i_rm_prints_the_answer_exits_0_and_leaves_no_pod(cluster: Any, namespace: str) -> None:
    run = cluster.kubectl("run", "-n", namespace, "-i", "--rm", "--restart=Never", "t", "--image=busybox", "--",
                          "nslookup", "kubernetes.default", timeout=120)
    assert "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1" in run.stdout
    assert 'pod "t" deleted' in run.stdout
    assert cluster.kubectl("get", "pod", "-n", namespace, "t", check=False).returncode != 0


def test_missing_command_is_a_start_error_then_crash_loop(cluster: Any, namespace: str) -> None:
    cluster.kubectl("run", "bad", "-n", namespace, "--image=busybox", "--", "nosuchprogram")
    cluster.kubectl("run", "once", "-n", namespace, "--image=busybox", "--restart=Never", "--", "/app")

    def crash_looping() -> dict:
        st = pod_json(cluster, namespace, "bad")["status"]["containerStatuses"][0]
        return st if st["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" else {}

    st = wait_for(crash_looping, "CrashLoopBackOff")
    last = st["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("StartError", 128)
    assert last["message"].endswith('error during container init: exec: "nosuchprogram": executable file not '
                                    "found in $PATH: unknown")

    def terminated() -> dict:
        return pod_json(cluster, namespace, "once")["status"]["containerStatuses"][0]["state"].get("terminated")

    once = wait_for(terminated, "the pod's StartError")
    assert once["reason"] == "StartError" and 'exec: "/app": stat /app: no such file or directory' in once["message"]
    assert pod_json(cluster, namespace, "once")["status"]["phase"] == "Failed"


def test_logs_follow_ends_with_the_container_timestamps_and_previous(cluster: Any, namespace: str) -> None:
    cluster.kubectl("run", "job", "-n", namespace, "--image=busybox", "--restart=Never", "--",
                    "sh", "-c", "for i in 1 2 3; do echo line $i; sleep 0.2; done; echo oops >&2")
    cluster.kubectl("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Succeeded", "pod/job", "--timeout=60s")
    assert cluster.kubectl("logs", "-f", "-n", namespace, "job").stdout == "line 1\nline 2\nline 3\noops\n"
    stamped = cluster.kubectl("logs", "-n", namespace, "job", "--timestamps", "--tail=2").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["line 3", "oops"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", line.split(" ")[0]) for line in stamped)
    # A running container's -f ends when it exits, with its last line.
    cluster.kubectl("run", "slow", "-n", namespace, "--image=busybox", "--restart=Never", "--",
                    "sh", "-c", "sleep 2; echo last words")
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/slow", "--timeout=60s")
    assert cluster.kubectl("logs", "-f", "-n", namespace, "slow", timeout=30).stdout == "last words\n"
    cluster.kubectl("run", "crash", "-n", namespace, "--image=busybox", "--", "sh", "-c", "echo run; exit 1")
    wait_for(lambda: pod_json(cluster, namespace, "crash")["status"]["containerStatuses"][0]["restartCount"] >= 1,
             "a restart")
    assert cluster.kubectl("logs", "-n", namespace, "crash", "--previous").stdout == "run\n"
    missing = cluster.kubectl("logs", "-n", namespace, "job", "--previous", check=False)
    assert 'previous terminated container "job" in pod "job" not found' in missing.stderr


def test_terminal_job_control_ctrl_c_and_run_it_rm(cluster: Any, namespace: str) -> None:
    sleeper(cluster, namespace, "t1")
    code, out = in_terminal(cluster, ["exec", "-ti", "-n", namespace, "t1", "--", "sh", "-c", "echo ready; sleep 15"],
                            [("ready", b"\x03")])
    assert code == 130 and "command terminated with exit code 130" in out
    code, out = in_terminal(cluster, ["run", "-it", "--rm", "-n", namespace, "shell", "--image=busybox",
                                      "--restart=Never", "--", "sh"],
                            [("If you don't see a command prompt", b"echo $((6*7)) $-\r"),
                             ("42 ", b"exit 3\r")], timeout=90)
    assert re.search(r"\r\n42 \w*m\w*\r\n", out), out  # an interactive shell with job control
    assert "can't access tty" not in out and "job control turned off" not in out
    assert code == 3 and 'pod "shell" deleted' in out


def test_attach_to_a_container_reading_stdin(cluster: Any, namespace: str) -> None:
    apply(cluster, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reader"}, "spec": {
        "restartPolicy": "Never", "containers": [{"name": "r", "image": "busybox", "stdin": True, "stdinOnce": True,
                                                  "command": ["sh", "-c", "read x; echo got $x"]}]}})
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/reader", "--timeout=60s")
    cluster.kubectl("attach", "-i", "-n", namespace, "reader", input="hello\n")
    cluster.kubectl("wait", "-n", namespace, "--for=jsonpath={.status.phase}=Succeeded", "pod/reader",
                    "--timeout=60s")
    assert cluster.kubectl("logs", "-n", namespace, "reader").stdout == "got hello\n"


def test_cp_round_trips_a_file(cluster: Any, namespace: str, tmp_path: Path) -> None:
    sleeper(cluster, namespace, "box")
    src, back = tmp_path / "src.txt", tmp_path / "back.txt"
    src.write_bytes(os.urandom(100_000).hex().encode())
    cluster.kubectl("cp", "-n", namespace, str(src), "box:/tmp/copied.txt")
    assert sh(cluster, namespace, "box", "wc -c < /tmp/copied.txt").stdout.strip() == "200000"
    cluster.kubectl("cp", "-n", namespace, "box:/tmp/copied.txt", str(back))
    assert back.read_bytes() == src.read_bytes()


def test_debug_shares_the_targets_processes(cluster: Any, namespace: str) -> None:
    sleeper(cluster, namespace, "app")
    # The debugger waits for a line on stdin before it runs ps: kubectl attaches once it sees the container
    # running, and (as with containerd) what a container printed before the attach is not replayed to it.
    out = cluster.kubectl("debug", "-n", namespace, "app", "-i", "--image=busybox", "--target=app", "--",
                          "sh", "-c", "read go; ps -e -o pid=,comm=", input="go\n", timeout=120).stdout
    assert re.search(r"^\s*1 sleep$", out, re.M), out  # the target's PID 1, seen from the debug container
    statuses = pod_json(cluster, namespace, "app")["status"]["ephemeralContainerStatuses"]
    assert statuses[0]["name"].startswith("debugger-")
    missing = cluster.kubectl("debug", "-n", namespace, "nope", "--image=busybox", check=False)
    assert 'pods "nope" not found' in missing.stderr and "panic" not in missing.stderr


# ----------------------------------------------------------------------------- port-forward and proxying
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_forward_and_proxies(cluster: Any, namespace: str) -> None:
    cluster.kubectl("create", "deployment", "web", "-n", namespace,
                    "--image=registry.k8s.io/e2e-test-images/agnhost:2.52", "--", "/agnhost", "netexec",
                    "--http-port=8080")
    cluster.kubectl("expose", "deployment", "web", "-n", namespace, "--port=80", "--target-port=8080")
    cluster.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=60s")
    pod = cluster.kubectl("get", "pod", "-n", namespace, "-l", "app=web", "-o", "name").stdout.strip().split("/")[1]
    raw = f"/api/v1/namespaces/{namespace}"
    assert cluster.kubectl("get", "--raw", f"{raw}/pods/{pod}:8080/proxy/hostname").stdout == pod
    assert cluster.kubectl("get", "--raw", f"{raw}/services/web:80/proxy/echo?msg=hi").stdout == "hi"
    down = cluster.kubectl("get", "--raw", f"{raw}/pods/{pod}:9999/proxy/", check=False)
    assert "ServiceUnavailable" in down.stderr and "connection refused" in down.stderr
    cluster.kubectl("create", "service", "clusterip", "nobody", "-n", namespace, "--tcp=80:80")
    empty = cluster.kubectl("get", "--raw", f"{raw}/services/nobody:80/proxy/", check=False)
    assert 'no endpoints available for service "nobody"' in empty.stderr
    # kubectl port-forward: the tunnel ends in the pod's namespace; here only 127.0.0.1 listens.
    port = _free_port()
    binary = kubectl_binary("1.32")
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    forward = subprocess.Popen([str(binary), "port-forward", "-n", namespace, "svc/web", f"{port}:80"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert forward.stdout is not None and "Forwarding from 127.0.0.1" in forward.stdout.readline()
        for _ in range(2):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/hostname", timeout=10) as answer:
                assert answer.read().decode() == pod
    finally:
        forward.send_signal(signal.SIGINT)
        forward.wait(timeout=10)


# ------------------------------------------------------------------------------------------------- volumes
LABELS_ITEM = {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}


def test_volumes_where_the_spec_says(cluster: Any, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "conf", "-n", namespace, "--from-literal=greeting=hello")
    apply(cluster, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vols", "labels": {"app": "v"}},
                               "spec": {"containers": [
                                   {"name": "writer", "image": "busybox",
                                    "command": ["sh", "-c", "echo shared > /cache/f; sleep 3600"],
                                    "volumeMounts": [{"name": "cache", "mountPath": "/cache"},
                                                     {"name": "conf", "mountPath": "/etc/conf"},
                                                     {"name": "info", "mountPath": "/etc/podinfo"}]},
                                   {"name": "reader", "image": "busybox", "command": ["sleep", "3600"],
                                    "volumeMounts": [{"name": "cache", "mountPath": "/data"}]}],
                                   "volumes": [{"name": "cache", "emptyDir": {}},
                                               {"name": "conf", "configMap": {"name": "conf"}},
                                               {"name": "info", "downwardAPI": {"items": [
                                                   LABELS_ITEM, {"path": "cpu", "resourceFieldRef": {
                                                       "containerName": "writer", "resource": "limits.cpu"}}]}}]}})
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/vols", "--timeout=60s")
    assert wait_for(lambda: sh(cluster, namespace, "vols", "cat /data/f", container="reader").stdout == "shared\n",
                    "the emptyDir shared by both containers")
    assert sh(cluster, namespace, "vols", "cat /etc/podinfo/labels", container="writer").stdout == 'app="v"'
    # No limit: the node's allocatable CPU in whole cores (the API stored the unset divisor as "0", read as 1).
    items = pod_json(cluster, namespace, "vols")["spec"]["volumes"][2]["downwardAPI"]["items"]
    assert items[0]["fieldRef"]["apiVersion"] == "v1" and items[1]["resourceFieldRef"]["divisor"] == "0"
    assert sh(cluster, namespace, "vols", "cat /etc/podinfo/cpu", container="writer").stdout == str(os.cpu_count())
    layout = sh(cluster, namespace, "vols", "ls -A /etc/conf; readlink /etc/conf/greeting", container="writer")
    assert layout.stdout.split()[-3:] == ["..data", "greeting", "..data/greeting"]
    cluster.kubectl("patch", "configmap", "conf", "-n", namespace, "-p", '{"data": {"greeting": "updated"}}')
    wait_for(lambda: sh(cluster, namespace, "vols", "cat /etc/conf/greeting", container="writer").stdout == "updated",
             "the ConfigMap's update in the volume", timeout=5)
    apply(cluster, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hostpath"}, "spec": {
        "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"],
                        "volumeMounts": [{"name": "h", "mountPath": "/host"}]}],
        "volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}})

    def failed_mount() -> str:
        events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                 "involvedObject.name=hostpath,reason=FailedMount", "-o", "json").stdout
        return "".join(e["message"] for e in json.loads(events)["items"])

    assert "hostPath volumes are refused" in wait_for(failed_mount, "the FailedMount event")
    assert pod_json(cluster, namespace, "hostpath")["status"]["phase"] == "Pending"


# ---------------------------------------------------------------------------------------------- lifecycle
def test_the_cluster_lives_and_dies_as_a_whole(fresh_cluster: Any) -> None:
    cluster, home = fresh_cluster, fresh_cluster.home
    prefix = cluster_prefix(home)
    cluster.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=3")
    cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    cluster.kubectl("run", "done", "--image=busybox", "--restart=Never", "--", "true")
    cluster.kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/done", "--timeout=60s")
    pods_before = cluster.kubectl("get", "pods", "-o", "jsonpath={.items[*].metadata.uid}").stdout
    run = home / "run"
    # The node agent restarted alone: the pods keep running (same pods, no restart).
    os.kill(int((run / "node.pid").read_text()), signal.SIGKILL)
    wait_for(lambda: json.loads((run / "status.json").read_text())["node"]["restarts"] >= 1, "the agent restarted")
    cluster.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    assert cluster.kubectl("get", "pods", "-o", "jsonpath={.items[*].metadata.uid}").stdout == pods_before
    restarts = cluster.kubectl("get", "pods", "-o", "jsonpath={.items[*].status.containerStatuses[0].restartCount}")
    assert set(restarts.stdout.split()) == {"0"}
    # A completed pod stays completed (kubelet never moves a pod out of a terminal phase).
    # (a pod started after the restart is Ready only once the agent has synced the pods it found)
    sleeper(cluster, "default", "after")
    done = pod_json(cluster, "default", "done")["status"]
    assert done["phase"] == "Succeeded"
    assert done["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    # A process that changed its uid (runAsUser) ends with the cluster too (the kernel cleared its parent-death
    # signal at setuid).
    sleeper(cluster, "default", "nonroot", '--overrides={"spec": {"securityContext": {"runAsUser": 1000}}}')
    # The supervisor killed: every process of the cluster ends with it; status says what happened.
    os.kill(int((run / "supervisor.pid").read_text()), signal.SIGKILL)
    wait_for(lambda: not cluster_processes(prefix), "every process of the cluster gone")
    status = subprocess.run([sys.executable, "-m", "labkit", "--home", str(home), "status"], capture_output=True,
                            text=True).stdout
    assert "stopped uncleanly" in status and "`labkit up` resumes it" in status and "`labkit down` deletes it" in status
    embedded.down(home)
    assert not cluster_netns(prefix) and not cluster_processes(prefix)
    assert prefix not in Path("/proc/self/mountinfo").read_text()
    assert not Path(f"/dev/shm/labkit-{prefix}").exists()


def test_what_a_deleted_cluster_left_is_reaped(fresh_cluster: Any) -> None:
    """A test run SIGKILLed with its cluster, then its temporary home deleted: the next `labkit up` (which calls
    reap_orphans) removes the network namespaces and mounts nobody could name any more — and nothing else."""
    cluster, home = fresh_cluster, fresh_cluster.home
    prefix = cluster_prefix(home)
    cluster.kubectl("run", "idle", "--image=busybox", "--", "sleep", "3600")
    cluster.kubectl("wait", "--for=condition=Ready", "pod/idle", "--timeout=60s")
    os.kill(int((home / "run" / "supervisor.pid").read_text()), signal.SIGKILL)
    wait_for(lambda: not cluster_processes(prefix), "every process of the cluster gone")
    assert prefix not in embedded.reap_orphans(), "a cluster whose state is still there can be resumed: keep it"
    assert cluster_netns(prefix), "the SIGKILLed cluster's network namespaces stay until up or down"
    shutil.rmtree(home, ignore_errors=True)  # as pytest does to an old temporary directory
    assert prefix in embedded.reap_orphans()
    assert not cluster_netns(prefix) and not cluster_processes(prefix)
    assert prefix not in Path("/proc/self/mountinfo").read_text()
    assert prefix not in registered()


def test_service_account_token_is_the_kube_api_access_projected_volume(cluster: Any, namespace: str) -> None:
    sleeper(cluster, namespace, "sa")
    spec = pod_json(cluster, namespace, "sa")["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(volume["name"]) == len("kube-api-access-") + 5
    assert volume["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": volume["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    described = cluster.kubectl("describe", "pod", "-n", namespace, "sa").stdout
    assert f"/var/run/secrets/kubernetes.io/serviceaccount from {volume['name']} (ro)" in described
    files = sh(cluster, namespace, "sa", "cd /var/run/secrets/kubernetes.io/serviceaccount && ls && cat namespace")
    assert files.stdout.split() == ["ca.crt", "namespace", "token", namespace]
    # automountServiceAccountToken: false leaves the pod without it.
    sleeper(cluster, namespace, "nosa", '--overrides={"spec": {"automountServiceAccountToken": false}}')
    assert "volumes" not in pod_json(cluster, namespace, "nosa")["spec"]
    assert sh(cluster, namespace, "nosa", "ls /var/run/secrets/kubernetes.io", check=False).returncode != 0
