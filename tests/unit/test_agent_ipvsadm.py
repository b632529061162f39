"""ipvsadm -L -n text byte for byte, --stats/--rate, JSON, and /proc/net/ip_vs."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.agent.ipvsadm import kernel_hz, largenum, parse_proc, render_json, render_list, render_proc
from labkit.agent.model import FLAG_PERSISTENT, RealServer, Stats, VirtualServer

BLOG = (
    "IP Virtual Server version 1.2.1 (size=4096)\n"
    "Prot LocalAddress:Port Scheduler Flags\n"
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
    "TCP  10.102.128.4:3080 rr persistent 10800\n"
    "  -> 10.244.0.235:8080            Masq    1      0          0         \n"
)


def test_list_matches_the_blog_listing():
    vs = VirtualServer("TCP", "10.102.128.4", 3080, "rr", FLAG_PERSISTENT, 10800,
                       destinations=[RealServer("10.244.0.235", 8080)])
    assert render_list([vs]) == BLOG


def test_sorting_and_plain_vs_line():
    a = VirtualServer("UDP", "10.96.0.10", 53, destinations=[RealServer("10.244.0.3", 53, active=0, inactive=7)])
    b = VirtualServer("TCP", "10.96.0.10", 53,
                      destinations=[RealServer("10.244.0.9", 53), RealServer("10.244.0.10", 53)])
    c = VirtualServer("TCP", "10.96.0.1", 443, destinations=[RealServer("172.18.0.2", 6443, active=12)])
    out = render_list([a, b, c]).splitlines(keepends=True)[3:]
    assert out == [
        "TCP  10.96.0.1:443 rr\n",
        "  -> 172.18.0.2:6443              Masq    1      12         0         \n",
        "TCP  10.96.0.10:53 rr\n",
        "  -> 10.244.0.9:53                Masq    1      0          0         \n",
        "  -> 10.244.0.10:53               Masq    1      0          0         \n",
        "UDP  10.96.0.10:53 rr\n",
        "  -> 10.244.0.3:53                Masq    1      0          7         \n",
    ]


def test_stats_and_rate():
    vs = VirtualServer("TCP", "10.96.0.1", 443, stats=Stats(5, 100, 90, 123456789, 2_000_000_000),
                       destinations=[RealServer("172.18.0.2", 6443, stats=Stats(5, 100, 90, 1000, 2000))])
    lines = render_list([vs], stats=True).splitlines(keepends=True)
    assert lines[1] == "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
    assert lines[2] == "  -> RemoteAddress:Port\n"
    # %-33s then five %9llu columns (K/M scaled from 10^8 on)
    assert lines[3] == "TCP  10.96.0.1:443" + " " * 15 + "        5      100       90  123456K    2000M\n"
    assert lines[4] == "  -> 172.18.0.2:6443" + " " * 13 + "        5      100       90     1000     2000\n"
    exact = render_list([vs], stats=True, exact=True).splitlines()[3]
    assert exact.endswith(" 123456789 2000000000")
    rate = render_list([vs], rate=True).splitlines(keepends=True)
    assert rate[1] == "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n"
    # RS rate row: "  -> %-28s %8u %8u %8u" then two largenums
    assert rate[4] == "  -> 172.18.0.2:6443" + " " * 13 + "        0        0        0        0        0\n"
    assert largenum(99_999_999) == " 99999999" and largenum(10**15) == "    1000T"


def test_json_form():
    vs = VirtualServer("TCP", "10.96.0.1", 443, "rr", FLAG_PERSISTENT, 10800,
                       destinations=[RealServer("172.18.0.2", 6443, active=1, inactive=2)])
    j = render_json([vs])[0]
    assert {k: j[k] for k in ("protocol", "address", "port", "scheduler", "persistent")} == {
        "protocol": "TCP", "address": "10.96.0.1", "port": 443, "scheduler": "rr", "persistent": 10800}
    d = j["destinations"][0]
    assert {k: d[k] for k in ("address", "port", "forward", "weight", "active", "inactive")} == {
        "address": "172.18.0.2", "port": 6443, "forward": "Masq", "weight": 1, "active": 1, "inactive": 2}
    assert VirtualServer.from_dict(j).config_equal(vs)


def test_proc_render_and_parse_octavia_lines():
    text = ("IP Virtual Server version 1.2.1 (size=4096)\n"
            "Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
            "UDP  0A000002:0050 sh  \n"
            "  -> 0A000063:0052      Masq    13     1          0         \n"
            "TCP  0A660404:0C08 rr  persistent 2700000 FFFFFFFF\n"
            "  -> 0AF400EB:1F90      Masq    1      0          0         \n")
    vss = parse_proc(text, hz=250)  # the kernel prints the timeout in jiffies: 10800 s at HZ=250
    assert [(v.protocol, v.address, v.port, v.scheduler, v.timeout) for v in vss] == [
        ("UDP", "10.0.0.2", 80, "sh", 0), ("TCP", "10.102.4.4", 3080, "rr", 10800)]
    d = vss[0].destinations[0]
    assert (d.address, d.port, d.forward, d.weight, d.active, d.inactive) == ("10.0.0.99", 82, "Masq", 13, 1, 0)
    assert vss[1].persistent and vss[1].netmask == "255.255.255.255"
    assert render_proc(vss, hz=250) == text
    assert "TCP  10.102.4.4:3080 rr persistent 10800" in render_list(vss).splitlines()  # ipvsadm: seconds
    with pytest.raises(ValueError, match="jiffies"):
        parse_proc(text)  # a persistent timeout cannot be read without HZ


def test_kernel_hz_from_timer_list() -> None:
    real = (Path(__file__).parent / "data" / "timer_list-hz250.txt").read_text()  # a CONFIG_HZ=250 kernel's
    assert kernel_hz(real) == 250
    # jiffies start at 2**32 - 300 * HZ: one hour after boot, HZ=1000 and HZ=100
    assert kernel_hz(f"now at 3600000000000 nsecs\njiffies: {2**32 + 1000 * 3300}\n") == 1000
    assert kernel_hz(f"now at 3600000000000 nsecs\n\njiffies: {2**32 + 100 * 3300 + 7}\n") == 100
    with pytest.raises(ValueError, match="after boot"):
        kernel_hz(f"now at 301000000000 nsecs\njiffies: {2**32 + 250}\n")
    with pytest.raises(ValueError, match="none of"):
        kernel_hz(f"now at 3600000000000 nsecs\njiffies: {2**32 + 600 * 3300}\n")
    with pytest.raises(ValueError, match="shows no"):
        kernel_hz("Timer List Version: v0.10\n")


def test_connection_table_prints_like_ipvsadm_lnc_and_round_trips_proc():
    from labkit.agent.ipvsadm import parse_proc_connections, render_connections, render_proc_connections
    from labkit.agent.model import Connection

    conns = [Connection("TCP", ("192.168.56.1", 56954), ("192.168.56.200", 80), ("192.168.56.102", 80),
                        "ESTABLISHED", 231),
             Connection("TCP", ("192.168.56.1", 57322), ("192.168.56.200", 80), ("192.168.56.102", 80),
                        "FIN_WAIT", 118),
             Connection("TCP", ("10.244.0.5", 0), ("10.96.0.100", 80), ("10.244.0.6", 8080), "NONE", 10793)]
    # Lines from a real `ipvsadm -lnc` (the first two) and a persistence template row.
    assert render_connections(conns) == (
        "IPVS connection entries\n"
        "pro expire state       source             virtual            destination\n"
        "TCP 03:51  ESTABLISHED 192.168.56.1:56954 192.168.56.200:80  192.168.56.102:80\n"
        "TCP 01:58  FIN_WAIT    192.168.56.1:57322 192.168.56.200:80  192.168.56.102:80\n"
        "TCP 179:53 NONE        10.244.0.5:0       10.96.0.100:80     10.244.0.6:8080\n")
    proc = render_proc_connections(conns)
    assert proc.splitlines()[1] == "TCP C0A83801 DE7A C0A838C8 0050 C0A83866 0050 ESTABLISHED     231"
    assert parse_proc_connections(proc) == conns
