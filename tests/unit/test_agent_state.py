"""The saved userspace table (state.py) and the CLI's error path without an agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.agent.cli import ipvs_main
from labkit.agent.ipvsadm import kernel_hz
from labkit.agent.model import FLAG_PERSISTENT, RealServer, VirtualServer
from labkit.agent.state import TableSaver, load_table, restore_ops, save_table
from labkit.agent.userspace import UserspaceDataPlane


def _table() -> dict:
    vs = VirtualServer("TCP", "10.96.0.20", 80, "rr", FLAG_PERSISTENT, 10800)
    vs.destinations = [RealServer("10.244.0.3", 80), RealServer("10.244.0.2", 80, weight=0)]  # newest first
    udp = VirtualServer("UDP", "10.96.0.10", 53, "rr")
    return {vs.key: vs, udp.key: udp}


def test_saved_table_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "ipvs-table.json"
    save_table(path, _table())
    got = load_table(path)
    want = _table()
    assert list(got) == list(want)
    for key, vs in want.items():
        assert got[key].config_equal(vs)
        assert [(d.address, d.port, d.weight, d.forward) for d in got[key].destinations] == [
            (d.address, d.port, d.weight, d.forward) for d in vs.destinations]
    assert not path.with_name(path.name + ".tmp").exists()


def _shape(table: dict) -> dict:
    return {key: (vs.scheduler, vs.flags, [(d.address, d.port, d.weight) for d in vs.destinations])
            for key, vs in table.items()}


def test_saver_re_encodes_only_what_changed_and_the_file_stays_whole(tmp_path: Path) -> None:
    path = tmp_path / "ipvs-table.json"
    table = _table()
    saver = TableSaver(path)
    saver.save(table)
    web = ("TCP", "10.96.0.20", 80)
    table[web].destinations.insert(0, RealServer("10.244.0.4", 80))        # one more endpoint
    extra = VirtualServer("TCP", "10.96.0.30", 443, "rr")                  # a new Service
    table[extra.key] = extra
    del table[("UDP", "10.96.0.10", 53)]                                   # one gone
    saver.save(table, {web, extra.key, ("UDP", "10.96.0.10", 53)})
    assert _shape(load_table(path)) == _shape(table)
    # a virtual server left out of `changed` keeps what was saved for it last
    table[extra.key].scheduler = "lc"
    saver.save(table, set())
    assert load_table(path)[extra.key].scheduler == "rr"


def test_missing_or_broken_file_is_an_empty_table(tmp_path: Path) -> None:
    assert load_table(tmp_path / "absent.json") == {}
    (tmp_path / "bad.json").write_text("{not json")
    assert load_table(tmp_path / "bad.json") == {}


async def test_restore_keeps_the_kernel_destination_order() -> None:
    # A backend puts an added destination at the head (ip_vs_add_dest), so restoring adds oldest first.
    dp = UserspaceDataPlane(freebind=False)
    await dp.start()
    try:
        vs = VirtualServer("SCTP", "127.0.0.1", 9, "rr")  # SCTP: kept in the table, no socket opened
        vs.destinations = [RealServer("127.0.0.3", 9), RealServer("127.0.0.2", 9)]
        for op in restore_ops({vs.key: vs}):
            dp.apply(op)
        assert [d.address for d in dp.list()[vs.key].destinations] == ["127.0.0.3", "127.0.0.2"]
    finally:
        await dp.stop()


def test_labkit_ipvs_without_an_agent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ipvs_main([], tmp_path) == 1
    assert "does not answer" in capsys.readouterr().err


def test_labkit_ipvs_renders_proc_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = tmp_path / "ip_vs"
    proc.write_text("IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"
                    "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
                    "TCP  0A600001:01BB rr \n  -> AC120002:192B      Masq    1      0          0         \n")
    assert ipvs_main(["--proc", str(proc)], tmp_path) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[3:] == ["TCP  10.96.0.1:443 rr",
                       "  -> 172.18.0.2:6443              Masq    1      0          0         "]


def test_labkit_ipvs_reads_proc_persistence_timeouts_in_jiffies(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    proc = tmp_path / "ip_vs"
    proc.write_text("IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"
                    "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
                    "TCP  0A600032:0050 rr persistent 1080000 FFFFFFFF\n")  # 10800 s on a kernel with HZ=100
    assert ipvs_main(["--proc", str(proc), "--hz", "100"], tmp_path) == 0
    assert capsys.readouterr().out.splitlines()[3:] == ["TCP  10.96.0.50:80 rr persistent 10800"]
    assert ipvs_main(["--proc", str(proc)], tmp_path) == 0  # this kernel's HZ, from /proc/timer_list
    hz = kernel_hz(Path("/proc/timer_list").read_text())
    assert capsys.readouterr().out.splitlines()[3:] == [f"TCP  10.96.0.50:80 rr persistent {1080000 // hz}"]
