"""Kernel backend: model ops → pyroute2 IPVS calls (fake IPVS), and a real run where kernel IPVS exists."""

from __future__ import annotations

import pytest

from labkit.agent.kernel import KernelBackend, dest_spec, kernel_ipvs_available, service_spec
from labkit.agent.model import FLAG_PERSISTENT, RealServer, VirtualServer
from labkit.agent.sync import Op


class FakeIPVS:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def service(self, cmd, service=None):
        self.calls.append(("service", cmd, dict(service)))
        return []

    def dest(self, cmd, service, dest=None):
        self.calls.append(("dest", cmd, dict(service), dict(dest) if dest is not None else None))
        return []


class NoDevice:
    def addresses(self):
        return set()


def test_specs():
    vs = VirtualServer("UDP", "10.96.0.10", 53, "rr", FLAG_PERSISTENT | 0x2, 10800)
    assert service_spec(vs) == {"addr": "10.96.0.10", "port": 53, "protocol": 17, "sched_name": "rr",
                                "flags": {"flags": 1, "mask": 0xFFFF}, "timeout": 10800,
                                "netmask": "255.255.255.255"}
    assert dest_spec(RealServer("10.244.0.5", 8053))["fwd_method"] == 0  # Masq, not pyroute2's default 3


def test_ops_translate_to_pyroute2_calls():
    fake = FakeIPVS()
    be = KernelBackend(fake, NoDevice())
    vs = VirtualServer("TCP", "10.96.0.1", 443, "rr")
    rs = RealServer("172.18.0.2", 6443, weight=0)
    for kind in ("add_vs", "edit_vs", "add_rs", "edit_rs", "del_rs", "del_vs"):
        be.apply(Op(kind, vs, rs if kind.endswith("_rs") else None))
    assert [(c[0], c[1]) for c in fake.calls] == [("service", "add"), ("service", "set"), ("dest", "add"),
                                                  ("dest", "set"), ("dest", "del"), ("service", "del")]
    assert fake.calls[2][3]["weight"] == 0 and fake.calls[2][3]["addr"] == "172.18.0.2"
    assert fake.calls[3][3]["fwd_method"] == 0 and fake.calls[3][3]["weight"] == 0
    assert fake.calls[0][2]["protocol"] == 6 and fake.calls[0][2]["sched_name"] == "rr"


REASON = kernel_ipvs_available()


@pytest.mark.skipif(REASON is not None, reason=REASON or "")
def test_real_kernel_ipvs_in_a_namespace():
    import subprocess

    from labkit.netns import run_in_netns

    ns = "labkit-test-ipvs"
    subprocess.run(["ip", "netns", "add", ns], check=True)

    def body() -> None:
        from pyroute2 import IPVS

        be = KernelBackend(IPVS())
        vs = VirtualServer("TCP", "198.51.100.7", 80, "rr", FLAG_PERSISTENT, 60)
        be.apply(Op("add_vs", vs))
        be.apply(Op("add_rs", vs, RealServer("198.51.100.8", 8080)))
        got = be.list()[vs.key]
        assert got.persistent and got.timeout == 60
        assert [(d.address, d.port, d.forward, d.weight) for d in got.destinations] == [
            ("198.51.100.8", 8080, "Masq", 1)]
        be.apply(Op("del_vs", vs))
        assert be.list() == {}
        be.close()

    try:
        run_in_netns(ns, body)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


@pytest.fixture
def scratch_netns():
    """A network namespace of this test's own (the device's addresses never reach the host's namespace)."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    name = f"lktest-dummy-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_dummy_device_keeps_one_handle_and_survives_the_device_being_recreated(scratch_netns: str) -> None:
    import subprocess

    from labkit.agent.kernel import DummyDevice

    device = DummyDevice(scratch_netns)
    try:
        device.add_many(["10.96.0.10", "10.96.0.11"])                     # netlink, one address at a time
        device.add_many([f"10.96.1.{i}" for i in range(1, 11)])           # `ip -batch` for many
        handle = device._handle
        device.add("10.96.0.10")                                          # already bound: tolerated
        assert device.addresses() == {"10.96.0.10", "10.96.0.11", *(f"10.96.1.{i}" for i in range(1, 11))}
        assert device._handle is handle                                   # the same netlink socket throughout
        device.remove_many(["10.96.0.11"])
        assert "10.96.0.11" not in device.addresses()
        # someone deletes kube-ipvs0 and makes another (a new ifindex): the next bind finds the new one
        subprocess.run(["ip", "-n", scratch_netns, "link", "del", "kube-ipvs0"], check=True)
        subprocess.run(["ip", "-n", scratch_netns, "link", "add", "kube-ipvs0", "type", "bridge"], check=True)
        device.add("10.96.0.12")
        assert device.addresses() == {"10.96.0.12"}
        device.delete()
        assert device.addresses() == set()
    finally:
        device.close()
    assert device._handle is None
