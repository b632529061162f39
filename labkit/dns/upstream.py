"""The embedded cluster's "outside world" DNS: the resolver the coredns pods forward to (TEST-NET-3, DESIGN.md).

It answers a small fixed set of zones from a YAML file, so selectorless and ExternalName labs work offline.
Run it in the "outside" namespace: `python -m labkit.dns upstream --config F --listen 203.0.113.53:53`.

The supervisor passes `<LABKIT_HOME>/outside-world.yaml` when that file exists at `labkit up`. Its zones are
added to the built-in data (DEFAULT_CONFIG: example.net with www/web1/web2/web3/db/api/mail/ns, example.org), a
name in both taking the file's value; `defaults: false` drops the built-in data.

Config format (YAML)::

    defaults: true                # keep the built-in zones and add these (optional, default true)
    ttl: 300                      # default TTL for every record (optional, default 300)
    outside: nxdomain             # names in no zone below: nxdomain | refused | servfail (default nxdomain)
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

Answers are those of the recursive resolver a kind node forwards to (Docker's, then the Internet's), which
authored none of them: RA set and AA clear on every reply, so `nslookup` prints "Non-authoritative answer".
- A name with data → NOERROR; CNAMEs are followed inside the configured data (the chain, then the target's
  records).
- A name inside a zone without data of the asked type → NODATA, a missing one → NXDOMAIN, both with the zone's
  SOA in the authority section (as a resolver relays the authoritative server's negative answer).
- A name in no zone → NXDOMAIN with the root zone's SOA, what a resolver answers for a name whose top-level
  domain does not exist (`outside: refused | servfail` instead, for exercises on failing upstreams). Reverse
  names of the private ranges (10/8, 172.16/12, 192.168/16) → NXDOMAIN with the SOA of their AS112 zone
  (RFC 7534), as public resolvers answer them.
- No zone transfers (REFUSED), no recursion beyond the configured data.
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

# The root zone's SOA as a resolver relays it with an NXDOMAIN (RDATA of the root zone; serial of a day in 2024).
ROOT_SOA = "a.root-servers.net. nstld.verisign-grs.com. 2024110400 1800 900 604800 86400"
ROOT_SOA_TTL = 86400
# AS112 (RFC 7534): the private ranges' reverse zones and the SOA their servers answer with.
AS112_SOA = "prisoner.iana.org. hostmaster.root-servers.org. 1 604800 60 604800 604800"
AS112_ZONES = ("10.in-addr.arpa.", "168.192.in-addr.arpa.", *(f"{n}.172.in-addr.arpa." for n in range(16, 32)))

DEFAULT_CONFIG: dict[str, Any] = {
    "ttl": 300,
    "outside": "nxdomain",
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
    soa_rdata: str = ""  # the zone's SOA RDATA; default: ns.<zone> hostmaster.<zone> ...
    soa_ttl: int = 0

    def soa(self) -> dns.rrset.RRset:
        rdata = self.soa_rdata or (
            f"ns.{self.origin} hostmaster.{self.origin} 1 7200 1800 86400 {min(self.ttl, 300)}")
        return dns.rrset.from_text(self.origin, self.soa_ttl or self.ttl, "IN", "SOA", rdata)


class UpstreamData:
    """The configured zones, parsed."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        cfg = DEFAULT_CONFIG if config is None else config
        self.ttl = int(cfg.get("ttl", 300))
        self.outside = str(cfg.get("outside", "nxdomain")).lower()
        if self.outside not in ("refused", "nxdomain", "servfail"):
            raise ValueError(f"outside: {self.outside!r} (nxdomain | refused | servfail)")
        self.root = Zone(dns.name.root, self.ttl, soa_rdata=ROOT_SOA, soa_ttl=ROOT_SOA_TTL)
        self.zones: list[Zone] = []
        for zname, records in (cfg.get("zones") or {}).items():
            zone = Zone(dns.name.from_text(zname), self.ttl)
            for label, value in (records or {}).items():
                owner = zone.origin if label == "@" else dns.name.from_text(str(label), zone.origin)
                self._add(zone, owner, value)
            self.zones.append(zone)
        if cfg.get("reverse", True):
            self._add_reverse()
        for origin in AS112_ZONES:
            self.zones.append(Zone(dns.name.from_text(origin), self.ttl, soa_rdata=AS112_SOA, soa_ttl=604800))
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
        """PTR records for every address, in the reverse zone of its /24 (IPv4) or /64 (IPv6)."""
        zones: dict[dns.name.Name, Zone] = {}
        for zone in self.zones:
            for owner, node in zone.nodes.items():
                for t in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    for rd in node.get(t, []):
                        rname = dns.reversename.from_address(rd.address)
                        origin = rname.parent() if t == dns.rdatatype.A else rname.split(len(rname) - 16)[1]
                        rzone = zones.setdefault(origin, Zone(origin, self.ttl))
                        if rname not in rzone.nodes:
                            rrset = dns.rrset.from_text(rname, self.ttl, "IN", "PTR", owner.to_text())
                            rzone.nodes[rname] = {dns.rdatatype.PTR: rrset}
        self.zones.extend(zones.values())

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
    """The handler of a server.Listener answering from UpstreamData."""

    def __init__(self, data: UpstreamData) -> None:
        self.data = data

    def fast(self, data: bytes, proto: str, remote: tuple[str, int]) -> bytes | None:
        return None

    async def serve(self, data: bytes, proto: str = "udp", remote: tuple[str, int] = ("", 0)) -> bytes | None:
        return self.answer(data, proto)

    def answer(self, data: bytes, proto: str = "udp") -> bytes | None:
        """The reply to one query (None: malformed, or not a query)."""
        try:
            q = dns.message.from_wire(data)
        except Exception:
            return None
        if q.flags & dns.flags.QR or len(q.question) != 1:
            return None
        # A resolver advertises its own EDNS buffer size (1232, the DNS Flag Day 2020 value).
        r = dns.message.make_response(q, our_payload=1232)
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
                r.flags |= dns.flags.RA
                r.set_rcode(dns.rcode.SERVFAIL)
        size = 65535 if proto == "tcp" else (max(512, q.payload) if q.edns >= 0 else 512)
        try:
            return r.to_wire(max_size=size)
        except dns.exception.TooBig:
            r.answer, r.authority, r.additional = [], [], []
            r.flags |= dns.flags.TC
            return r.to_wire()

    def _answer(self, r: dns.message.Message, qname: dns.name.Name, qtype: int) -> None:
        zone = self.data.zone_for(qname)
        if zone is None:
            outside = self.data.outside
            if outside == "nxdomain":
                r.set_rcode(dns.rcode.NXDOMAIN)
                r.authority.append(self.data.root.soa())
            else:
                r.set_rcode(dns.rcode.REFUSED if outside == "refused" else dns.rcode.SERVFAIL)
            return
        name = qname
        for _ in range(10):
            node = self.data.find(name)
            if node is None:
                if name == qname:
                    r.set_rcode(dns.rcode.NXDOMAIN)
                    r.authority.append(zone.soa())
                return  # a CNAME pointing nowhere known: the chain so far
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
