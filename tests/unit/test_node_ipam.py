"""Pod IP allocation: round robin like host-local, persisted, never reusing a live pod's IP."""

from labkit.node.ipam import IPAM


def test_round_robin_and_persistence(tmp_path):
    ipam = IPAM(tmp_path / "ipam.json")
    assert ipam.allocate("a") == "10.244.0.2"
    assert ipam.allocate("b") == "10.244.0.3"
    assert ipam.allocate("a") == "10.244.0.2"  # idempotent
    ipam.release("a")
    assert ipam.allocate("c") == "10.244.0.4"  # a released IP is not handed out again right away
    again = IPAM(tmp_path / "ipam.json")  # a restarted node agent
    assert again.ip_of("b") == "10.244.0.3" and again.ip_of("c") == "10.244.0.4"


def test_wraps_around_but_skips_live_pods(tmp_path):
    ipam = IPAM(tmp_path / "ipam.json", subnet="10.244.0.0/29")  # hosts .1-.6, .1 is the gateway
    assert [ipam.allocate(u) for u in "abcde"] == [f"10.244.0.{i}" for i in range(2, 7)]
    ipam.release("c")
    assert ipam.allocate("f") == "10.244.0.4"
    try:
        ipam.allocate("g")
    except RuntimeError as exc:
        assert "no free pod IP" in str(exc)
    else:
        raise AssertionError("the range is full")
