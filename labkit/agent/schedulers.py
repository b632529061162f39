"""IPVS schedulers with the kernel's semantics (net/netfilter/ipvs/ip_vs_{rr,wrr,lc,wlc,sed,nq,sh,dh,mh}.c).

A scheduler sees the destination list in the kernel's order: `ip_vs_add_dest` links a new destination at
the *head* of `svc->destinations`, so the newest destination comes first (the data plane keeps that order).
Weight 0 means quiesced: no new connections. Destination thresholds (OVERLOAD) are not modelled.

`update(dests)` must be called whenever destinations are added, removed or re-weighted (the kernel's
add_dest/del_dest/upd_dest hooks); `schedule(...)` picks a destination for a new connection or returns None.

Deviations, on purpose:
- sh/dh hash the address as the classic kernel did: `(ntohl(addr) * 2654435761) & 255` (newer kernels use
  `hash_32(ntohs(port) + ntohl(addr), 8)`); IPv6 folds the four words with XOR first.
- mh builds Maglev tables exactly as ip_vs_mh.c (M = 4093, offset/skip permutations, turns = weight/gcd >> shift,
  last_weight kept for quiesced dests), but the kernel keys its hsiphash with random per-boot keys; here
  keyed BLAKE2b stands in, so which source maps to which destination differs from a kernel's (which is itself
  random per boot), while the distribution properties are the same.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Protocol

from labkit.agent.model import FLAG_SCHED1, FLAG_SCHED2


class Dest(Protocol):
    """What a scheduler needs to know about a destination."""

    address: str
    port: int
    weight: int
    active: int
    inactive: int


Key = tuple[str, int]


def _key(d: Dest) -> Key:
    return (d.address, d.port)


class Scheduler(ABC):
    """One service's scheduler instance (the kernel keeps per-service sched_data)."""

    name = ""

    def update(self, dests: Sequence[Dest]) -> None:  # noqa: B027 - optional hook
        """Destinations were added, removed or changed weight."""

    @abstractmethod
    def schedule(self, dests: Sequence[Dest], src: Key, dst: Key, flags: int = 0) -> Dest | None:
        """Pick a destination for a new connection from `src` to the virtual server `dst`."""


class RoundRobin(Scheduler):
    """rr: a cursor into the list; next destination with weight > 0, at most one full cycle."""

    name = "rr"

    def __init__(self) -> None:
        self._last: Key | None = None  # None = list head
        self._order: list[Key] = []

    def update(self, dests: Sequence[Dest]) -> None:
        keys = [_key(d) for d in dests]
        # ip_vs_rr_del_dest: when the cursor's dest goes, the cursor moves back to its (surviving) predecessor.
        if self._last is not None and self._last not in keys:
            i = self._order.index(self._last) if self._last in self._order else 0
            self._last = next((k for k in reversed(self._order[:i]) if k in keys), None)
        self._order = keys

    def schedule(self, dests: Sequence[Dest], src: Key, dst: Key, flags: int = 0) -> Dest | None:
        keys = [_key(d) for d in dests]
        start = keys.index(self._last) + 1 if self._last in keys else 0
        for d in list(dests[start:]) + list(dests[:start]):
            if d.weight > 0:
                self._last = _key(d)
                return d
        return None


class WeightedRoundRobin(Scheduler):
    """wrr: current weight cw steps down by gcd from the max weight; dests with weight >= cw are picked."""

    name = "wrr"

    def __init__(self) -> None:
        self._cl = -1  # index of the last picked dest; -1 = list head
        self._cw = 0
        self._mw = 0
        self._di = 1

    def update(self, dests: Sequence[Dest]) -> None:
        weights = [d.weight for d in dests if d.weight > 0]
        self._di = math.gcd(*weights) if weights else 1
        self._mw = (max(weights) - (self._di - 1)) if weights else 0
        self._cl = -1
        if self._cw > self._mw or not self._cw:
            self._cw = self._mw
        elif self._di > 1:
            self._cw = (self._cw // self._di) * self._di + 1

    def schedule(self, dests: Sequence[Dest], src: Key, dst: Key, flags: int = 0) -> Dest | None:
        if self._mw == 0 or not dests:
            return None
        if self._cl >= len(dests):
            self._cl = -1
        # Bounded walk: cw takes at most mw/di+1 values, each pass visits every dest once.
        for _ in range((self._mw // self._di + 2) * (len(dests) + 1)):
            self._cl += 1
            if self._cl >= len(dests):
                self._cl = -1
                self._cw -= self._di
                if self._cw <= 0:
                    self._cw = self._mw
                continue
            d = dests[self._cl]
            if d.weight >= self._cw and d.weight > 0:
                return d
        return None


def conn_overhead(d: Dest) -> int:
    """ip_vs_dest_conn_overhead: active connections weigh 256 times an inactive one."""
    return (d.active << 8) + d.inactive


class LeastConnection(Scheduler):
    """lc: minimum overhead among dests with weight > 0 (first one wins ties)."""

    name = "lc"

    def schedule(self, dests: Sequence[Dest], src: Key, dst: Key, flags: int = 0) -> Dest | None:
        least, loh = None, 0
        for d in dests:
            if d.weight == 0:
                continue
            doh = conn_overhead(d)
            if least is None or doh < loh:
                least, loh = d, doh
        return least


class _WeightedLeast(Scheduler):
    """Shared loop of wlc/sed: minimise overhead/weight via `loh * w_d > doh * w_least`."""

    def overhead(self, d: Dest) -> int:
        raise NotImplementedError

    def schedule(self, dests: Sequence[Dest], src: Key, dst: Key, flags: int = 0) -> Dest | None:
        least = None
        loh = 0
        for d in dests:
            if least is None:
                if d.weight > 0:  # the first dest with weight > 0 seeds the search
                    least, loh = d, self.overhead(d)
                continue
            doh = self.overhead(d)
            if loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least


class WeightedLeastConnection(_WeightedLeast):
    name = "wlc"

    def overhead(self, d: Dest) -> int:
        return conn_overhead(d)


class ShortestExpectedDelay(_WeightedLeast):
    """sed: overhead is active + 1 (inactive connections ignored)."""

    name = "sed"

    def overhead(self, d: Dest) -> int:
        return d.active + 1


class NeverQueue(Scheduler):
    """nq: an idle dest (no active connections, weight > 0) at once, else sed's choice."""

    name = "nq"

    def schedule(self, dests: Sequence[Dest], src: Key, dst: Key, flags: int = 0) -> Dest | None:
        least, loh = None, 0
        for d in dests:
            if d.weight == 0:
                continue
            doh = d.active + 1
            if d.active == 0:
                return d
            if least is None or loh * d.weight > doh * least.weight:
                least, loh = d, doh
        return least


SH_TAB_BITS = 8
SH_TAB_SIZE = 1 << SH_TAB_BITS
SH_TAB_MASK = SH_TAB_SIZE - 1


def _fold(addr: str) -> int:
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return int(ip)
    words = struct.unpack("!4I", ip.packed)
    return words[0] ^ words[1] ^ words[2] ^ words[3]


def sh_hashkey(addr: str, port: int = 0, offset: int = 0) -> int:
    """Bucket of an address: (offset + ntohl(addr)*2654435761 + port) & 255 (classic ip_vs_sh_hashkey)."""
    return (offset + ((_fold(addr) * 2654435761) & 0xFFFFFFFF) + port) & SH_TAB_MASK


class _HashTable(Scheduler):
    """sh/dh: 256 buckets filled round-robin over the list, each dest repeated `weight` times."""

    def __init__(self) -> None:
        self.buckets: list[Key | None] = [None] * SH_TAB_SIZE

    def update(self, dests: Sequence[Dest]) -> None:
        if not dests:
            self.buckets = [None] * SH_TAB_SIZE
            return
        i, count = 0, 0
        for b in range(SH_TAB_SIZE):
            d = dests[i]
            self.buckets[b] = _key(d)
            count += 1
            if count >= d.weight:  # a weight-0 dest still takes one bucket, as in ip_vs_sh_reassign
                i = (i + 1) % len(dests)
                count = 0

    def _pick(self, dests: Sequence[Dest], addr: str, port: int, fallback: bool) -> Dest | None:
        by_key = {_key(d): d for d in dests}
        d = by_key.get(self.buckets[sh_hashkey(addr, port)])  # type: ignore[arg-type]
        if d is not None and d.weight > 0:
            return d
        if not fallback:
            return None
        for roffset in range(SH_TAB_SIZE):  # ip_vs_sh_get_fallback
            d = by_key.get(self.buckets[sh_hashkey(addr, port, roffset)])  # type: ignore[arg-type]
            if d is not None and d.weight > 0:
                return d
        return None


class SourceHashing(_HashTable):
    name = "sh"

    def schedule(self, dests: Sequence[Dest], src: Key, dst: Key, flags: int = 0) -> Dest | None:
        port = src[1] if flags & FLAG_SCHED2 else 0
        return self._pick(dests, src[0], port, bool(flags & FLAG_SCHED1))


class DestinationHashing(_HashTable):
    name = "dh"

    def schedule(self, dests: Sequence[Dest], src: Key, dst: Key, flags: int = 0) -> Dest | None:
        return self._pick(dests, dst[0], 0, False)


MH_TAB_SIZE = 4093  # primes[CONFIG_IP_VS_MH_TAB_INDEX - 8] with the default index 12
MH_TAB_BITS = int(math.log2(MH_TAB_SIZE)) // 2  # ilog2(M) / 2 = 5


def _mh_hash(data: bytes, key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=key).digest(), "little")


def _addr_port_bytes(addr: str, port: int) -> bytes:
    return ipaddress.ip_address(addr).packed + struct.pack("!H", port)


class MaglevHashing(Scheduler):
    """mh: Maglev lookup table of 4093 entries (see module doc for the hash stand-in)."""

    name = "mh"
    _KEY1, _KEY2, _KEY_LOOKUP = b"labkit-mh-offset", b"labkit-mh-skip", b"labkit-mh-lookup"

    def __init__(self) -> None:
        self.lookup: list[Key | None] = [None] * MH_TAB_SIZE
        self._last_weight: dict[Key, int] = {}

    def update(self, dests: Sequence[Dest]) -> None:
        lw = {}
        for d in dests:  # quiesced dests keep their last non-zero weight, so their slots stay put
            lw[_key(d)] = d.weight if d.weight > 0 else self._last_weight.get(_key(d), 0)
        self._last_weight = lw
        weights = [w for w in lw.values() if w > 0]
        if not weights:
            self.lookup = [None] * MH_TAB_SIZE
            return
        g = math.gcd(*weights)
        shift = max(0, (max(weights) // g).bit_length() - MH_TAB_BITS)
        setup = []
        for d in dests:
            raw = _addr_port_bytes(d.address, d.port)
            offset = _mh_hash(raw, self._KEY1) % MH_TAB_SIZE
            skip = _mh_hash(raw, self._KEY2) % (MH_TAB_SIZE - 1) + 1
            setup.append([_key(d), offset, skip, (lw[_key(d)] // g) >> shift])
        table: list[Key | None] = [None] * MH_TAB_SIZE
        n = 0
        while n < MH_TAB_SIZE:
            i = 0
            while i < len(setup):
                key, perm, skip, turns = setup[i]
                if turns < 1:
                    i += 1
                    continue
                for _ in range(turns):
                    while table[perm] is not None:
                        perm = (perm + skip) % MH_TAB_SIZE
                    table[perm] = key
                    n += 1
                    if n == MH_TAB_SIZE:
                        break
                setup[i][1] = perm
                if n == MH_TAB_SIZE:
                    break
                i += 1
        self.lookup = table

    def schedule(self, dests: Sequence[Dest], src: Key, dst: Key, flags: int = 0) -> Dest | None:
        port = src[1] if flags & FLAG_SCHED2 else 0
        by_key = {_key(d): d for d in dests}
        h = _mh_hash(_addr_port_bytes(src[0], port), self._KEY_LOOKUP)
        d = by_key.get(self.lookup[h % MH_TAB_SIZE])  # type: ignore[arg-type]
        if d is not None and d.weight > 0:
            return d
        if flags & FLAG_SCHED1:  # mh-fallback: rehash with an offset until an available dest
            for off in range(1, MH_TAB_SIZE):
                d = by_key.get(self.lookup[(h + off) % MH_TAB_SIZE])  # type: ignore[arg-type]
                if d is not None and d.weight > 0:
                    return d
        return None


SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls
    for cls in (RoundRobin, WeightedRoundRobin, LeastConnection, WeightedLeastConnection, ShortestExpectedDelay,
                NeverQueue, SourceHashing, DestinationHashing, MaglevHashing)
}


def make_scheduler(name: str) -> Scheduler:
    """A fresh scheduler instance by its IPVS name; raises ValueError for unknown names."""
    try:
        return SCHEDULERS[name]()
    except KeyError:
        raise ValueError(f"unknown IPVS scheduler {name!r} (known: {', '.join(sorted(SCHEDULERS))})") from None
