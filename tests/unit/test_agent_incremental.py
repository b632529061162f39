"""Incremental sync: per-Service desired fragments (incremental.py), partial Syncer runs and the agent's choice
between a partial and a full sync. The reference is always the full `compute_desired` over every object."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from labkit.agent.__main__ import Agent
from labkit.agent.desired import compute_desired
from labkit.agent.incremental import DesiredCache
from labkit.agent.model import Table
from labkit.agent.sync import Op, Syncer
from tests.unit.test_agent_sync import MemBackend

NODE = "labkit-control-plane"
NODE_IPS = ["172.18.0.2"]


def svc(name: str, ip: str, ns: str = "default", node_port: int | None = None) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": 80, "protocol": "TCP"}
    spec: dict[str, Any] = {"clusterIP": ip, "clusterIPs": [ip], "ports": [port]}
    if node_port:
        port["nodePort"] = node_port
        spec["type"] = "NodePort"
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def eps(name: str, service: str, *ips: str, ns: str = "default") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]}


def shape(table: Table) -> dict[Any, Any]:
    return {k: (vs.scheduler, vs.flags, sorted((d.address, d.port, d.weight) for d in vs.destinations))
            for k, vs in table.items()}


class World:
    """The API objects, a cache fed with their events, and a backend synced partially."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.slices: dict[tuple[str, str], dict[str, Any]] = {}
        self.cache = DesiredCache(NODE)
        self.backend = MemBackend()
        self.syncer = Syncer(self.backend)

    def put_service(self, obj: dict[str, Any]) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        typ = "MODIFIED" if key in self.services else "ADDED"
        self.services[key] = obj
        self.cache.service_event(typ, obj, None)

    def delete_service(self, ns: str, name: str) -> None:
        self.cache.service_event("DELETED", self.services.pop((ns, name)), None)

    def put_slice(self, obj: dict[str, Any]) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        old = self.slices.get(key)
        self.slices[key] = obj
        self.cache.slice_event("MODIFIED" if old else "ADDED", obj, old)

    def delete_slice(self, ns: str, name: str) -> None:
        old = self.slices.pop((ns, name))
        self.cache.slice_event("DELETED", old, old)

    def expected(self) -> Table:
        return compute_desired(self.services.values(), self.slices.values(), NODE, NODE_IPS).table

    def partial_sync(self) -> list[Op]:
        keys = self.cache.update()
        return self.syncer.sync(self.cache.state(), keys)


def test_partial_syncs_match_a_full_recompute_and_touch_only_changed_services() -> None:
    w = World()
    for i in range(20):
        w.put_service(svc(f"s{i}", f"10.96.1.{i}"))
        w.put_slice(eps(f"s{i}-1", f"s{i}", f"10.244.0.{10 + i}"))
    w.syncer.sync(w.cache.rebuild(w.services.values(), w.slices.values(), NODE_IPS))
    assert shape(w.backend.table) == shape(w.expected()) and len(w.backend.table) == 20

    def step() -> set[str]:
        ops = w.partial_sync()
        assert shape(w.backend.table) == shape(w.expected())
        assert w.cache.state().bind_addresses == compute_desired(
            w.services.values(), w.slices.values(), NODE, NODE_IPS).bind_addresses
        assert w.cache.dirty == set()
        return {op.vs.address for op in ops}

    # one more endpoint in one slice: only that Service's virtual server is touched
    w.put_slice(eps("s3-1", "s3", "10.244.0.13", "10.244.0.99"))
    assert step() == {"10.96.1.3"}
    # a second slice of the same Service, then the first one deleted
    w.put_slice(eps("s3-2", "s3", "10.244.0.98"))
    assert step() == {"10.96.1.3"}
    w.delete_slice("default", "s3-1")
    assert step() == {"10.96.1.3"}
    assert {d.address for d in w.backend.table[("TCP", "10.96.1.3", 80)].destinations} == {"10.244.0.98"}
    # a slice relabelled from s4 to s5 leaves s4 and joins s5
    moved = eps("s4-1", "s5", "10.244.0.14")
    w.put_slice(moved)
    assert step() == {"10.96.1.4", "10.96.1.5"}
    # a Service deleted, a NodePort Service added, a slice that precedes its (selectorless) Service
    w.delete_service("default", "s7")
    assert step() == {"10.96.1.7"}
    w.put_service(svc("np", "10.96.2.1", node_port=30080))
    assert step() == {"10.96.2.1", "172.18.0.2"}
    w.put_slice(eps("late-1", "late", "203.0.113.10"))
    assert step() == set()
    w.put_service(svc("late", "10.96.2.2"))
    assert step() == {"10.96.2.2"}
    # two Services bind the same external IP (on ports of their own): deleting one keeps the address bound
    for port, name, ip in ((80, "ext1", "10.96.3.1"), (81, "ext2", "10.96.3.2")):
        shared = svc(name, ip)
        shared["spec"]["externalIPs"] = ["203.0.113.50"]
        shared["spec"]["ports"][0]["port"] = port
        w.put_service(shared)
    step()
    assert "203.0.113.50" in w.cache.state().bind_addresses
    w.delete_service("default", "ext1")
    step()
    assert "203.0.113.50" in w.cache.state().bind_addresses
    w.delete_service("default", "ext2")
    step()
    assert "203.0.113.50" not in w.cache.state().bind_addresses
    # nothing changed: nothing touched
    assert w.cache.update() == set()


class FakeInformer:
    def __init__(self, objs: list[dict[str, Any]]) -> None:
        self.objs = objs

    def items(self) -> list[dict[str, Any]]:
        return list(self.objs)


class FailingOnce(MemBackend):
    fail = False

    def apply(self, op: Op) -> None:
        if self.fail:
            self.fail = False
            raise OSError("boom")
        super().apply(op)


def test_agent_runs_full_sync_first_then_partial_then_full_when_due_or_after_a_failure() -> None:
    services = [svc("a", "10.96.1.1"), svc("b", "10.96.1.2")]
    slices = [eps("a-1", "a", "10.244.0.2")]
    backend = FailingOnce()
    agent = Agent(None, NODE, backend, node_ips=NODE_IPS)
    agent.services, agent.slices = FakeInformer(services), FakeInformer(slices)
    agent.sync()
    assert agent.last_sync["full"] and shape(backend.table) == shape(compute_desired(services, slices, NODE, NODE_IPS)
                                                                      .table)
    # an event reaches the cache (the informer handler) and the informer's store alike
    new = eps("a-1", "a", "10.244.0.2", "10.244.0.3")
    agent.cache.slice_event("MODIFIED", new, copy.deepcopy(slices[0]))
    slices[0] = new
    agent.sync()
    assert not agent.last_sync["full"] and agent.last_sync["ops"] == 1
    assert len(backend.table[("TCP", "10.96.1.1", 80)].destinations) == 2
    # an operation fails: the next sync is a full one, which repairs the table
    backend.fail = True
    new = eps("a-1", "a", "10.244.0.4")
    agent.cache.slice_event("MODIFIED", new, copy.deepcopy(slices[0]))
    slices[0] = new
    agent.sync()
    assert not agent.last_sync["full"]
    agent.sync()
    assert agent.last_sync["full"]
    assert shape(backend.table) == shape(compute_desired(services, slices, NODE, NODE_IPS).table)
    agent.sync()
    assert not agent.last_sync["full"] and agent.last_sync["ops"] == 0
    # the period elapsed: full again
    agent.full_period = 0.0
    agent.sync()
    assert agent.last_sync["full"]


async def test_agent_saves_a_burst_once_at_a_pace_bounded_by_the_saves_cost_and_flushes_on_stop(tmp_path) -> None:
    from labkit.agent.state import load_table

    state_file = tmp_path / "ipvs-table.json"
    services = [svc("a", "10.96.1.1")]
    agent = Agent(None, NODE, MemBackend(), node_ips=NODE_IPS, state_file=str(state_file))
    agent.services, agent.slices = FakeInformer(services), FakeInformer([])
    agent.sync()                                   # the first save comes 0.1 s after the first change
    assert agent._save_handle is not None and not state_file.exists()
    agent.flush_state()                            # a clean stop saves what is pending at once
    assert set(load_table(state_file)) == {("TCP", "10.96.1.1", 80)}
    # a save that took 50 ms: the next one waits 20 times as long, however many syncs come meanwhile
    agent._last_save_seconds = 0.05
    loop = asyncio.get_running_loop()
    for i in range(2, 5):
        services.append(svc(f"s{i}", f"10.96.1.{i}"))
        agent.cache.service_event("ADDED", services[-1])
        agent.sync()
    handle = agent._save_handle
    assert handle is not None and handle.when() - loop.time() > 0.9
    assert set(load_table(state_file)) == {("TCP", "10.96.1.1", 80)}   # not saved yet
    agent.flush_state()
    assert len(load_table(state_file)) == 4 and agent._save_handle is None
