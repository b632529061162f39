"""What a client observes through Services, in both of kube-proxy's modes: IPVS (the userspace data plane) and
nftables (kube-proxy's ruleset in the node's kernel). Every test runs against both clusters and asserts the same,
except where kube-proxy's modes really differ; those places are marked `# MODES DIFFER` and explained:

- spread: IPVS `rr` alternates, so N·k fresh connections over k pods give each exactly N; nftables draws each new
  connection with `numgen random`, so every pod answers but the counts vary.
- a backend that refuses (targetPort nobody listens on): kernel IPVS and nftables both DNAT the SYN, so the
  backend's own reset refuses the client; the userspace data plane has already completed the handshake and resets
  the client at once instead ("reset", not "refused").
- ping to a ClusterIP: neither answers (kube-proxy ≥ 1.27). In IPVS mode the ClusterIP is an address of the node's
  kube-ipvs0 and KUBE-IPVS-FILTER rejects what is not a Service port, so the ICMP port unreachable comes from the
  ClusterIP itself, also to the node; in nftables mode the address is nowhere, `cluster-ips-check` rejects it on
  the way (from the node's address towards the pod), and the node's own ping fails to send (EPERM).
- a Service's unused port: both refuse (IPVS: KUBE-IPVS-FILTER; nftables: `cluster-ips-check`), the kernel's ICMP
  refusing the SYN's retransmission ~1 s later (the first ICMP meets the socket still locked by connect()).

Every packet leaves from a pod's or the node's network namespace, never from the host's.
"""

from __future__ import annotations

import json
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from labkit.agent.control import read_table
from tests.conftest import make_test_namespace
from tests.integration.test_agent import (
    AGNHOST,
    UNREADY_PROBE,
    client_pod,
    cluster_ip,
    connect_error,
    http_get,
    http_get_from,
    node_sockets,
    outside_service,
    pod_sockets,
    ready_pods,
    wait_for,
)

pytestmark = pytest.mark.integration

NODE_IP = "172.18.0.2"
NODE_POD_GATEWAY = "10.244.0.1"  # the node's own address towards its pods: what a masqueraded backend sees


@pytest.fixture(params=["ipvs", "nftables"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def mc(mode: str, request: pytest.FixtureRequest) -> Any:
    """The cluster running kube-proxy in `mode`."""
    return request.getfixturevalue("cluster" if mode == "ipvs" else "nft_cluster")


@pytest.fixture
def ns(mc: Any, mode: str, request: pytest.FixtureRequest) -> Iterator[str]:
    yield from make_test_namespace(mc, request, prefix=f"{mode[0]}")


def served(mc: Any, proto: str, ip: str, port: int) -> set[str] | None:
    """The endpoints the load balancer sends `proto ip:port` to (None: it does not serve it), whatever the mode:
    the agent's view of what it programmed (IPVS virtual servers, or nftables chains); None while the agent does
    not answer (restarting)."""
    try:
        table = read_table(str(mc.home / "run" / "ipvs.sock"), cmd="services")
    except (OSError, RuntimeError, ValueError):
        return None
    for vs in table:
        if (vs.protocol, vs.address, vs.port) == (proto, ip, port):
            return {d.address for d in vs.destinations if d.weight > 0}
    return None


def wait_served(mc: Any, ip: str, ips: set[str], port: int = 80, proto: str = "TCP") -> None:
    wait_for(lambda: served(mc, proto, ip, port) == ips, 30, f"{proto} {ip}:{port} → {sorted(ips)}")


def deploy(mc: Any, ns: str, name: str, replicas: int) -> dict[str, str]:
    mc.kubectl("create", "deploy", name, "-n", ns, f"--image={AGNHOST}", f"--replicas={replicas}", "--",
               "/agnhost", "netexec", "--http-port=80")
    return wait_for(lambda: (p := ready_pods(mc, ns, f"app={name}")) and len(p) == replicas and p, 60,
                    f"{replicas} ready {name} pods")


def read_body(s: socket.socket) -> str:
    """One HTTP/1.1 response's body (Content-Length framed) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before a whole response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before a whole response: {body!r}")
        body += chunk
    return body.decode()


def hostnames(sockets: Any, ip: str, port: int, n: int) -> Counter[str]:
    """Who answers `n` fresh connections to ip:port (agnhost's /hostname)."""
    got: Counter[str] = Counter()
    for _ in range(n):
        data = http_get(sockets, ip, port, "/hostname")
        got[data.partition(b"\r\n\r\n")[2].decode()] += 1
    return got


def web_service(mc: Any, ns: str, replicas: int) -> tuple[str, dict[str, str]]:
    """`replicas` agnhost pods behind Service `web` (port 80), programmed: (ClusterIP, pod name → IP)."""
    pods = deploy(mc, ns, "web", replicas)
    mc.kubectl("expose", "deploy", "web", "-n", ns, "--port=80")
    vip = cluster_ip(mc, ns, "web")
    wait_served(mc, vip, set(pods.values()))
    return vip, pods


@pytest.fixture
def web(mc: Any, ns: str) -> Iterator[tuple[str, dict[str, str], Any]]:
    """3 agnhost pods behind Service `web` (port 80) and a client pod's sockets: (ClusterIP, pods, sockets)."""
    vip, pods = web_service(mc, ns, 3)
    sockets = pod_sockets(mc, ns, client_pod(mc, ns))
    try:
        yield vip, pods, sockets
    finally:
        sockets.close()


def test_spread_over_every_ready_pod(mode: str, web: tuple[str, dict[str, str], Any]) -> None:
    vip, pods, sockets = web
    got = hostnames(sockets, vip, 80, 60)
    assert set(got) == set(pods) and sum(got.values()) == 60
    if mode == "ipvs":  # MODES DIFFER: rr alternates; nftables draws at random
        assert got == {name: 20 for name in pods}


def test_client_ip_affinity_pins_one_pod(mc: Any, ns: str, web: tuple[str, dict[str, str], Any]) -> None:
    vip, pods, sockets = web
    mc.kubectl("patch", "svc", "web", "-n", ns, "-p", '{"spec":{"sessionAffinity":"ClientIP"}}')
    # the pin shows once fresh connections stop spreading
    wait_for(lambda: len(hostnames(sockets, vip, 80, 6)) == 1, 20, "affinity in force")
    got = hostnames(sockets, vip, 80, 20)
    assert len(got) == 1 and set(got) <= set(pods)


def test_unready_pod_gets_no_new_connections(mc: Any, ns: str) -> None:
    deploy(mc, ns, "web", 2)
    mc.kubectl("patch", "deploy", "web", "-n", ns, "--type=strategic", "-p", json.dumps(UNREADY_PROBE))
    pods = wait_for(lambda: (mc.kubectl("rollout", "status", "deploy/web", "-n", ns, "--timeout=60s").returncode == 0
                             and (p := ready_pods(mc, ns, "app=web")) and len(p) == 2 and p), 90, "probed rollout")
    mc.kubectl("expose", "deploy", "web", "-n", ns, "--port=80")
    vip = cluster_ip(mc, ns, "web")
    wait_served(mc, vip, set(pods.values()))
    victim, survivor = sorted(pods)
    mc.kubectl("exec", victim, "-n", ns, "--", "touch", "/run/unready")
    wait_served(mc, vip, {pods[survivor]})
    sockets = pod_sockets(mc, ns, client_pod(mc, ns))
    try:
        assert hostnames(sockets, vip, 80, 10) == {survivor: 10}
        mc.kubectl("exec", victim, "-n", ns, "--", "rm", "/run/unready")
        wait_served(mc, vip, set(pods.values()))
        assert set(hostnames(sockets, vip, 80, 30)) == set(pods)
    finally:
        sockets.close()


def test_nodeport_answers_on_the_node_address_masqueraded(mc: Any, ns: str,
                                                          web: tuple[str, dict[str, str], Any]) -> None:
    vip, pods, sockets = web
    mc.kubectl("patch", "svc", "web", "-n", ns, "-p", '{"spec":{"type":"NodePort"}}')
    node_port = int(mc.kubectl("get", "svc", "web", "-n", ns, "-o", "jsonpath={.spec.ports[0].nodePort}").stdout)
    wait_for(lambda: set(hostnames(sockets, NODE_IP, node_port, 12)) == set(pods), 20, "the NodePort answering")
    _, body = http_get_from(sockets, NODE_IP, node_port, "/clientip")
    assert body.decode().split(":")[0] == NODE_POD_GATEWAY  # masqueraded (externalTrafficPolicy Cluster)
    client_ip = ready_pods(mc, ns, "run=client")["client"]
    _, body = http_get_from(sockets, vip, 80, "/clientip")
    assert body.decode().split(":")[0] == client_ip  # the ClusterIP keeps the pod's own address
    mc.kubectl("patch", "svc", "web", "-n", ns, "-p", '{"spec":{"externalTrafficPolicy":"Local"}}')
    wait_for(lambda: http_get_from(sockets, NODE_IP, node_port, "/clientip")[1].decode().startswith(client_ip + ":"),
             20, "the pod's own address through the NodePort with externalTrafficPolicy Local")
    node = node_sockets(mc)
    try:
        assert set(hostnames(node, NODE_IP, node_port, 12)) == set(pods)  # from the node itself too
    finally:
        node.close()


def test_selectorless_service_reaches_the_outside_world(mc: Any, ns: str) -> None:
    vip = outside_service(mc, ns)
    wait_served(mc, vip, {"203.0.113.10"})
    sockets = pod_sockets(mc, ns, client_pod(mc, ns))
    try:
        _, body = http_get_from(sockets, vip, 80, "/clientip")
        assert body.decode().startswith(NODE_IP + ":")  # leaving the node: masqueraded to its address
    finally:
        sockets.close()


def test_removed_endpoint_keeps_its_connection_and_gets_no_new_ones(mc: Any, ns: str,
                                                                    web: tuple[str, dict[str, str], Any]) -> None:
    """Graceful removal: a pod taken out of the Service (its label removed) finishes what it serves (IPVS: weight
    0 until its connections end; nftables: conntrack keeps the connection's DNAT), and gets nothing new."""
    vip, pods, sockets = web
    s = sockets.socket()
    try:
        s.settimeout(3)
        s.connect((vip, 80))
        s.sendall(f"GET /hostname HTTP/1.1\r\nHost: {vip}\r\n\r\n".encode())
        first = read_body(s)
        assert first in pods
        mc.kubectl("label", "pod", first, "-n", ns, "app-")  # its ReplicaSet makes another in its place
        wait_for(lambda: (eps := served(mc, "TCP", vip, 80)) is not None and pods[first] not in eps, 30,
                 f"{first} out of the load balancer")
        got = hostnames(sockets, vip, 80, 12)
        assert first not in got and set(got) <= set(ready_pods(mc, ns, "app=web"))
        s.sendall(f"GET /hostname HTTP/1.1\r\nHost: {vip}\r\n\r\n".encode())
        assert read_body(s) == first  # the old connection still served
    finally:
        s.close()


def test_no_endpoints_refused_and_dead_target_port_fails_at_once(mode: str, mc: Any, ns: str) -> None:
    deploy(mc, ns, "web", 1)
    mc.kubectl("create", "service", "clusterip", "nobody", "-n", ns, "--tcp=80:80")
    mc.kubectl("expose", "deploy", "web", "-n", ns, "--port=80", "--target-port=9999", "--name=deaf")
    nobody, deaf = cluster_ip(mc, ns, "nobody"), cluster_ip(mc, ns, "deaf")
    wait_served(mc, nobody, set())
    wait_served(mc, deaf, set(ready_pods(mc, ns, "app=web").values()))
    for sockets in (pod_sockets(mc, ns, client_pod(mc, ns)), node_sockets(mc)):
        try:
            # "at once": a refusal or a reset, not connect_error's timeout (bench_agent.py prints how long each takes)
            assert connect_error(sockets, nobody, 80) == "refused"
            # MODES DIFFER: the userspace data plane resets after its handshake; nftables passes the refusal on
            assert connect_error(sockets, deaf, 80) == ("reset" if mode == "ipvs" else "refused")
        finally:
            sockets.close()


def test_unused_port_of_a_cluster_ip_is_refused(mc: Any, web: tuple[str, dict[str, str], Any]) -> None:
    vip, _, sockets = web
    assert connect_error(sockets, vip, 81) == "refused"  # MODES DIFFER in how (see the module docstring)


def _ping(sockets: Any, ip: str) -> tuple[str, int] | str:
    """One ICMP echo request: (who answered, ICMP type of the answer), or the error sending it."""
    s = sockets.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        s.settimeout(2)
        header = struct.pack("!BBHHH", 8, 0, 0, 0x4c4b, 1) + b"labkit!!"
        total = sum(struct.unpack("!8H", header))
        total = (total >> 16) + (total & 0xFFFF)
        packet = header[:2] + struct.pack("!H", ~(total + (total >> 16)) & 0xFFFF) + header[4:]
        try:
            s.sendto(packet, (ip, 0))
            while True:
                data, (src, _) = s.recvfrom(1024)
                icmp_type = data[(data[0] & 0x0F) * 4]
                if icmp_type != 8:  # the node's own raw socket also sees its request
                    return src, icmp_type
        except OSError as exc:
            return type(exc).__name__
    finally:
        s.close()


def test_ping_a_cluster_ip(mode: str, mc: Any, web: tuple[str, dict[str, str], Any]) -> None:
    vip, _, sockets = web
    node = node_sockets(mc)
    try:
        if mode == "ipvs":  # MODES DIFFER: a kube-ipvs0 address, whose KUBE-IPVS-FILTER rejects the echo request
            assert _ping(sockets, vip) == (vip, 3)  # ICMP destination (port) unreachable, from the ClusterIP
            assert _ping(node, vip) == (vip, 3)
        else:  # no address anywhere: cluster-ips-check rejects it, on the node's way to nowhere
            assert _ping(sockets, vip) == (NODE_POD_GATEWAY, 3)
            assert _ping(node, vip) == "PermissionError"  # ping: sendmsg: Operation not permitted
    finally:
        node.close()
