"""labkit.dns.upstream.load_config: the instructor's outside-world.yaml over the built-in data."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.message
import dns.name
import dns.rdatatype

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
    reply = asyncio.run(UpstreamHandler(data).handle(
        dns.message.make_query("portal.corp.test.", "A").to_wire()))
    msg = dns.message.from_wire(reply.reply)
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
