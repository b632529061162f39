"""The node helper's programs (labkit.backends.incluster), run for real on the embedded cluster's host.

On kind they run in a privileged pod with the node's PIDs; here the embedded cluster's pods are this host's
processes, so the same programs, run by a Python >= 3.12 (os.setns) on this host, find a pod's network namespace by
its IP and send a DNS query or open a connection from it. Nothing leaves from the host's namespace: the programs
exit when no namespace holds the IP.
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import time

import dns.message
import dns.rrset
import pytest

from labkit.agent.cli import HttpConnection
from labkit.backends.embedded import EmbeddedBackend
from labkit.backends.incluster import DNS_PROGRAM, RELAY_PROGRAM, ExecSocket
from tests.conftest import Cluster

pytestmark = pytest.mark.integration


def python_with_setns() -> str:
    candidates = [shutil.which(f"python3.{minor}") for minor in (12, 13, 14)]
    candidates += sorted(glob.glob("/root/.pyenv/versions/3.1[2-9]*/bin/python3"))
    for path in filter(None, candidates):
        if subprocess.run([path, "-c", "import os; os.setns"], capture_output=True).returncode == 0:
            return path
    pytest.skip("no Python >= 3.12 (os.setns) on this host to run the node helper's programs")


@pytest.fixture
def client_pod(cluster: Cluster, namespace: str) -> str:
    """A running pod of `namespace` as the helper names it ("IP/HOSTNAME"); and an nginx Service to reach.

    The pod's name is the namespace's: other embedded clusters on this host reuse the same pod IPs."""
    cluster.kubectl("-n", namespace, "run", namespace, "--image=busybox:1.36", "--restart=Never", "--",
                    "sleep", "3600")
    cluster.kubectl("-n", namespace, "create", "deployment", "web", "--image=nginx:1.19")
    cluster.kubectl("-n", namespace, "expose", "deployment", "web", "--port=80")
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pod/{namespace}", "--timeout=60s")
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod", "-l", "app=web", "--timeout=60s")
    pod = json.loads(cluster.kubectl("-n", namespace, "get", "pod", namespace, "-o", "json").stdout)
    return f"{pod['status']['podIP']}/{namespace}"


def test_dns_program_asks_from_the_pods_network_namespace(client_pod: str) -> None:
    python = python_with_setns()
    query = dns.message.make_query("kubernetes.default.svc.cluster.local.", "A")
    proc = subprocess.run([python, "-c", DNS_PROGRAM, client_pod, "10.96.0.10", "53", "0", "5",
                           query.to_wire().hex()], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    reply = dns.message.from_wire(bytes.fromhex(proc.stdout.strip()))
    assert reply.answer == [dns.rrset.from_text("kubernetes.default.svc.cluster.local.", 30, "IN", "A",
                                                "10.96.0.1")]


def test_relay_program_connects_from_the_pod_through_the_service(cluster: Cluster, namespace: str,
                                                                 client_pod: str) -> None:
    python = python_with_setns()
    vip = cluster.kubectl("-n", namespace, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}").stdout
    backend = EmbeddedBackend(cluster.home)
    deadline = time.monotonic() + 30
    while not any(vs.address == vip and vs.destinations for vs in backend.ipvs_table()):
        assert time.monotonic() < deadline, f"the load balancer never programmed {vip}"
        time.sleep(0.1)
    def relay() -> ExecSocket:
        return ExecSocket([python, "-c", RELAY_PROGRAM, client_pod])

    with HttpConnection(relay, vip, 80, "web") as conn:  # type: ignore[arg-type]
        assert conn.local[0] == client_pod.split("/")[0] and conn.peer == (vip, 80)
        first = conn.request("/")
        second = conn.request("/", close=True)
    assert first.status == 200 and "nginx" in first.body.lower()
    assert second.status == 200 and conn.closed


def test_programs_refuse_an_address_no_namespace_holds(client_pod: str) -> None:
    python = python_with_setns()
    ip = client_pod.split("/")[0]
    proc = subprocess.run([python, "-c", RELAY_PROGRAM, f"{ip}/not-{client_pod.split('/')[1]}", "10.96.0.1", "443",
                           "2"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == f"no network namespace on this node holds {ip}/not-{client_pod.split('/')[1]}"
    sock = ExecSocket([python, "-c", RELAY_PROGRAM, "10.244.0.254/nobody"])
    sock.settimeout(2)
    with pytest.raises(ConnectionError, match=r"no network namespace on this node holds 10\.244\.0\.254/nobody"):
        sock.connect(("10.96.0.1", 443))
    sock.close()
