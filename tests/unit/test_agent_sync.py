"""diff() and the Syncer's graceful termination, against an in-memory backend."""

from __future__ import annotations

from labkit.agent.desired import DesiredState
from labkit.agent.model import FLAG_PERSISTENT, RealServer, Table, VirtualServer
from labkit.agent.sync import Op, Syncer, diff


class MemBackend:
    def __init__(self) -> None:
        self.table: Table = {}
        self.bound: set[str] = {"10.96.9.9"}
        self.log: list[str] = []

    def list(self) -> Table:
        return self.table

    def apply(self, op: Op) -> None:
        self.log.append(str(op))
        if op.kind == "add_vs":
            self.table[op.vs.key] = op.vs.copy_config()
        elif op.kind == "edit_vs":
            self.table[op.vs.key].scheduler = op.vs.scheduler
        elif op.kind == "del_vs":
            del self.table[op.vs.key]
        elif op.kind == "add_rs":
            self.table[op.vs.key].destinations.append(RealServer(op.rs.address, op.rs.port, op.rs.weight))
        elif op.kind == "edit_rs":
            self.table[op.vs.key].dest(*op.rs.key).weight = op.rs.weight
        else:
            vs = self.table[op.vs.key]
            vs.destinations.remove(vs.dest(*op.rs.key))

    def bound_addresses(self) -> set[str]:
        return set(self.bound)

    def bind(self, a: str) -> None:
        self.bound.add(a)

    def unbind(self, a: str) -> None:
        self.bound.discard(a)


def vs(proto: str = "TCP", *ips: str, sched: str = "rr") -> VirtualServer:
    return VirtualServer(proto, "10.96.0.1", 80, sched, destinations=[RealServer(ip, 8080) for ip in ips])


def state(*vss: VirtualServer) -> DesiredState:
    return DesiredState({v.key: v for v in vss}, {v.address for v in vss})


def test_diff_minimal():
    want = {vs("TCP", "10.244.0.1", "10.244.0.2").key: vs("TCP", "10.244.0.1", "10.244.0.2")}
    assert [o.kind for o in diff(want, {})] == ["add_vs", "add_rs", "add_rs"]
    assert diff(want, {k: vs("TCP", "10.244.0.2", "10.244.0.1") for k in want}) == []
    have = vs("TCP", "10.244.0.1", "10.244.0.3", sched="wlc")
    have.destinations[0].weight = 0
    kinds = sorted(str(o) for o in diff(want, {have.key: have}))
    assert kinds == sorted(["edit_vs TCP 10.96.0.1:80", "del_rs TCP 10.96.0.1:80 -> 10.244.0.3:8080 w1",
                            "add_rs TCP 10.96.0.1:80 -> 10.244.0.2:8080 w1",
                            "edit_rs TCP 10.96.0.1:80 -> 10.244.0.1:8080 w1"])
    p = vs("TCP")
    p.flags, p.timeout = FLAG_PERSISTENT, 10800
    assert [o.kind for o in diff({p.key: p}, {p.key: vs("TCP")})] == ["edit_vs"]
    assert [o.kind for o in diff({}, {p.key: p})] == ["del_vs"]


def test_graceful_termination_tcp_udp_and_return():
    be = MemBackend()
    s = Syncer(be)
    s.sync(state(vs("TCP", "10.244.0.1", "10.244.0.2"), vs("UDP", "10.244.0.1", "10.244.0.2")))
    assert be.bound == {"10.96.0.1"}  # stale 10.96.9.9 unbound
    tcp, udp = be.table[("TCP", "10.96.0.1", 80)], be.table[("UDP", "10.96.0.1", 80)]
    tcp.dest("10.244.0.2", 8080).inactive = 3
    udp.dest("10.244.0.2", 8080).inactive = 3
    s.sync(state(vs("TCP", "10.244.0.1"), vs("UDP", "10.244.0.1")))
    assert tcp.dest("10.244.0.2", 8080).weight == 0  # TCP with connections: drains at weight 0
    assert udp.dest("10.244.0.2", 8080) is None  # UDP: deleted at once
    assert s.process_graceful() == []  # still has connections
    s.sync(state(vs("TCP", "10.244.0.1"), vs("UDP", "10.244.0.1")))  # draining RS is left alone
    assert tcp.dest("10.244.0.2", 8080).weight == 0
    tcp.dest("10.244.0.2", 8080).inactive = 0
    assert [o.kind for o in s.process_graceful()] == ["del_rs"]
    assert tcp.dest("10.244.0.2", 8080) is None


def test_returning_endpoint_is_readded():
    be = MemBackend()
    s = Syncer(be)
    s.sync(state(vs("TCP", "10.244.0.1", "10.244.0.2")))
    be.table[("TCP", "10.96.0.1", 80)].dest("10.244.0.2", 8080).active = 1
    s.sync(state(vs("TCP", "10.244.0.1")))
    ops = s.sync(state(vs("TCP", "10.244.0.1", "10.244.0.2")))
    assert [str(o) for o in ops] == ["del_rs TCP 10.96.0.1:80 -> 10.244.0.2:8080 w1",
                                     "add_rs TCP 10.96.0.1:80 -> 10.244.0.2:8080 w1"]
    assert be.table[("TCP", "10.96.0.1", 80)].dest("10.244.0.2", 8080).weight == 1
    assert not s.terminating


def test_no_connections_deleted_at_once_and_vs_removed():
    be = MemBackend()
    s = Syncer(be)
    s.sync(state(vs("TCP", "10.244.0.1", "10.244.0.2")))
    s.sync(state(vs("TCP", "10.244.0.1")))
    assert [d.address for d in be.table[("TCP", "10.96.0.1", 80)].destinations] == ["10.244.0.1"]
    s.sync(state())
    assert be.table == {} and be.bound == set()
