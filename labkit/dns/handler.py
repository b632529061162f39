"""Message-level behaviour of the cluster DNS server (dns-rules.md §6): what CoreDNS's server, its `kubernetes`,
`forward` and `loadbalance` plugins and miekg/dns do around the record rules.

- miekg/dns accept function: QR set → dropped; opcode other than QUERY/NOTIFY → NOTIMP; QDCOUNT ≠ 1, ANCOUNT > 1,
  NSCOUNT > 1, ARCOUNT > 2, or unparsable → FORMERR (header only, no sections).
- EDNS version ≠ 0 → BADVERS; class ≠ IN → REFUSED.
- Names in the cluster zone and the reverse zones go to the record rules (records.py). Name errors in the reverse
  zones fall through to `forward`; before the informers have synced, name errors are SERVFAIL.
- Everything else is forwarded to the upstream nameservers (`forward . /etc/resolv.conf`); without any: SERVFAIL.
- Replies: QR, AA (plugin answers), RD and CD copied, no RA; the query's OPT echoed (request.SizeAndDo);
  `loadbalance` shuffles addresses on NOERROR replies; then truncation to the client's size (wire.render).

Replies built only from the index are cached per exact query bytes (minus the ID) until the index changes;
answers with several addresses are cached as records and re-shuffled on every hit.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import dns.message
import dns.rrset

from labkit.dns import wire
from labkit.dns.records import Answer, Lookup, NeedUpstream, Question, UpstreamAnswer
from labkit.dns.wire import RR, FormError, Name, Query

log = logging.getLogger("labkit.dns")
REVERSE_ZONES = ("in-addr.arpa", "ip6.arpa")
SHUFFLED = (wire.A, wire.AAAA, wire.MX)


@dataclass(slots=True)
class Result:
    """A reply and what the metrics need to know about it."""

    reply: bytes | None  # None: send nothing
    qtype: int
    rcode: int
    plugin: str  # "kubernetes", "forward", or "" when the server itself answered


@dataclass(slots=True)
class _Cached:
    tail: bytes | None  # the reply without its 2-byte ID, when it never changes
    render_args: tuple | None  # else: the sections to shuffle and render again
    qtype: int
    rcode: int


def round_robin(rrs: list[RR]) -> list[RR]:
    """CoreDNS loadbalance: CNAMEs first, then other types, then shuffled addresses, then shuffled MX."""
    if len(rrs) < 2:
        return rrs
    cname = [r for r in rrs if r.rtype == wire.CNAME]
    addr = [r for r in rrs if r.rtype in (wire.A, wire.AAAA)]
    mx = [r for r in rrs if r.rtype == wire.MX]
    rest = [r for r in rrs if r.rtype not in (wire.CNAME, wire.A, wire.AAAA, wire.MX)]
    random.shuffle(addr)
    random.shuffle(mx)
    return cname + rest + addr + mx


def _needs_shuffle(*sections: list[RR]) -> bool:
    return any(sum(1 for r in sec if r.rtype in SHUFFLED) > 1 for sec in sections)


def rr_from_dnspython(rrset: dns.rrset.RRset) -> list[RR]:
    """Convert a dnspython RRset into wire.RR records (names keep their case)."""
    out = []
    owner = tuple(rrset.name.labels[:-1]) if rrset.name.is_absolute() else tuple(rrset.name.labels)
    for rd in rrset:
        t = rrset.rdtype
        data: object
        if t in (wire.CNAME, wire.PTR, wire.NS):
            data = tuple(rd.target.labels[:-1])
        elif t == wire.SOA:
            data = (
                tuple(rd.mname.labels[:-1]),
                tuple(rd.rname.labels[:-1]),
                rd.serial,
                rd.refresh,
                rd.retry,
                rd.expire,
                rd.minimum,
            )
        else:
            data = rd.to_wire()
        out.append(RR(owner, t, rrset.ttl, data, rclass=rrset.rdclass))
    return out


def _opt_for(q: Query) -> RR | None:
    """request.SizeAndDo: the query's OPT, version 0, flags other than DO cleared, only echoable options."""
    if q.edns is None:
        return None
    options = [(c, v) for c, v in q.edns.options if c in wire.ECHOED_OPTIONS]
    return wire.opt_rr(q.edns.payload, q.edns.flags & 0xFF00, options)


def _size(q: Query, proto: str) -> int:
    """plugin/pkg/edns Size: 65535 over TCP, else the EDNS size with a floor of 512."""
    if proto == "tcp":
        return 65535
    return max(512, q.edns.payload if q.edns else 512)


class Handler:
    """Turns query bytes into reply bytes. One per server; safe to share between UDP and TCP."""

    def __init__(
        self,
        lookup: Lookup,
        upstreams: Sequence[tuple[str, int]] = (),
        *,
        loadbalance: bool = True,
        forward_timeout: float = 2.0,
        cache_size: int = 20000,
    ) -> None:
        self.lookup = lookup
        self.index = lookup.index
        self.upstreams = list(upstreams)
        self.loadbalance = loadbalance
        self.forward_timeout = forward_timeout
        self.cache_size = cache_size
        self.errors = 0  # queries that raised inside the handler (answered SERVFAIL): should stay 0
        self._cache: dict[tuple[bool, bytes], _Cached] = {}
        self._cache_gen = self.index.generation
        zones = [lookup.zone, *REVERSE_ZONES]
        # Longest zone first, so the most specific one wins.
        self._zones: list[Name] = sorted((wire.name_from_text(z) for z in zones), key=len, reverse=True)

    def ready(self) -> bool:
        """The `ready` plugin: OK once the informers have synced."""
        return self.index.synced

    # ------------------------------------------------------------------------------------------ fast path

    def cached(self, data: bytes, tcp: bool) -> Result | None:
        """The reply from the cache, or None. Cheap enough to call for every packet."""
        if self._cache_gen != self.index.generation:
            self._cache.clear()
            self._cache_gen = self.index.generation
            return None
        hit = self._cache.get((tcp, data[2:]))
        if hit is None:
            return None
        if hit.tail is not None:
            return Result(data[:2] + hit.tail, hit.qtype, hit.rcode, "kubernetes")
        qid = struct.unpack_from("!H", data)[0]
        flags, question, answer, authority, extra, opt, size, fco = hit.render_args  # type: ignore[misc]
        reply = wire.render(
            qid, flags, question, round_robin(list(answer)), round_robin(list(authority)),
            round_robin(list(extra)), opt, size, fco,
        )  # fmt: skip
        return Result(reply, hit.qtype, hit.rcode, "kubernetes")

    # ------------------------------------------------------------------------------------------ full path

    async def handle(self, data: bytes, proto: str = "udp", family: int = 1) -> Result:
        """Answer one message. Never raises for bad input: malformed queries get FORMERR or no reply."""
        tcp = proto == "tcp"
        hit = self.cached(data, tcp)
        if hit is not None:
            return hit
        try:
            _qid, flags, qd, an, ns, ar = wire.header_counts(data)
        except FormError:
            return Result(None, 0, wire.FORMERR, "")
        if flags & wire.QR:
            return Result(None, 0, wire.FORMERR, "")  # a response: MsgIgnore
        opcode = (flags >> 11) & 0xF
        if opcode not in (0, 4):
            return Result(wire.header_only_reply(data, wire.NOTIMP), 0, wire.NOTIMP, "")
        if qd != 1 or an > 1 or ns > 1 or ar > 2:
            return Result(wire.header_only_reply(data, wire.FORMERR), 0, wire.FORMERR, "")
        try:
            q = wire.parse_query(data)
        except FormError:
            return Result(wire.header_only_reply(data, wire.FORMERR), 0, wire.FORMERR, "")
        try:
            return await self._answer(q, data, proto, family, tcp)
        except Exception:  # never let one query take the server down: SERVFAIL like CoreDNS's panic recovery
            self.errors += 1
            log.exception("answering %s failed", wire.name_to_text(q.qname))
            return Result(self._error(q, wire.SERVFAIL, proto, family), q.qtype, wire.SERVFAIL, "")

    async def _answer(self, q: Query, data: bytes, proto: str, family: int, tcp: bool) -> Result:
        if q.edns is not None and q.edns.version != 0:
            return Result(self._badvers(q), q.qtype, wire.BADVERS, "")
        if q.qclass != wire.CLASS_IN:
            return Result(self._error(q, wire.REFUSED, proto, family), q.qtype, wire.REFUSED, "")
        lname = wire.lower(q.qname)
        zone_len = next((len(z) for z in self._zones if lname[len(lname) - len(z) :] == z), -1)
        if zone_len < 0:
            return await self._forward(q, data, proto, family)
        zone = q.qname[len(q.qname) - zone_len :]
        question = Question(q.qname, q.qtype, zone)
        upstream: dict[tuple[Name, int], UpstreamAnswer] = {}
        for _ in range(12):
            try:
                ans = self.lookup.answer(question, upstream)
                break
            except NeedUpstream as need:
                upstream[(wire.lower(need.target), need.qtype)] = await self._resolve(need.target, need.qtype, q, proto)
        else:
            return Result(self._error(q, wire.SERVFAIL, proto, family), q.qtype, wire.SERVFAIL, "kubernetes")
        if ans.rcode == wire.NXDOMAIN:
            if wire.lower(zone) != self.lookup.zone_name:
                return await self._forward(q, data, proto, family)  # fallthrough in-addr.arpa ip6.arpa
            if not self.index.synced:
                ans.rcode = wire.SERVFAIL
        if ans.rcode == wire.REFUSED:
            return Result(self._error(q, wire.REFUSED, proto, family), q.qtype, wire.REFUSED, "kubernetes")
        return self._reply_and_cache(q, data, ans, proto, family, tcp, cacheable=not upstream)

    def _reply_and_cache(
        self, q: Query, data: bytes, ans: Answer, proto: str, family: int, tcp: bool, cacheable: bool
    ) -> Result:
        flags = wire.QR | (q.flags & (0x7800 | wire.RD | wire.CD)) | (ans.rcode & 0xF)
        if ans.authoritative:
            flags |= wire.AA
        if ans.truncated:
            flags |= wire.TC
        opt = _opt_for(q)
        size = _size(q, proto)
        fco = None if proto == "tcp" else (1480 if family == 1 else 1220)
        question = (q.qname, q.qtype, q.qclass)
        shuffle = (
            self.loadbalance and ans.rcode == wire.NOERROR and _needs_shuffle(ans.answer, ans.authority, ans.extra)
        )
        if shuffle:
            reply = wire.render(
                q.id, flags, question, round_robin(ans.answer), round_robin(ans.authority),
                round_robin(ans.extra), opt, size, fco,
            )  # fmt: skip
        else:
            reply = wire.render(q.id, flags, question, ans.answer, ans.authority, ans.extra, opt, size, fco)
        if cacheable and self.index.generation == self._cache_gen:
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            if shuffle:
                args = (flags, question, ans.answer, ans.authority, ans.extra, opt, size, fco)
                self._cache[(tcp, data[2:])] = _Cached(None, args, q.qtype, ans.rcode)
            else:
                self._cache[(tcp, data[2:])] = _Cached(reply[2:], None, q.qtype, ans.rcode)
        return Result(reply, q.qtype, ans.rcode, "kubernetes")

    def _error(self, q: Query, rcode: int, proto: str, family: int) -> bytes:
        """CoreDNS errorFunc: SetRcode (question, RD/CD copied, no AA) plus the echoed OPT."""
        flags = wire.QR | (q.flags & (0x7800 | wire.RD | wire.CD)) | rcode
        return wire.render(q.id, flags, (q.qname, q.qtype, q.qclass), [], [], [], _opt_for(q), _size(q, proto))

    def _badvers(self, q: Query) -> bytes:
        """edns.Version: BADVERS (extended rcode 1, header rcode 0) with a version-0 OPT of size 0."""
        flags = wire.QR | (q.flags & (0x7800 | wire.RD | wire.CD))
        opt = wire.opt_rr(0, 1 << 24, [])
        return wire.render(q.id, flags, (q.qname, q.qtype, q.qclass), [], [], [], opt, 65535)

    # ------------------------------------------------------------------------------------------ upstream

    async def _exchange(self, wire_query: bytes, tcp: bool) -> bytes | None:
        """Send to the upstreams in random order (forward's default policy); first answer wins."""
        servers = list(self.upstreams)
        random.shuffle(servers)
        for host, port in servers:
            try:
                return await asyncio.wait_for(exchange(wire_query, host, port, tcp), self.forward_timeout)
            except (TimeoutError, OSError, EOFError, asyncio.IncompleteReadError):
                continue
        return None

    async def _forward(self, q: Query, data: bytes, proto: str, family: int) -> Result:
        """The `forward` plugin: relay the query, then loadbalance and scrub the upstream reply."""
        if not self.upstreams:
            return Result(self._error(q, wire.SERVFAIL, proto, family), q.qtype, wire.SERVFAIL, "")
        raw = await self._exchange(data, proto == "tcp")
        try:
            if raw is None:
                raise ValueError("no upstream answered")
            m = dns.message.from_wire(raw, ignore_trailing=True)
            if m.id != q.id:
                raise ValueError("upstream reply has another ID")
        except Exception:
            return Result(self._error(q, wire.SERVFAIL, proto, family), q.qtype, wire.SERVFAIL, "forward")
        answer = [rr for s in m.answer for rr in rr_from_dnspython(s)]
        authority = [rr for s in m.authority for rr in rr_from_dnspython(s)]
        extra = [rr for s in m.additional for rr in rr_from_dnspython(s)]
        rcode = m.rcode()
        if self.loadbalance and rcode == wire.NOERROR:
            answer, authority, extra = round_robin(answer), round_robin(authority), round_robin(extra)
        opt: RR | None = None
        if q.edns is not None:
            if m.edns >= 0:
                ttl = (m.ednsflags & 0xFF00) | (q.edns.flags & 0x8000)
                opt = wire.opt_rr(q.edns.payload, ttl, [(o.otype, o.to_wire()) for o in m.options])
            else:
                opt = _opt_for(q)
        elif m.edns >= 0:
            opt = wire.opt_rr(m.payload, m.ednsflags & 0xFFFF, [(o.otype, o.to_wire()) for o in m.options])
        flags = (m.flags & 0xFFF0 & ~wire.TC) | (rcode & 0xF)
        if m.flags & wire.TC:
            flags |= wire.TC
        fco = None if proto == "tcp" else (1480 if family == 1 else 1220)
        question = (q.qname, q.qtype, q.qclass)
        reply = wire.render(q.id, flags, question, answer, authority, extra, opt, _size(q, proto), fco)
        return Result(reply, q.qtype, rcode, "forward")

    async def _resolve(self, target: Name, qtype: int, q: Query, proto: str) -> UpstreamAnswer:
        """plugin/pkg/upstream Lookup of an ExternalName target through the server itself (i.e. forward)."""
        do = bool(q.edns and q.edns.do)
        size = _size(q, proto)
        msg = dns.message.make_query(wire.name_to_text(target), qtype, use_edns=0, payload=size, want_dnssec=do)
        if not self.upstreams:
            return UpstreamAnswer([])
        raw = await self._exchange(msg.to_wire(), proto == "tcp")
        if raw is None:
            return UpstreamAnswer([])
        try:
            m = dns.message.from_wire(raw, ignore_trailing=True)
        except Exception:
            return UpstreamAnswer([])
        return UpstreamAnswer([rr for s in m.answer for rr in rr_from_dnspython(s)], bool(m.flags & wire.TC))


async def exchange(wire_query: bytes, host: str, port: int, tcp: bool) -> bytes:
    """One DNS exchange over UDP or TCP from this process's network namespace (asyncio)."""
    loop = asyncio.get_running_loop()
    if tcp:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(struct.pack("!H", len(wire_query)) + wire_query)
            await writer.drain()
            n = struct.unpack("!H", await reader.readexactly(2))[0]
            return await reader.readexactly(n)
        finally:
            writer.close()
    fut: asyncio.Future[bytes] = loop.create_future()
    qid = wire_query[:2]

    class _Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if data[:2] == qid and not fut.done():
                fut.set_result(data)

        def error_received(self, exc: Exception) -> None:
            if not fut.done():
                fut.set_exception(exc)

    transport, _ = await loop.create_datagram_endpoint(_Proto, remote_addr=(host, port))
    try:
        transport.sendto(wire_query)
        return await fut
    finally:
        transport.close()


__all__ = ["Handler", "Result", "exchange", "round_robin"]
