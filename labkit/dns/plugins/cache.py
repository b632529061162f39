"""cache [TTL] [ZONES...] { success CAP [TTL [MINTTL]]; denial CAP [TTL [MINTTL]]; prefetch N [DUR [PCT%]];
serve_stale [DUR [immediate|verify]]; servfail DUR; disable success|denial [ZONES...]; keepttl }: plugin/cache.

- A reply is stored for the smallest TTL it holds (the SOA's for a denial), clamped to [MINTTL, TTL]
  (success: 5 s..3600 s, denial 5 s..1800 s, `cache 30` caps both at 30 s); SERVFAIL for `servfail` (5 s).
  Every record of the reply is rewritten to that TTL on the way out; the upstream's OPT is dropped (the server
  echoes the client's instead).
- A hit is a new reply to the query: AA set (CoreDNS issue #3064), RA as stored, every TTL = the time left.
  So a forwarded name shows `Non-authoritative answer` in nslookup the first time, not while it is cached.
- The key is (name, type, DO, CD); truncated replies and errors other than SERVFAIL are not stored.
- `disable success|denial ZONES` skips storing (kubeadm's Corefile disables both for cluster.local, so the
  cluster's answers always carry the `kubernetes` plugin's TTL).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from labkit.dns import request as rq
from labkit.dns import wire
from labkit.dns.plugin import Controller, Plugin
from labkit.dns.plugins.durations import parse_duration
from labkit.dns.request import Msg, Reply, Request
from labkit.dns.wire import RR

DEFAULT_CAP = 10000
SHARDS = 256  # CoreDNS's cache has 256 shards of CAP/256 items: 10000 → 9984 usable


def in_zones(name: str, zones: list[str]) -> str:
    """plugin.Zones.Matches: the longest zone the name is in, or ''."""
    best = ""
    for z in zones:
        if (z == "." or name == z or name.endswith("." + z)) and len(z) > len(best):
            best = z
    return best


def atoi(text: str) -> int:
    """strconv.Atoi, with its error message."""
    try:
        return int(text, 10)
    except ValueError:
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax') from None


@dataclass(slots=True)
class Item:
    name: tuple[bytes, ...]
    qtype: int
    rcode: int
    ad: bool
    ra: bool
    answer: list[RR]
    authority: list[RR]
    extra: list[RR]
    orig_ttl: int
    stored: float
    hits: int = 0  # cache/freq: hits within `prefetch_duration` of each other
    last: float = 0.0

    def ttl(self, now: float) -> int:
        return self.orig_ttl - int(now - self.stored)

    def to_msg(self, req: Request, now: float, keepttl: bool) -> Msg:
        m = rq.reply_to(req)
        m.set_flag(wire.AA)
        m.set_flag(wire.AD, self.ad and (req.do or bool(req.flags & wire.AD)))
        m.set_flag(wire.RA, self.ra)
        m.rcode = self.rcode
        ttl = max(0, self.orig_ttl if keepttl else self.ttl(now)) & 0xFFFFFFFF
        m.answer = [replace(r, ttl=ttl) for r in self.answer]
        m.authority = [replace(r, ttl=ttl) for r in self.authority]
        m.extra = [replace(r, ttl=ttl) for r in self.extra]
        return m


class _Store:
    """A bounded map (CoreDNS's sharded cache: when full, an entry is evicted to make room)."""

    def __init__(self, cap: int) -> None:
        self.cap = max(1, (cap // SHARDS) * SHARDS) if cap >= SHARDS else max(cap, 1)
        self.items: dict[tuple[str, int, bool, bool], Item] = {}

    def get(self, key: tuple[str, int, bool, bool]) -> Item | None:
        return self.items.get(key)

    def add(self, key: tuple[str, int, bool, bool], item: Item) -> bool:
        evicted = False
        if key not in self.items and len(self.items) >= self.cap:
            self.items.pop(next(iter(self.items)))
            evicted = True
        self.items[key] = item
        return evicted


class Cache(Plugin):
    name = "cache"

    def __init__(self, zones: list[str]) -> None:
        self.zones = zones
        self.pcap = self.ncap = DEFAULT_CAP
        self.pttl, self.minpttl = 3600, 5
        self.nttl, self.minnttl = 1800, 5
        self.failttl = 5.0
        self.prefetch = 0
        self.prefetch_duration = 60.0
        self.percentage = 10
        self.stale_up_to = 0.0
        self.verify_stale = False
        self.pexcept: list[str] = []
        self.nexcept: list[str] = []
        self.keepttl = False
        self.pcache = _Store(self.pcap)
        self.ncache = _Store(self.ncap)
        self.hits = {"success": 0, "denial": 0}
        self.misses = 0
        self.now = time.time
        self.refreshing: set[asyncio.Future[None]] = set()

    def _get(self, req: Request, now: float) -> Item | None:
        key = (req.name(), req.qtype, req.do, req.cd)
        for store, kind in ((self.ncache, "denial"), (self.pcache, "success")):
            it = store.get(key)
            if it is None:
                continue
            ttl = it.ttl(now)
            if it.qtype == req.qtype and rq.name_text(it.name) == req.name() and (
                    ttl > 0 or (self.stale_up_to > 0 and -ttl < self.stale_up_to)):
                self.hits[kind] += 1
                return it
        self.misses += 1
        return None

    async def serve(self, req: Request) -> Reply:
        rc = req.copy()  # plugins below may change the question; the hit/miss logic keeps the original
        if not in_zones(rc.name(), self.zones):
            return await self.next_or_failure(rc)
        now = self.now()
        it = self._get(rc, now)
        if it is None:
            reply = await self.next_or_failure(rc)
            if reply.msg is not None:
                reply.msg = self._written(rc, reply.msg, now, req)
                reply.writer = self.name
            return reply
        req.memo = False
        ttl = it.ttl(now)
        if ttl < 0:  # served stale: refresh in the background (verify mode: refresh first)
            if self.verify_stale:
                fresh = await self.next_or_failure(rc)
                if fresh.msg is not None and fresh.msg.rcode in (wire.NOERROR, wire.NXDOMAIN):
                    fresh.msg = self._written(rc, fresh.msg, now, req)
                    fresh.writer = self.name
                    return fresh
            else:
                self._background(rc.copy())
        elif self._should_prefetch(it, now):
            self._background(rc.copy())
        return Reply(it.to_msg(req, now, self.keepttl), wire.NOERROR, None, self.name)

    def _should_prefetch(self, it: Item, now: float) -> bool:
        if self.prefetch <= 0:
            return False
        it.hits = it.hits + 1 if now - it.last <= self.prefetch_duration else 1
        it.last = now
        threshold = -(-self.percentage * it.orig_ttl // 100)  # ceil
        return it.hits >= self.prefetch and it.ttl(now) <= threshold

    def collect(self, server: str) -> list[str]:
        """coredns_cache_* lines for the metrics page."""
        base = f'server="{server}",view="",zones="{",".join(self.zones)}"'
        return [
            f'coredns_cache_entries{{{base},type="denial"}} {len(self.ncache.items)}',
            f'coredns_cache_entries{{{base},type="success"}} {len(self.pcache.items)}',
            f'coredns_cache_hits_total{{{base},type="denial"}} {self.hits["denial"]}',
            f'coredns_cache_hits_total{{{base},type="success"}} {self.hits["success"]}',
            f"coredns_cache_misses_total{{{base}}} {self.misses}",
            f"coredns_cache_requests_total{{{base}}} {self.misses + sum(self.hits.values())}",
        ]

    def _background(self, rc: Request) -> None:
        task = asyncio.ensure_future(self._refresh(rc))
        self.refreshing.add(task)
        task.add_done_callback(self.refreshing.discard)

    async def _refresh(self, rc: Request) -> None:
        reply = await self.next_or_failure(rc)
        if reply.msg is not None:
            self._written(rc, reply.msg, self.now(), None)

    def _written(self, rc: Request, msg: Msg, now: float, req: Request | None) -> Msg:
        """cache.ResponseWriter.WriteMsg: store, then rewrite the TTLs of what goes to the client."""
        t = rq.typify(msg)
        cacheable = not (msg.flags & wire.TC) and t not in (rq.OTHERERROR_T, rq.META_T, rq.UPDATE_T)
        if t in (rq.NAMEERROR_T, rq.NODATA_T):
            duration = min(max(rq.minimal_ttl(msg, t), self.minnttl), self.nttl)
        elif t == rq.SERVERERROR_T:
            duration = int(self.failttl)
        else:
            duration = min(max(rq.minimal_ttl(msg, t), self.minpttl), self.pttl)
        if cacheable and duration > 0 and rc.matches(msg):
            stored = self._set(rc, msg, t, duration, now)
            if stored and req is not None:
                req.memo = False
        out = msg.copy()
        ttl = int(duration)
        out.answer = [replace(r, ttl=ttl) for r in msg.answer]
        out.authority = [replace(r, ttl=ttl) for r in msg.authority]
        out.extra = [replace(r, ttl=ttl) for r in msg.extra if r.rtype != wire.OPT]
        if not rc.do and not (rc.flags & wire.AD):
            out.set_flag(wire.AD, False)
        return out

    def _set(self, rc: Request, msg: Msg, t: int, duration: int, now: float) -> bool:
        name = msg.question[0] if msg.question else rc.qname
        item = Item(name, msg.question[1] if msg.question else rc.qtype, msg.rcode, bool(msg.flags & wire.AD),
                    bool(msg.flags & wire.RA), list(msg.answer), list(msg.authority),
                    [r for r in msg.extra if r.rtype != wire.OPT], duration, now)
        key = (rc.name(), rc.qtype, rc.do, rc.cd)
        if t in (rq.NOERROR_T, rq.DELEGATION_T):
            if in_zones(rq.name_text(name), self.pexcept):
                return False
            self.pcache.add(key, item)
            return True
        if t in (rq.NAMEERROR_T, rq.NODATA_T, rq.SERVERERROR_T):
            if in_zones(rq.name_text(name), self.nexcept):
                return False
            self.ncache.add(key, item)
            return True
        return False


def setup(c: Controller) -> None:
    ca = Cache(list(c.zones))
    try:
        while c.next_once():
            args = c.remaining_args()
            if args:
                try:
                    ttl = int(args[0])
                except ValueError:
                    ttl = None
                if ttl is not None:
                    if ttl <= 0:
                        raise ValueError(f"cache TTL can not be zero or negative: {ttl}")
                    ca.pttl = ca.nttl = ttl
                    args = args[1:]
            ca.zones = [a.lower() if a.endswith(".") else a.lower() + "." for a in args] or list(c.zones)
            while c.next_block():
                _option(c, ca)
    except ValueError as exc:
        raise c.plugin_err(exc) from None
    ca.pcache, ca.ncache = _Store(ca.pcap), _Store(ca.ncap)
    c.add_plugin(ca)
    metrics = c.env.metrics
    server = f"dns://:{c.block.port}"
    c.on_startup(lambda: metrics.collectors.__setitem__(id(ca), lambda: ca.collect(server)))
    c.on_shutdown(lambda: metrics.collectors.pop(id(ca), None))


def _option(c: Controller, ca: Cache) -> None:
    opt = c.val()
    args = c.remaining_args()
    if opt in ("success", "denial"):
        if not args:
            raise c.plugin_err(c.arg_err())
        cap = atoi(args[0])
        ttl = mintl = None
        if len(args) > 1:
            ttl = atoi(args[1])
            if ttl <= 0:
                raise ValueError(f"cache TTL can not be zero or negative: {ttl}")
            if len(args) > 2:
                mintl = atoi(args[2])
                if mintl < 0:
                    raise ValueError(f"cache min TTL can not be negative: {mintl}")
        if opt == "success":
            ca.pcap = cap
            ca.pttl = ttl if ttl is not None else ca.pttl
            ca.minpttl = mintl if mintl is not None else ca.minpttl
        else:
            ca.ncap = cap
            ca.nttl = ttl if ttl is not None else ca.nttl
            ca.minnttl = mintl if mintl is not None else ca.minnttl
    elif opt == "prefetch":
        if not args or len(args) > 3:
            raise c.plugin_err(c.arg_err())
        amount = atoi(args[0])
        if amount < 0:
            raise ValueError(f"prefetch amount should be positive: {amount}")
        ca.prefetch = amount
        if len(args) > 1:
            ca.prefetch_duration = parse_duration(args[1])
        if len(args) > 2:
            pct = args[2]
            if not pct.endswith("%"):
                raise ValueError(f"last character of percentage should be `%`, but is: '{pct[-1]}'")
            num = atoi(pct[:-1])
            if not 10 <= num <= 90:
                raise ValueError(f"percentage should fall in range [10, 90]: {num}")
            ca.percentage = num
    elif opt == "serve_stale":
        if len(args) > 2:
            raise c.plugin_err(c.arg_err())
        ca.stale_up_to = 3600.0
        if args:
            d = parse_duration(args[0])
            if d < 0:
                raise ValueError("invalid negative duration for serve_stale")
            ca.stale_up_to = d
        ca.verify_stale = False
        if len(args) > 1:
            mode = args[1].lower()
            if mode not in ("immediate", "verify"):
                raise ValueError(f"invalid value for serve_stale refresh mode: {mode}")
            ca.verify_stale = mode == "verify"
    elif opt == "servfail":
        if len(args) != 1:
            raise c.plugin_err(c.arg_err())
        d = parse_duration(args[0])
        if d < 0:
            raise ValueError("invalid negative ttl for servfail")
        if d > 300:
            raise ValueError("caching SERVFAIL responses over 5 minutes is not permitted")
        ca.failttl = d
    elif opt == "disable":
        if not args:
            raise c.plugin_err(c.arg_err())
        zones = [z.lower() if z.endswith(".") else z.lower() + "." for z in args[1:]] or ["."]
        if args[0] == "denial":
            ca.nexcept = zones
        elif args[0] == "success":
            ca.pexcept = zones
        else:
            raise ValueError('cache type for disable must be "success" or "denial"')
    elif opt == "keepttl":
        if args:
            raise c.plugin_err(c.arg_err())
        ca.keepttl = True
    else:
        raise c.plugin_err(c.arg_err())
