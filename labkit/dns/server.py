"""DNS listeners and CoreDNS's server (core/dnsserver): message checks, zone routing, the ScrubWriter.

- `Listener`: UDP and TCP on one address, handing each message to a handler with `fast(...)` (synchronous, may
  answer at once) and `serve(...)` (the full path). The coredns process keeps its listeners across reloads and
  points them at the new `Server`.
- `Server`: one per port. miekg/dns's accept function first (a response → dropped; opcode other than QUERY/NOTIFY
  → NOTIMP; QDCOUNT ≠ 1 or too many records → FORMERR), then ServeDNS: class ≠ IN → REFUSED, EDNS version ≠ 0 →
  BADVERS, then the server block with the longest matching zone runs its plugin chain; no zone → REFUSED. An
  unwritten SERVFAIL/REFUSED/FORMERR/NOTIMP from the chain is written here (errorFunc); a plugin that raises is
  a recovered panic (SERVFAIL, `coredns_panics_total`).
- The memo: a reply that depends only on the query's bytes (the chain marked it so: answered from the cluster
  index or hosts data, not forwarded, not from the `cache` plugin) is kept per (transport, query bytes without
  the ID) until the data it came from changes, and served again without running the chain. Plugins that act on
  every query (`log`, `prometheus`) leave a hook that runs for each reuse; a reply `loadbalance` shuffles is
  shuffled again each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit.dns import wire
from labkit.dns.plugin import Log
from labkit.dns.request import Msg, Request, client_write, error_msg, to_wire
from labkit.dns.wire import FormError, Name

if TYPE_CHECKING:
    from labkit.dns.coredns import BlockConfig, Environment

MAX_PENDING = 1000  # messages in progress per listener; beyond this UDP queries are dropped
MEMO_SIZE = 20000
log = Log()

# (remote ip, remote port, query id, start time) → None: something a plugin does again for a memoized reply.
Hook = Callable[[str, int, int, float], None]


def _remote(addr: Any) -> tuple[str, int]:
    return (addr[0], addr[1]) if isinstance(addr, tuple) and len(addr) >= 2 else ("", 0)


def _family(remote: tuple[str, int]) -> int:
    return 2 if ":" in remote[0] else 1


@dataclass(slots=True)
class _Memo:
    tail: bytes | None  # the reply without its ID, when it never changes
    msg: Msg | None  # else: the message, shuffled again for each reuse
    req: Request | None
    hooks: tuple[Hook, ...]


class Server:
    """CoreDNS's dnsserver.Server for one port: zones → server block configs."""

    def __init__(self, port: int, configs: list[BlockConfig], env: Environment) -> None:
        self.port = port
        self.addr = f"dns://:{port}"
        self.env = env
        self.zones: dict[Name, BlockConfig] = {}
        for cfg in configs:
            self.zones[wire.name_from_text(cfg.zone.lower())] = cfg
        self.memo: dict[tuple[int, bytes], _Memo] = {}
        self.panics = 0

    def forget(self) -> None:
        """Drop memoized replies (the data behind them changed)."""
        self.memo.clear()

    # ------------------------------------------------------------------------------------------ fast path

    def fast(self, data: bytes, proto: str, remote: tuple[str, int]) -> bytes | None:
        """A memoized reply for these query bytes, or None. Cheap enough to call for every packet."""
        key = ((proto == "tcp") * 2 + (":" in remote[0]), data[2:])
        hit = self.memo.get(key)
        if hit is None:
            return None
        t0 = time.perf_counter()
        if hit.tail is not None:
            reply = data[:2] + hit.tail
        else:
            from labkit.dns.plugins.loadbalance import shuffle

            msg = shuffle(hit.msg.copy())  # type: ignore[union-attr]
            msg.id = struct.unpack_from("!H", data)[0]
            reply = to_wire(hit.req, msg)  # type: ignore[arg-type]
        if hit.hooks:
            qid = struct.unpack_from("!H", data)[0]
            for hook in hit.hooks:
                hook(remote[0], remote[1], qid, t0)
        return reply

    def _remember(self, req: Request, msg: Msg, reply: bytes, hooks: list[Hook]) -> None:
        if len(self.memo) >= MEMO_SIZE:
            self.memo.clear()
        key = ((req.proto == "tcp") * 2 + (req.family == 2), req.data[2:])
        if req.shuffle:
            self.memo[key] = _Memo(None, msg, req, tuple(hooks))
        else:
            self.memo[key] = _Memo(reply[2:], None, None, tuple(hooks))

    # ------------------------------------------------------------------------------------------ full path

    async def serve(self, data: bytes, proto: str, remote: tuple[str, int]) -> bytes | None:
        """Answer one message; None: send nothing. Never raises for bad input."""
        try:
            _qid, flags, qd, an, ns, ar = wire.header_counts(data)
        except FormError:
            return None
        if flags & wire.QR:
            return None  # a response: MsgIgnore
        if (flags >> 11) & 0xF not in (0, 4):
            return wire.header_only_reply(data, wire.NOTIMP)
        if qd != 1 or an > 1 or ns > 1 or ar > 2:
            return wire.header_only_reply(data, wire.FORMERR)
        try:
            q = wire.parse_query(data)
        except FormError:
            return wire.header_only_reply(data, wire.FORMERR)
        req = Request(q, data, proto, remote, self, self.port)
        hooks: list[Hook] = []
        generation = self.env.generation
        try:
            msg = await self.serve_dns(req, hooks)
        except Exception as exc:  # CoreDNS recovers from a plugin's panic and answers SERVFAIL
            self.panics += 1
            self.env.metrics.panics += 1
            log.error(f'Recovered from panic in server: "{self.addr}" {exc!r}')
            msg = error_msg(req, wire.SERVFAIL)
            req.memo = False
        if msg is None:
            return None
        reply = to_wire(req, msg)
        if req.memo and generation == self.env.generation:
            self._remember(req, msg, reply, hooks)
        return reply

    def route(self, lname: Name) -> BlockConfig | None:
        """The server block whose zone is the longest suffix of the name."""
        for i in range(len(lname) + 1):
            cfg = self.zones.get(lname[i:])
            if cfg is not None:
                return cfg
        return None

    async def serve_dns(self, req: Request, hooks: list[Hook] | None = None) -> Msg | None:
        """dnsserver.Server.ServeDNS for a parsed request: the message to write, or None."""
        if req.qclass != wire.CLASS_IN:
            self.env.metrics.dropped(self.addr, req, wire.REFUSED)
            req.memo = False
            return error_msg(req, wire.REFUSED)
        if req.edns is not None and req.edns.version != 0:
            req.memo = False
            return _badvers(req)
        cfg = self.route(wire.lower(req.qname))
        if cfg is None or cfg.chain is None:
            self.env.metrics.dropped(self.addr, req, wire.REFUSED)
            req.memo = False
            return error_msg(req, wire.REFUSED)
        req.hooks = hooks if hooks is not None else []
        reply = await cfg.chain.serve(req)
        if reply.msg is None:
            if client_write(reply.rcode):
                req.memo = False
                return None
            return error_msg(req, reply.rcode)
        return reply.msg

    async def lookup(self, req: Request, name: Name, qtype: int) -> Msg | None:
        """plugin/pkg/upstream Lookup: the same request with another question, through this server's chains
        (so for a CNAME target, `log` shows a line of its own and `forward` relays it)."""
        sub = req.copy()
        sub.qname, sub.qtype, sub.qclass = name, qtype, wire.CLASS_IN
        return await self.serve_dns(sub)


def _badvers(req: Request) -> Msg:
    """edns.Version: BADVERS (extended rcode 1) with a version-0 OPT of size 0."""
    m = error_msg(req, 0)
    m.extra.append(wire.opt_rr(0, 1 << 24, []))
    m.scrub = False
    return m


# ------------------------------------------------------------------------------------------------ listeners


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        lst = self.listener
        remote = _remote(addr)
        try:
            reply = lst.handler.fast(data, "udp", remote) if len(data) >= 12 else None
        except Exception:
            reply = None
        if reply is not None:
            self.transport.sendto(reply, addr)  # type: ignore[union-attr]
            return
        if lst.pending >= MAX_PENDING:
            return
        lst.pending += 1
        task = asyncio.ensure_future(self._slow(data, addr, remote))
        lst.tasks.add(task)
        task.add_done_callback(lst.tasks.discard)

    async def _slow(self, data: bytes, addr: Any, remote: tuple[str, int]) -> None:
        lst = self.listener
        try:
            reply = await lst.handler.serve(data, "udp", remote)
            if reply is not None and self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(reply, addr)
        except Exception as exc:
            log.error(f"UDP query from {remote[0]} failed: {exc!r}")
        finally:
            lst.pending -= 1

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors about earlier replies: nothing to do


class Listener:
    """UDP and TCP on host:port (port 0: an ephemeral port, the same for both)."""

    def __init__(self, handler: Any, host: str = "", port: int = 53, tcp_idle_timeout: float = 10.0) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.tcp_idle_timeout = tcp_idle_timeout
        self.pending = 0
        self.tasks: set[asyncio.Future[Any]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None

    def _bind_pair(self) -> tuple[socket.socket, socket.socket]:
        host = self.host or "0.0.0.0"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for attempt in range(20):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with contextlib.suppress(OSError):
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                udp.bind((host, self.port))
                tcp.bind((host, udp.getsockname()[1]))
                tcp.listen(128)
                return udp, tcp
            except OSError:
                udp.close()
                tcp.close()
                if self.port != 0 or attempt == 19:
                    raise
        raise AssertionError("unreachable")

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        udp, tcp = self._bind_pair()
        self.port = udp.getsockname()[1]
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
        self._udp = transport  # type: ignore[assignment]
        self._tcp = await asyncio.start_server(self._tcp_conn, sock=tcp)

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1)
        for t in list(self.tasks):
            t.cancel()

    async def __aenter__(self) -> Listener:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tcp_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        remote = _remote(writer.get_extra_info("peername"))
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle_timeout)
                    (n,) = struct.unpack("!H", head)
                    data = await asyncio.wait_for(reader.readexactly(n), self.tcp_idle_timeout)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
                    return
                reply = self.handler.fast(data, "tcp", remote) if len(data) >= 12 else None
                if reply is None:
                    reply = await self.handler.serve(data, "tcp", remote)
                if reply is None:
                    return  # miekg/dns closes the connection on messages it ignores
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except Exception as exc:
            log.error(f"TCP connection from {remote[0]} failed: {exc!r}")
        finally:
            writer.close()


async def exchange(wire_query: bytes, host: str, port: int, tcp: bool, *, local: list[str] | None = None) -> bytes:
    """One DNS exchange over UDP or TCP from this process's network namespace (asyncio). `local`, if given,
    receives this side's address as soon as there is a socket (for error messages)."""
    loop = asyncio.get_running_loop()
    if tcp:
        reader, writer = await asyncio.open_connection(host, port)
        if local is not None:
            local.append(_addr_text(writer.get_extra_info("sockname")))
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
    if local is not None:
        local.append(_addr_text(transport.get_extra_info("sockname")))
    try:
        transport.sendto(wire_query)
        return await fut
    finally:
        transport.close()


def _addr_text(sockname: object) -> str:
    """host:port as Go prints a net.Addr ([v6]:port)."""
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = sockname[0], sockname[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "?"


__all__ = ["Hook", "Listener", "Server", "exchange"]
