"""The cluster DNS server process: UDP and TCP on one address, plus CoreDNS's side ports.

- DNS on `host:port` (0.0.0.0:53 in the coredns pod), UDP and TCP, answered by a `Handler`;
- `:8181/ready` → 200 "OK" once the index is synced, 503 before (the `ready` plugin);
- `:8080/health` → 200 "OK" (the `health` plugin);
- `:9153/metrics` → Prometheus text with CoreDNS's metric names (plugin/metrics/vars.go):
  `coredns_dns_requests_total{server,zone,view,proto,family,type}`,
  `coredns_dns_responses_total{server,zone,view,rcode,plugin}`,
  `coredns_dns_request_duration_seconds{server,zone,view,type}` (histogram, buckets 0.25 ms × 2^k, 16 of them),
  `coredns_panics_total`.

Robustness: a packet that cannot be parsed gets FORMERR or nothing; an exception anywhere in one query's
handling is counted as a panic and answered SERVFAIL (like CoreDNS's recover); nothing stops the listeners.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import socket
import struct
import time
from typing import Any

from aiohttp import web

from labkit.dns import wire
from labkit.dns.handler import Handler, Result

log = logging.getLogger("labkit.dns")

# plugin.TimeBuckets = prometheus.ExponentialBuckets(0.00025, 2, 16)
TIME_BUCKETS = tuple(0.00025 * 2**i for i in range(16))
# Types CoreDNS's metrics keep by name (plugin/pkg/response/typify... monitorType); others are "other".
MONITORED_TYPES = {
    1: "A", 28: "AAAA", 15: "MX", 6: "SOA", 5: "CNAME", 12: "PTR", 16: "TXT", 2: "NS", 33: "SRV", 43: "DS",
    48: "DNSKEY", 46: "RRSIG", 47: "NSEC", 50: "NSEC3", 65: "HTTPS", 251: "IXFR", 252: "AXFR", 255: "ANY",
}  # fmt: skip
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}
MAX_PENDING = 1000  # like forward's max_concurrent 1000: beyond this, queries are dropped


class Metrics:
    """Counters and a histogram kept in plain dicts (cheap on the hot path), rendered as Prometheus text."""

    def __init__(self, server: str, zone: str = ".") -> None:
        self.server = server
        self.zone = zone
        self.requests: dict[tuple[str, int, str], int] = {}
        self.responses: dict[tuple[str, str], int] = {}
        self.durations: dict[str, list[float]] = {}  # type → bucket counts..., then [sum, count]
        self.panics = 0

    def observe(self, proto: str, family: int, qtype: int, rcode: int, plugin: str, seconds: float) -> None:
        t = MONITORED_TYPES.get(qtype, "other")
        k = (proto, family, t)
        self.requests[k] = self.requests.get(k, 0) + 1
        r = (RCODES.get(rcode, str(rcode)), plugin)
        self.responses[r] = self.responses.get(r, 0) + 1
        h = self.durations.get(t)
        if h is None:
            h = self.durations[t] = [0.0] * (len(TIME_BUCKETS) + 2)
        h[bisect.bisect_left(TIME_BUCKETS, seconds)] += 1
        h[-2] += seconds
        h[-1] += 1

    def render(self) -> str:
        base = f'server="{self.server}",zone="{self.zone}",view=""'
        out = [
            "# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.",
            "# TYPE coredns_dns_requests_total counter",
        ]
        for (proto, family, t), n in sorted(self.requests.items()):
            out.append(f'coredns_dns_requests_total{{{base},proto="{proto}",family="{family}",type="{t}"}} {n}')
        out += [
            "# HELP coredns_dns_responses_total Counter of response status codes.",
            "# TYPE coredns_dns_responses_total counter",
        ]
        for (rcode, plugin), n in sorted(self.responses.items()):
            out.append(f'coredns_dns_responses_total{{{base},rcode="{rcode}",plugin="{plugin}"}} {n}')
        out += [
            "# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took.",
            "# TYPE coredns_dns_request_duration_seconds histogram",
        ]
        for t, h in sorted(self.durations.items()):
            cum = 0.0
            for i, le in enumerate(TIME_BUCKETS):
                cum += h[i]
                out.append(f'coredns_dns_request_duration_seconds_bucket{{{base},type="{t}",le="{le:g}"}} {cum:g}')
            cum += h[len(TIME_BUCKETS)]
            out.append(f'coredns_dns_request_duration_seconds_bucket{{{base},type="{t}",le="+Inf"}} {cum:g}')
            out.append(f'coredns_dns_request_duration_seconds_sum{{{base},type="{t}"}} {h[-2]:.9g}')
            out.append(f'coredns_dns_request_duration_seconds_count{{{base},type="{t}"}} {h[-1]:g}')
        out += [
            "# HELP coredns_panics_total A metrics that counts the number of panics.",
            "# TYPE coredns_panics_total counter",
            f"coredns_panics_total {self.panics}",
        ]
        return "\n".join(out) + "\n"


def _family(addr: Any) -> int:
    return 2 if isinstance(addr, tuple) and len(addr) == 4 else 1


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        t0 = time.perf_counter()
        srv = self.server
        try:
            res = srv.handler.cached(data, False) if len(data) >= 12 else None
        except Exception:
            res = None
        if res is not None and res.reply is not None:
            self.transport.sendto(res.reply, addr)  # type: ignore[union-attr]
            srv.metrics.observe("udp", _family(addr), res.qtype, res.rcode, res.plugin, time.perf_counter() - t0)
            return
        if srv.pending >= MAX_PENDING:
            return
        srv.pending += 1
        task = asyncio.ensure_future(self._slow(data, addr, t0))
        srv.tasks.add(task)
        task.add_done_callback(srv.tasks.discard)

    async def _slow(self, data: bytes, addr: Any, t0: float) -> None:
        srv = self.server
        try:
            res = await srv.answer(data, "udp", _family(addr))
            if res.reply is not None and self.transport is not None and not self.transport.is_closing():
                self.transport.sendto(res.reply, addr)
                srv.metrics.observe("udp", _family(addr), res.qtype, res.rcode, res.plugin, time.perf_counter() - t0)
        except Exception:
            srv.metrics.panics += 1
            log.exception("UDP query from %s failed", addr)
        finally:
            srv.pending -= 1

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors about earlier replies: nothing to do


class DNSServer:
    """A running DNS server. Ports set to 0 get an ephemeral port; None disables that listener.

    `handler` is a Handler, or any object with the same `cached(data, tcp)`, `async handle(data, proto, family)`
    and `ready()` methods (the upstream server uses this).
    """

    def __init__(
        self,
        handler: Handler | Any,
        host: str = "0.0.0.0",
        port: int = 53,
        *,
        http_host: str | None = None,
        ready_port: int | None = 8181,
        health_port: int | None = 8080,
        metrics_port: int | None = 9153,
        tcp_idle_timeout: float = 10.0,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.http_host = http_host if http_host is not None else host
        self.ready_port = ready_port
        self.health_port = health_port
        self.metrics_port = metrics_port
        self.tcp_idle_timeout = tcp_idle_timeout
        self.metrics = Metrics(f"dns://:{port}")
        self.pending = 0
        self.tasks: set[asyncio.Future[Any]] = set()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._runners: list[web.AppRunner] = []
        self.bound: dict[str, int] = {}  # "dns", "ready", "health", "metrics" → actual port

    async def answer(self, data: bytes, proto: str, family: int) -> Result:
        try:
            return await self.handler.handle(data, proto, family)
        except Exception:
            self.metrics.panics += 1
            log.exception("query handling failed")
            return Result(None, 0, wire.SERVFAIL, "")

    def _bind_pair(self) -> tuple[socket.socket, socket.socket]:
        """A UDP and a TCP socket bound to the same port. With port 0 the kernel picks the UDP port, which may be
        taken for TCP by someone else: then try another one."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for attempt in range(20):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with contextlib.suppress(OSError):
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                udp.bind((self.host, self.port))
                tcp.bind((self.host, udp.getsockname()[1]))
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
        self.metrics.server = f"dns://:{self.port}"
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp)
        self._udp = transport  # type: ignore[assignment]
        self._tcp = await asyncio.start_server(self._tcp_conn, sock=tcp)
        self.bound["dns"] = self.port
        for name, port, path, fn in (
            ("ready", self.ready_port, "/ready", self._ready),
            ("health", self.health_port, "/health", self._health),
            ("metrics", self.metrics_port, "/metrics", self._metrics),
        ):
            if port is None:
                continue
            app = web.Application()
            app.router.add_get(path, fn)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, self.http_host, port)
            await site.start()
            self._runners.append(runner)
            self.bound[name] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1)
        for t in list(self.tasks):
            t.cancel()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> DNSServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tcp_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        family = _family(peer)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle_timeout)
                    (n,) = struct.unpack("!H", head)
                    data = await asyncio.wait_for(reader.readexactly(n), self.tcp_idle_timeout)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
                    return
                t0 = time.perf_counter()
                res = await self.answer(data, "tcp", family)
                if res.reply is None:
                    return  # miekg/dns closes the connection on messages it ignores
                writer.write(struct.pack("!H", len(res.reply)) + res.reply)
                await writer.drain()
                self.metrics.observe("tcp", family, res.qtype, res.rcode, res.plugin, time.perf_counter() - t0)
        except Exception:
            self.metrics.panics += 1
            log.exception("TCP connection from %s failed", peer)
        finally:
            writer.close()

    async def _ready(self, request: web.Request) -> web.Response:
        if self.handler.ready():
            return web.Response(text="OK")
        return web.Response(status=503, text="kubernetes")

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")
