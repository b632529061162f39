"""One query on its way through the plugin chain, and the messages plugins write (CoreDNS's `request` package and
the parts of miekg/dns's Msg the plugins use).

- `Request`: the query as received (raw bytes, header, question, EDNS) plus where it came from. Plugins may
  change the question in place (`rewrite`); `copy()` gives a plugin a private one (`cache` does, as CoreDNS).
- `Msg`: a reply being built: header flags, question, sections of `wire.RR`. `reply_to(req)` is miekg's SetReply.
- `Reply`: what a plugin returns: the message it (or a plugin below it) wrote, or None, plus the return code and
  error CoreDNS plugins return. A reply that was not written and whose code is SERVFAIL, REFUSED, FORMERR or
  NOTIMP is written by the server itself (`client_write`).
- `to_wire(req, msg)`: the ScrubWriter: the client's OPT echoed (SizeAndDo), then truncation (wire.render).
- `typify` / `classify` / `minimal_ttl`: CoreDNS's response classification (plugin/pkg/response, dnsutil).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dns.message
import dns.rdatatype
import dns.rrset

from labkit.dns import wire
from labkit.dns.wire import RR, Name

if TYPE_CHECKING:
    from labkit.dns.server import Server

OPCODE_MASK = 0x7800
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 6: "YXDOMAIN",
               7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE", 16: "BADSIG", 17: "BADKEY",
               18: "BADTIME", 19: "BADMODE", 20: "BADNAME", 21: "BADALG", 22: "BADTRUNC", 23: "BADCOOKIE"}
RCODE_BY_NAME = {v: k for k, v in RCODE_NAMES.items()}
CLASS_NAMES = {1: "IN", 3: "CH", 4: "HS", 254: "NONE", 255: "ANY"}


def type_name(qtype: int) -> str:
    """dns.Type(t).String(): the mnemonic, or TYPEnnn."""
    try:
        return dns.rdatatype.to_text(qtype)
    except ValueError:
        return f"TYPE{qtype}"


def class_name(qclass: int) -> str:
    return CLASS_NAMES.get(qclass, f"CLASS{qclass}")


def name_text(name: Name) -> str:
    """Lower-case FQDN text of a name (request.Name())."""
    return (b".".join(name).decode("latin-1") + ".").lower() if name else "."


class Request:
    """One query (CoreDNS request.Request over the dns.Msg it wraps)."""

    __slots__ = ("data", "edns", "family", "flags", "hooks", "id", "local_port", "memo", "proto", "qclass",
                 "qname", "qtype", "remote_ip", "remote_port", "server", "shuffle", "start")

    def __init__(self, query: wire.Query, data: bytes, proto: str = "udp", remote: tuple[str, int] = ("", 0),
                 server: Server | None = None, local_port: int = 53) -> None:
        self.data = data
        self.id = query.id
        self.flags = query.flags
        self.qname = query.qname
        self.qtype = query.qtype
        self.qclass = query.qclass
        self.edns = query.edns
        self.proto = proto
        self.remote_ip, self.remote_port = remote[0], remote[1]
        self.family = 2 if ":" in self.remote_ip else 1
        self.server = server
        self.local_port = local_port
        self.start = time.perf_counter()
        self.memo = True  # may the reply be served again for the same query bytes (see server.py)
        self.shuffle = False  # loadbalance shuffles this reply (a memoized copy must be shuffled again)
        self.hooks: list[Any] = []  # what plugins do again when the memoized reply is reused (server.Hook)

    def copy(self) -> Request:
        new = Request.__new__(Request)
        for slot in Request.__slots__:
            setattr(new, slot, getattr(self, slot))
        return new

    def name(self) -> str:
        return name_text(self.qname)

    @property
    def do(self) -> bool:
        return bool(self.edns and self.edns.do)

    @property
    def cd(self) -> bool:
        return bool(self.flags & wire.CD)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    def size(self) -> int:
        """The reply size the client accepts (request.Size / edns.Size)."""
        if self.proto == "tcp":
            return 65535
        return max(512, self.edns.payload if self.edns else 512)

    def question(self) -> tuple[Name, int, int]:
        return (self.qname, self.qtype, self.qclass)

    def matches(self, msg: Msg) -> bool:
        """request.Match: a response to this question."""
        q = msg.question
        return (q is not None and bool(msg.flags & wire.QR) and name_text(q[0]) == self.name()
                and q[1] == self.qtype)


@dataclass(slots=True)
class Msg:
    """A DNS message as plugins build and pass it along."""

    id: int
    flags: int  # the header's flags word, rcode in its low 4 bits
    question: tuple[Name, int, int] | None
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    extra: list[RR] = field(default_factory=list)  # may hold the OPT record
    scrub: bool = True  # False: written as is, before the ScrubWriter (edns.Version's BADVERS)

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @rcode.setter
    def rcode(self, value: int) -> None:
        self.flags = (self.flags & ~0xF) | (value & 0xF)

    def set_flag(self, bit: int, on: bool = True) -> None:
        self.flags = (self.flags | bit) if on else (self.flags & ~bit)

    def copy(self) -> Msg:
        return Msg(self.id, self.flags, self.question, list(self.answer), list(self.authority), list(self.extra))

    def opt(self) -> RR | None:
        return next((r for r in self.extra if r.rtype == wire.OPT), None)

    def length(self) -> int:
        """Uncompressed wire length (miekg Msg.Len), what the log plugin's {rsize} shows."""
        return len(wire.render(self.id, self.flags, self.question, self.answer, self.authority,
                               [r for r in self.extra if r.rtype != wire.OPT], self.opt(), 65535))

    def sections(self) -> Iterable[list[RR]]:
        return (self.answer, self.authority, self.extra)


@dataclass(slots=True)
class Reply:
    """A plugin's result: what it wrote (None if nothing), its return code and error."""

    msg: Msg | None
    rcode: int = 0
    err: str | None = None
    writer: str = ""  # the plugin whose write reached the outermost recorder (the metrics' `plugin` label)


def client_write(rcode: int) -> bool:
    """plugin.ClientWrite: True when the plugin has written the reply itself."""
    return rcode not in (wire.SERVFAIL, wire.REFUSED, wire.FORMERR, wire.NOTIMP)


def reply_to(req: Request) -> Msg:
    """miekg SetReply: same ID, opcode, RD and CD, the request's current question, QR set."""
    flags = wire.QR | (req.flags & OPCODE_MASK)
    if req.opcode == 0:
        flags |= req.flags & (wire.RD | wire.CD)
    return Msg(req.id, flags, req.question())


def error_msg(req: Request, rcode: int) -> Msg:
    """miekg SetRcode: SetReply plus the rcode."""
    m = reply_to(req)
    m.rcode = rcode
    return m


def failure(plugin: str, err: str) -> Reply:
    """A plugin that could not answer: SERVFAIL (unwritten) with its error."""
    return Reply(None, wire.SERVFAIL, err)


# ------------------------------------------------------------------------------------------- the ScrubWriter


def size_and_do(req: Request, msg: Msg) -> RR | None:
    """request.SizeAndDo: the OPT to send. The reply's own OPT (forwarded) gets the client's size and DO;
    otherwise the client's OPT is echoed with only the options CoreDNS keeps. None without EDNS in the query."""
    q = req.edns
    if q is None:
        return None
    own = msg.opt()
    if own is not None:
        ttl = (own.ttl & 0xFF00) | (0x8000 if q.do else 0)
        return RR((), wire.OPT, ttl, own.rdata, rclass=q.payload)
    options = [(c, v) for c, v in q.options if c in wire.ECHOED_OPTIONS]
    return wire.opt_rr(q.payload, q.flags & 0xFF00, options)


def to_wire(req: Request, msg: Msg) -> bytes:
    """The bytes sent for `msg`: OPT echoed, truncated to the client's size, compressed only when needed."""
    if not msg.scrub:
        return wire.render(msg.id, msg.flags, msg.question, msg.answer, msg.authority,
                           [r for r in msg.extra if r.rtype != wire.OPT], msg.opt(), 65535)
    opt = size_and_do(req, msg)
    extra = [r for r in msg.extra if r.rtype != wire.OPT]
    fco = None if req.proto == "tcp" else (1480 if req.family == 1 else 1220)
    return wire.render(msg.id, msg.flags, msg.question, msg.answer, msg.authority, extra, opt, req.size(), fco)


# ------------------------------------------------------------------------------------------- classification

NOERROR_T, NAMEERROR_T, SERVERERROR_T, NODATA_T, DELEGATION_T, META_T, UPDATE_T, OTHERERROR_T = range(8)


def typify(msg: Msg | None) -> int:
    """response.Typify (without DNSSEC expiry checks)."""
    if msg is None:
        return OTHERERROR_T
    opcode = (msg.flags >> 11) & 0xF
    if opcode == 5:
        return UPDATE_T
    if opcode == 4:
        return META_T
    if msg.question is not None and msg.question[1] in (wire.AXFR, wire.IXFR):
        return META_T
    rcode = msg.rcode
    if msg.answer and rcode == wire.NOERROR:
        return NOERROR_T
    soa = any(r.rtype == wire.SOA for r in msg.authority)
    ns = sum(1 for r in msg.authority if r.rtype == wire.NS)
    if soa and rcode == wire.NOERROR:
        return NODATA_T
    if soa and rcode == wire.NXDOMAIN:
        return NAMEERROR_T
    if rcode in (wire.SERVFAIL, wire.NOTIMP):
        return SERVERERROR_T
    if ns and rcode == wire.NOERROR:
        return DELEGATION_T
    if rcode == wire.NOERROR:
        return NOERROR_T
    return OTHERERROR_T


def classify(t: int) -> str:
    """response.Classify: success, denial or error (the log plugin's classes)."""
    if t in (NOERROR_T, DELEGATION_T):
        return "success"
    if t in (NAMEERROR_T, NODATA_T):
        return "denial"
    return "error"


def minimal_ttl(msg: Msg, t: int) -> int:
    """dnsutil.MinimalTTL: the smallest TTL in the message (5 s for errors and empty messages, at most 1 h)."""
    if t not in (NOERROR_T, NAMEERROR_T, NODATA_T):
        return 5
    others = [r for r in msg.extra if r.rtype != wire.OPT]
    if not msg.answer and not msg.authority and not others:
        return 5
    ttls = [r.ttl for r in msg.answer] + [r.ttl for r in msg.authority] + [r.ttl for r in others]
    return min([3600, *ttls])


# ------------------------------------------------------------------------------------------- other messages


def rrs_from_dnspython(rrset: dns.rrset.RRset) -> list[RR]:
    """wire.RR records from a dnspython RRset (names keep their case)."""
    out = []
    owner = tuple(rrset.name.labels[:-1]) if rrset.name.is_absolute() else tuple(rrset.name.labels)
    for rd in rrset:
        t = rrset.rdtype
        data: Any
        if t in (wire.CNAME, wire.PTR, wire.NS):
            data = tuple(rd.target.labels[:-1])
        elif t == wire.SOA:
            data = (tuple(rd.mname.labels[:-1]), tuple(rd.rname.labels[:-1]), rd.serial, rd.refresh, rd.retry,
                    rd.expire, rd.minimum)
        elif t == wire.SRV:
            data = (rd.priority, rd.weight, rd.port, tuple(rd.target.labels[:-1]))
        elif t == wire.MX:
            data = (rd.preference, tuple(rd.exchange.labels[:-1]))
        else:
            data = rd.to_wire()
        out.append(RR(owner, t, rrset.ttl, data, rclass=rrset.rdclass))
    return out


def msg_from_wire(data: bytes) -> Msg:
    """Parse a whole reply (an upstream's). Raises on malformed input."""
    m = dns.message.from_wire(data, ignore_trailing=True)
    q = m.question[0] if m.question else None
    question = (tuple(q.name.labels[:-1]), q.rdtype, q.rdclass) if q is not None else None
    msg = Msg(m.id, m.flags, question,
              [r for s in m.answer for r in rrs_from_dnspython(s)],
              [r for s in m.authority for r in rrs_from_dnspython(s)],
              [r for s in m.additional for r in rrs_from_dnspython(s)])
    if m.edns >= 0:
        options = [(o.otype, o.to_wire()) for o in m.options]
        msg.extra.append(wire.opt_rr(m.payload, (m.ednsflags & 0xFFFF) | ((m.rcode() >> 4) << 24), options))
    return msg


def address_bytes(ip: str) -> tuple[int, bytes]:
    """(A|AAAA, packed) of an address."""
    a = ipaddress.ip_address(ip)
    return (wire.A if a.version == 4 else wire.AAAA), a.packed


__all__ = ["Msg", "Reply", "Request", "classify", "client_write", "error_msg", "minimal_ttl", "msg_from_wire",
           "reply_to", "rrs_from_dnspython", "size_and_do", "to_wire", "typify"]
