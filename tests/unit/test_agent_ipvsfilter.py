"""KUBE-IPVS-FILTER's transactions: the whole table first, then only what changed."""

from __future__ import annotations

from labkit.agent.ipvsfilter import TABLE, IpvsFilter


def test_first_the_whole_table_then_only_changes() -> None:
    f = IpvsFilter()
    f._want = (frozenset({"10.96.0.1", "10.96.0.10"}),
               frozenset({("TCP", "10.96.0.1", 443), ("UDP", "10.96.0.10", 53)}))
    first = f.transaction()
    assert first[:2] == [f"add table {TABLE}", f"delete table {TABLE}"]  # replaces what an earlier agent left
    assert f"add rule {TABLE} input ip daddr . meta l4proto . th dport @services return" in first
    assert f"add rule {TABLE} input ct state new ip daddr @ipvs-ips reject" in first
    assert f"add element {TABLE} services {{ 10.96.0.10 . udp . 53 }}" in first
    f._have = f._want
    assert f.transaction() == []
    f._want = (frozenset({"10.96.0.1"}), frozenset({("TCP", "10.96.0.1", 443), ("TCP", "10.96.0.1", 6443)}))
    assert f.transaction() == [f"delete element {TABLE} ipvs-ips {{ 10.96.0.10 }}",
                               f"delete element {TABLE} services {{ 10.96.0.10 . udp . 53 }}",
                               f"add element {TABLE} services {{ 10.96.0.1 . tcp . 6443 }}"]
