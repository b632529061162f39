"""The IPVS agent in the embedded cluster: the article's deploy + expose, as `labkit ipvs` and `labkit curl` show it.

Every packet to a cluster address leaves from a pod's or the node's network namespace (sockets made there by
`NetnsSockets`), never from the host's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from labkit.agent.cli import curl_main, ipvs_main
from labkit.netns import NetnsSockets
from labkit.node.names import Names

pytestmark = pytest.mark.integration

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"
T = TypeVar("T")
RS_LINE = re.compile(r"^  -> (\S+):(\d+) +Masq +1 +\d+ +\d+ *$")


def wait_for(fn: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll `fn` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def labkit_ipvs(cluster: Any, *args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert ipvs_main(list(args), cluster.home) == 0
    return out.getvalue()


def labkit_curl(cluster: Any, *args: str) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = curl_main([*args, "--json"], cluster.home)
    doc = json.loads(out.getvalue())
    assert code == 0, doc
    return doc


def vs_block(table: str, header: str) -> list[str] | None:
    """The lines of one virtual server (its header line, then its real servers), or None if absent."""
    lines = table.splitlines()
    for i, line in enumerate(lines):
        if line == header or line.startswith(header + " "):
            block = [line]
            for rs in lines[i + 1:]:
                if not rs.startswith("  -> "):
                    break
                block.append(rs)
            return block
    return None


def cluster_ip(cluster: Any, ns: str, svc: str) -> str:
    return cluster.kubectl("get", "svc", svc, "-n", ns, "-o", "jsonpath={.spec.clusterIP}").stdout.strip()


def ready_pods(cluster: Any, ns: str, selector: str) -> dict[str, str]:
    """name -> pod IP of the ready pods matching `selector`."""
    doc = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout)
    out = {}
    for p in doc["items"]:
        conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", [])}
        if conds.get("Ready") == "True" and p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp"):
            out[p["metadata"]["name"]] = p["status"]["podIP"]
    return out


def pod_sockets(cluster: Any, ns: str, pod: str) -> NetnsSockets:
    uid = cluster.kubectl("get", "pod", pod, "-n", ns, "-o", "jsonpath={.metadata.uid}").stdout.strip()
    return NetnsSockets(Names.netns_path(Names.for_home(cluster.home).pod_netns(uid)))


def node_sockets(cluster: Any) -> NetnsSockets:
    return NetnsSockets(Names.netns_path(Names.for_home(cluster.home).node_netns))


def http_get(sockets: NetnsSockets, ip: str, port: int, path: str, timeout: float = 2.0) -> bytes:
    s = sockets.socket()
    try:
        s.settimeout(timeout)
        s.connect((ip, port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data
    finally:
        s.close()


def deploy(cluster: Any, ns: str, name: str, replicas: int = 1, extra: list[str] | None = None) -> None:
    """`kubectl create deploy NAME --image=agnhost -- /agnhost netexec ...` and wait for its pods to be ready."""
    cluster.kubectl("create", "deploy", name, "-n", ns, f"--image={AGNHOST}", f"--replicas={replicas}", "--",
                    "/agnhost", "netexec", "--http-port=80", "--udp-port=8081", *(extra or []))
    wait_for(lambda: len(ready_pods(cluster, ns, f"app={name}")) == replicas, 60, f"{replicas} ready {name} pods")


def client_pod(cluster: Any, ns: str, name: str = "client") -> str:
    cluster.kubectl("run", name, "-n", ns, f"--image={AGNHOST}", "--", "/agnhost", "pause")
    wait_for(lambda: ready_pods(cluster, ns, f"run={name}"), 60, "the client pod")
    return name


def wait_rs(cluster: Any, header: str, ips: set[str], timeout: float = 20.0) -> list[str]:
    """Wait until the VS `header` has exactly the real servers `ips` (port 80 or any), return its block."""
    def check() -> list[str] | None:
        block = vs_block(labkit_ipvs(cluster), header)
        if block is None:
            return None
        got = {m.group(1) for m in map(RS_LINE.match, block[1:]) if m}
        return block if got == ips and len(block) == len(ips) + 1 else None

    return wait_for(check, timeout, f"{header} with real servers {sorted(ips)}")


@pytest.fixture
def web(cluster: Any, namespace: str) -> Iterator[tuple[str, str]]:
    """The article's `kubectl create deploy` + `kubectl expose` (agnhost netexec on :80); yields (ns, VIP)."""
    deploy(cluster, namespace, "web")
    cluster.kubectl("expose", "deploy", "web", "-n", namespace, "--port=80")
    yield namespace, cluster_ip(cluster, namespace, "web")


def test_expose_then_scale_shows_in_ipvs_table(cluster: Any, web: tuple[str, str]) -> None:
    ns, vip = web
    pods = ready_pods(cluster, ns, "app=web")
    block = wait_rs(cluster, f"TCP  {vip}:80 rr", set(pods.values()))
    assert block[0] == f"TCP  {vip}:80 rr"
    assert len(block) == 2 and RS_LINE.match(block[1]) and f"{next(iter(pods.values()))}:80" in block[1]
    cluster.kubectl("scale", "deploy", "web", "-n", ns, "--replicas=2")
    pods = wait_for(lambda: (p := ready_pods(cluster, ns, "app=web")) and len(p) == 2 and p, 60, "2 ready pods")
    block = wait_rs(cluster, f"TCP  {vip}:80 rr", set(pods.values()))
    assert len(block) == 3
    # the exact ipvsadm row layout: "  -> %-28s %-7s %-6d %-10u %-10u"
    for line in block[1:]:
        addr = line[5:33].rstrip()
        active, inactive = map(int, line.split()[-2:])
        assert line == f"  -> {addr:<28} {'Masq':<7} {1:<6} {active:<10} {inactive:<10}"


def test_round_robin_splits_fresh_connections_evenly(cluster: Any, web: tuple[str, str]) -> None:
    ns, vip = web
    cluster.kubectl("scale", "deploy", "web", "-n", ns, "--replicas=2")
    pods = wait_for(lambda: (p := ready_pods(cluster, ns, "app=web")) and len(p) == 2 and p, 60, "2 ready pods")
    wait_rs(cluster, f"TCP  {vip}:80 rr", set(pods.values()))
    client = client_pod(cluster, ns)
    doc = labkit_curl(cluster, f"http://{vip}/hostname", "--from", client, "-n", ns, "--count", "100")
    assert doc["counts"] == {name: 50 for name in pods}
    # by DNS name through kube-dns (10.96.0.10) from the same pod, then by the agent's connection table
    wait_for(lambda: ready_pods(cluster, "kube-system", "k8s-app=kube-dns"), 60, "a ready CoreDNS pod")
    doc = labkit_curl(cluster, "http://web/", "--from", client, "-n", ns, "--count", "4")
    assert doc["counts"] == {name: 2 for name in pods}
    assert {r["destination"] for r in doc["requests"]} == {f"{ip}:80" for ip in pods.values()}


UNREADY_PROBE = {"spec": {"template": {"spec": {"containers": [{
    "name": "agnhost",
    "readinessProbe": {"exec": {"command": ["sh", "-c", "! test -e /run/unready"]}, "periodSeconds": 1,
                       "failureThreshold": 1},
}]}}}}


def test_unready_pod_leaves_the_table_and_gets_no_traffic(cluster: Any, namespace: str) -> None:
    ns = namespace
    deploy(cluster, ns, "web", replicas=2)
    cluster.kubectl("patch", "deploy", "web", "-n", ns, "--type=strategic", "-p", json.dumps(UNREADY_PROBE))
    wait_for(lambda: (cluster.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=60s").returncode == 0
                      and len(ready_pods(cluster, ns, "app=web")) == 2), 90, "the probed rollout")
    cluster.kubectl("expose", "deploy", "web", "-n", ns, "--port=80")
    vip = cluster_ip(cluster, ns, "web")
    pods = ready_pods(cluster, ns, "app=web")
    wait_rs(cluster, f"TCP  {vip}:80 rr", set(pods.values()))
    victim, survivor = sorted(pods)
    cluster.kubectl("exec", victim, "-n", ns, "--", "touch", "/run/unready")
    wait_for(lambda: victim not in ready_pods(cluster, ns, "app=web"), 30, f"{victim} unready")
    wait_rs(cluster, f"TCP  {vip}:80 rr", {pods[survivor]})
    client = client_pod(cluster, ns)
    doc = labkit_curl(cluster, f"http://{vip}/hostname", "--from", client, "-n", ns, "--count", "20")
    assert doc["counts"] == {survivor: 20}
    cluster.kubectl("exec", victim, "-n", ns, "--", "rm", "/run/unready")
    wait_rs(cluster, f"TCP  {vip}:80 rr", set(pods.values()), timeout=30)


def test_client_ip_affinity_pins_one_pod(cluster: Any, web: tuple[str, str]) -> None:
    ns, vip = web
    cluster.kubectl("scale", "deploy", "web", "-n", ns, "--replicas=2")
    pods = wait_for(lambda: (p := ready_pods(cluster, ns, "app=web")) and len(p) == 2 and p, 60, "2 ready pods")
    wait_rs(cluster, f"TCP  {vip}:80 rr", set(pods.values()))
    cluster.kubectl("patch", "svc", "web", "-n", ns, "-p", '{"spec":{"sessionAffinity":"ClientIP"}}')
    block = wait_rs(cluster, f"TCP  {vip}:80 rr persistent 10800", set(pods.values()))
    assert block[0] == f"TCP  {vip}:80 rr persistent 10800"
    client = client_pod(cluster, ns)
    doc = labkit_curl(cluster, f"http://{vip}/hostname", "--from", client, "-n", ns, "--count", "20")
    assert len(doc["counts"]) == 1 and sum(doc["counts"].values()) == 20
    assert set(doc["counts"]) <= set(pods)


def test_headless_and_external_name_services_get_no_virtual_server(cluster: Any, namespace: str) -> None:
    ns = namespace
    deploy(cluster, ns, "web")
    cluster.kubectl("create", "service", "clusterip", "headless", "-n", ns, "--clusterip=None", "--tcp=80:80")
    cluster.kubectl("patch", "svc", "headless", "-n", ns, "-p", '{"spec":{"selector":{"app":"web"}}}')
    cluster.kubectl("create", "service", "externalname", "outside", "-n", ns, "--external-name=web1.example.net")
    # A Service created afterwards: once it is in the table, the agent has seen the two before it.
    cluster.kubectl("expose", "deploy", "web", "-n", ns, "--port=80", "--name=marker")
    marker = cluster_ip(cluster, ns, "marker")
    wait_rs(cluster, f"TCP  {marker}:80 rr", set(ready_pods(cluster, ns, "app=web").values()))
    svcs = json.loads(cluster.kubectl("get", "svc", "-A", "-o", "json").stdout)["items"]
    ours = {s["metadata"]["name"]: s["spec"] for s in svcs if s["metadata"]["namespace"] == ns}
    assert ours["headless"].get("clusterIP") == "None" and ours["outside"]["type"] == "ExternalName"
    vips = {s["spec"].get("clusterIP") for s in svcs} - {None, "None", ""}
    table = json.loads(labkit_ipvs(cluster, "--json"))
    assert {vs["address"] for vs in table} <= vips  # every VS belongs to a Service with a ClusterIP
    assert not any(vs["address"] in ("None", "") for vs in table)
    endpoints = set(ready_pods(cluster, ns, "app=web").values())
    with_our_pods = [vs for vs in table if {d["address"] for d in vs["destinations"]} & endpoints]
    assert [(vs["protocol"], vs["address"], vs["port"]) for vs in with_our_pods] == [("TCP", marker, 80)]


def test_udp_service_answers_agnhost_hostname(cluster: Any, namespace: str) -> None:
    ns = namespace
    deploy(cluster, ns, "web")
    cluster.kubectl("expose", "deploy", "web", "-n", ns, "--name=web-udp", "--protocol=UDP", "--port=8081")
    vip = cluster_ip(cluster, ns, "web-udp")
    pods = ready_pods(cluster, ns, "app=web")
    block = wait_rs(cluster, f"UDP  {vip}:8081 rr", set(pods.values()))
    assert f"{next(iter(pods.values()))}:8081" in block[1]
    client = client_pod(cluster, ns)
    sockets = pod_sockets(cluster, ns, client)
    try:
        s = sockets.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with s:
            s.settimeout(2)
            s.connect((vip, 8081))
            s.send(b"hostname")
            assert s.recv(1024).decode() == next(iter(pods))
    finally:
        sockets.close()


def test_kubernetes_and_kube_dns_services_work_from_a_pod(cluster: Any, namespace: str) -> None:
    import dns.message
    import dns.query

    client = client_pod(cluster, namespace)
    sockets = pod_sockets(cluster, namespace, client)
    try:
        # kubernetes: TLS to 10.96.0.1:443 reaches the API server (its certificate names 10.96.0.1)
        ctx = ssl.create_default_context(cafile=str(cluster.home / "pki" / "ca.crt"))
        raw = sockets.socket()
        raw.settimeout(5)
        raw.connect(("10.96.0.1", 443))
        with ctx.wrap_socket(raw, server_hostname="10.96.0.1") as tls:
            tls.sendall(b"GET /version HTTP/1.1\r\nHost: 10.96.0.1\r\nConnection: close\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.1 ")
        # kube-dns: UDP and TCP 10.96.0.10:53 reach CoreDNS (once its pods are ready)
        dns_pods = wait_for(lambda: ready_pods(cluster, "kube-system", "k8s-app=kube-dns"), 60, "ready CoreDNS")
        wait_rs(cluster, "UDP  10.96.0.10:53 rr", set(dns_pods.values()))
        q = dns.message.make_query("kubernetes.default.svc.cluster.local", "A")
        udp = sockets.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with udp:
            udp.settimeout(3)
            udp.connect(("10.96.0.10", 53))
            udp.send(q.to_wire())
            answer = dns.message.from_wire(udp.recv(65535))
        assert [rr.address for rrset in answer.answer for rr in rrset] == ["10.96.0.1"]
        tcp = sockets.socket()
        with tcp:
            tcp.settimeout(3)
            tcp.connect(("10.96.0.10", 53))
            wire = q.to_wire()
            tcp.sendall(len(wire).to_bytes(2, "big") + wire)
            n = int.from_bytes(tcp.recv(2), "big")
            data = b""
            while len(data) < n:
                data += tcp.recv(n - len(data))
        assert [rr.address for rrset in dns.message.from_wire(data).answer for rr in rrset] == ["10.96.0.1"]
    finally:
        sockets.close()


def test_agent_killed_is_back_and_serving(cluster: Any, web: tuple[str, str]) -> None:
    """A SIGKILLed agent is restarted and serves the VIP again (how soon: bench_agent.py, target ≤ 1 s)."""
    ns, vip = web
    pods = ready_pods(cluster, ns, "app=web")
    wait_rs(cluster, f"TCP  {vip}:80 rr", set(pods.values()))
    client = client_pod(cluster, ns)
    sockets = pod_sockets(cluster, ns, client)
    pid_file = cluster.home / "run" / "ipvs-agent.pid"

    def serving() -> bool:
        try:
            return http_get(sockets, vip, 80, "/hostname", timeout=0.5).endswith(next(iter(pods)).encode())
        except OSError:
            return False

    try:
        assert serving()
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        wait_for(serving, 10, "a connection through the VIP after SIGKILL")
        assert int(pid_file.read_text()) != pid  # a new agent answered, not the old one
    finally:
        sockets.close()
    # and it is the live agent: it still follows the API
    cluster.kubectl("scale", "deploy", "web", "-n", ns, "--replicas=2")
    pods = wait_for(lambda: (p := ready_pods(cluster, ns, "app=web")) and len(p) == 2 and p, 60, "2 ready pods")
    wait_rs(cluster, f"TCP  {vip}:80 rr", set(pods.values()))


def test_labkit_ipvs_stats_and_rate_layout(cluster: Any, web: tuple[str, str]) -> None:
    ns, vip = web
    wait_rs(cluster, f"TCP  {vip}:80 rr", set(ready_pods(cluster, ns, "app=web").values()))
    sockets = node_sockets(cluster)
    try:
        assert b"200 OK" in http_get(sockets, vip, 80, "/hostname")
    finally:
        sockets.close()
    stats = labkit_ipvs(cluster, "--stats", "--exact").splitlines()
    assert stats[1] == f"{'Prot LocalAddress:Port':<33} {'Conns':>8} {'InPkts':>8} {'OutPkts':>8} {'InBytes':>8} " \
                       f"{'OutBytes':>8}"
    row = next(line for line in stats if line.startswith(f"TCP  {vip}:80"))
    assert int(row[33:42]) >= 1  # Conns, %9llu
    rate = labkit_ipvs(cluster, "--rate").splitlines()
    assert rate[1].split() == ["Prot", "LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]


def outside_service(cluster: Any, ns: str) -> str:
    """A selectorless Service `outside` whose EndpointSlice names the outside world's web1 (203.0.113.10:80);
    returns its ClusterIP."""
    cluster.kubectl("create", "service", "clusterip", "outside", "-n", ns, "--tcp=80:80")
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "outside-1", "labels": {"kubernetes.io/service-name": "outside"}},
        "addressType": "IPv4", "ports": [{"name": "80-80", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["203.0.113.10"], "conditions": {"ready": True}}]}))
    return cluster_ip(cluster, ns, "outside")


def http_get_from(sockets: NetnsSockets, ip: str, port: int, path: str) -> tuple[tuple[str, int], bytes]:
    """GET `path`; returns (the client socket's own address, the response body)."""
    s = sockets.socket()
    try:
        s.settimeout(3)
        s.connect((ip, port))
        local = s.getsockname()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return (local[0], local[1]), body


def test_backend_sees_the_client_pod_address_like_ipvs_nat(cluster: Any, web: tuple[str, str]) -> None:
    """IPVS NAT rewrites only the destination: agnhost /clientip behind a ClusterIP shows the client pod's address
    and port. kube-proxy masquerades the node's own traffic (source outside --cluster-cidr), hairpin
    (KUBE-LOOP-BACK) and traffic leaving for the outside world; so does the agent."""
    ns, vip = web
    pods = ready_pods(cluster, ns, "app=web")
    (web_pod, web_ip), = pods.items()
    wait_rs(cluster, f"TCP  {vip}:80 rr", {web_ip})
    client = client_pod(cluster, ns)
    client_ip = ready_pods(cluster, ns, "run=client")[client]
    sockets = pod_sockets(cluster, ns, client)
    try:
        # pod → ClusterIP → pod: the client's own address and port, over TCP and UDP
        local, body = http_get_from(sockets, vip, 80, "/clientip")
        assert local[0] == client_ip and body.decode() == f"{client_ip}:{local[1]}"
        cluster.kubectl("expose", "deploy", "web", "-n", ns, "--name=web-udp", "--protocol=UDP", "--port=8081")
        udp_vip = cluster_ip(cluster, ns, "web-udp")
        wait_rs(cluster, f"UDP  {udp_vip}:8081 rr", {web_ip})
        u = sockets.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with u:
            u.settimeout(2)
            u.connect((udp_vip, 8081))
            u.send(b"clientip")
            assert u.recv(1024).decode() == f"{client_ip}:{u.getsockname()[1]}"
        # pod → pod directly (now routed through the node) still works and is not rewritten
        _, body = http_get_from(sockets, web_ip, 80, "/clientip")
        assert body.decode().startswith(f"{client_ip}:")
        # a selectorless Service to the outside world: masqueraded to the node's address on the way out
        out_vip = outside_service(cluster, ns)
        wait_rs(cluster, f"TCP  {out_vip}:80 rr", {"203.0.113.10"})
        # the outside world's web host web1.example.net answers /clientip with the address it saw
        _, body = http_get_from(sockets, out_vip, 80, "/clientip")
        assert body.decode().startswith("172.18.0.2:")
        _, body = http_get_from(sockets, "203.0.113.10", 80, "/clientip")
        assert body.decode().startswith("172.18.0.2:")
    finally:
        sockets.close()
    # the node itself → ClusterIP: masqueraded (the node's address, never a pod's)
    node = node_sockets(cluster)
    try:
        _, body = http_get_from(node, vip, 80, "/clientip")
        assert body.decode().split(":")[0] not in set(pods.values()) | {client_ip}
        assert body.decode().startswith("10.244.0.1:")
    finally:
        node.close()
    # hairpin: the backend reaching itself through its own Service is masqueraded, or the reply would stay inside
    web_sockets = pod_sockets(cluster, ns, web_pod)
    try:
        _, body = http_get_from(web_sockets, vip, 80, "/clientip")
        assert body.decode().startswith("10.244.0.1:")
    finally:
        web_sockets.close()


def connect_error(sockets: NetnsSockets, ip: str, port: int) -> str:
    """How a connection attempt ends right away: "refused", "reset" (accepted, then reset before any answer),
    "answered" or "empty" (accepted, then closed without a byte: what kube-proxy never does)."""
    s = sockets.socket()
    try:
        s.settimeout(3)
        try:
            s.connect((ip, port))
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:  # accepted, and reset before connect() looked at the socket again
            return "reset"
        try:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n".encode())
            return "answered" if s.recv(1024) else "empty"
        except ConnectionResetError:
            return "reset"
    finally:
        s.close()
