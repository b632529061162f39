"""labkit.dns.dig: formatting, JSON, the glibc search algorithm, transports (loopback servers only)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.rrset
import pytest

from labkit.dns import dig as digmod
from labkit.dns import fixtures as f
from labkit.dns.dig import LocalTransport, dig, dig_main, parse_resolv_conf, resolve, search_candidates
from labkit.dns.index import ClusterIndex
from labkit.dns.testing import LocalCoreDNS, kind_corefile

POD_RESOLV = "nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"


class LoopbackTransport(LocalTransport):
    """A 'pod' whose resolv.conf points at the test server on loopback."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def exchange(self, wire: bytes, server: str, port: int, tcp: bool, timeout: float) -> bytes:
        return super().exchange(wire, server, self.port, tcp, timeout)

    def resolv_conf(self) -> str:
        return POD_RESOLV


@pytest.fixture(autouse=True)
def no_auto_install() -> Iterator[None]:
    """Never pick up an embedded cluster that happens to run at $LABKIT_HOME: these tests use loopback only."""
    saved = (digmod._pod_factory, digmod._node_transport, digmod._node_factory, digmod._auto_tried)
    digmod._pod_factory, digmod._node_transport, digmod._node_factory, digmod._auto_tried = None, None, None, True
    try:
        yield
    finally:
        digmod._pod_factory, digmod._node_transport, digmod._node_factory, digmod._auto_tried = saved


@pytest.fixture
def server_port():
    """A DNS server in a background thread (dig() is synchronous)."""
    import asyncio
    import threading

    idx = ClusterIndex()
    idx.load(f.article_objects())
    idx.set_synced()
    ready = threading.Event()
    holder: dict = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        srv = LocalCoreDNS(kind_corefile(upstream=None), idx)
        loop.run_until_complete(srv.start())
        holder.update(loop=loop, srv=srv)
        ready.set()
        loop.run_forever()
        loop.run_until_complete(srv.stop())
        loop.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert ready.wait(5)
    yield holder["srv"].port
    holder["loop"].call_soon_threadsafe(holder["loop"].stop)
    t.join(5)


def test_dig_output_and_json(server_port: int) -> None:
    r = dig("nginx.default.svc.cluster.local.", server="127.0.0.1", port=server_port)
    text = str(r)
    assert ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: " in text
    assert ";; flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1" in text
    assert ";; OPT PSEUDOSECTION:" in text and "; EDNS: version: 0, flags:; udp: 1232" in text
    assert ";; ANSWER SECTION:\nnginx.default.svc.cluster.local.\t30\tIN\tA\t10.102.97.154" in text
    assert f";; SERVER: 127.0.0.1#{server_port}(127.0.0.1) (UDP)" in text
    j = r.to_json()
    assert j["rcode"] == "NOERROR" and j["flags"] == ["qr", "aa", "rd"]
    assert j["question"] == {"name": "nginx.default.svc.cluster.local.", "type": "A"}
    assert j["answer"] == [{"name": "nginx.default.svc.cluster.local.", "ttl": 30, "class": "IN", "type": "A",
                            "rdata": "10.102.97.154"}]
    json.dumps(j)
    assert r.short() == "10.102.97.154"
    df = r.to_dataframe()
    assert list(df["rdata"]) == ["10.102.97.154"] and list(df["section"]) == ["answer"]
    assert "<table>" in r._repr_html_() and "10.102.97.154" in r._repr_html_()
    r = dig("nginx.ext.svc.cluster.local.", "CNAME", server="127.0.0.1", port=server_port, tcp=True)
    assert r.short() == "www.iij.ad.jp." and "(TCP)" in str(r)
    r = dig("nope.default.svc.cluster.local.", server="127.0.0.1", port=server_port)
    assert r.rcode == "NXDOMAIN" and r.authority[0]["type"] == "SOA"


def test_search_candidates() -> None:
    rc = parse_resolv_conf(POD_RESOLV)
    assert rc.ndots == 5 and rc.nameservers == ["127.0.0.1"]
    assert search_candidates("nginx", rc) == [
        "nginx.default.svc.cluster.local.", "nginx.svc.cluster.local.", "nginx.cluster.local.", "nginx."]
    assert search_candidates("a.b.c.d.e.f", rc)[0] == "a.b.c.d.e.f."
    assert search_candidates("x.", rc) == ["x."]


def test_resolve_walks_the_search_list(server_port: int) -> None:
    t = LoopbackTransport(server_port)
    r = resolve("nginx.headless", transport=t)
    assert [x.name for x in r.tries] == [
        "nginx.headless.default.svc.cluster.local.",
        "nginx.headless.svc.cluster.local.",
    ]
    assert [x.outcome for x in r.tries] == ["NXDOMAIN", "NOERROR"]
    assert sorted(r.addresses) == ["192.168.76.141", "192.168.76.142"]
    assert r.name == "nginx.headless.svc.cluster.local."
    r = resolve("nginx", transport=t)
    assert r.addresses == ["10.102.97.154"] and len(r.tries) == 1
    r = resolve("svc", transport=t)  # svc.default.svc… and svc.svc… NXDOMAIN, svc.cluster.local. NODATA, svc. ...
    assert [x.outcome for x in r.tries][:3] == ["NXDOMAIN", "NXDOMAIN", "NODATA"] and r.answer is None
    assert "not resolved" in str(r)


def test_local_transport_refuses_cluster_addresses() -> None:
    with pytest.raises(PermissionError):
        dig("nginx.default.svc.cluster.local.", server="10.96.0.10")


def test_dig_main_json(server_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert dig_main(["nginx.sts.svc.cluster.local.", "--server", "127.0.0.1", "--port", str(server_port),
                     "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert sorted(a["rdata"] for a in out["answer"]) == ["192.168.136.206", "192.168.76.144"]
    assert dig_main(["nginx.ext.svc.cluster.local.", "CNAME", "--server", "127.0.0.1", "--port",
                     str(server_port), "--short"]) == 0
    assert capsys.readouterr().out == "www.iij.ad.jp.\n"


def test_pod_transport_factory_is_used(server_port: int) -> None:
    seen = []

    def factory(pod: str, ns: str) -> LoopbackTransport:
        seen.append((pod, ns))
        return LoopbackTransport(server_port)

    digmod.set_pod_transport_factory(factory)
    try:
        r = dig("nginx.default.svc.cluster.local.", from_pod="client", namespace="lab")
        assert r.addresses == ["10.102.97.154"] and seen == [("client", "lab")]
    finally:
        digmod.set_pod_transport_factory(None)


def test_query_main_roundtrip(server_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    q = dns.message.make_query("nginx.default.svc.cluster.local.", "A")
    assert digmod.query_main(["--server", "127.0.0.1", "--port", str(server_port), q.to_wire().hex()]) == 0
    m = dns.message.from_wire(bytes.fromhex(capsys.readouterr().out.strip()))
    assert m.id == q.id and [rd.to_text() for rrset in m.answer for rd in rrset] == ["10.102.97.154"]


@pytest.mark.parametrize("tcp", [False, True])
def test_kubectl_exec_transport_runs_a_stdlib_only_exchange(server_port: int, tcp: bool) -> None:
    import os
    import subprocess
    import sys

    # A stand-in for `kubectl exec -n NS POD -- PYTHON ARGS...` that runs PYTHON -I ARGS here: the base interpreter
    # in isolated mode, which cannot import labkit (like a python3 in a kind pod).
    fake_kubectl = ["sh", "-c", 'shift 5; p="$1"; shift; exec "$p" -I "$@"', "kubectl"]
    python = os.path.join(sys.base_prefix, "bin", "python3")
    assert subprocess.run([python, "-I", "-c", "import labkit"], capture_output=True).returncode != 0
    t = digmod.KubectlExecTransport("client", "lab", kubectl=fake_kubectl, python=python)
    r = dig("nginx.default.svc.cluster.local.", server="127.0.0.1", port=server_port, tcp=tcp, transport=t)
    assert r.addresses == ["10.102.97.154"]
    with pytest.raises(OSError, match="kubectl exec failed"):
        dig("nginx.default.svc.cluster.local.", server="127.0.0.1", port=1, tcp=True, transport=t, timeout=0.5)


def test_noedns_sends_no_opt_record_and_tc_is_retried_over_tcp_unless_ignored() -> None:
    from labkit.dns.dig import make_query

    assert make_query("x.", edns=False).edns == -1 and make_query("x.").edns == 0
    big = dns.message.make_response(make_query("big.example.", edns=False))
    big.flags |= dns.flags.TC

    class Truncating(LocalTransport):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[bool, bytes]] = []

        def exchange(self, wire: bytes, server: str, port: int, tcp: bool, timeout: float) -> bytes:
            self.calls.append((tcp, wire))
            query = dns.message.from_wire(wire)
            reply = dns.message.make_response(query)
            if not tcp:
                reply.flags |= dns.flags.TC
            else:
                reply.answer.append(dns.rrset.from_text(query.question[0].name, 30, "IN", "A", "203.0.113.10"))
            return reply.to_wire()

    t = Truncating()
    r = dig("big.example.", server="127.0.0.1", edns=False, transport=t)
    assert [tcp for tcp, _ in t.calls] == [False, True] and r.tcp and r.addresses == ["203.0.113.10"]
    assert dns.message.from_wire(t.calls[0][1]).edns == -1  # no OPT record on the wire
    assert ";; Truncated, retrying in TCP mode." in str(r)
    t = Truncating()
    r = dig("big.example.", server="127.0.0.1", edns=False, ignore=True, transport=t)
    assert [tcp for tcp, _ in t.calls] == [False] and "tc" in r.flags and r.answer == []
