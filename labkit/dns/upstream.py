"""The embedded cluster's "outside world" DNS: the resolver the coredns pods forward to (TEST-NET-3, DESIGN.md).

It answers a small fixed set of zones from a YAML file, so selectorless and ExternalName labs work offline.
Run it in the "outside" namespace: `python -m labkit.dns upstream --config F --listen 203.0.113.53:53`.

The supervisor passes `<LABKIT_HOME>/outside-world.yaml` when that file exists at `labkit up`. Its zones are
added to the built-in data (DEFAULT_CONFIG: example.net with www/web1/web2/web3/db/api/mail/ns, example.org), a
name in both taking the file's value; `defaults: false` drops the built-in data.

Config format (YAML)::

    defaults: true                # keep the built-in zones and add these (optional, default true)
    ttl: 300                      # default TTL for every record (optional, default 300)
    outside: refused              # names in no zone below: refused | nxdomain | servfail (default refused)
    reverse: true                 # also answer PTR for every A/AAAA below (default true)
    zones:
      example.net:                # a zone; "@" is its apex
        "@": 203.0.113.1          # a string that is an IP → A (or AAAA)
        www: 203.0.113.10
        db: [203.0.113.20, 203.0.113.21]     # several addresses
        web: {cname: www}         # CNAME; a relative target is in this zone, "name." is absolute
        shop: www.example.net.    # a string that is not an IP → CNAME
        info: {txt: "hello"}      # TXT (a string or a list of strings)
        mixed: {a: [203.0.113.40], aaaa: ["2001:db8::40"], ttl: 60}

Answers: names with data → NOERROR with AA and RA set (it stands in for a recursive resolver, so relayed answers
show `ra` like in kind); CNAMEs are followed inside the configured data (the chain, then the target's records);
a name inside a zone without data of the asked type → NODATA, a missing one → NXDOMAIN, both with the zone's SOA;
names outside every zone → `outside`. No zone transfers (REFUSED), no recursion beyond the configured data.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
import yaml

from labkit.dns.handler import Result

DEFAULT_CONFIG: dict[str, Any] = {
    "ttl": 300,
    "outside": "refused",
    "reverse": True,
    "zones": {
        "example.net": {
            "@": "203.0.113.1",
            "www": "203.0.113.10",
            # The outside world's web servers (labkit.node.network DEFAULT_EXTERNAL_HOSTS answer HTTP on :80).
            "web1": "203.0.113.10",
            "web2": "203.0.113.11",
            "web3": "203.0.113.12",
            "db": "203.0.113.20",
            "api": "203.0.113.30",
            "mail": "203.0.113.25",
            "web": {"cname": "www"},
            "shop": {"cname": "web"},
            "ns": "203.0.113.53",
        },
        "example.org": {
            "www": "203.0.113.11",
            "legacy": {"cname": "www.example.net."},
        },
    },
}


@dataclass
class Zone:
    origin: dns.name.Name
    ttl: int
    nodes: dict[dns.name.Name, dict[int, dns.rrset.RRset]] = field(default_factory=dict)

    def soa(self) -> dns.rrset.RRset:
        return dns.rrset.from_text(
            self.origin, self.ttl, "IN", "SOA",
            f"ns.{self.origin} hostmaster.{self.origin} 1 7200 1800 86400 {min(self.ttl, 300)}",
        )  # fmt: skip


class UpstreamData:
    """The configured zones, parsed."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        cfg = DEFAULT_CONFIG if config is None else config
        self.ttl = int(cfg.get("ttl", 300))
        self.outside = str(cfg.get("outside", "refused")).lower()
        if self.outside not in ("refused", "nxdomain", "servfail"):
            raise ValueError(f"outside: {self.outside!r} (refused | nxdomain | servfail)")
        self.zones: list[Zone] = []
        for zname, records in (cfg.get("zones") or {}).items():
            zone = Zone(dns.name.from_text(zname), self.ttl)
            for label, value in (records or {}).items():
                owner = zone.origin if label == "@" else dns.name.from_text(str(label), zone.origin)
                self._add(zone, owner, value)
            self.zones.append(zone)
        if cfg.get("reverse", True):
            self._add_reverse()
        self.zones.sort(key=lambda z: len(z.origin), reverse=True)

    def _add(self, zone: Zone, owner: dns.name.Name, value: Any) -> None:
        ttl = zone.ttl
        if isinstance(value, dict):
            ttl = int(value.get("ttl", ttl))
            spec = {k.lower(): v for k, v in value.items() if k != "ttl"}
        elif isinstance(value, list):
            spec = {"addr": value}
        else:
            spec = {"addr": [value]}
        node = zone.nodes.setdefault(owner, {})

        def put(rdtype: str, text: str) -> None:
            rd = dns.rdata.from_text("IN", rdtype, text, origin=zone.origin, relativize=False)
            rrset = node.get(rd.rdtype)
            if rrset is None:
                rrset = node[rd.rdtype] = dns.rrset.RRset(owner, dns.rdataclass.IN, rd.rdtype)
            rrset.add(rd, ttl)

        for kind, vals in spec.items():
            vals = vals if isinstance(vals, list) else [vals]
            for v in vals:
                v = str(v)
                if kind == "txt":
                    put("TXT", '"' + v.replace('"', '\\"') + '"')
                elif kind == "cname" or (kind == "addr" and not _is_ip(v)):
                    put("CNAME", v)
                elif kind in ("a", "aaaa", "addr"):
                    put("AAAA" if ":" in v else "A", v)
                else:
                    raise ValueError(f"{owner}: unknown record kind {kind!r}")

    def _add_reverse(self) -> None:
        rev: dict[dns.name.Name, dns.name.Name] = {}
        for zone in self.zones:
            for owner, node in zone.nodes.items():
                for t in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    for rd in node.get(t, []):
                        rev.setdefault(dns.reversename.from_address(rd.address), owner)
        if not rev:
            return
        for origin in ("in-addr.arpa.", "ip6.arpa."):
            zone = Zone(dns.name.from_text(origin), self.ttl)
            for rname, target in rev.items():
                if rname.is_subdomain(zone.origin):
                    rrset = dns.rrset.from_text(rname, self.ttl, "IN", "PTR", target.to_text())
                    zone.nodes.setdefault(rname, {})[dns.rdatatype.PTR] = rrset
            if zone.nodes:
                self.zones.append(zone)

    def zone_for(self, name: dns.name.Name) -> Zone | None:
        for z in self.zones:
            if name.is_subdomain(z.origin):
                return z
        return None

    def find(self, name: dns.name.Name) -> dict[int, dns.rrset.RRset] | None:
        z = self.zone_for(name)
        return None if z is None else z.nodes.get(name)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def merge_with_defaults(cfg: dict[str, Any]) -> dict[str, Any]:
    """The file's settings over DEFAULT_CONFIG: its zones add to (and per name override) the built-in ones,
    unless it says `defaults: false`."""
    if cfg.get("defaults", True) is False:
        return {k: v for k, v in cfg.items() if k != "defaults"}
    merged: dict[str, Any] = {**DEFAULT_CONFIG, **{k: v for k, v in cfg.items() if k not in ("zones", "defaults")}}
    zones = {z: dict(records) for z, records in DEFAULT_CONFIG["zones"].items()}
    for zname, records in (cfg.get("zones") or {}).items():
        key = str(zname).rstrip(".").lower()
        zones[key] = {**zones.get(key, {}), **(records or {})}
    merged["zones"] = zones
    return merged


def load_config(path: str | Path | None) -> UpstreamData:
    """Parse a YAML config file (see the module docstring) merged over the built-in data; None → the built-in
    DEFAULT_CONFIG alone."""
    if path is None:
        return UpstreamData()
    return UpstreamData(merge_with_defaults(yaml.safe_load(Path(path).read_text()) or {}))


class UpstreamHandler:
    """DNSServer handler answering from UpstreamData."""

    def __init__(self, data: UpstreamData) -> None:
        self.data = data

    def ready(self) -> bool:
        return True

    def cached(self, data: bytes, tcp: bool) -> Result | None:
        return None

    async def handle(self, data: bytes, proto: str = "udp", family: int = 1) -> Result:
        try:
            q = dns.message.from_wire(data)
        except Exception:
            return Result(None, 0, dns.rcode.FORMERR, "")
        if q.flags & dns.flags.QR or len(q.question) != 1:
            return Result(None, 0, dns.rcode.FORMERR, "")
        r = dns.message.make_response(q, our_payload=max(512, q.payload) if q.edns >= 0 else 1232)
        r.flags |= dns.flags.RA
        question = q.question[0]
        qtype = question.rdtype
        if q.opcode() != 0:
            r.set_rcode(dns.rcode.NOTIMP)
        elif question.rdclass != dns.rdataclass.IN or qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            r.set_rcode(dns.rcode.REFUSED)
        else:
            try:
                self._answer(r, question.name, qtype)
            except Exception:
                r = dns.message.make_response(q)
                r.set_rcode(dns.rcode.SERVFAIL)
        size = 65535 if proto == "tcp" else (max(512, q.payload) if q.edns >= 0 else 512)
        try:
            reply = r.to_wire(max_size=size)
        except dns.exception.TooBig:
            r.answer, r.authority, r.additional = [], [], []
            r.flags |= dns.flags.TC
            reply = r.to_wire()
        return Result(reply, qtype, r.rcode(), "upstream")

    def _answer(self, r: dns.message.Message, qname: dns.name.Name, qtype: int) -> None:
        zone = self.data.zone_for(qname)
        if zone is None:
            r.set_rcode(
                {"refused": dns.rcode.REFUSED, "nxdomain": dns.rcode.NXDOMAIN, "servfail": dns.rcode.SERVFAIL}[
                    self.data.outside
                ]
            )
            return
        name = qname
        for _ in range(10):
            node = self.data.find(name)
            if node is None:
                if name == qname:
                    r.set_rcode(dns.rcode.NXDOMAIN)
                    r.flags |= dns.flags.AA
                    r.authority.append(zone.soa())
                return  # a CNAME pointing nowhere known: the chain so far
            r.flags |= dns.flags.AA
            if qtype in node:
                rrset = node[qtype].copy()
                if name == qname:
                    rrset.name = qname  # the owner echoes the query's spelling
                r.answer.append(rrset)
                return
            cname = node.get(dns.rdatatype.CNAME)
            if cname is None or qtype == dns.rdatatype.CNAME:
                if name == qname:
                    r.authority.append(zone.soa())
                return
            r.answer.append(cname)
            name = cname[0].target
            target_zone = self.data.zone_for(name)
            if target_zone is None:
                return
            zone = target_zone
