"""labkit.lab.results: tables that are DataFrames and print as the tools print them."""

from __future__ import annotations

from labkit.agent.ipvsadm import render_connections, render_list
from labkit.agent.model import FLAG_PERSISTENT, Connection, RealServer, VirtualServer
from labkit.lab.results import ConnectionTable, IpvsTable, Output, Requests


def _table() -> list[VirtualServer]:
    return [VirtualServer("TCP", "10.102.97.154", 80, destinations=[RealServer("192.168.76.142", 80, active=1),
                                                                     RealServer("192.168.76.141", 80, weight=0)]),
            VirtualServer("UDP", "10.96.0.10", 53, flags=FLAG_PERSISTENT, timeout=10800),
            VirtualServer("TCP", "10.96.0.1", 443, destinations=[RealServer("172.18.0.2", 6443)])]


def test_ipvs_table_is_a_frame_that_prints_as_ipvsadm() -> None:
    vss = _table()
    t = IpvsTable.from_model(vss)
    assert len(t) == 4  # one row per real server; the UDP one without any keeps one row
    assert str(t) == repr(t) == render_list(vss)
    assert "persistent 10800" in str(t) and "<table" in t._repr_html_()
    assert t.real_servers("10.102.97.154:80") == ["192.168.76.141:80", "192.168.76.142:80"]
    assert t.real_servers("10.102.97.154:80", weighted=True) == ["192.168.76.142:80"]
    assert t.virtual_servers() == ["10.102.97.154:80", "10.96.0.10:53", "10.96.0.1:443"]
    one = t[t["virtual"] == "10.96.0.1:443"]
    assert isinstance(one, IpvsTable) and str(one) == render_list([vss[2]])


def test_connection_table_prints_as_ipvsadm_lnc() -> None:
    conns = [Connection("TCP", ("10.244.0.9", 40000), ("10.96.0.20", 80), ("10.244.0.5", 80), "ESTABLISHED", 899)]
    t = ConnectionTable.from_model(conns)
    assert str(t) == render_connections(conns) and t["destination"].tolist() == ["10.244.0.5:80"]


def test_requests_counts_and_plot() -> None:
    r = Requests([{"pod": "a", "status": 200, "destination": None, "ms": 1.0, "error": None},
                  {"pod": "b", "status": 200, "destination": None, "ms": 1.0, "error": None},
                  {"pod": "a", "status": 200, "destination": None, "ms": 1.0, "error": None},
                  {"pod": None, "status": None, "destination": None, "ms": 1.0, "error": "timed out"}])
    assert r.counts().to_dict() == {"a": 2, "b": 1} and r.errors == ["timed out"]
    assert str(r).splitlines() == ["a    2", "b    1", "1 of 4 requests failed: timed out"]
    svg = r.plot()._repr_svg_()
    assert svg.startswith("<?xml") and "<svg" in svg


def test_output_shows_as_itself() -> None:
    out = Output("NAME   READY\nweb-0  1/1\n")
    assert repr(out) == str(out) and "web-0" in out and out._repr_html_().startswith("<pre>")
