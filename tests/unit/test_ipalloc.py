"""ServiceAllocator: ClusterIP and NodePort allocation with upstream's bands and error texts."""

from __future__ import annotations

import ipaddress
import random

import pytest

from labkit import errors
from labkit.apiserver.ipalloc import ServiceAllocator


def svc(name: str = "nginx", **spec: object) -> dict:
    spec.setdefault("ports", [{"port": 80, "protocol": "TCP", "targetPort": 80}])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": dict(spec)}


def test_bootstrap_static_ips_and_dynamic_from_upper_band() -> None:
    a = ServiceAllocator(rng=random.Random(1))
    k = svc("kubernetes", clusterIP="10.96.0.1")
    dns = svc("kube-dns", clusterIP="10.96.0.10")
    a.allocate(k)
    a.allocate(dns)
    assert k["spec"]["clusterIPs"] == ["10.96.0.1"]
    assert dns["spec"]["clusterIP"] == "10.96.0.10"
    assert dns["spec"]["ipFamilies"] == ["IPv4"] and dns["spec"]["ipFamilyPolicy"] == "SingleStack"
    for i in range(50):
        s = svc(f"s{i}")
        a.allocate(s)
        ip = ipaddress.ip_address(s["spec"]["clusterIP"])
        # the static band of a /16 is the first 256 usable addresses: 10.96.0.1 .. 10.96.1.0
        assert ip > ipaddress.ip_address("10.96.1.0")
        assert ip < ipaddress.ip_address("10.96.255.255")


def test_taken_ip_is_422_with_upstream_text() -> None:
    a = ServiceAllocator()
    a.allocate(svc("kube-dns", clusterIP="10.96.0.10"))
    with pytest.raises(errors.Invalid) as ei:
        a.allocate(svc("other", clusterIP="10.96.0.10"))
    assert ei.value.message == ('Service "other" is invalid: spec.clusterIPs: Invalid value: []string{"10.96.0.10"}: '
                                "failed to allocate IP 10.96.0.10: provided IP is already allocated")
    assert ei.value.causes[0]["field"] == "spec.clusterIPs"
    assert ei.value.causes[0]["reason"] == "FieldValueInvalid"


@pytest.mark.parametrize("ip", ["10.0.0.5", "10.96.0.0", "10.96.255.255"])
def test_out_of_range_ip(ip: str) -> None:
    a = ServiceAllocator()
    with pytest.raises(errors.Invalid) as ei:
        a.allocate(svc("x", clusterIPs=[ip]))
    assert ei.value.message == (f'Service "x" is invalid: spec.clusterIPs: Invalid value: []string{{"{ip}"}}: '
                                f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
                                "The range of valid IPs is 10.96.0.0/16")


def test_headless_and_external_name_get_no_ip() -> None:
    a = ServiceAllocator()
    h = svc("h", clusterIP="None", selector={"app": "x"}, ports=[])
    a.allocate(h)
    assert h["spec"]["clusterIPs"] == ["None"] and h["spec"]["ipFamilyPolicy"] == "SingleStack"
    hs = svc("hs", clusterIP="None")
    a.allocate(hs)
    assert hs["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    e = svc("e", type="ExternalName", externalName="www.example.net")
    a.allocate(e)
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} & set(e["spec"])
    assert not a.ips.taken


def test_undo_and_release_free_the_ip() -> None:
    a = ServiceAllocator()
    s = svc("a", clusterIP="10.96.3.3")
    undo = a.allocate(s)
    assert a.is_allocated_ip("10.96.3.3")
    undo()
    assert not a.is_allocated_ip("10.96.3.3")
    a.allocate(s)
    a.release(s)
    assert not a.is_allocated_ip("10.96.3.3")


def test_node_ports_dynamic_static_and_errors() -> None:
    a = ServiceAllocator(rng=random.Random(3))
    s = svc("np", type="NodePort", ports=[{"port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}])
    a.allocate(s)
    nps = [p["nodePort"] for p in s["spec"]["ports"]]
    # dynamic ports come from above the static band: 2768 ports / 32 = 86
    assert all(30086 <= n <= 32767 for n in nps) and len(set(nps)) == 2
    fixed = svc("fixed", type="NodePort", ports=[{"port": 80, "protocol": "TCP", "nodePort": 30080}])
    a.allocate(fixed)
    with pytest.raises(errors.Invalid) as ei:
        a.allocate(svc("dup", type="NodePort", ports=[{"port": 81, "protocol": "TCP", "nodePort": 30080}]))
    assert ei.value.message == ('Service "dup" is invalid: spec.ports[0].nodePort: Invalid value: 30080: '
                                "provided port is already allocated")
    with pytest.raises(errors.Invalid) as ei:
        a.allocate(svc("low", type="NodePort", ports=[{"port": 81, "protocol": "TCP", "nodePort": 80}]))
    assert ei.value.message == ('Service "low" is invalid: spec.ports[0].nodePort: Invalid value: 80: provided '
                                "port is not in the valid range. The range of valid ports is 30000-32767")
    # the failed creates left no IP behind
    assert len(a.ips.taken) == 2


def test_same_node_port_for_tcp_and_udp_of_one_service() -> None:
    a = ServiceAllocator()
    s = svc("dns", type="NodePort", ports=[{"port": 53, "protocol": "UDP", "nodePort": 30053},
                                           {"port": 53, "protocol": "TCP", "nodePort": 30053}])
    a.allocate(s)
    assert a.is_allocated_port(30053)


def test_reallocate_keeps_ip_and_ports_and_handles_type_changes() -> None:
    a = ServiceAllocator()
    old = svc("s", type="NodePort")
    a.allocate(old)
    ip, np = old["spec"]["clusterIP"], old["spec"]["ports"][0]["nodePort"]
    new = svc("s", type="NodePort")  # a PUT without the allocated values keeps them
    a.reallocate(old, new)
    assert new["spec"]["clusterIP"] == ip and new["spec"]["ports"][0]["nodePort"] == np
    to_cip = svc("s", type="ClusterIP", clusterIP=ip)
    a.reallocate(new, to_cip)
    assert "nodePort" not in to_cip["spec"]["ports"][0] and not a.is_allocated_port(np)
    to_ext = svc("s", type="ExternalName", externalName="x.example.net")
    a.reallocate(to_cip, to_ext)
    assert "clusterIP" not in to_ext["spec"] and not a.is_allocated_ip(ip)
    back = svc("s", type="ClusterIP")
    undo = a.reallocate(to_ext, back)
    assert a.is_allocated_ip(back["spec"]["clusterIP"])
    undo()
    assert not a.is_allocated_ip(back["spec"]["clusterIP"])


def test_reallocate_refuses_changing_ip() -> None:
    a = ServiceAllocator()
    old = svc("s", clusterIP="10.96.5.5")
    a.allocate(old)
    with pytest.raises(errors.Invalid) as ei:
        a.reallocate(old, svc("s", clusterIP="10.96.5.6"))
    assert "may not change once set" in ei.value.message
    assert a.is_allocated_ip("10.96.5.5") and not a.is_allocated_ip("10.96.5.6")


def test_load_rebuilds_state() -> None:
    a = ServiceAllocator()
    stored = [svc("kubernetes", clusterIP="10.96.0.1", clusterIPs=["10.96.0.1"]),
              svc("np", type="NodePort", clusterIP="10.96.7.7",
                  ports=[{"port": 80, "protocol": "TCP", "nodePort": 31000}])]
    a.load(stored)
    assert a.is_allocated_ip("10.96.0.1") and a.is_allocated_ip("10.96.7.7") and a.is_allocated_port(31000)
    with pytest.raises(errors.Invalid):
        a.allocate(svc("again", clusterIP="10.96.7.7"))


def test_small_range_falls_back_to_static_band_when_upper_full() -> None:
    a = ServiceAllocator("10.96.0.0/27", rng=random.Random(0))  # 30 usable, static band 16
    got = set()
    for i in range(30):
        s = svc(f"s{i}")
        a.allocate(s)
        got.add(s["spec"]["clusterIP"])
    assert len(got) == 30
    with pytest.raises(errors.ApiError):
        a.allocate(svc("full"))
