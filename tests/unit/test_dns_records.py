"""Record rules of the cluster DNS (dns-rules.md §2–§6): the `kubernetes` plugin in kind's Corefile (no `forward`),
through the server without sockets."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from labkit.dns import fixtures as f
from labkit.dns import wire
from labkit.dns.index import ClusterIndex
from labkit.dns.testing import LocalCoreDNS, kind_corefile
from tests.conftest import eventually

Z = "cluster.local."


def rules_objects() -> list[dict]:
    """One object set covering every rule family (names follow the cases in dns-rules.md)."""
    return [
        f.namespace("default"),
        f.namespace("kube-system"),
        f.namespace("lab"),
        f.namespace("testns"),
        f.service("kubernetes", "default", cluster_ips=["10.96.0.1"], ports=[{"name": "https", "port": 443}]),
        f.endpointslice("kubernetes", "kubernetes", "default", endpoints=[f.endpoint("172.18.0.2")],
                        ports=[{"name": "https", "port": 6443}]),
        f.service("kube-dns", "kube-system", cluster_ips=["10.96.0.10"], ports=[
            {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53},
            {"name": "metrics", "port": 9153}]),
        f.endpointslice("kube-dns-1", "kube-dns", "kube-system", endpoints=[f.endpoint("10.244.0.3")],
                        ports=[{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53},
                               {"name": "metrics", "port": 9153}]),
        # ClusterIP with endpoints (one ready, one not ready, one unknown readiness)
        f.service("web", "lab", cluster_ips=["10.96.5.5"], ports=[{"name": "http", "port": 80}, {"port": 8080}]),
        f.endpointslice("web-1", "web", "lab", endpoints=[
            f.endpoint("10.244.1.10"), f.endpoint("10.244.1.11", ready=False), f.endpoint("10.244.1.12", ready=None)],
            ports=[{"name": "http", "port": 8000}, {"name": "", "port": 8080}]),
        f.service("empty", "lab", cluster_ips=["10.96.5.6"], ports=[{"port": 80}]),
        f.service("dual", "lab", cluster_ips=["10.96.5.7", "fd00:10:96::7"], ports=[{"name": "http", "port": 80}]),
        f.service("v6", "lab", cluster_ips=["fd00:10:96::8"], ports=[{"port": 80}]),
        # headless: hdls1 of CoreDNS's tests (6 addresses, one duplicated, hostnames)
        f.service("hdls1", "testns", cluster_ips=["None"]),
        f.endpointslice("hdls1-a", "hdls1", "testns", endpoints=[
            f.endpoint("172.0.0.2"), f.endpoint("172.0.0.3"), f.endpoint("172.0.0.4", hostname="dup-name"),
            f.endpoint("172.0.0.5", hostname="dup-name"), f.endpoint("5678:abcd::1")],
            ports=[{"name": "http", "port": 80}]),
        f.endpointslice("hdls1-b", "hdls1", "testns", endpoints=[f.endpoint("172.0.0.2")],
                        ports=[{"name": "http", "port": 80}]),
        f.service("hdlsnone", "lab", cluster_ips=["None"]),
        f.endpointslice("hdlsnone-1", "hdlsnone", "lab", endpoints=[f.endpoint("10.244.2.2", ready=False)]),
        f.service("db", "lab", cluster_ips=["None"], ports=[{"name": "pg", "port": 5432}]),
        f.endpointslice("db-1", "db", "lab", endpoints=[
            f.endpoint("10.244.3.1", hostname="db-0"), f.endpoint("10.244.3.2", hostname="db-1")],
            ports=[{"name": "pg", "port": 5432}]),
        f.service("db-all", "lab", cluster_ips=["None"]),
        f.endpointslice("db-all-1", "db-all", "lab", endpoints=[f.endpoint("10.244.3.1"), f.endpoint("10.244.3.2")]),
        f.endpointslice("orphan", None, "lab", endpoints=[f.endpoint("10.244.9.9")]),
        # ExternalName
        f.service("ext", "lab", type="ExternalName", external_name="www.example.net"),
        f.service("alias", "lab", type="ExternalName", external_name="web.lab.svc.cluster.local"),
        f.service("alias-missing", "lab", type="ExternalName", external_name="nope.lab.svc.cluster.local"),
        f.service("ipname", "lab", type="ExternalName", external_name="203.0.113.10"),
        f.service("big", "lab", cluster_ips=["None"]),
        f.endpointslice("big-1", "big", "lab", endpoints=[f.endpoint(f"10.244.4.{i}") for i in range(1, 41)]),
    ]


@pytest.fixture
def index() -> ClusterIndex:
    idx = ClusterIndex()
    idx.load(rules_objects())
    idx.load(f.article_objects()[1:])  # article objects (namespace default already there)
    idx.set_synced()
    return idx


def corefile(kubernetes_options: str = "pods insecure\n       ttl 30") -> str:
    """kind's Corefile without `forward` (reverse misses then end the chain: SERVFAIL) and without `cache` (which
    caps every TTL at 30 s and keeps the first spelling of names it stores: test_dns_plugins.py), with other
    kubernetes options."""
    text = kind_corefile(upstream=None)
    text = text[: text.index("    cache 30")] + text[text.index("    loop"):]
    return text.replace("pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30",
                        kubernetes_options + "\n       fallthrough in-addr.arpa ip6.arpa")


@pytest.fixture
async def handler(index: ClusterIndex):
    async with LocalCoreDNS(corefile(), index, local_ips=["10.244.0.3"]) as dnsd:
        yield dnsd


async def ask(h: LocalCoreDNS, name: str, rdtype: str | int = "A", *, edns: bool = False, tcp: bool = False,
              wire_query: bytes | None = None, **kw) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else None, **kw)
    reply = await h.handle(wire_query or q.to_wire(), "tcp" if tcp else "udp")
    assert reply is not None
    return dns.message.from_wire(reply)


def rdatas(m: dns.message.Message, section: str = "answer", rdtype: str | None = None) -> list[str]:
    out = []
    for rrset in getattr(m, section):
        if rdtype is None or dns.rdatatype.to_text(rrset.rdtype) == rdtype:
            out += [rd.to_text() for rd in rrset]
    return sorted(out)


def is_nodata(m: dns.message.Message) -> bool:
    return m.rcode() == dns.rcode.NOERROR and not m.answer and [r.rdtype for r in m.authority] == [dns.rdatatype.SOA]


def is_nxdomain(m: dns.message.Message) -> bool:
    return m.rcode() == dns.rcode.NXDOMAIN and not m.answer and [r.rdtype for r in m.authority] == [dns.rdatatype.SOA]


# ------------------------------------------------------------------------------------------ the article


async def test_article_queries(handler: LocalCoreDNS) -> None:
    m = await ask(handler, "nginx.default.svc.cluster.local.")
    assert rdatas(m) == ["10.102.97.154"] and m.answer[0].ttl == 30
    assert m.flags & dns.flags.AA and m.flags & dns.flags.RD and not m.flags & dns.flags.RA
    assert rdatas(await ask(handler, "nginx.headless.svc.cluster.local.")) == ["192.168.76.141", "192.168.76.142"]
    assert rdatas(await ask(handler, "nginx-0.nginx.sts.svc.cluster.local.")) == ["192.168.136.206"]
    assert rdatas(await ask(handler, "nginx-1.nginx.sts.svc.cluster.local.")) == ["192.168.76.144"]
    assert rdatas(await ask(handler, "nginx.sts.svc.cluster.local.")) == ["192.168.136.206", "192.168.76.144"]
    assert rdatas(await ask(handler, "nginx.manual.svc.cluster.local.")) == ["202.232.2.180"]
    m = await ask(handler, "nginx.ext.svc.cluster.local.", "CNAME")
    assert rdatas(m) == ["www.iij.ad.jp."]


# ------------------------------------------------------------------------------------------ §5 table


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("cluster.local.", "nodata"),
        ("svc.cluster.local.", "nodata"),
        ("pod.cluster.local.", "nodata"),
        ("lab.svc.cluster.local.", "nodata"),
        ("missing.svc.cluster.local.", "nxdomain"),
        ("web.missing.svc.cluster.local.", "nxdomain"),
        ("nosuch.lab.svc.cluster.local.", "nxdomain"),
        ("v6.lab.svc.cluster.local.", "nodata"),  # family mismatch
        ("hdlsnone.lab.svc.cluster.local.", "nxdomain"),  # headless, 0 ready endpoints
        ("unknown.hdls1.testns.svc.cluster.local.", "nxdomain"),
        ("10-244-1-11.web.lab.svc.cluster.local.", "nxdomain"),  # not ready
        ("foo.cluster.local.", "nxdomain"),
        ("dns.cluster.local.", "nxdomain"),
        ("dns-version.cluster.local.", "nxdomain"),
        ("a.b.c.web.lab.svc.cluster.local.", "nxdomain"),  # too long
        ("*.lab.svc.cluster.local.", "nxdomain"),  # no wildcards
        ("empty.lab.svc.cluster.local.", "data"),  # ClusterIP without endpoints still answers
    ],
)
async def test_nxdomain_vs_nodata(handler: LocalCoreDNS, name: str, expect: str) -> None:
    m = await ask(handler, name)
    assert {"nodata": is_nodata, "nxdomain": is_nxdomain, "data": lambda m: bool(m.answer)}[expect](m), m
    assert m.flags & dns.flags.AA


async def test_headless_family_mismatch_is_nodata(handler: LocalCoreDNS) -> None:
    assert is_nodata(await ask(handler, "nginx.headless.svc.cluster.local.", "AAAA"))
    assert rdatas(await ask(handler, "hdls1.testns.svc.cluster.local.", "AAAA")) == ["5678:abcd::1"]


async def test_soa_record_and_ttl(index: ClusterIndex) -> None:
    async with LocalCoreDNS(corefile("pods insecure\n       ttl 3600"), index) as h:
        await _soa_record_and_ttl(h)


async def _soa_record_and_ttl(h: LocalCoreDNS) -> None:
    m = await ask(h, "cluster.local.", "SOA")
    soa = m.answer[0]
    assert soa.ttl == 300
    text = soa[0].to_text().split()
    assert text[:2] == ["ns.dns.cluster.local.", "hostmaster.cluster.local."] and text[3:] == [
        "7200", "1800", "86400", "3600"]
    assert is_nodata(await ask(h, "web.lab.svc.cluster.local.", "SOA"))
    assert is_nodata(await ask(h, "nonexistent.lab.svc.cluster.local.", "SOA"))  # quirk


# ------------------------------------------------------------------------------------------ ClusterIP, endpoints


async def test_clusterip_and_dual_stack(handler: LocalCoreDNS) -> None:
    assert rdatas(await ask(handler, "dual.lab.svc.cluster.local.")) == ["10.96.5.7"]
    assert rdatas(await ask(handler, "dual.lab.svc.cluster.local.", "AAAA")) == ["fd00:10:96::7"]
    assert rdatas(await ask(handler, "web.lab.svc.cluster.local.")) == ["10.96.5.5"]


async def test_endpoint_names(handler: LocalCoreDNS) -> None:
    assert rdatas(await ask(handler, "10-244-1-10.web.lab.svc.cluster.local.")) == ["10.244.1.10"]
    assert rdatas(await ask(handler, "10-244-1-12.web.lab.svc.cluster.local.")) == ["10.244.1.12"]  # unknown = ready
    assert rdatas(await ask(handler, "dup-name.hdls1.testns.svc.cluster.local.")) == ["172.0.0.4", "172.0.0.5"]
    assert rdatas(await ask(handler, "5678-abcd--1.hdls1.testns.svc.cluster.local.", "AAAA")) == ["5678:abcd::1"]
    # an endpoint with a hostname is not reachable by its dashed IP
    assert is_nxdomain(await ask(handler, "172-0-0-4.hdls1.testns.svc.cluster.local."))
    # db-all knows the StatefulSet pods only by dashed IP
    assert rdatas(await ask(handler, "db-0.db.lab.svc.cluster.local.")) == ["10.244.3.1"]
    assert is_nxdomain(await ask(handler, "db-0.db-all.lab.svc.cluster.local."))
    assert rdatas(await ask(handler, "10-244-3-1.db-all.lab.svc.cluster.local.")) == ["10.244.3.1"]


async def test_headless_dedups_addresses(handler: LocalCoreDNS) -> None:
    m = await ask(handler, "hdls1.testns.svc.cluster.local.")
    assert rdatas(m) == ["172.0.0.2", "172.0.0.3", "172.0.0.4", "172.0.0.5"]


# ------------------------------------------------------------------------------------------ SRV


async def test_srv_weights_and_additional(handler: LocalCoreDNS) -> None:
    # 6 candidates (172.0.0.2 twice, in two slices) → weight floor(100/6) = 16; 4 SRVs after de-duplication
    m = await ask(handler, "hdls1.testns.svc.cluster.local.", "SRV")
    srvs = rdatas(m)
    assert len(srvs) == 4 and all(s.startswith("0 16 80 ") for s in srvs)
    assert "0 16 80 dup-name.hdls1.testns.svc.cluster.local." in srvs
    assert "0 16 80 172-0-0-2.hdls1.testns.svc.cluster.local." in srvs
    assert rdatas(m, "additional", "AAAA") == ["5678:abcd::1"]
    m = await ask(handler, "kube-dns.kube-system.svc.cluster.local.", "SRV")  # 3 candidates → 33, two SRVs
    assert rdatas(m) == ["0 33 53 kube-dns.kube-system.svc.cluster.local.",
                         "0 33 9153 kube-dns.kube-system.svc.cluster.local."]
    assert rdatas(m, "additional") == ["10.96.0.10"]
    m = await ask(handler, "dual.lab.svc.cluster.local.", "SRV")  # 2 candidates → 50, one SRV, A and AAAA extra
    assert rdatas(m) == ["0 50 80 dual.lab.svc.cluster.local."]
    assert rdatas(m, "additional") == ["10.96.5.7", "fd00:10:96::7"]


async def test_srv_named_ports(handler: LocalCoreDNS) -> None:
    m = await ask(handler, "_https._tcp.kubernetes.default.svc.cluster.local.", "SRV")
    assert rdatas(m) == ["0 100 443 kubernetes.default.svc.cluster.local."]  # service port, not 6443
    assert rdatas(await ask(handler, "http.tcp.web.lab.svc.cluster.local.", "SRV")) == [
        "0 100 80 web.lab.svc.cluster.local."]  # underscores optional
    assert is_nxdomain(await ask(handler, "_dns._tcp.kube-dns.kube-system.svc.cluster.local.", "SRV"))
    assert rdatas(await ask(handler, "_dns._udp.kube-dns.kube-system.svc.cluster.local.", "SRV")) == [
        "0 100 53 kube-dns.kube-system.svc.cluster.local."]
    # A on an SRV-shaped name: the service's addresses (quirk)
    assert rdatas(await ask(handler, "_http._tcp.web.lab.svc.cluster.local.")) == ["10.96.5.5"]
    m = await ask(handler, "_pg._tcp.db.lab.svc.cluster.local.", "SRV")  # headless: one per endpoint
    assert rdatas(m) == ["0 50 5432 db-0.db.lab.svc.cluster.local.", "0 50 5432 db-1.db.lab.svc.cluster.local."]
    assert rdatas(m, "additional") == ["10.244.3.1", "10.244.3.2"]
    m = await ask(handler, "db-1.db.lab.svc.cluster.local.", "SRV")
    assert rdatas(m) == ["0 100 5432 db-1.db.lab.svc.cluster.local."]


async def test_srv_on_externalname(handler: LocalCoreDNS) -> None:
    assert is_nodata(await ask(handler, "ext.lab.svc.cluster.local.", "SRV"))
    assert is_nxdomain(await ask(handler, "_http._tcp.ext.lab.svc.cluster.local.", "SRV"))


# ------------------------------------------------------------------------------------------ PTR


async def test_ptr(handler: LocalCoreDNS) -> None:
    m = await ask(handler, "5.5.96.10.in-addr.arpa.", "PTR")
    assert rdatas(m) == ["web.lab.svc.cluster.local."]
    m = await ask(handler, "10.1.244.10.in-addr.arpa.", "PTR")
    assert rdatas(m) == ["10-244-1-10.web.lab.svc.cluster.local."]
    m = await ask(handler, "1.3.244.10.in-addr.arpa.", "PTR")  # in two services
    assert rdatas(m) == ["10-244-3-1.db-all.lab.svc.cluster.local.", "db-0.db.lab.svc.cluster.local."]
    m = await ask(handler, "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.", "PTR")
    assert rdatas(m) == ["dual.lab.svc.cluster.local."]
    m = await ask(handler, "5.5.96.10.IN-ADDR.ARPA.", "PTR")
    assert m.answer[0].name.to_text() == "5.5.96.10.IN-ADDR.ARPA."


async def test_ptr_miss_without_upstream_is_servfail(handler: LocalCoreDNS) -> None:
    # Reverse misses fall through to forward; with no upstream the forward stage fails.
    for name in ("11.1.244.10.in-addr.arpa.", "1.244.10.in-addr.arpa.", "9.9.244.10.in-addr.arpa."):
        m = await ask(handler, name, "PTR")
        assert m.rcode() == dns.rcode.SERVFAIL and not m.flags & dns.flags.AA


async def test_ptr_inside_cluster_zone(handler: LocalCoreDNS) -> None:
    assert is_nodata(await ask(handler, "web.lab.svc.cluster.local.", "PTR"))
    assert is_nxdomain(await ask(handler, "nope.lab.svc.cluster.local.", "PTR"))


# ------------------------------------------------------------------------------------------ ExternalName


async def test_externalname_in_zone_chase(handler: LocalCoreDNS) -> None:
    m = await ask(handler, "alias.lab.svc.cluster.local.")
    assert [dns.rdatatype.to_text(r.rdtype) for r in m.answer] == ["CNAME", "A"]
    assert rdatas(m) == ["10.96.5.5", "web.lab.svc.cluster.local."]
    assert is_nodata(await ask(handler, "alias.lab.svc.cluster.local.", "AAAA"))  # CNAME dropped too
    assert is_nodata(await ask(handler, "alias-missing.lab.svc.cluster.local."))
    assert rdatas(await ask(handler, "alias-missing.lab.svc.cluster.local.", "CNAME")) == [
        "nope.lab.svc.cluster.local."]


async def test_externalname_rules(handler: LocalCoreDNS) -> None:
    for t in ("A", "CNAME", "TXT"):
        assert is_nxdomain(await ask(handler, "ipname.lab.svc.cluster.local.", t))
    assert is_nxdomain(await ask(handler, "x.ext.lab.svc.cluster.local."))
    assert is_nodata(await ask(handler, "ext.lab.svc.cluster.local.", "TXT"))


# ------------------------------------------------------------------------------------------ pods, TXT, NS, others


async def test_pods_insecure(handler: LocalCoreDNS) -> None:
    assert rdatas(await ask(handler, "10-244-7-7.lab.pod.cluster.local.")) == ["10.244.7.7"]
    assert is_nodata(await ask(handler, "10-244-7-7.lab.pod.cluster.local.", "AAAA"))
    assert rdatas(await ask(handler, "fd00-10-244--5.lab.pod.cluster.local.", "AAAA")) == ["fd00:10:244::5"]
    assert is_nxdomain(await ask(handler, "10-244-7-7.missing.pod.cluster.local."))
    assert is_nxdomain(await ask(handler, "web-0.lab.pod.cluster.local."))
    assert is_nodata(await ask(handler, "lab.pod.cluster.local."))


async def test_pods_verified_and_disabled(index: ClusterIndex) -> None:
    index.load([f.pod("p", "lab", "10.244.7.8")])
    async with LocalCoreDNS(corefile("pods verified"), index) as verified:
        assert rdatas(await ask(verified, "10-244-7-8.lab.pod.cluster.local.")) == ["10.244.7.8"]
        assert is_nxdomain(await ask(verified, "10-244-7-9.lab.pod.cluster.local."))
    async with LocalCoreDNS(corefile("pods disabled"), index) as disabled:
        assert is_nxdomain(await ask(disabled, "10-244-7-8.lab.pod.cluster.local."))
        assert is_nxdomain(await ask(disabled, "lab.pod.cluster.local."))
        assert is_nodata(await ask(disabled, "pod.cluster.local."))


async def test_txt(handler: LocalCoreDNS) -> None:
    m = await ask(handler, "DNS-Version.cluster.local.", "TXT")
    assert rdatas(m) == ['"1.1.0"'] and m.answer[0].ttl == 28800
    assert m.answer[0].name.to_text() == "DNS-Version.cluster.local."
    assert is_nodata(await ask(handler, "web.lab.svc.cluster.local.", "TXT"))
    assert is_nxdomain(await ask(handler, "nope.lab.svc.cluster.local.", "TXT"))
    for name in ("cluster.local.", "svc.cluster.local.", "lab.svc.cluster.local."):
        assert is_nxdomain(await ask(handler, name, "TXT")), name


async def test_ns_and_ns_dns(handler: LocalCoreDNS) -> None:
    m = await ask(handler, "cluster.local.", "NS")
    assert rdatas(m) == ["kube-dns.kube-system.svc.cluster.local."]
    assert rdatas(m, "additional") == ["10.96.0.10"]
    assert is_nodata(await ask(handler, "web.lab.svc.cluster.local.", "NS"))
    assert is_nxdomain(await ask(handler, "nope.lab.svc.cluster.local.", "NS"))
    assert is_nodata(await ask(handler, "Cluster.Local.", "NS"))  # mixed-case apex quirk
    assert rdatas(await ask(handler, "ns.dns.cluster.local.")) == ["10.96.0.10"]


async def test_ns_standalone(index: ClusterIndex) -> None:
    async with LocalCoreDNS(corefile(), index, local_ips=["10.244.0.99"]) as h:
        m = await ask(h, "cluster.local.", "NS")
    assert rdatas(m) == ["ns.dns.cluster.local."] and rdatas(m, "additional") == ["10.244.0.99"]


@pytest.mark.parametrize("rdtype", ["MX", "ANY", "HINFO", "CAA", "HTTPS", "CNAME"])
async def test_other_types(handler: LocalCoreDNS, rdtype: str) -> None:
    assert is_nodata(await ask(handler, "web.lab.svc.cluster.local.", rdtype))
    assert is_nxdomain(await ask(handler, "nope.lab.svc.cluster.local.", rdtype))


async def test_axfr_refused(handler: LocalCoreDNS) -> None:
    m = await ask(handler, "cluster.local.", "AXFR", tcp=True)
    assert m.rcode() == dns.rcode.REFUSED and not m.flags & dns.flags.AA and not m.answer and not m.authority


# ------------------------------------------------------------------------------------------ message level


async def test_case_is_echoed_uncompressed(handler: LocalCoreDNS) -> None:
    m = await ask(handler, "Db.LaB.sVc.ClUsTeR.lOcAl.", "SRV")
    assert m.answer[0].name.to_text() == "Db.LaB.sVc.ClUsTeR.lOcAl."
    # targets: object parts lower case, zone as queried; additional owners keep that spelling on the wire
    assert {rd.target.to_text() for rd in m.answer[0]} == {
        "db-0.db.lab.svc.ClUsTeR.lOcAl.", "db-1.db.lab.svc.ClUsTeR.lOcAl."}
    assert {r.name.to_text() for r in m.additional} == {
        "db-0.db.lab.svc.ClUsTeR.lOcAl.", "db-1.db.lab.svc.ClUsTeR.lOcAl."}
    m = await ask(handler, "WEB.lab.svc.cluster.local.", "SOA")
    assert m.authority[0].name.to_text() == "cluster.local."
    m = await ask(handler, "nope.lab.svc.CLUSTER.local.")
    assert m.authority[0].name.to_text() == "CLUSTER.local."
    assert m.authority[0][0].mname.to_text() == "ns.dns.CLUSTER.local."
    m = await ask(handler, "5.5.96.10.in-addr.arpa.", "PTR")
    assert rdatas(m) == ["web.lab.svc.cluster.local."]


async def test_edns_echo(handler: LocalCoreDNS) -> None:
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678")
    other = dns.edns.GenericOption(65001, b"xx")
    m = await ask(handler, "web.lab.svc.cluster.local.", edns=True, payload=1400, want_dnssec=True,
                  options=[cookie, other])
    assert m.edns == 0 and m.payload == 1400 and m.ednsflags & dns.flags.DO
    assert [(o.otype, o.to_wire()) for o in m.options] == [(dns.edns.OptionType.COOKIE, b"12345678")]
    m = await ask(handler, "web.lab.svc.cluster.local.")
    assert m.edns == -1


async def test_flags_rd_cd_copied(handler: LocalCoreDNS) -> None:
    q = dns.message.make_query("web.lab.svc.cluster.local.", "A")
    q.flags = dns.flags.CD
    m = await ask(handler, "", wire_query=q.to_wire())
    assert m.flags & dns.flags.CD and not m.flags & dns.flags.RD and m.flags & dns.flags.AA


async def test_malformed_and_rejected(handler: LocalCoreDNS) -> None:
    q = dns.message.make_query("web.lab.svc.cluster.local.", "A")
    good = q.to_wire()
    # QDCOUNT 0 and 2 → FORMERR with empty sections
    for qd in (0, 2):
        m = dns.message.from_wire(await handler.handle(good[:4] + qd.to_bytes(2, "big") + good[6:]))
        assert m.rcode() == dns.rcode.FORMERR and not m.question and m.id == q.id
    # opcode STATUS → NOTIMP
    q2 = dns.message.make_query("web.lab.svc.cluster.local.", "A")
    q2.set_opcode(dns.opcode.STATUS)
    m = dns.message.from_wire(await handler.handle(q2.to_wire()))
    assert m.rcode() == dns.rcode.NOTIMP and m.opcode() == dns.opcode.STATUS
    # truncated question → FORMERR; a response (QR) or under 12 bytes → no reply
    assert dns.message.from_wire(await handler.handle(good[:-3])).rcode() == dns.rcode.FORMERR
    assert await handler.handle(good[:2] + bytes([good[2] | 0x80]) + good[3:]) is None
    assert await handler.handle(b"\x00\x01\x02") is None
    # class CH → REFUSED, question kept
    m = await ask(handler, "web.lab.svc.cluster.local.", "A", rdclass="CH")
    assert m.rcode() == dns.rcode.REFUSED and m.question
    # EDNS version 1 → BADVERS
    m = await ask(handler, "web.lab.svc.cluster.local.", edns=True)
    q3 = dns.message.make_query("web.lab.svc.cluster.local.", "A", use_edns=1)
    m = dns.message.from_wire(await handler.handle(q3.to_wire()))
    assert m.rcode() == dns.rcode.BADVERS


async def test_truncation_lab_trunc_01(handler: LocalCoreDNS) -> None:
    m = await ask(handler, "big.lab.svc.cluster.local.")
    assert len(rdatas(m)) == 29 and m.flags & dns.flags.TC
    m = await ask(handler, "big.lab.svc.cluster.local.", edns=True, payload=1232)
    assert len(rdatas(m)) == 40 and not m.flags & dns.flags.TC
    m = await ask(handler, "big.lab.svc.cluster.local.", tcp=True)
    assert len(rdatas(m)) == 40 and not m.flags & dns.flags.TC


async def test_tc_when_only_additional_dropped() -> None:
    q = wire.name_from_text("big.lab.svc.cluster.local.")  # 12 + 31 + 29 × 16 = 507: one more does not fit
    rr = [wire.RR(q, wire.A, 30, bytes([10, 0, 0, i])) for i in range(30)]
    out = wire.render(1, wire.QR, (q, 1, 1), rr[:29], [], rr[:1], None, 512)
    m = dns.message.from_wire(out)
    assert m.flags & dns.flags.TC and len(m.answer[0]) == 29 and not m.additional


async def test_loadbalance_shuffles(handler: LocalCoreDNS) -> None:
    orders = set()
    for _ in range(30):
        m = await ask(handler, "hdls1.testns.svc.cluster.local.")
        orders.add(tuple(rd.to_text() for rrset in m.answer for rd in rrset))
    assert len(orders) > 1 and all(len(o) == 4 for o in orders)


async def test_not_synced_is_servfail_for_name_errors() -> None:
    idx = ClusterIndex()
    idx.load([f.namespace("default"), f.service("a", "default", cluster_ips=["10.96.0.20"])])
    idx.set_synced()
    async with LocalCoreDNS(corefile(), idx) as h:
        assert is_nxdomain(await ask(h, "b.default.svc.cluster.local."))
        idx.set_synced(False)  # e.g. informers relisting
        m = await ask(h, "b.default.svc.cluster.local.")
        assert m.rcode() == dns.rcode.SERVFAIL and m.flags & dns.flags.AA and m.authority
        assert rdatas(await ask(h, "a.default.svc.cluster.local.")) == ["10.96.0.20"]
        idx.set_synced()
        assert is_nxdomain(await ask(h, "b.default.svc.cluster.local."))


async def test_index_updates_invalidate_cache(handler: LocalCoreDNS, index: ClusterIndex) -> None:
    assert rdatas(await ask(handler, "web.lab.svc.cluster.local.")) == ["10.96.5.5"]
    index.on_service("MODIFIED", f.service("web", "lab", cluster_ips=["10.96.5.50"], ports=[{"port": 80}]))
    assert rdatas(await ask(handler, "web.lab.svc.cluster.local.")) == ["10.96.5.50"]
    index.on_endpointslice("MODIFIED", f.endpointslice("hdlsnone-1", "hdlsnone", "lab",
                                                       endpoints=[f.endpoint("10.244.2.2", ready=True)]))
    assert rdatas(await ask(handler, "hdlsnone.lab.svc.cluster.local.")) == ["10.244.2.2"]
    index.on_endpointslice("DELETED", f.endpointslice("hdlsnone-1", "hdlsnone", "lab"))
    assert is_nxdomain(await ask(handler, "hdlsnone.lab.svc.cluster.local."))
    index.on_namespace("DELETED", f.namespace("lab"))
    assert is_nxdomain(await ask(handler, "web.lab.svc.cluster.local."))


def test_index_ignores_unserved_changes(index: ClusterIndex) -> None:
    gen = index.generation
    svc = f.service("web", "lab", cluster_ips=["10.96.5.5"], ports=[{"name": "http", "port": 80}, {"port": 8080}])
    svc["metadata"]["annotations"] = {"x": "y"}
    index.on_service("MODIFIED", svc)
    assert index.generation == gen
    index.on_service("MODIFIED", f.service("web", "lab", cluster_ips=["10.96.5.5"], ports=[{"port": 81}]))
    assert index.generation == gen + 1


async def test_run_informers_feeds_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kubernetes plugin's informer wiring with a fake client: the four resources land in the index (with the
    `labels` selector on services and slices), then it is synced."""
    import asyncio

    import labkit.client
    from labkit.dns.plugins.kubernetes import KubeSource, SourceKey, run_informers

    objects = {"namespaces": [f.namespace("default")], "pods": [],
               "services": [f.service("a", "default", cluster_ips=["10.96.0.20"])], "endpointslices": []}

    class FakeClient:
        closed = False

        async def close(self) -> None:
            FakeClient.closed = True

    selectors: dict[str, str | None] = {}

    class FakeInformer:
        def __init__(self, client: FakeClient, resource: str, label_selector: str | None = None) -> None:
            self.resource, self.handlers, self.synced = resource, [], asyncio.Event()
            selectors[resource] = label_selector

        def add_handler(self, fn) -> None:
            self.handlers.append(fn)

        async def wait_synced(self) -> None:
            await self.synced.wait()

        async def run(self) -> None:
            for obj in objects[self.resource]:
                for fn in self.handlers:
                    fn("ADDED", obj, None)
            self.synced.set()
            await asyncio.Event().wait()

    monkeypatch.setattr(labkit.client, "Informer", FakeInformer)
    idx = ClusterIndex()
    task = asyncio.create_task(run_informers(KubeSource(SourceKey(labels="app=web"), idx), FakeClient()))
    await eventually(lambda: idx.synced, "the index to sync")
    assert idx.service("default", "a") is not None and idx.namespace_exists("default")
    assert selectors == {"namespaces": None, "services": "app=web", "endpointslices": "app=web", "pods": None}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert FakeClient.closed
