"""CoreDNS with kind's Corefile on loopback (ephemeral ports): UDP/TCP, forwarding to a fake outside world,
side ports and metrics, fuzzing."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time

import aiohttp
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from labkit.dns import fixtures as f
from labkit.dns.index import ClusterIndex
from labkit.dns.server import Listener, exchange
from labkit.dns.testing import LocalCoreDNS, kind_corefile
from labkit.dns.upstream import UpstreamData, UpstreamHandler

UPSTREAM_CONFIG = {
    "ttl": 120,
    "zones": {
        "example.net": {"www": "203.0.113.10", "db": ["203.0.113.20", "203.0.113.21"], "web": {"cname": "www"}},
        "iij.ad.jp": {"www": "202.232.2.180"},
    },
}


@pytest.fixture
async def upstream():
    async with Listener(UpstreamHandler(UpstreamData(UPSTREAM_CONFIG)), "127.0.0.1", 0) as server:
        yield server


@pytest.fixture
def index() -> ClusterIndex:
    idx = ClusterIndex()
    idx.load(f.article_objects())
    idx.load([f.service("gone", "ext", type="ExternalName", external_name="nope.example.net"),
              f.service("web", "ext", type="ExternalName", external_name="web.example.net")])
    idx.set_synced()
    return idx


@pytest.fixture
async def server(index: ClusterIndex, upstream: Listener):
    srv = LocalCoreDNS(kind_corefile(upstream=f"127.0.0.1:{upstream.port}"), index)
    await srv.start()
    yield srv
    await srv.stop()


async def query(srv: LocalCoreDNS, name: str, rdtype: str = "A", tcp: bool = False, **kw) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, **kw)
    raw = await asyncio.wait_for(exchange(q.to_wire(), "127.0.0.1", srv.port, tcp), 3)
    return dns.message.from_wire(raw)


def rdatas(m: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in m.answer for rd in rrset]


async def test_article_over_udp_and_tcp(server: LocalCoreDNS) -> None:
    for tcp in (False, True):
        m = await query(server, "nginx.default.svc.cluster.local.", tcp=tcp)
        assert rdatas(m) == ["10.102.97.154"] and m.answer[0].ttl == 30
        assert sorted(rdatas(await query(server, "nginx.headless.svc.cluster.local.", tcp=tcp))) == [
            "192.168.76.141", "192.168.76.142"]
        assert rdatas(await query(server, "nginx-0.nginx.sts.svc.cluster.local.", tcp=tcp)) == ["192.168.136.206"]
        assert rdatas(await query(server, "nginx.manual.svc.cluster.local.", tcp=tcp)) == ["202.232.2.180"]
        m = await query(server, "nginx.ext.svc.cluster.local.", tcp=tcp)
        # CNAME first, then the target's A from upstream; `cache 30` caps the upstream's 120 s (it rewrites the
        # TTLs of every reply it passes, even for cluster.local, whose replies it does not store)
        assert [dns.rdatatype.to_text(r.rdtype) for r in m.answer] == ["CNAME", "A"]
        assert rdatas(m) == ["www.iij.ad.jp.", "202.232.2.180"] and m.answer[1].ttl == 30
        assert m.flags & dns.flags.AA and m.rcode() == dns.rcode.NOERROR


async def test_externalname_upstream_cname_and_nxdomain(server: LocalCoreDNS) -> None:
    m = await query(server, "web.ext.svc.cluster.local.")
    assert rdatas(m) == ["web.example.net.", "www.example.net.", "203.0.113.10"]
    m = await query(server, "gone.ext.svc.cluster.local.")  # upstream NXDOMAIN → CNAME only, NOERROR
    assert m.rcode() == dns.rcode.NOERROR and rdatas(m) == ["nope.example.net."]


async def test_forwarding(server: LocalCoreDNS) -> None:
    m = await query(server, "db.example.net.")
    assert sorted(rdatas(m)) == ["203.0.113.20", "203.0.113.21"] and m.flags & dns.flags.RA
    m = await query(server, "missing.example.net.")
    assert m.rcode() == dns.rcode.NXDOMAIN and m.flags & dns.flags.RA
    m = await query(server, "www.google.com.")  # in no zone of the outside world: NXDOMAIN, the root's SOA
    assert m.rcode() == dns.rcode.NXDOMAIN and m.flags & dns.flags.RA and not m.flags & dns.flags.AA
    assert [r.name.to_text() for r in m.authority] == ["."]
    # reverse misses fall through to forward; the upstream knows its own addresses
    m = await query(server, "10.113.0.203.in-addr.arpa.", "PTR")
    assert rdatas(m) == ["www.example.net."] and m.flags & dns.flags.RA
    m = await query(server, "154.97.102.10.in-addr.arpa.", "PTR")  # a ClusterIP: answered here
    assert rdatas(m) == ["nginx.default.svc.cluster.local."] and not m.flags & dns.flags.RA


async def test_no_upstream_is_servfail(index: ClusterIndex) -> None:
    async with LocalCoreDNS(kind_corefile(upstream=None), index) as srv:  # the chain ends at loop
        assert (await query(srv, "www.example.net.")).rcode() == dns.rcode.SERVFAIL
        m = await query(srv, "nginx.ext.svc.cluster.local.")  # CNAME, no upstream data
        assert rdatas(m) == ["www.iij.ad.jp."]


async def test_change_shows_in_the_next_answer(server: LocalCoreDNS, index: ClusterIndex) -> None:
    assert rdatas(await query(server, "nginx.default.svc.cluster.local.")) == ["10.102.97.154"]
    index.on_service("MODIFIED", f.service("nginx", "default", cluster_ips=["10.96.7.7"], ports=[{"port": 80}]))
    assert rdatas(await query(server, "nginx.default.svc.cluster.local.")) == ["10.96.7.7"]


async def test_side_ports_and_metrics(server: LocalCoreDNS, index: ClusterIndex) -> None:
    await query(server, "nginx.default.svc.cluster.local.")
    await query(server, "nope.default.svc.cluster.local.", tcp=True)
    async with aiohttp.ClientSession() as s:
        index.set_synced(False)
        async with s.get(f"http://127.0.0.1:{server.http_port('ready')}/ready") as r:
            assert r.status == 503 and await r.text() == "kubernetes"
        assert server.logs()[-1] == '[INFO] plugin/ready: Still waiting on: "kubernetes"'
        index.set_synced(True)
        async with s.get(f"http://127.0.0.1:{server.http_port('ready')}/ready") as r:
            assert r.status == 200 and await r.text() == "OK"
        index.set_synced(False)  # a plugin that has been ready is not asked again (plugin/ready)
        async with s.get(f"http://127.0.0.1:{server.http_port('ready')}/ready") as r:
            assert r.status == 200
        async with s.get(f"http://127.0.0.1:{server.http_port('health')}/health") as r:
            assert r.status == 200 and await r.text() == "OK"
        async with s.get(f"http://127.0.0.1:{server.http_port('prometheus')}/metrics") as r:
            text = await r.text()
    # Labels in Prometheus's order (sorted); the server label is the block's address (port 0 here).
    base = 'server="dns://:0",view="",zone="."'
    for proto in ("udp", "tcp"):
        assert (f'coredns_dns_requests_total{{family="1",proto="{proto}",server="dns://:0",type="A",view="",'
                'zone="."} 1') in text
    # loadbalance wraps every write: it is the plugin CoreDNS's recorder sees (as observed on kind)
    assert f'coredns_dns_responses_total{{plugin="loadbalance",rcode="NXDOMAIN",{base}}} 1' in text
    assert f'coredns_dns_request_duration_seconds_count{{{base}}} 2' in text
    assert 'coredns_dns_request_duration_seconds_bucket{' in text and 'le="+Inf"} 2' in text
    assert 'coredns_build_info{goversion="go1.21.11",revision="a6338e9",version="1.11.3"} 1' in text
    assert 'coredns_plugin_enabled{name="kubernetes",server="dns://:0",view="",zone="."} 1' in text
    assert "\ncoredns_reload_failed_total 0\n" in text and "coredns_panics_total 0" in text


def _mutations(seed: bytes, rng: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        b = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            if op < 0.5 and b:
                b[rng.randrange(len(b))] = rng.randrange(256)
            elif op < 0.7:
                del b[rng.randrange(len(b) + 1) :]
            elif op < 0.85:
                b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
            else:
                pos = rng.randrange(len(b)) if b else 0
                b[pos:pos] = b"\xc0\x0c" * rng.randint(1, 3)
        out.append(bytes(b))
    return out


async def test_fuzz_never_stops_the_server(server: LocalCoreDNS) -> None:
    rng = random.Random(1234)
    seeds = [
        dns.message.make_query("nginx.default.svc.cluster.local.", "A").to_wire(),
        dns.message.make_query("_http._tcp.nginx.sts.svc.cluster.local.", "SRV", use_edns=0,
                               want_dnssec=True).to_wire(),
        dns.message.make_query("154.97.102.10.in-addr.arpa.", "PTR").to_wire(),
        dns.message.make_query("nginx.ext.svc.cluster.local.", "A").to_wire(),
    ]
    packets = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 600))) for _ in range(300)]
    for s in seeds:
        packets += _mutations(s, rng, 300)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        for i, p in enumerate(packets):
            await loop.sock_sendto(sock, p, ("127.0.0.1", server.port))
            if i % 100 == 0:
                await asyncio.sleep(0)  # let the server drain
        # TCP: garbage, a length prefix that lies, and a half-sent message
        for payload in (b"\x00\x05abc", b"\xff\xff" + b"x" * 10, rng.randbytes(300)):
            _, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(payload)
            await w.drain()
            w.close()
    finally:
        sock.close()
    # still answering, over both transports
    for tcp in (False, True):
        m = await query(server, "nginx.default.svc.cluster.local.", tcp=tcp)
        assert rdatas(m) == ["10.102.97.154"]
    assert server.env.metrics.panics == 0


async def test_udp_throughput_report(server: LocalCoreDNS) -> None:
    """Measured, not asserted (the machine is shared): answers/s of the UDP server with a windowed client."""
    q = dns.message.make_query("nginx.default.svc.cluster.local.", "A").to_wire()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", server.port))
    loop = asyncio.get_running_loop()
    got = 0
    n = 3000
    t0 = time.perf_counter()
    try:
        for i in range(0, n, 50):
            for j in range(50):
                sock.send(struct.pack("!H", (i + j) & 0xFFFF) + q[2:])
            for _ in range(50):
                await asyncio.wait_for(loop.sock_recv(sock, 512), 2)
                got += 1
    finally:
        sock.close()
    elapsed = time.perf_counter() - t0
    print(f"\nDNS UDP (same event loop as the client): {got / elapsed:,.0f} answers/s")
    assert got == n
