"""Schedulers: deterministic sequences with the kernel's semantics."""

from __future__ import annotations

from collections import Counter

import pytest

from labkit.agent.model import FLAG_SCHED1, RealServer
from labkit.agent.schedulers import MH_TAB_SIZE, SCHEDULERS, make_scheduler, sh_hashkey

SRC, DST = ("192.168.1.10", 40000), ("10.96.0.1", 80)


def dests(*weights: int) -> list[RealServer]:
    return [RealServer(f"10.244.0.{i + 1}", 80, weight=w) for i, w in enumerate(weights)]


def run(name: str, ds: list[RealServer], n: int, src=SRC) -> list[str]:
    s = make_scheduler(name)
    s.update(ds)
    out = []
    for _ in range(n):
        d = s.schedule(ds, src, DST)
        out.append(d.address[-1] if d else "-")
    return out


def test_all_nine_known():
    assert set(SCHEDULERS) == {"rr", "wrr", "lc", "wlc", "sh", "dh", "sed", "nq", "mh"}
    with pytest.raises(ValueError):
        make_scheduler("fo0")


def test_rr_alternates_and_skips_weight_zero():
    assert run("rr", dests(1, 1), 4) == ["1", "2", "1", "2"]
    assert run("rr", dests(1, 0, 1), 4) == ["1", "3", "1", "3"]
    assert run("rr", dests(0, 0), 2) == ["-", "-"]


def test_rr_cursor_moves_back_on_delete():
    ds = dests(1, 1, 1)
    s = make_scheduler("rr")
    s.update(ds)
    assert s.schedule(ds, SRC, DST).address.endswith(".1")
    assert s.schedule(ds, SRC, DST).address.endswith(".2")
    del ds[1]  # the cursor's dest goes: the cursor moves to .1, so .3 is next
    s.update(ds)
    assert s.schedule(ds, SRC, DST).address.endswith(".3")


def test_wrr_3_to_1_sequence():
    assert run("wrr", dests(3, 1), 8) == ["1", "1", "1", "2", "1", "1", "1", "2"]
    assert run("wrr", dests(4, 2), 6) == ["1", "1", "2", "1", "1", "2"]  # gcd 2
    assert run("wrr", dests(0, 0), 1) == ["-"]


def test_lc_wlc_sed_nq_overheads():
    ds = dests(1, 1)
    ds[0].active, ds[1].inactive = 1, 200  # 256 > 200: the second one is "less loaded" for lc/wlc
    assert run("lc", ds, 1) == ["2"] and run("wlc", ds, 1) == ["2"]
    assert run("sed", ds, 1) == ["2"]  # sed ignores inactive: (0+1)/1 < (1+1)/1
    ds = dests(1, 3)
    ds[0].active, ds[1].active = 1, 2  # sed: 2/1 vs 3/3 -> second
    assert run("sed", ds, 1) == ["2"]
    ds = dests(1, 3)
    ds[1].active = 5
    assert run("nq", ds, 1) == ["1"]  # idle dest wins at once
    ds = dests(0, 1)
    assert run("wlc", ds, 1) == ["2"] and run("lc", ds, 1) == ["2"]


def test_sh_fixed_mapping_and_weight_zero():
    ds = dests(1, 1)
    a = run("sh", ds, 5, src=("192.168.1.10", 1))
    assert len(set(a)) == 1
    # bucket table is filled round-robin: bucket k -> dest k % 2
    want = str(sh_hashkey("192.168.1.10") % 2 + 1)
    assert a[0] == want
    idx = int(want) - 1
    ds[idx].weight = 0  # quiesced -> no fallback without sh-fallback
    s = make_scheduler("sh")
    s.update(ds)
    assert s.schedule(ds, ("192.168.1.10", 1), DST) is None
    assert s.schedule(ds, ("192.168.1.10", 1), DST, FLAG_SCHED1) is ds[1 - idx]


def test_sh_spreads_sources_by_weight():
    ds = dests(3, 1)
    s = make_scheduler("sh")
    s.update(ds)
    got = Counter(s.schedule(ds, (f"10.1.{i // 256}.{i % 256}", 1), DST).address for i in range(1024))
    assert got["10.244.0.1"] == 768 and got["10.244.0.2"] == 256  # 192/64 buckets, hash is a bijection mod 256


def test_dh_keys_on_destination():
    ds = dests(1, 1)
    s = make_scheduler("dh")
    s.update(ds)
    picks = {s.schedule(ds, (f"192.168.0.{i}", 1), DST).address for i in range(20)}
    assert len(picks) == 1


def test_mh_table_and_consistency():
    ds = dests(1, 1, 1)
    s = make_scheduler("mh")
    s.update(ds)
    assert len(s.lookup) == MH_TAB_SIZE and None not in s.lookup
    share = Counter(s.lookup)
    assert all(abs(c - MH_TAB_SIZE / 3) < 3 for c in share.values())  # Maglev: near-equal shares
    first = s.schedule(ds, SRC, DST)
    assert all(s.schedule(ds, SRC, DST) is first for _ in range(5))
    # quiesce another dest: table unchanged (last_weight), our source keeps its dest
    other = next(d for d in ds if d is not first)
    other.weight = 0
    before = list(s.lookup)
    s.update(ds)
    assert s.lookup == before and s.schedule(ds, SRC, DST) is first
    # removing a dest moves only its own slots (minimal disruption)
    rest = [d for d in ds if d is not other]
    for d in rest:
        d.weight = 1
    s.update(rest)
    moved = sum(1 for a, b in zip(before, s.lookup, strict=True) if a != b and a != other.key)
    assert moved < MH_TAB_SIZE * 0.05
