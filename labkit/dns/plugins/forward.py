"""forward FROM TO... { except ZONES; force_tcp; prefer_udp; expire D; max_fails N; policy random|round_robin|
sequential; health_check D [no_rec] [domain NAME]; max_concurrent N }: relay queries upstream (plugin/forward).

- TO is `IP[:PORT]`, `dns://IP[:PORT]` or a resolv.conf-style file (kind: `/etc/resolv.conf`, i.e. the node's
  resolver; in the embedded cluster the outside world's DNS 203.0.113.53). At most 15.
- The upstream's reply is passed back as it came: its rcode, its flags (so `ra`, and `aa` only if the upstream
  set it), its records; a reply to another question becomes FORMERR.
- Each try waits 2 s for a reply; the next upstream (by `policy`) is tried until 5 s have passed. If every try
  failed, nothing is written: SERVFAIL with the last error (the `errors` plugin logs it, `log` shows `- - 0`).
- A failed try starts health checks (`. IN NS` every 0.5 s); an upstream failing more than `max_fails` (2)
  checks is skipped while another one is up.
- Over `max_concurrent` queries in flight: REFUSED, "concurrent queries exceeded maximum N".
- The query goes over the client's transport (UDP or TCP) unless `force_tcp`/`prefer_udp` say otherwise.
- `tls`/`tls_servername` (DNS over TLS) are not built into labkit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import struct
import time

from labkit.dns import request as rq
from labkit.dns import wire
from labkit.dns.corefile import CorefileError
from labkit.dns.plugin import Controller, Log, Plugin
from labkit.dns.plugins.cache import in_zones
from labkit.dns.plugins.durations import parse_duration
from labkit.dns.request import Reply, Request
from labkit.dns.server import exchange

MAX_UPSTREAMS = 15
READ_TIMEOUT = 2.0
DEADLINE = 5.0
log = Log("forward")


class UpstreamError(Exception):
    """A try that failed; str() reads like Go's net error."""


def encode_query(req: Request, qid: int, rd: bool | None = None) -> bytes:
    """The request as sent upstream: its (possibly rewritten) question and its OPT, with a new ID."""
    flags = req.flags if rd is None else ((req.flags & ~wire.RD) | (wire.RD if rd else 0))
    out = bytearray(wire.HEADER.pack(qid, flags & ~wire.QR, 1, 0, 0, 1 if req.edns else 0))
    for label in req.qname:
        out.append(len(label))
        out += label
    out.append(0)
    out += struct.pack("!HH", req.qtype, req.qclass)
    if req.edns is not None:
        e = req.edns
        data = b"".join(struct.pack("!HH", c, len(v)) + v for c, v in e.options)
        ttl = (e.ext_rcode << 24) | (e.version << 16) | e.flags
        out += b"\x00" + struct.pack("!HHIH", wire.OPT, e.payload, ttl, len(data)) + data
    return bytes(out)


class Proxy:
    """One upstream with its failure count and health checker (plugin/pkg/proxy)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.fails = 0
        self.checking: asyncio.Task[None] | None = None

    @property
    def addr(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def down(self, max_fails: int) -> bool:
        return max_fails != 0 and self.fails > max_fails

    async def exchange(self, query: bytes, tcp: bool, bufsize: int) -> bytes:
        """One try; UpstreamError with Go's wording when it fails."""
        proto = "tcp" if tcp else "udp"
        local: list[str] = []
        try:
            data = await asyncio.wait_for(exchange(query, self.host, self.port, tcp, local=local), READ_TIMEOUT)
        except TimeoutError:
            where = f"read {proto} {local[0]}->" if local else f"dial {proto} "
            raise UpstreamError(f"{where}{self.addr}: i/o timeout") from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            where = f"read {proto} {local[0]}->" if local else f"dial {proto} "
            raise UpstreamError(f"{where}{self.addr}: {_reason(exc)}") from None
        if not tcp and len(data) > bufsize:  # miekg reads into a buffer of the client's size: a truncated reply
            return data[:12]
        return data

    def healthcheck(self, tcp: bool, rd: bool, domain: str, interval: float) -> None:
        """Start probing (`. IN NS`) until the upstream answers again."""
        if self.checking is not None and not self.checking.done():
            return
        self.checking = asyncio.ensure_future(self._probe(tcp, rd, domain, interval))

    async def _probe(self, tcp: bool, rd: bool, domain: str, interval: float) -> None:
        qname = wire.name_from_text(domain)
        while True:
            q = bytearray(wire.HEADER.pack(random.getrandbits(16), wire.RD if rd else 0, 1, 0, 0, 0))
            for label in qname:
                q.append(len(label))
                q += label
            q += b"\x00" + struct.pack("!HH", wire.NS, wire.CLASS_IN)
            try:
                await self.exchange(bytes(q), tcp, 65535)
                self.fails = 0
                return
            except UpstreamError:
                self.fails += 1
            await asyncio.sleep(interval)

    def stop(self) -> None:
        if self.checking is not None:
            self.checking.cancel()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "EOF"
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).lower()


class Forward(Plugin):
    name = "forward"

    def __init__(self, origin: str, proxies: list[Proxy]) -> None:
        self.origin = origin
        self.proxies = proxies
        self.ignored: list[str] = []
        self.max_fails = 2
        self.hc_interval = 0.5
        self.hc_rd = True
        self.hc_domain = "."
        self.force_tcp = False
        self.prefer_udp = False
        self.policy = "random"
        self.max_concurrent = 0
        self.limit_error = ""
        self.concurrent = 0
        self._rr = 0
        self.rejects = 0

    def match(self, name: str) -> bool:
        if not in_zones(name, [self.origin]):
            return False
        return name == self.origin or not in_zones(name, self.ignored)

    def ordered(self) -> list[Proxy]:
        if self.policy == "sequential" or len(self.proxies) < 2:
            return list(self.proxies)
        if self.policy == "round_robin":
            self._rr = (self._rr + 1) % len(self.proxies)
            return self.proxies[self._rr :] + self.proxies[: self._rr]
        out = list(self.proxies)
        random.shuffle(out)
        return out

    async def serve(self, req: Request) -> Reply:
        if not self.match(req.name()):
            return await self.next_or_failure(req)
        req.memo = False
        if self.max_concurrent > 0:
            self.concurrent += 1
        try:
            if self.max_concurrent > 0 and self.concurrent > self.max_concurrent:
                self.rejects += 1
                return Reply(None, wire.REFUSED, self.limit_error)
            return await self._relay(req)
        finally:
            if self.max_concurrent > 0:
                self.concurrent -= 1

    async def _relay(self, req: Request) -> Reply:
        deadline = time.monotonic() + DEADLINE
        upstream_err: str | None = None
        order = self.ordered()
        i = fails = 0
        while time.monotonic() < deadline:
            if i >= len(order):
                i = fails = 0
            proxy = order[i]
            i += 1
            if proxy.down(self.max_fails):
                fails += 1
                if fails < len(self.proxies):
                    continue
                proxy = random.choice(self.proxies)  # all down: try one anyway
            tcp = self.force_tcp or (req.proto == "tcp" and not self.prefer_udp)
            query = encode_query(req, random.getrandbits(16))
            try:
                raw = await proxy.exchange(query, tcp, req.size())
                if not tcp and not self.force_tcp and self.prefer_udp and len(raw) >= 4 and raw[2] & 0x02:
                    raw = await proxy.exchange(query, True, 65535)  # truncated: again over TCP
                msg = rq.msg_from_wire(raw) if len(raw) > 12 else _header_only(raw)
            except UpstreamError as exc:
                upstream_err = str(exc)
                if self.max_fails != 0:
                    proxy.healthcheck(self.force_tcp, self.hc_rd, self.hc_domain, self.hc_interval)
                if fails < len(self.proxies):
                    continue
                break
            except Exception as exc:  # an unparsable reply counts as that try failing
                upstream_err = f"dns: {exc}"
                continue
            if not req.matches(msg):
                return Reply(rq.error_msg(req, wire.FORMERR), 0, None, self.name)
            msg.id = req.id
            return Reply(msg, 0, None, self.name)
        return Reply(None, wire.SERVFAIL, upstream_err or "no healthy proxies")

    def stop(self) -> None:
        for p in self.proxies:
            p.stop()


def _header_only(raw: bytes) -> rq.Msg:
    """A reply whose body did not fit the client's buffer: its header, TC set, no records."""
    qid, flags, *_ = wire.header_counts(raw)
    return rq.Msg(qid, flags | wire.TC, None)


def nameservers(path: str) -> list[str] | None:
    """The `nameserver` addresses of a resolv.conf-style file, or None if it cannot be read."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            out.append(parts[1].split("%")[0])
    return out


def host_port_or_file(to: list[str]) -> list[tuple[str, int]]:
    """parse.HostPortOrFile: addresses (port 53 by default) and resolv.conf files."""
    out: list[tuple[str, int]] = []
    for h in to:
        host = h
        for scheme in ("dns://", "tls://", "grpc://", "https://", "quic://"):
            if host.startswith(scheme):
                if scheme != "dns://":
                    raise ValueError(f"'{scheme[:-3]}' is not supported as a destination protocol in forward: {h}")
                host = host[len(scheme) :]
        if not host:
            raise ValueError(f'invalid address: "{h}"')
        ip, port = _split_host_port(host)
        if ip is not None:
            out.append((ip, port))
            continue
        servers = nameservers(host) if os.path.isfile(host) else None
        if servers is None:
            raise ValueError(f'not an IP address or file: "{host}"')
        out += [(s, 53) for s in servers]
    if not out:
        raise ValueError("no nameservers found")
    return out


def _split_host_port(text: str) -> tuple[str | None, int]:
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else 53
    elif text.count(":") == 1:
        host, p = text.split(":")
        if not p.isdigit():
            return None, 0
        port = int(p)
    try:
        return str(ipaddress.ip_address(host.split("%")[0])), port
    except ValueError:
        return None, 0


def _zone(text: str) -> str:
    return text.lower() if text.endswith(".") else text.lower() + "."


def setup(c: Controller) -> None:
    stanzas: list[Forward] = []
    try:
        while c.next():
            if not c.next_arg():
                raise c.arg_err()
            origin = _zone(c.val())
            to = c.remaining_args()
            if not to:
                raise c.arg_err()
            f = Forward(origin, [Proxy(h, p) for h, p in host_port_or_file(to)])
            while c.next_block():
                _option(c, f)
            stanzas.append(f)
    except (ValueError, CorefileError) as exc:
        raise c.plugin_err(exc) from None
    for f in stanzas:
        if len(f.proxies) > MAX_UPSTREAMS:
            raise c.plugin_err(f"more than {MAX_UPSTREAMS} TOs configured: {len(f.proxies)}")
        c.add_plugin(f)
        c.on_shutdown(f.stop)
    metrics = c.env.metrics
    c.on_startup(lambda: metrics.collectors.__setitem__(
        id(stanzas), lambda: [f"coredns_forward_max_concurrent_rejects_total {sum(f.rejects for f in stanzas)}"]))
    c.on_shutdown(lambda: metrics.collectors.pop(id(stanzas), None))


def _option(c: Controller, f: Forward) -> None:
    opt = c.val()
    if opt == "except":
        zones = c.remaining_args()
        if not zones:
            raise c.arg_err()
        f.ignored += [_zone(z) for z in zones]
    elif opt == "max_fails":
        if not c.next_arg():
            raise c.arg_err()
        if not c.val().isdigit():
            raise ValueError(f'strconv.ParseUint: parsing "{c.val()}": invalid syntax')
        f.max_fails = int(c.val())
    elif opt == "health_check":
        if not c.next_arg():
            raise c.arg_err()
        f.hc_interval = parse_duration(c.val())
        if f.hc_interval < 0:
            raise ValueError(f"health_check can't be negative: {c.val()}")
        while c.next_arg():
            if c.val() == "no_rec":
                f.hc_rd = False
            elif c.val() == "domain":
                if not c.next_arg():
                    raise c.arg_err()
                f.hc_domain = _zone(c.val())
            else:
                raise ValueError(f"health_check: unknown option {c.val()}")
    elif opt in ("force_tcp", "prefer_udp"):
        if c.next_arg():
            raise c.arg_err()
        setattr(f, opt, True)
    elif opt == "expire":
        if not c.next_arg():
            raise c.arg_err()
        if parse_duration(c.val()) < 0:
            raise ValueError(f"expire can't be negative: {c.val()}")
    elif opt == "policy":
        if not c.next_arg():
            raise c.arg_err()
        if c.val() not in ("random", "round_robin", "sequential"):
            raise c.err(f"unknown policy '{c.val()}'")
        f.policy = c.val()
    elif opt == "max_concurrent":
        if not c.next_arg():
            raise c.arg_err()
        try:
            n = int(c.val())
        except ValueError:
            raise ValueError(f'strconv.Atoi: parsing "{c.val()}": invalid syntax') from None
        if n < 0:
            raise ValueError(f"max_concurrent can't be negative: {n}")
        f.max_concurrent = n
        f.limit_error = f"concurrent queries exceeded maximum {c.val()}"
    elif opt in ("tls", "tls_servername"):
        raise c.err(f"property '{opt}' (DNS over TLS) is not built into labkit's CoreDNS")
    else:
        raise c.err(f"unknown property '{opt}'")
