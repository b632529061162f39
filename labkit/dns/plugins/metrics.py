"""prometheus [ADDR]: CoreDNS's metrics (plugin/metrics, vars.go) as Prometheus text on ADDR/metrics.

ADDR defaults to localhost:9153 (kind's Corefile says `:9153`). The counters are process-wide and survive
reloads, as Prometheus's default registry does:
- `coredns_dns_requests_total{server,zone,view,proto,family,type}`, `coredns_dns_do_requests_total`,
  `coredns_dns_request_duration_seconds{server,zone,view}` (0.25 ms × 2^k buckets, 16 of them),
  `coredns_dns_request_size_bytes` / `coredns_dns_response_size_bytes{server,zone,view,proto}`,
  `coredns_dns_responses_total{server,zone,view,rcode,plugin}` — `plugin` names the plugin whose write reached
  the recorder first (in kind's chain `loadbalance`, which wraps every reply);
- `coredns_panics_total`, `coredns_build_info`, `coredns_plugin_enabled`, `coredns_reload_failed_total`,
  `coredns_cache_*`, `coredns_forward_max_concurrent_rejects_total`.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from labkit.dns import request as rq
from labkit.dns.plugin import Controller, Plugin
from labkit.dns.request import Reply, Request

if TYPE_CHECKING:
    from labkit.dns.coredns import Environment

TIME_BUCKETS = tuple(0.00025 * 2**i for i in range(16))  # plugin.TimeBuckets
SIZE_BUCKETS = (0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3)
# Types the metrics keep by name (plugin/pkg/response... monitorType); others are "other".
MONITORED_TYPES = {
    1: "A", 28: "AAAA", 15: "MX", 6: "SOA", 5: "CNAME", 12: "PTR", 16: "TXT", 2: "NS", 33: "SRV", 43: "DS",
    48: "DNSKEY", 46: "RRSIG", 47: "NSEC", 50: "NSEC3", 65: "HTTPS", 251: "IXFR", 252: "AXFR", 255: "ANY",
}  # fmt: skip


class _Histogram:
    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, v)] += 1
        self.sum += v

    def render(self, name: str, labels: str, out: list[str]) -> None:
        cum = 0
        for le, n in zip(self.buckets, self.counts, strict=False):
            cum += n
            out.append(f'{name}_bucket{{{labels},le="{le:g}"}} {cum}')
        cum += self.counts[-1]
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {cum}')
        out.append(f"{name}_sum{{{labels}}} {self.sum:.9g}")
        out.append(f"{name}_count{{{labels}}} {cum}")


class Metrics:
    """The process's counters, in plain dicts (cheap on the hot path)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str, int, str], int] = {}
        self.do_requests: dict[tuple[str, str], int] = {}
        self.responses: dict[tuple[str, str, str, str], int] = {}
        self.durations: dict[tuple[str, str], _Histogram] = {}
        self.req_sizes: dict[tuple[str, str, str], _Histogram] = {}
        self.resp_sizes: dict[tuple[str, str, str], _Histogram] = {}
        self.counters: dict[str, int] = {}  # name{labels} → value, for the plugins' own counters
        self.collectors: dict[int, Callable[[], list[str]]] = {}  # a running plugin's own lines (cache)
        self.panics = 0
        self.reload_failed = 0
        self.enabled: set[tuple[str, str, str]] = set()  # (server, zone, plugin)

    def report(self, server: str, zone: str, proto: str, family: int, qtype: int, do: bool, rcode: str,
               plugin: str, req_size: int, resp_size: int, seconds: float) -> None:
        """vars.Report for one answered query."""
        t = MONITORED_TYPES.get(qtype, "other")
        k = (server, zone, proto, family, t)
        self.requests[k] = self.requests.get(k, 0) + 1
        if do:
            self.do_requests[(server, zone)] = self.do_requests.get((server, zone), 0) + 1
        r = (server, zone, rcode, plugin)
        self.responses[r] = self.responses.get(r, 0) + 1
        h = self.durations.get((server, zone))
        if h is None:
            h = self.durations[(server, zone)] = _Histogram(TIME_BUCKETS)
        h.observe(seconds)
        sk = (server, zone, proto)
        for table, v in ((self.req_sizes, req_size), (self.resp_sizes, resp_size)):
            hs = table.get(sk)
            if hs is None:
                hs = table[sk] = _Histogram(SIZE_BUCKETS)
            hs.observe(v)

    def dropped(self, server: str, req: Request, rcode: int) -> None:
        """errorAndMetricsFunc: a query no server block took (zone label "dropped")."""
        self.report(server, "dropped", req.proto, req.family, req.qtype, req.do, rq.RCODE_NAMES.get(rcode, "?"),
                    "", len(req.data), 0, time.perf_counter() - req.start)

    def inc(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    def render(self, env: Environment) -> str:
        out: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        head("coredns_build_info", "gauge", "A metric with a constant '1' value labeled by version, revision, and "
             "goversion from which CoreDNS was built.")
        from labkit.dns.coredns import VERSION

        out.append(f'coredns_build_info{{goversion="go1.21.11",revision="a6338e9",version="{VERSION}"}} 1')
        head("coredns_dns_requests_total", "counter", "Counter of DNS requests made per zone, protocol and family.")
        for (server, zone, proto, family, t), n in sorted(self.requests.items()):
            out.append(f'coredns_dns_requests_total{{family="{family}",proto="{proto}",server="{server}",'
                       f'type="{t}",view="",zone="{zone}"}} {n}')
        if self.do_requests:
            head("coredns_dns_do_requests_total", "counter", "Counter of DNS requests with DO bit set per zone.")
            for (server, zone), n in sorted(self.do_requests.items()):
                out.append(f'coredns_dns_do_requests_total{{server="{server}",view="",zone="{zone}"}} {n}')
        head("coredns_dns_request_duration_seconds", "histogram",
             "Histogram of the time (in seconds) each request took per zone.")
        for (server, zone), h in sorted(self.durations.items()):
            h.render("coredns_dns_request_duration_seconds", f'server="{server}",view="",zone="{zone}"', out)
        for name, table, text in (
            ("coredns_dns_request_size_bytes", self.req_sizes,
             "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol."),
            ("coredns_dns_response_size_bytes", self.resp_sizes, "Size of the returned response in bytes."),
        ):
            head(name, "histogram", text)
            for (server, zone, proto), h in sorted(table.items()):
                h.render(name, f'proto="{proto}",server="{server}",view="",zone="{zone}"', out)
        head("coredns_dns_responses_total", "counter", "Counter of response status codes.")
        for (server, zone, rcode, plugin), n in sorted(self.responses.items()):
            out.append(f'coredns_dns_responses_total{{plugin="{plugin}",rcode="{rcode}",server="{server}",'
                       f'view="",zone="{zone}"}} {n}')
        head("coredns_panics_total", "counter", "A metrics that counts the number of panics.")
        out.append(f"coredns_panics_total {self.panics}")
        head("coredns_plugin_enabled", "gauge",
             "A metric that indicates whether a plugin is enabled on per server and zone basis.")
        for server, zone, name in sorted(self.enabled):
            out.append(f'coredns_plugin_enabled{{name="{name}",server="{server}",view="",zone="{zone}"}} 1')
        head("coredns_reload_failed_total", "counter", "Counter of the number of failed reload attempts.")
        out.append(f"coredns_reload_failed_total {env.reload_failed}")
        for collect in list(self.collectors.values()):
            out += collect()
        for name, n in sorted(self.counters.items()):
            out.append(f"{name} {n}")
        return "\n".join(out) + "\n"


class Prometheus(Plugin):
    """Records every reply of its server block (metrics.Metrics.ServeDNS)."""

    name = "prometheus"

    def __init__(self, metrics: Metrics, zones: list[str]) -> None:
        self.metrics = metrics
        self.zones = sorted(zones, key=len, reverse=True)

    def zone_of(self, qname: str) -> str:
        for z in self.zones:
            if qname == z or qname.endswith("." + z) or z == ".":
                return z
        return "."

    async def serve(self, req: Request) -> Reply:
        server = f"dns://:{req.local_port}"
        zone = self.zone_of(req.name())
        reply = await self.next_or_failure(req)
        msg = reply.msg
        rcode = msg.rcode if msg is not None and rq.client_write(reply.rcode) else reply.rcode
        rcode_text = rq.RCODE_NAMES.get(rcode, str(rcode))
        size = msg.length() if msg is not None else 0
        m = self.metrics
        proto, family, qtype, do, req_size = req.proto, req.family, req.qtype, req.do, len(req.data)
        m.report(server, zone, proto, family, qtype, do, rcode_text, reply.writer, req_size, size,
                 time.perf_counter() - req.start)

        def again(ip: str, port: int, qid: int, t0: float) -> None:
            m.report(server, zone, proto, family, qtype, do, rcode_text, reply.writer, req_size, size,
                     time.perf_counter() - t0)

        req.hooks.append(again)
        return reply


def setup(c: Controller) -> None:
    addr = "localhost:9153"
    while c.next_once():
        addr = c.address_arg(addr)
        while c.next_block():
            raise c.plugin_err(c.err(f"unknown property '{c.val()}'"))
    env = c.env
    plugin = Prometheus(env.metrics, c.zones)
    c.add_plugin(plugin)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=env.metrics.render(env), content_type="text/plain", charset="utf-8")

    c.http_route(addr, "/metrics", handler)
    c.block.metrics = True
