"""The userspace data plane on loopback: VIP 127.0.10.1, backends on 127.0.20.x."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest

from labkit.agent.model import FLAG_PERSISTENT, RealServer, VirtualServer
from labkit.agent.sync import Op
from labkit.agent.userspace import UserspaceDataPlane
from tests.conftest import eventually

VIP = "127.0.10.1"


async def _tcp_backend(host: str, name: bytes) -> tuple[asyncio.AbstractServer, int]:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            data = await r.read(100)
            w.write(name + b":" + data)
            await w.drain()
        w.close()

    srv = await asyncio.start_server(handle, host, 0)
    return srv, srv.sockets[0].getsockname()[1]


async def _ask(port: int, payload: bytes = b"hi") -> bytes:
    r, w = await asyncio.open_connection(VIP, port)
    w.write(payload)
    await w.drain()
    data = await r.read(100)
    w.close()
    return data


@pytest.fixture
async def plane():
    dp = UserspaceDataPlane(timeouts={"tcpfin": 0})
    await dp.start()
    yield dp
    await dp.stop()


async def _setup(dp: UserspaceDataPlane, vport: int, backends: list[tuple[str, int]], flags: int = 0,
                 timeout: int = 0, proto: str = "TCP", sched: str = "rr") -> VirtualServer:
    vs = VirtualServer(proto, VIP, vport, sched, flags, timeout)
    dp.apply(Op("add_vs", vs))
    for host, port in backends:
        dp.apply(Op("add_rs", vs, RealServer(host, port)))
    return vs


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((VIP, 0))
        return s.getsockname()[1]


async def test_rr_splits_100_connections_and_counts():
    dp = UserspaceDataPlane(timeouts={"tcpfin": 120})
    await dp.start()
    a, pa = await _tcp_backend("127.0.20.1", b"a")
    b, pb = await _tcp_backend("127.0.20.2", b"b")
    try:
        vport = _free_port()
        await _setup(dp, vport, [("127.0.20.1", pa), ("127.0.20.2", pb)])
        got = Counter()
        for _ in range(100):
            got[(await _ask(vport)).split(b":")[0]] += 1
        assert got == {b"a": 50, b"b": 50}
        # the last connection ends on the data plane's side a moment after the client's: wait for its close
        await eventually(lambda: all(d.active == 0 for d in dp.list()[("TCP", VIP, vport)].destinations),
                         "no active connection left")
        vs = dp.list()[("TCP", VIP, vport)]
        assert vs.stats.conns == 100
        assert vs.stats.inbytes == 200 and vs.stats.outbytes == 100 * 4
        for d in vs.destinations:
            assert d.stats.conns == 50
            # closed connections linger in InActConn for the FIN timeout, as IPVS shows them
            assert d.active == 0 and d.inactive == 50
    finally:
        await dp.stop()
        a.close()
        b.close()


async def test_active_conn_while_open(plane):
    srv, port = await _tcp_backend("127.0.20.1", b"a")
    try:
        vport = _free_port()
        await _setup(plane, vport, [("127.0.20.1", port)])
        r, w = await asyncio.open_connection(VIP, vport)
        w.write(b"x")
        await w.drain()
        assert await r.read(100) == b"a:x"
        # backend closed; meanwhile look at an open connection
        _r2, w2 = await asyncio.open_connection(VIP, vport)
        await eventually(lambda: plane.list()[("TCP", VIP, vport)].destinations[0].active == 1,
                         "the open connection counted active")
        w2.close()
        w.close()
    finally:
        srv.close()


async def test_client_ip_affinity_sends_all_to_one(plane):
    a, pa = await _tcp_backend("127.0.20.1", b"a")
    b, pb = await _tcp_backend("127.0.20.2", b"b")
    try:
        vport = _free_port()
        await _setup(plane, vport, [("127.0.20.1", pa), ("127.0.20.2", pb)], FLAG_PERSISTENT, 10800)
        got = Counter()
        for _ in range(20):
            got[(await _ask(vport)).split(b":")[0]] += 1
        assert len(got) == 1 and sum(got.values()) == 20
        vs = plane.list()[("TCP", VIP, vport)]
        assert sum(d.persistent for d in vs.destinations) == 1
    finally:
        a.close()
        b.close()


async def test_weight_zero_gets_no_new_connections_and_removal_stops_traffic(plane):
    a, pa = await _tcp_backend("127.0.20.1", b"a")
    b, pb = await _tcp_backend("127.0.20.2", b"b")
    try:
        vport = _free_port()
        vs = await _setup(plane, vport, [("127.0.20.1", pa), ("127.0.20.2", pb)])
        plane.apply(Op("edit_rs", vs, RealServer("127.0.20.2", pb, weight=0)))
        got = Counter([(await _ask(vport)).split(b":")[0] for _ in range(10)])
        assert got == {b"a": 10}
        plane.apply(Op("edit_rs", vs, RealServer("127.0.20.2", pb, weight=1)))
        plane.apply(Op("del_rs", vs, RealServer("127.0.20.1", pa)))
        got = Counter([(await _ask(vport)).split(b":")[0] for _ in range(10)])
        assert got == {b"b": 10}
    finally:
        a.close()
        b.close()


async def test_udp_echo_through_vip(plane):
    loop = asyncio.get_running_loop()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, t):
            self.t = t

        def datagram_received(self, data, addr):
            self.t.sendto(b"echo:" + data, addr)

    bt, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.20.3", 0))
    bport = bt.get_extra_info("sockname")[1]
    try:
        vport = _free_port()
        await _setup(plane, vport, [("127.0.20.3", bport)], proto="UDP")
        got: asyncio.Queue[bytes] = asyncio.Queue()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                assert addr == (VIP, vport)
                got.put_nowait(data)

        ct, _ = await loop.create_datagram_endpoint(Client, remote_addr=(VIP, vport))
        ct.sendto(b"ping")
        assert await asyncio.wait_for(got.get(), 5) == b"echo:ping"
        ct.close()
        d = plane.list()[("UDP", VIP, vport)].destinations[0]
        assert d.inactive == 1 and d.active == 0  # UDP flows are always InActConn
        assert d.stats.conns == 1 and d.stats.inpkts == 1 and d.stats.outpkts == 1
    finally:
        bt.close()


async def test_no_destination_resets(plane):
    vport = _free_port()
    await _setup(plane, vport, [])
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        r, _w = await asyncio.open_connection(VIP, vport)
        data = await r.read(10)
        if data == b"":
            raise ConnectionResetError


async def test_no_usable_destination_refuses_instead_of_accepting(plane):
    """Kernel IPVS never completes a handshake it cannot schedule: the client is refused at once, whether the
    virtual server has no destination or only draining ones (weight 0)."""
    srv, port = await _tcp_backend("127.0.20.1", b"a")
    try:
        vport = _free_port()
        vs = await _setup(plane, vport, [])
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(VIP, vport)
        plane.apply(Op("add_rs", vs, RealServer("127.0.20.1", port)))
        assert await _ask(vport) == b"a:hi"
        plane.apply(Op("edit_rs", vs, RealServer("127.0.20.1", port, weight=0)))
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(VIP, vport)
        plane.apply(Op("edit_rs", vs, RealServer("127.0.20.1", port, weight=1)))
        assert await _ask(vport) == b"a:hi"
    finally:
        srv.close()


async def test_destination_refusing_resets_the_client_at_once(plane):
    """The backend refuses (nobody listens on the targetPort): the client gets a reset, not an empty reply."""
    vport = _free_port()
    await _setup(plane, vport, [("127.0.20.1", _free_port())])
    r, w = await asyncio.open_connection(VIP, vport)
    try:
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(r.read(100), 2)  # no request sent: a FIN would read as b""
    finally:
        w.close()


async def test_connection_table_lists_open_closed_and_template_entries():
    dp = UserspaceDataPlane(timeouts={"tcpfin": 120})
    await dp.start()
    a, pa = await _tcp_backend("127.0.20.1", b"a")
    try:
        vport = _free_port()
        await _setup(dp, vport, [("127.0.20.1", pa)], FLAG_PERSISTENT, 600)
        assert await _ask(vport) == b"a:hi"  # one closed connection: TIME_WAIT for the FIN timeout
        _r, w = await asyncio.open_connection(VIP, vport)  # one open connection, not yet answered
        w.write(b"")
        local = w.get_extra_info("sockname")[:2]
        await eventually(lambda: {"ESTABLISHED", "TIME_WAIT"} <= {c["state"] for c in dp.connections()},
                         "an ESTABLISHED and a TIME_WAIT entry")
        conns = dp.connections()
        by_state = {c["state"]: c for c in conns}
        assert set(by_state) == {"ESTABLISHED", "TIME_WAIT", "NONE"}, conns
        est = by_state["ESTABLISHED"]
        assert tuple(est["client"]) == local and est["virtual"] == [VIP, vport]
        assert est["destination"] == ["127.0.20.1", pa] and 890 <= est["expires"] <= 900
        assert 110 <= by_state["TIME_WAIT"]["expires"] <= 120
        tpl = by_state["NONE"]  # the persistence template: the client's address, port 0
        assert tpl["client"] == ["127.0.0.1", 0] and 590 <= tpl["expires"] <= 600
        w.close()
    finally:
        await dp.stop()
        a.close()
