"""The Corefile's plugins, each against what CoreDNS documents and does (plugin/<name>/README.md and its Go code),
on a CoreDNS of labkit's running on loopback with a fake outside world."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from labkit.dns import fixtures as f
from labkit.dns.coredns import Instance, serve_main
from labkit.dns.corefile import CorefileError
from labkit.dns.index import ClusterIndex
from labkit.dns.server import Listener, exchange
from labkit.dns.testing import LocalCoreDNS, kind_corefile, refusing_port
from labkit.dns.upstream import UpstreamData, UpstreamHandler
from tests.conftest import eventually

OUTSIDE = {"ttl": 300, "zones": {"example.net": {"www": "203.0.113.10", "db": ["203.0.113.20", "203.0.113.21"],
                                                 "web": {"cname": "www"}}}}
# A {common} log line (plugin/log): remote:port - id "type class name proto size do bufsize" rcode flags rsize duration
LOG_LINE = re.compile(r'^\[INFO\] (?P<remote>[\d.]+):(?P<port>\d+) - (?P<id>\d+) "(?P<type>\S+) IN (?P<name>\S+) '
                      r'(?P<proto>udp|tcp) (?P<size>\d+) (?P<do>true|false) (?P<bufsize>\d+)" (?P<rcode>\S+) '
                      r'(?P<flags>\S+) (?P<rsize>\d+) (?P<duration>\d+\.\d+s)$')


@pytest.fixture
def index() -> ClusterIndex:
    idx = ClusterIndex()
    idx.load([f.namespace("default"), f.namespace("lab"),
              f.service("web", "lab", cluster_ips=["10.96.5.5"], ports=[{"name": "http", "port": 80}]),
              f.service("empty", "lab", cluster_ips=["10.96.5.6"], ports=[{"port": 80}]),
              f.service("db", "lab", cluster_ips=["None"], ports=[{"name": "pg", "port": 5432}]),
              f.endpointslice("db-1", "db", "lab", endpoints=[f.endpoint("10.244.3.1"), f.endpoint("10.244.3.2")],
                              ports=[{"name": "pg", "port": 5432}]),
              f.endpointslice("web-1", "web", "lab", endpoints=[f.endpoint("10.244.1.10")],
                              ports=[{"name": "http", "port": 80}])])
    # endpoint_pod_names needs the slice's targetRef
    idx.on_endpointslice("MODIFIED", _with_target_refs(f.endpointslice(
        "db-1", "db", "lab", endpoints=[f.endpoint("10.244.3.1"), f.endpoint("10.244.3.2")],
        ports=[{"name": "pg", "port": 5432}])))
    idx.set_synced()
    return idx


def _with_target_refs(slice_obj: dict) -> dict:
    for i, ep in enumerate(slice_obj["endpoints"]):
        ep["targetRef"] = {"kind": "Pod", "name": f"db-7b54d48599-{i}", "namespace": "lab"}
    return slice_obj


@pytest.fixture
async def outside():
    async with Listener(UpstreamHandler(UpstreamData(OUTSIDE)), "127.0.0.1", 0) as server:
        yield f"127.0.0.1:{server.port}"


def answers(m: dns.message.Message) -> list[str]:
    return [rd.to_text() for rrset in m.answer for rd in rrset]


def block(*lines: str, key: str = ".:53") -> str:
    return key + " {\n" + "".join(f"    {line}\n" for line in lines) + "}\n"


# ------------------------------------------------------------------------------------------------ log


async def test_log_lines_in_coredns_format(index: ClusterIndex, outside: str) -> None:
    async with LocalCoreDNS(kind_corefile(outside).replace("    errors\n", "    errors\n    log\n"), index) as d:
        await d.query("web.lab.svc.cluster.local.")
        await d.query("web.lab.svc.cluster.local.")  # memoized: logged all the same
        await d.query("nope.lab.svc.cluster.local.", "AAAA", tcp=True)
        await d.query("www.example.net.")
        await d.query("www.example.net.")  # a cache hit
        await d.query("WWW.Example.NET.", use_edns=0, payload=1232, want_dnssec=True)
        lines = [LOG_LINE.match(line) for line in d.logs() if '"HINFO' not in line and line.startswith("[INFO] 1")]
    assert all(lines), d.logs()
    fields = [(m["type"], m["name"], m["proto"], m["size"], m["do"], m["bufsize"], m["rcode"], m["flags"],
               m["rsize"]) for m in lines if m]
    assert fields == [
        ("A", "web.lab.svc.cluster.local.", "udp", "43", "false", "512", "NOERROR", "qr,aa,rd", "84"),
        ("A", "web.lab.svc.cluster.local.", "udp", "43", "false", "512", "NOERROR", "qr,aa,rd", "84"),
        ("AAAA", "nope.lab.svc.cluster.local.", "tcp", "44", "false", "65535", "NXDOMAIN", "qr,aa,rd", "137"),
        ("A", "www.example.net.", "udp", "33", "false", "512", "NOERROR", "qr,rd,ra", "64"),
        ("A", "www.example.net.", "udp", "33", "false", "512", "NOERROR", "qr,aa,rd,ra", "64"),
        # the name lower case; DO is part of the cache's key (a miss); {rsize} before the server adds the client's
        # OPT (the cache dropped the upstream's)
        ("A", "www.example.net.", "udp", "44", "true", "1232", "NOERROR", "qr,rd,ra", "64"),
    ]
    assert lines[0]["remote"] == "127.0.0.1"  # and {duration}: Go's seconds with a fraction (LOG_LINE), never timed


async def test_log_names_and_classes(index: ClusterIndex) -> None:
    corefile = block("log lab.svc.cluster.local. {\n        class denial\n    }", "log", "kubernetes cluster.local",
                     "hosts {\n        203.0.113.7 a.example.net\n        fallthrough\n    }")
    async with LocalCoreDNS(corefile, index) as d:
        await d.ask("web.lab.svc.cluster.local.")  # success: the first rule (denial only) matches, no line
        await d.ask("nope.lab.svc.cluster.local.")  # NXDOMAIN: denial
        await d.ask("a.example.net.", "AAAA")  # the second rule (every class)
        lines = [line for line in d.logs() if line.startswith("[INFO] 10.")]
    assert [line.split('"')[1] for line in lines] == ["A IN nope.lab.svc.cluster.local. udp 44 false 512",
                                                     "AAAA IN a.example.net. udp 31 false 512"]


async def test_log_format_and_unwritten_reply(index: ClusterIndex) -> None:
    corefile = block('log . "{type} {name} {rcode} {>rflags} {rsize} {>opcode} {local} {nothing}"', "hosts {\n"
                     "        203.0.113.7 a.example.net\n    }")
    async with LocalCoreDNS(corefile, index) as d:
        assert (await d.ask("b.example.net.")).rcode() == dns.rcode.SERVFAIL  # hosts: not there, no fallthrough
        await d.ask("a.example.net.")
    assert d.logs()[-2:] == ["[INFO] A b.example.net. - - 0 0 - {nothing}",
                             "[INFO] A a.example.net. NOERROR qr,aa,rd 60 0 - {nothing}"]


# ------------------------------------------------------------------------------------------------ errors


async def test_errors_logs_what_plugins_return(index: ClusterIndex) -> None:
    corefile = block("errors", "rewrite name bad.test a..b", "kubernetes cluster.local")
    async with LocalCoreDNS(corefile, index) as d:
        m = await d.ask("bad.test.")
    assert m.rcode() == dns.rcode.SERVFAIL and not m.answer
    assert d.logs()[-1] == "[ERROR] plugin/errors: 2 bad.test. A: invalid name after rewrite: a..b."


async def test_forward_failure_is_servfail_logged_by_errors_and_log(index: ClusterIndex) -> None:
    port = refusing_port()  # nothing listens there: every try is refused
    corefile = block("errors", "log", f"forward . 127.0.0.1:{port}")
    async with LocalCoreDNS(corefile, index) as d:
        m = await d.query("www.example.net.")
        upstream = next(p for p in d.dns.instance.plugins() if p.name == "forward").proxies[0]
        down = upstream.down(2)
    # Each try is refused at once; health checks (every 0.5 s) mark the upstream down after max_fails (2), and a
    # try of the only, down upstream that fails ends the loop (bench/bench_dns_local.py prints how long it takes).
    assert m.rcode() == dns.rcode.SERVFAIL and down
    errors = [line for line in d.logs() if line.startswith("[ERROR]")]
    assert re.fullmatch(rf"\[ERROR\] plugin/errors: 2 www\.example\.net\. A: read udp 127\.0\.0\.1:\d+->127\.0\.0\.1:"
                        rf"{port}: connection refused", errors[-1])
    # log's line comes first: errors sits before log in the chain, so it logs once log has returned
    assert re.search(r'"A IN www\.example\.net\. udp 33 false 512" - - 0 \d', d.logs()[-2])


# ------------------------------------------------------------------------------------------------ cache


async def test_cache_ttls_and_authoritative_hits(index: ClusterIndex, outside: str) -> None:
    async with LocalCoreDNS(kind_corefile(outside), index) as d:
        cache = next(p for p in d.dns.instance.plugins() if p.name == "cache")  # type: ignore[union-attr]
        now = [1000.0]
        cache.now = lambda: now[0]
        first = await d.ask("www.example.net.")
        assert answers(first) == ["203.0.113.10"] and first.answer[0].ttl == 30  # 300 capped at 30
        assert first.flags & dns.flags.RA and not first.flags & dns.flags.AA  # nslookup: Non-authoritative answer
        now[0] += 12.7
        hit = await d.ask("WWW.example.net.")
        assert hit.answer[0].ttl == 18 and hit.flags & dns.flags.AA and hit.flags & dns.flags.RA
        assert hit.answer[0].name.to_text() == "www.example.net."  # the stored spelling
        assert hit.question[0].name.to_text() == "WWW.example.net."
        miss = await d.ask("nope.example.net.")
        now[0] += 1
        denial = await d.ask("nope.example.net.")
        assert miss.rcode() == denial.rcode() == dns.rcode.NXDOMAIN and denial.flags & dns.flags.AA
        assert [r.ttl for r in denial.authority] == [29]
        now[0] += 30
        assert not (await d.ask("www.example.net.")).flags & dns.flags.AA  # expired: fetched again


async def test_cache_disable_keeps_cluster_answers_fresh(index: ClusterIndex, outside: str) -> None:
    plain = kind_corefile(outside).replace(
        "cache 30 {\n       disable success cluster.local\n       disable denial cluster.local\n    }", "cache 30")
    for corefile, stored in ((kind_corefile(outside), False), (plain, True)):
        async with LocalCoreDNS(corefile, index) as d:
            cache = next(p for p in d.dns.instance.plugins() if p.name == "cache")  # type: ignore[union-attr]
            now = [1000.0]
            cache.now = lambda now=now: now[0]
            await d.ask("web.lab.svc.cluster.local.")
            now[0] += 10
            m = await d.ask("web.lab.svc.cluster.local.")
            assert (m.answer[0].ttl, bool(m.flags & dns.flags.AA)) == ((20, True) if stored else (30, True))
            assert len(cache.pcache.items) == (1 if stored else 0)


# ------------------------------------------------------------------------------------------------ hosts


async def test_hosts_inline_file_ptr_nodata_and_servfail(index: ClusterIndex, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("203.0.113.50 files.corp.test files   # a comment\n2001:db8::5 v6.corp.test\n")
    corefile = block(f"hosts {hosts} corp.test {{\n        203.0.113.51 inline.corp.test\n        ttl 60\n"
                     "        reload 100ms\n    }")
    async with LocalCoreDNS(corefile, index) as d:
        m = await d.ask("FILES.corp.test.")
        assert answers(m) == ["203.0.113.50"] and m.answer[0].ttl == 60 and m.flags & dns.flags.AA
        assert m.answer[0].name.to_text() == "files.corp.test."  # lower case, as hosts writes it
        assert answers(await d.ask("inline.corp.test.")) == ["203.0.113.51"]
        assert answers(await d.ask("50.113.0.203.in-addr.arpa.", "PTR")) == ["files.corp.test."]
        nodata = await d.ask("files.corp.test.", "AAAA")  # the name exists: NODATA, no SOA
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and not nodata.authority
        assert (await d.ask("nope.corp.test.")).rcode() == dns.rcode.SERVFAIL  # no fallthrough
        assert (await d.ask("files.", "A")).rcode() == dns.rcode.SERVFAIL  # not in corp.test: next plugin: none
        hosts.write_text("203.0.113.60 files.corp.test\n")

        async def edited() -> bool:  # hosts rereads its file every 100ms
            return answers(await d.ask("files.corp.test.")) == ["203.0.113.60"]

        await eventually(edited, "the edited hosts file's answer")


async def test_hosts_fallthrough_to_kubernetes_and_forward(index: ClusterIndex, outside: str) -> None:
    corefile = kind_corefile(outside, extra="    hosts {\n       10.0.0.1 myhost.example\n       fallthrough\n    }\n")
    async with LocalCoreDNS(corefile, index) as d:
        assert answers(await d.ask("myhost.example.")) == ["10.0.0.1"]
        assert answers(await d.ask("web.lab.svc.cluster.local.")) == ["10.96.5.5"]
        assert answers(await d.ask("www.example.net.")) == ["203.0.113.10"]


# ------------------------------------------------------------------------------------------------ rewrite


async def test_rewrite_rules(index: ClusterIndex, outside: str) -> None:
    corefile = kind_corefile(outside, extra=(
        "    rewrite name foo.example www.example.net\n"
        "    rewrite name suffix .corp.internal .lab.svc.cluster.local answer auto\n"
        r"    rewrite name regex (.*)\.db\.test {1}.lab.svc.cluster.local answer auto" "\n"
        "    rewrite stop type AAAA A\n"))
    async with LocalCoreDNS(corefile, index) as d:
        m = await d.ask("foo.example.")  # exact: answered under the name asked
        assert [(r.name.to_text(), r[0].to_text()) for r in m.answer] == [("foo.example.", "203.0.113.10")]
        assert m.question[0].name.to_text() == "foo.example." and m.flags & dns.flags.RA
        m = await d.ask("web.corp.internal.")
        assert [(r.name.to_text(), r[0].to_text()) for r in m.answer] == [("web.corp.internal.", "10.96.5.5")]
        m = await d.ask("web.db.test.")
        assert [(r.name.to_text(), r[0].to_text()) for r in m.answer] == [("web.db.test.", "10.96.5.5")]
        m = await d.ask("www.example.net.", "AAAA")  # the question says AAAA, the records are A
        assert m.question[0].rdtype == dns.rdatatype.AAAA and answers(m) == ["203.0.113.10"]


async def test_rewrite_ttl_rcode_and_continue(index: ClusterIndex) -> None:
    corefile = block("rewrite continue ttl web.lab.svc.cluster.local 5",
                     "rewrite rcode suffix .lab.svc.cluster.local NXDOMAIN REFUSED",
                     "kubernetes cluster.local")
    async with LocalCoreDNS(corefile, index) as d:
        assert [r.ttl for r in (await d.ask("web.lab.svc.cluster.local.")).answer] == [5]
        assert (await d.ask("nope.lab.svc.cluster.local.")).rcode() == dns.rcode.REFUSED
    with pytest.raises(CorefileError, match=r"^plugin/rewrite: invalid TTL 'x' for a ttl rule$"):
        async with LocalCoreDNS(block("rewrite ttl a.test x", "whoami")):
            pass


# ------------------------------------------------------------------------------------------------ forward


async def test_forward_passes_the_upstreams_rcode_and_flags(index: ClusterIndex, outside: str) -> None:
    async with LocalCoreDNS(block(f"forward . {outside}"), index) as d:
        m = await d.ask("hostnames.")  # exists nowhere
        assert m.rcode() == dns.rcode.NXDOMAIN and m.flags & dns.flags.RA and not m.flags & dns.flags.AA
        assert [r.name.to_text() for r in m.authority] == ["."]
        m = await d.ask("db.example.net.", use_edns=0, payload=4096)
        assert sorted(answers(m)) == ["203.0.113.20", "203.0.113.21"] and m.payload == 4096


async def test_forward_stanzas_except_and_policy(index: ClusterIndex, outside: str) -> None:
    corefile = block("forward example.org 127.0.0.1:9", f"forward . {outside} {{\n        except example.net\n"
                     "        policy sequential\n    }", "whoami")
    async with LocalCoreDNS(corefile, index) as d:
        m = await d.ask("www.example.net.")  # excepted: goes on to whoami, which answers with the client
        assert not m.answer and [r.rdtype for r in m.additional] == [dns.rdatatype.A, dns.rdatatype.SRV]


async def test_forward_mismatched_reply_is_formerr_and_max_concurrent_refuses(index: ClusterIndex) -> None:
    class Odd:
        """An upstream that answers another question, slowly."""

        def fast(self, data: bytes, proto: str, remote: tuple[str, int]) -> None:
            return None

        async def serve(self, data: bytes, proto: str, remote: tuple[str, int]) -> bytes:
            await asyncio.sleep(0.3)
            q = dns.message.from_wire(data)
            r = dns.message.make_response(dns.message.make_query("other.test.", "A"))
            r.id = q.id
            return r.to_wire()

    async with Listener(Odd(), "127.0.0.1", 0) as odd:
        corefile = block("errors", f"forward . 127.0.0.1:{odd.port} {{\n        max_concurrent 1\n    }}")
        async with LocalCoreDNS(corefile, index) as d:
            first, second = await asyncio.gather(d.ask("a.test."), d.ask("b.test."))
    assert first.rcode() == dns.rcode.FORMERR
    assert second.rcode() == dns.rcode.REFUSED
    assert "[ERROR] plugin/errors: 5 b.test. A: concurrent queries exceeded maximum 1" in d.logs()


# ------------------------------------------------------------------------------------------------ kubernetes


async def test_kubernetes_options(index: ClusterIndex) -> None:
    corefile = block("kubernetes cluster.local {\n        endpoint_pod_names\n        namespaces lab\n"
                     "        ignore empty_service\n        ttl 7\n    }")
    async with LocalCoreDNS(corefile, index) as d:
        m = await d.ask("db-7b54d48599-0.db.lab.svc.cluster.local.")
        assert answers(m) == ["10.244.3.1"] and m.answer[0].ttl == 7
        assert (await d.ask("empty.lab.svc.cluster.local.")).rcode() == dns.rcode.NXDOMAIN  # no endpoints
        assert answers(await d.ask("web.lab.svc.cluster.local.")) == ["10.96.5.5"]
        assert (await d.ask("default.svc.cluster.local.")).rcode() == dns.rcode.NXDOMAIN  # not exposed


async def test_kubernetes_fallthrough_only_where_configured(index: ClusterIndex) -> None:
    corefile = block("kubernetes cluster.local in-addr.arpa {\n        fallthrough in-addr.arpa\n    }",
                     "hosts {\n        203.0.113.9 nope.lab.svc.cluster.local\n        fallthrough\n    }",
                     "whoami")
    async with LocalCoreDNS(corefile, index) as d:
        # hosts sits before kubernetes (plugin.cfg), whatever the Corefile's order
        assert answers(await d.ask("nope.lab.svc.cluster.local.")) == ["203.0.113.9"]
        m = await d.ask("other.lab.svc.cluster.local.")  # NXDOMAIN from kubernetes: no fallthrough there
        assert m.rcode() == dns.rcode.NXDOMAIN and m.flags & dns.flags.AA
        m = await d.ask("9.9.9.10.in-addr.arpa.", "PTR")  # unknown address: falls through to whoami
        assert m.rcode() == dns.rcode.NOERROR and m.additional


@pytest.mark.parametrize(("lines", "message"), [
    ("pods maybe", "plugin/kubernetes: wrong value for pods: maybe,  must be one of: disabled, verified, insecure"),
    ("ttl 4000", "plugin/kubernetes: /etc/coredns/Corefile:3 - Error during parsing: ttl must be in range "
                 "[0, 3600]: 4000"),
    ("upstream", "plugin/kubernetes: /etc/coredns/Corefile:3 - Error during parsing: unknown property 'upstream'"),
])
async def test_kubernetes_option_errors(lines: str, message: str) -> None:
    with pytest.raises(CorefileError) as exc:
        async with LocalCoreDNS(block(f"kubernetes cluster.local {{\n        {lines}\n    }}")):
            pass
    assert str(exc.value) == message


# ------------------------------------------------------------------------------------------------ the server


async def test_unknown_and_unimplemented_directives() -> None:
    with pytest.raises(CorefileError) as exc:
        async with LocalCoreDNS(block("errors", "nonsense")):
            pass
    assert str(exc.value) == "/etc/coredns/Corefile:3 - Error during parsing: Unknown directive 'nonsense'"
    with pytest.raises(CorefileError) as exc:
        async with LocalCoreDNS(block("errors", "etcd")):
            pass
    assert str(exc.value) == ("plugin/etcd: /etc/coredns/Corefile:3 - Error during parsing: this CoreDNS plugin is "
                              "not built into labkit")
    with pytest.raises(CorefileError, match="plugin/errors: this plugin can only be used once per Server Block"):
        async with LocalCoreDNS(block("errors", "errors", "whoami")):
            pass


async def test_server_blocks_route_by_longest_zone(index: ClusterIndex, outside: str) -> None:
    corefile = block(f"forward . {outside}", key=".:53") + block(
        "hosts {\n        203.0.113.99 www.example.net\n    }", key="example.net:53")
    async with LocalCoreDNS(corefile, index) as d:
        assert answers(await d.ask("www.example.net.")) == ["203.0.113.99"]  # the example.net block
        assert (await d.ask("db.example.net.")).rcode() == dns.rcode.SERVFAIL  # hosts, no fallthrough
        assert (await d.ask("hostnames.")).rcode() == dns.rcode.NXDOMAIN  # the . block forwards
        assert d.logs()[:2] == [".:0", "example.net.:0"]
    twice = Instance(d.env, "/etc/coredns/Corefile", block("whoami", key="example.net") + block(
        "whoami", key="example.net:53"))
    with pytest.raises(CorefileError, match=r"^cannot serve dns://example\.net\.:53 - it is already defined$"):
        twice.setup()


async def test_reload_applies_a_new_corefile_and_keeps_the_old_on_failure(index: ClusterIndex, outside: str
                                                                         ) -> None:
    async with LocalCoreDNS(kind_corefile(outside), index) as d:
        assert d.logs()[1].startswith("[INFO] plugin/reload: Running configuration SHA512 = ")
        await d.reload(kind_corefile(outside, extra="    hosts {\n       10.0.0.1 myhost.example\n       fallthrough\n"
                                                    "    }\n"))
        assert answers(await d.ask("myhost.example.")) == ["10.0.0.1"]
        assert d.logs()[-3] == "[INFO] Reloading" and d.logs()[-1] == "[INFO] Reloading complete"
        with pytest.raises(CorefileError):
            await d.reload(kind_corefile(outside, extra="    nonsense\n"))
        assert d.logs()[-1] == ("[ERROR] Restart failed: starting with listener file descriptors: "
                                "/etc/coredns/Corefile:23 - Error during parsing: Unknown directive 'nonsense'")
        assert answers(await d.ask("myhost.example.")) == ["10.0.0.1"]  # the old configuration serves on


async def test_reload_watches_the_file(index: ClusterIndex, tmp_path: Path) -> None:
    path = tmp_path / "Corefile"
    path.write_text(block("reload", "hosts {\n        203.0.113.1 a.test\n    }", key=".:0"))
    d = LocalCoreDNS("", index, path=str(path))
    d.dns.text = None  # read the file, as -conf does
    async with d:
        assert answers(await d.ask("a.test.")) == ["203.0.113.1"]
        path.write_text(block("reload", "hosts {\n        203.0.113.2 a.test\n    }", key=".:0"))

        async def reloaded() -> bool:
            return answers(await d.ask("a.test.")) == ["203.0.113.2"]

        await eventually(reloaded, "the edited Corefile's answer", interval=0.1)
        path.write_text(block("reload", "bogus", key=".:0"))
        await eventually(lambda: any("reload failed" in line for line in d.logs()), "the failed reload's error",
                         interval=0.1)
        assert d.logs()[-1].startswith("[ERROR] plugin/reload: Corefile changed but reload failed: starting with "
                                       "listener file descriptors: ")
        assert answers(await d.ask("a.test.")) == ["203.0.113.2"]


async def test_loop_detection(index: ClusterIndex) -> None:
    class Back:
        """An upstream that sends every query back to the CoreDNS that forwarded it."""

        port = 0

        def fast(self, data: bytes, proto: str, remote: tuple[str, int]) -> None:
            return None

        async def serve(self, data: bytes, proto: str, remote: tuple[str, int]) -> bytes | None:
            try:
                return await asyncio.wait_for(exchange(data, "127.0.0.1", self.port, False), 1)
            except Exception:
                return None

    back = Back()
    async with Listener(back, "127.0.0.1", 0) as relay:
        d = LocalCoreDNS(block("loop", f"forward . 127.0.0.1:{relay.port}"), index)
        async with d:
            back.port = d.port
            await eventually(lambda: d.fatal, "the loop plugin's fatal error", interval=0.05)
    assert re.fullmatch(r'plugin/loop: Loop \(127\.0\.0\.1:\d+ -> :0\) detected for zone "\.", see '
                        r'https://coredns\.io/plugins/loop#troubleshooting\. Query: "HINFO \d+\.\d+\."', d.fatal[0])


def test_conf_flag_reads_the_corefile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_main(["-conf", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err == f"open {tmp_path}/missing: no such file or directory\n"
    (tmp_path / "bad").write_text(".:0 {\n    kubernetes cluster.local {\n        pods maybe\n    }\n}\n")
    assert serve_main(["-conf", str(tmp_path / "bad")]) == 1
    assert "wrong value for pods: maybe" in capsys.readouterr().err
    assert serve_main(["-version"]) == 0
    assert capsys.readouterr().out == "CoreDNS-1.11.3\nlinux/amd64, go1.21.11, a6338e9\n"


async def test_whoami_is_the_default_corefiles(index: ClusterIndex) -> None:
    from labkit.dns.coredns import DEFAULT_COREFILE

    async with LocalCoreDNS(DEFAULT_COREFILE, index) as d:
        m = await d.query("anything.test.")
    addr, srv = m.additional
    assert addr[0].to_text() == "127.0.0.1" and addr.name.to_text() == "anything.test."
    assert srv.name.to_text() == "_udp.anything.test." and srv[0].port > 0


def test_kubernetes_without_api_configuration_fails_as_coredns(monkeypatch: pytest.MonkeyPatch) -> None:
    from labkit.dns.plugins.kubernetes import KubeSources, SourceKey

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(CorefileError, match=r"^plugin/kubernetes: unable to load in-cluster configuration, "
                                            r"KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined$"):
        KubeSources().acquire(SourceKey())
