"""labkit.dns.upstream: the outside world's resolver (what a kind node forwards to) and the instructor's
outside-world.yaml over the built-in data."""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from labkit.dns.upstream import UpstreamData, UpstreamHandler, load_config


def _a(data: UpstreamData, name: str) -> list[str]:
    node = data.find(dns.name.from_text(name))
    return sorted(rd.address for rd in node[dns.rdatatype.A]) if node and dns.rdatatype.A in node else []


def test_file_adds_names_and_overrides_per_name(tmp_path: Path) -> None:
    cfg = tmp_path / "outside-world.yaml"
    cfg.write_text("zones:\n  example.net:\n    www: 203.0.113.99\n    lab: [203.0.113.11, 203.0.113.12]\n"
                   "  corp.test:\n    intranet: 203.0.113.12\n    portal: {cname: intranet}\n")
    data = load_config(cfg)
    assert _a(data, "www.example.net.") == ["203.0.113.99"]  # overridden
    assert _a(data, "lab.example.net.") == ["203.0.113.11", "203.0.113.12"]  # added
    assert _a(data, "web1.example.net.") == ["203.0.113.10"]  # built-in kept
    assert _a(data, "www.example.org.") == ["203.0.113.11"]  # another built-in zone kept
    msg = dns.message.from_wire(UpstreamHandler(data).answer(
        dns.message.make_query("portal.corp.test.", "A").to_wire()))
    assert [(str(r.name), dns.rdatatype.to_text(r.rdtype), r[0].to_text()) for r in msg.answer] == [
        ("portal.corp.test.", "CNAME", "intranet.corp.test."), ("intranet.corp.test.", "A", "203.0.113.12")]


def test_defaults_false_keeps_only_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "outside-world.yaml"
    cfg.write_text("defaults: false\nttl: 60\nzones:\n  corp.test:\n    intranet: 203.0.113.12\n")
    data = load_config(cfg)
    assert data.ttl == 60
    assert _a(data, "intranet.corp.test.") == ["203.0.113.12"]
    assert data.zone_for(dns.name.from_text("www.example.net.")) is None


def test_no_file_is_the_built_in_world() -> None:
    data = load_config(None)
    assert [_a(data, f"web{i}.example.net.") for i in (1, 2, 3)] == [["203.0.113.10"], ["203.0.113.11"],
                                                                     ["203.0.113.12"]]


def ask(name: str, rdtype: str = "A", data: UpstreamData | None = None) -> dns.message.Message:
    handler = UpstreamHandler(data or load_config(None))
    return dns.message.from_wire(handler.answer(dns.message.make_query(name, rdtype).to_wire()))


def test_answers_are_a_resolvers_relayed_answers() -> None:
    """RA set, AA clear: `nslookup` says "Non-authoritative answer" as for a real site."""
    m = ask("www.example.net.")
    assert m.rcode() == dns.rcode.NOERROR and m.flags & dns.flags.RA and not m.flags & dns.flags.AA
    assert [rd.to_text() for rr in m.answer for rd in rr] == ["203.0.113.10"]
    m = ask("shop.example.net.")  # a CNAME chain, then the address
    assert [rd.to_text() for rr in m.answer for rd in rr] == ["web.example.net.", "www.example.net.",
                                                             "203.0.113.10"]


@pytest.mark.parametrize("name", ["kube-dns.", "hostnames.", "hostnames.default.svc.cluster.local.",
                                  "www.google.com."])
def test_names_that_exist_nowhere_are_nxdomain_with_the_roots_soa(name: str) -> None:
    """Not REFUSED: `wget hostnames` then says "Name or service not known", nslookup "NXDOMAIN"."""
    m = ask(name)
    assert m.rcode() == dns.rcode.NXDOMAIN and m.flags & dns.flags.RA and not m.flags & dns.flags.AA
    assert not m.answer and [(r.name.to_text(), r.ttl, r[0].to_text()) for r in m.authority] == [
        (".", 86400, "a.root-servers.net. nstld.verisign-grs.com. 2024110400 1800 900 604800 86400")]


def test_misses_inside_a_zone_carry_the_zones_soa() -> None:
    m = ask("nope.example.net.")
    assert m.rcode() == dns.rcode.NXDOMAIN and m.authority[0].name.to_text() == "example.net."
    m = ask("www.example.net.", "AAAA")  # NODATA
    assert m.rcode() == dns.rcode.NOERROR and not m.answer and m.authority[0].name.to_text() == "example.net."


def test_reverse_names() -> None:
    m = ask("10.113.0.203.in-addr.arpa.", "PTR")
    assert [rd.to_text() for rr in m.answer for rd in rr] == ["www.example.net."]
    m = ask("99.113.0.203.in-addr.arpa.", "PTR")  # in the /24's reverse zone, no such address
    assert m.rcode() == dns.rcode.NXDOMAIN and m.authority[0].name.to_text() == "113.0.203.in-addr.arpa."
    m = ask("5.0.244.10.in-addr.arpa.", "PTR")  # a private address: the AS112 zone's answer
    assert m.rcode() == dns.rcode.NXDOMAIN and [r.name.to_text() for r in m.authority] == ["10.in-addr.arpa."]
    assert m.authority[0][0].mname.to_text() == "prisoner.iana.org."


def test_outside_setting_keeps_the_old_failures() -> None:
    data = UpstreamData({"outside": "refused", "zones": {"corp.test": {"a": "203.0.113.9"}}})
    assert ask("kube-dns.", data=data).rcode() == dns.rcode.REFUSED
    data = UpstreamData({"outside": "servfail", "zones": {}})
    assert ask("kube-dns.", data=data).rcode() == dns.rcode.SERVFAIL
