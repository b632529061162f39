"""DNS wire format for the cluster DNS server: query parsing, record encoding, MDNS-style truncation.

Why not dnspython here: the server's hot path must be lean, and CoreDNS (miekg/dns) renders names in two ways
dnspython cannot reproduce: uncompressed whenever the reply fits, and, when it compresses, matching names
case-sensitively. Names are therefore kept as tuples of raw label bytes exactly as received, and compression keys
are those tuples. dnspython is still used by the client side (dig.py) and the upstream server.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

Name = tuple[bytes, ...]  # labels without the root label, e.g. (b"nginx", b"default", b"svc", b"cluster", b"local")

# RR types and classes the server deals with by number.
A, NS, CNAME, SOA, PTR, HINFO, MX, TXT, AAAA, SRV, OPT, IXFR, AXFR, ANY = (
    1, 2, 5, 6, 12, 13, 15, 16, 28, 33, 41, 251, 252, 255)
CLASS_IN = 1

# Header flag bits.
QR, AA, TC, RD, RA, AD, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020, 0x0010

# Rcodes.
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, BADVERS = 0, 1, 2, 3, 4, 5, 16

# EDNS options CoreDNS echoes back verbatim (request/edns0.go supportedOptions): NSID, EXPIRE, COOKIE,
# TCP-KEEPALIVE, PADDING.
ECHOED_OPTIONS = frozenset({3, 9, 10, 11, 12})

HEADER = struct.Struct("!HHHHHH")


class FormError(Exception):
    """The message cannot be parsed (miekg/dns would fail to unpack it)."""


def name_from_text(text: str) -> Name:
    """'a.b.c.' or 'a.b.c' → (b'a', b'b', b'c'). Escapes are not supported (Kubernetes names never need them)."""
    text = text.rstrip(".")
    if not text:
        return ()
    return tuple(label.encode("ascii") for label in text.split("."))


def name_to_text(name: Name) -> str:
    """Presentation form with a trailing dot (no escaping: used for logs and indexes only)."""
    return ".".join(label.decode("latin-1") for label in name) + "."


def lower(name: Name) -> Name:
    """ASCII lower-case (DNS case-insensitivity is ASCII-only)."""
    return tuple(label.lower() for label in name)


# ---------------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class RR:
    """One resource record.

    rdata depends on rtype: A/AAAA → packed address bytes; CNAME/PTR/NS → Name; SRV → (prio, weight, port, Name);
    MX → (preference, Name); SOA → (mname, rname, serial, refresh, retry, expire, minimum); anything else → raw
    rdata bytes (uncompressible).
    """

    name: Name
    rtype: int
    ttl: int
    rdata: object
    rclass: int = CLASS_IN


def _write_name(out: bytearray, name: Name, comp: dict[Name, int] | None) -> None:
    """Append a name; with a compression map, point at an identical (case-sensitive) suffix seen before."""
    for i in range(len(name)):
        suffix = name[i:]
        if comp is not None:
            ptr = comp.get(suffix)
            if ptr is not None:
                out += struct.pack("!H", 0xC000 | ptr)
                return
            if len(out) < 0x3FFF:
                comp[suffix] = len(out)
        label = name[i]
        out.append(len(label))
        out += label
    out.append(0)


def write_rr(out: bytearray, rr: RR, comp: dict[Name, int] | None) -> None:
    """Append one RR. Like miekg/dns, names inside CNAME/PTR/NS/SOA rdata are compressible, SRV targets are not."""
    _write_name(out, rr.name, comp)
    out += struct.pack("!HHI", rr.rtype, rr.rclass, rr.ttl & 0xFFFFFFFF)
    lenpos = len(out)
    out += b"\0\0"
    t = rr.rtype
    rd = rr.rdata
    if t in (CNAME, PTR, NS):
        _write_name(out, rd, comp)  # type: ignore[arg-type]
    elif t == SRV and isinstance(rd, tuple):
        prio, weight, port, target = rd
        out += struct.pack("!HHH", prio, weight, port)
        _write_name(out, target, None)
    elif t == MX and isinstance(rd, tuple):
        pref, exchange = rd
        out += struct.pack("!H", pref)
        _write_name(out, exchange, comp)
    elif t == SOA:
        mname, rname, serial, refresh, retry, expire, minimum = rd  # type: ignore[misc]
        _write_name(out, mname, comp)
        _write_name(out, rname, comp)
        out += struct.pack("!IIIII", serial & 0xFFFFFFFF, refresh, retry, expire, minimum)
    else:
        out += rd  # type: ignore[operator]
    struct.pack_into("!H", out, lenpos, len(out) - lenpos - 2)


def txt_rdata(*strings: str) -> bytes:
    out = bytearray()
    for s in strings:
        b = s.encode()
        out.append(len(b))
        out += b
    return bytes(out)


# ---------------------------------------------------------------------------------------------------------------
# Queries
# ---------------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Edns:
    """The query's OPT record."""

    payload: int  # the OPT class: advertised UDP size
    ext_rcode: int
    version: int
    flags: int  # low 16 bits of the TTL (DO = 0x8000)
    options: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def do(self) -> bool:
        return bool(self.flags & 0x8000)


@dataclass(slots=True)
class Query:
    """A parsed query: header, the single question, the OPT record if any."""

    id: int
    flags: int
    qname: Name
    qtype: int
    qclass: int
    edns: Edns | None

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF


def read_name(wire: bytes, off: int) -> tuple[Name, int]:
    """Decode a (possibly compressed) name at off; returns (name, offset after it)."""
    labels: list[bytes] = []
    end = -1
    hops = 0
    total = 0
    n = len(wire)
    while True:
        if off >= n:
            raise FormError("name runs past the message")
        c = wire[off]
        if c == 0:
            off += 1
            break
        if c & 0xC0 == 0xC0:
            if off + 1 >= n:
                raise FormError("truncated pointer")
            hops += 1
            if hops > 64:
                raise FormError("compression loop")
            if end < 0:
                end = off + 2
            off = ((c & 0x3F) << 8) | wire[off + 1]
            continue
        if c & 0xC0:
            raise FormError("bad label type")
        label = wire[off + 1 : off + 1 + c]
        if len(label) != c:
            raise FormError("truncated label")
        total += c + 1
        if total > 254:
            raise FormError("name too long")
        labels.append(label)
        off += 1 + c
    return tuple(labels), (end if end >= 0 else off)


def header_counts(wire: bytes) -> tuple[int, int, int, int, int, int]:
    """(id, flags, qd, an, ns, ar); raises FormError under 12 bytes."""
    if len(wire) < 12:
        raise FormError("short header")
    return HEADER.unpack_from(wire, 0)


def parse_query(wire: bytes) -> Query:
    """Parse a message the accept function let through (QDCOUNT == 1). Raises FormError when it cannot unpack."""
    qid, flags, _qd, an, ns, ar = header_counts(wire)
    qname, off = read_name(wire, 12)
    if off + 4 > len(wire):
        raise FormError("truncated question")
    qtype, qclass = struct.unpack_from("!HH", wire, off)
    off += 4
    edns: Edns | None = None
    for i in range(an + ns + ar):
        _, off = read_name(wire, off)
        if off + 10 > len(wire):
            raise FormError("truncated RR")
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", wire, off)
        off += 10
        if off + rdlen > len(wire):
            raise FormError("truncated rdata")
        if rtype == OPT and i >= an + ns and edns is None:
            options: list[tuple[int, bytes]] = []
            p, end = off, off + rdlen
            while p < end:
                if p + 4 > end:
                    raise FormError("truncated EDNS option")
                code, olen = struct.unpack_from("!HH", wire, p)
                p += 4
                if p + olen > end:
                    raise FormError("truncated EDNS option data")
                options.append((code, wire[p : p + olen]))
                p += olen
            edns = Edns(rclass, ttl >> 24, (ttl >> 16) & 0xFF, ttl & 0xFFFF, options)
        off += rdlen
    return Query(qid, flags, qname, qtype, qclass, edns)


# ---------------------------------------------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------------------------------------------


def opt_rr(payload: int, ttl: int, options: list[tuple[int, bytes]]) -> RR:
    data = b"".join(struct.pack("!HH", code, len(v)) + v for code, v in options)
    return RR((), OPT, ttl, data, rclass=payload)


def _rr_len_uncompressed(rr: RR) -> int:
    out = bytearray()
    write_rr(out, rr, None)
    return len(out)


def render(
    qid: int,
    flags: int,
    question: tuple[Name, int, int] | None,
    answer: list[RR],
    authority: list[RR],
    additional: list[RR],
    opt: RR | None,
    size: int,
    force_compress_over: int | None = None,
) -> bytes:
    """Render a reply within `size` bytes the way miekg/dns Msg.Truncate + request.Scrub do.

    If the uncompressed message fits, it is sent uncompressed (unless it exceeds force_compress_over, CoreDNS's
    last-ditch anti-fragmentation rule for UDP). Otherwise records are added compressed, in order, while the
    running length stays within size minus the OPT length; TC is set if any record was dropped.
    """
    size = max(size, 512)
    sections = (answer, authority, additional)
    # Try uncompressed first.
    out = bytearray(12)
    if question is not None:
        _write_name(out, question[0], None)
        out += struct.pack("!HH", question[1], question[2])
    for sec in sections:
        for rr in sec:
            write_rr(out, rr, None)
    if opt is not None:
        write_rr(out, opt, None)
    if len(out) <= size and (force_compress_over is None or len(out) <= force_compress_over):
        HEADER.pack_into(
            out, 0, qid, flags, 1 if question else 0, len(answer), len(authority), len(additional) + (opt is not None)
        )
        return bytes(out)
    # Compressed, with truncation.
    budget = size - (_rr_len_uncompressed(opt) if opt is not None else 0)
    comp: dict[Name, int] = {}
    out = bytearray(12)
    if question is not None:
        _write_name(out, question[0], comp)
        out += struct.pack("!HH", question[1], question[2])
    counts = [0, 0, 0]
    dropped = False
    for si, sec in enumerate(sections):
        if dropped:
            break
        for rr in sec:
            mark = len(out)
            write_rr(out, rr, comp)
            if len(out) > budget:
                # Roll back: the record and any compression targets it registered.
                del out[mark:]
                for key in [k for k, v in comp.items() if v >= mark]:
                    del comp[key]
                dropped = True
                break
            counts[si] += 1
    truncated = dropped or any(counts[i] < len(sections[i]) for i in range(3))
    if opt is not None:
        write_rr(out, opt, None)
    if truncated:
        flags |= TC
    HEADER.pack_into(out, 0, qid, flags, 1 if question else 0, counts[0], counts[1], counts[2] + (opt is not None))
    return bytes(out)


def header_only_reply(wire: bytes, rcode: int) -> bytes | None:
    """FORMERR/NOTIMP reply the way miekg/dns's server writes it for rejected messages: the request header with QR
    set, the rcode, RD/CD kept for QUERY, every section empty. None if there is not even a header."""
    try:
        qid, flags, *_ = header_counts(wire)
    except FormError:
        return None
    opcode = (flags >> 11) & 0xF
    new = QR | (opcode << 11)
    if opcode == 0:
        new |= flags & (RD | CD)
    new |= rcode & 0xF
    return HEADER.pack(qid, new, 0, 0, 0, 0)
