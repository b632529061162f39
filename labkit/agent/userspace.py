"""The userspace IPVS data plane: the virtual-server table served by an asyncio proxy.

For each TCP virtual server a listening socket on VIP:port, for each UDP one a datagram socket. Every new TCP
connection or new UDP flow (client address) picks a destination with the service's scheduler (kernel semantics,
see schedulers.py), honouring persistence templates (ClientIP affinity), then the proxy connects and splices.

How it counts, compared with kernel IPVS (net/netfilter/ipvs/ip_vs_conn.c, ip_vs_proto_tcp.c):
- A new TCP connection counts in InActConn until the proxy's connection to the destination is established, then
  in ActiveConn (the kernel: SYN_RECV → ESTABLISHED). At the first FIN from either side it moves back to InActConn
  and stays there `tcp_fin_timeout` seconds after both sides have closed (the kernel's FIN_WAIT/TIME_WAIT, 120 s by
  default; pass a smaller value to scale time down, the table then says so via `timeouts()`).
- A UDP flow counts in InActConn for its whole life and expires `udp_timeout` (300 s) after its last datagram.
- Persistence templates (one per client address, masked by the service netmask) count in PersistConn; a template
  lives `timeout` seconds after its last use and while it still controls connections. As with
  `expire_quiescent_template=1`, a template whose destination has weight 0 (or is gone) is dropped on use.
- Stats: conns; packets are approximated by reads (client→dest = in, dest→client = out); bytes are exact
  payload bytes. Rates are 2-second averages (the kernel uses a 2 s EWMA estimator).
- Deleting a destination closes its connections (kube-proxy sets `expire_nodest_conn=1`).
- The client's address: kernel IPVS NAT rewrites only the destination, so a backend pod sees the client pod's
  address and port. Given `source_policy` (transparent.py), the proxy's connection to a pod destination is made
  from the client pod's own address and port (IP_TRANSPARENT) whenever kube-proxy would not masquerade, and from
  the node's address otherwise: a client that is not a pod (the node, off-cluster), hairpin (the client is the
  chosen destination: KUBE-LOOP-BACK), destinations outside the pod network. Replies find their way back to
  the proxy through the node's TPROXY routing (transparent.install_return_path). Without a policy every
  destination sees the node's address (the proxy's socket), as before.
- Not like the kernel: SCTP services are accepted in the table but not served; a destination that is a node
  address (hostNetwork, e.g. the API server) sees the node's address, not the client pod's.

The proxy serves the network namespace it runs in: the agent process joins the node's namespace at start, as
kube-proxy runs with hostNetwork, so no per-socket namespace switch costs anything on the data path. Given
`netns`, it instead makes every socket inside that namespace through `labkit.netns.NetnsSockets` (one
worker thread joined to it), leaving the caller where it is (used by tests and tools).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import errno
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit.agent.ipvsfilter import IpvsFilter
from labkit.agent.model import RealServer, Table, VirtualServer, VSKey
from labkit.agent.schedulers import Scheduler, make_scheduler
from labkit.agent.sync import Op
from labkit.agent.transparent import SourcePolicy, transparent_socket

log = logging.getLogger(__name__)

IP_FREEBIND = 15
READ_SIZE = 256 * 1024
UDP_READ_SIZE = 65535

DEFAULT_TIMEOUTS = {"tcp": 900, "tcpfin": 120, "udp": 300}
SYN_RECV_TIMEOUT = 60  # the kernel's tcp_timeouts[IP_VS_TCP_S_SYN_RECV]


class _LocalSockets:
    """Sockets in the calling thread's own network namespace (the agent normally lives in the node's)."""

    netns: str | None = None

    @staticmethod
    def socket(family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        return socket.socket(family, type)

    def close(self) -> None:
        pass


def make_sockets(netns: str | None) -> Any:
    """Where the data plane makes its sockets: a named netns (one worker thread joined to it) or here."""
    if not netns:
        return _LocalSockets()
    from labkit.netns import NetnsSockets
    from labkit.node.names import Names

    sockets = NetnsSockets(Names.netns_path(netns))
    return sockets


@dataclass(eq=False)
class Template:
    """A persistence template: client (masked) → destination."""

    dest: RealServer
    expires: float
    n_control: int = 0


@dataclass(eq=False)
class ServiceRuntime:
    """One virtual server being served: its live model object, scheduler, templates and sockets."""

    vs: VirtualServer  # destinations in kernel order (newest first); counters live on these objects
    scheduler: Scheduler
    templates: dict[str, Template] = field(default_factory=dict)
    server: Any = None  # asyncio.Server (TCP)
    listen_sock: socket.socket | None = None
    conns: dict[tuple[str, int], set[Any]] = field(default_factory=dict)  # dest key -> live TCP conns / UDP flows
    udp_flows: dict[Any, UdpFlow] = field(default_factory=dict)
    lingering: collections.deque[Any] = field(default_factory=collections.deque)  # closed TCP conns, oldest first


class _Conn:
    """Bookkeeping of one proxied TCP connection (IPVS conn states reduced to: syn, est, closing)."""

    __slots__ = ("client", "client_addr", "dest", "last", "plane", "rt", "state", "template")

    def __init__(self, plane: UserspaceDataPlane, rt: ServiceRuntime, dest: RealServer, tpl: Template | None,
                 client: _Side, client_addr: tuple[str, int] = ("", 0)):
        self.plane, self.rt, self.dest, self.template, self.client = plane, rt, dest, tpl, client
        self.client_addr = client_addr
        self.state = "syn"
        self.last = time.monotonic()  # the last state change or payload: the kernel re-arms its timer then
        dest.inactive += 1
        dest.stats.conns += 1
        rt.vs.stats.conns += 1
        if tpl is not None:
            tpl.n_control += 1

    def established(self) -> None:
        if self.state == "syn":
            self.state = "est"
            self.last = time.monotonic()
            self.dest.inactive -= 1
            self.dest.active += 1

    def fin(self) -> None:
        if self.state == "est":
            self.dest.active -= 1
            self.dest.inactive += 1
        self.state = "closing" if self.state != "gone" else "gone"
        self.last = time.monotonic()

    def closed(self) -> None:
        """Both sides gone: linger in InActConn for the FIN timeout, then expire."""
        if self.state == "gone":
            return
        self.fin()
        self.state = "gone"
        if self.template is not None:
            self.template.n_control -= 1
        self.plane._linger(self.dest, self.plane.timeouts["tcpfin"])
        self.rt.lingering.append(self)  # listed as TIME_WAIT until it expires

    def close(self) -> None:
        """Reset both sides (expire_nodest_conn / service deleted)."""
        for side in (self.client, self.client.peer):
            if side is not None and side.transport is not None:
                _reset(side.transport)


class _Side(asyncio.Protocol):
    """One side of a spliced TCP connection; `peer` is the other side's protocol."""

    __slots__ = ("buffer", "conn", "eof", "is_client", "peer", "plane", "rt", "transport")

    def __init__(self, plane: UserspaceDataPlane, rt: ServiceRuntime, is_client: bool) -> None:
        self.plane, self.rt, self.is_client = plane, rt, is_client
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.conn: _Conn | None = None
        self.buffer: list[bytes] = []
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.is_client:
            self.plane._accepted(self)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        if conn is not None:
            conn.last = time.monotonic()
            n = len(data)
            if self.is_client:
                conn.dest.stats.inpkts += 1
                conn.dest.stats.inbytes += n
                self.rt.vs.stats.inpkts += 1
                self.rt.vs.stats.inbytes += n
            else:
                conn.dest.stats.outpkts += 1
                conn.dest.stats.outbytes += n
                self.rt.vs.stats.outpkts += 1
                self.rt.vs.stats.outbytes += n
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)
        else:
            self.buffer.append(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.conn is not None:
            self.conn.fin()
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.can_write_eof():
            peer.transport.write_eof()
            if peer.eof:
                self.transport.close()  # type: ignore[union-attr]
                peer.transport.close()
            return True
        return False

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            if exc is None:
                peer.transport.close()
            else:
                peer.transport.abort()
        if self.conn is not None:
            self.conn.closed()
            conns = self.rt.conns.get(self.conn.dest.key)
            if conns is not None:
                conns.discard(self.conn)


class UdpFlow:
    """A UDP 'connection': one client address bound to one destination through a connected socket."""

    __slots__ = ("client", "dest", "last", "plane", "rt", "sock", "template")

    def __init__(self, plane: UserspaceDataPlane, rt: ServiceRuntime, client: Any, dest: RealServer,
                 tpl: Template | None) -> None:
        self.plane, self.rt, self.client, self.dest, self.template = plane, rt, client, dest, tpl
        self.last = time.monotonic()
        fam = socket.AF_INET6 if ":" in dest.address else socket.AF_INET
        if plane.preserve_source(client[0], dest.address, rt.vs.key):
            self.sock = transparent_socket(plane.sockets.socket, fam, socket.SOCK_DGRAM, (client[0], client[1]))
        else:
            self.sock = plane.sockets.socket(fam, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        try:
            self.sock.connect((dest.address, dest.port))
        except OSError:
            self.sock.close()
            raise
        plane.loop.add_reader(self.sock.fileno(), self._readable)
        dest.inactive += 1
        dest.stats.conns += 1
        rt.vs.stats.conns += 1
        if tpl is not None:
            tpl.n_control += 1

    def send(self, data: bytes) -> None:
        self.last = time.monotonic()
        self.dest.stats.inpkts += 1
        self.dest.stats.inbytes += len(data)
        self.rt.vs.stats.inpkts += 1
        self.rt.vs.stats.inbytes += len(data)
        with contextlib.suppress(OSError):
            self.sock.send(data)

    def _readable(self) -> None:
        lsock = self.rt.listen_sock
        for _ in range(64):
            try:
                data = self.sock.recv(UDP_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ECONNREFUSED from an ICMP port unreachable
                return
            self.last = time.monotonic()
            self.dest.stats.outpkts += 1
            self.dest.stats.outbytes += len(data)
            self.rt.vs.stats.outpkts += 1
            self.rt.vs.stats.outbytes += len(data)
            if lsock is not None:
                with contextlib.suppress(OSError):
                    lsock.sendto(data, self.client)

    def close(self) -> None:
        if self.sock.fileno() < 0:
            return
        with contextlib.suppress(Exception):
            self.plane.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.dest.inactive -= 1
        if self.template is not None:
            self.template.n_control -= 1
        self.rt.udp_flows.pop(self.client, None)
        conns = self.rt.conns.get(self.dest.key)
        if conns is not None:
            conns.discard(self)


class UserspaceDataPlane:
    """The table + the proxy. Implements the sync Backend protocol (list/apply/bind...)."""

    def __init__(self, netns: str | None = None, device: Any = None, timeouts: dict[str, int] | None = None,
                 freebind: bool = True, source_policy: SourcePolicy | None = None,
                 ipvs_filter: IpvsFilter | None = None) -> None:
        self.netns = netns
        self.ipvs_filter = ipvs_filter  # kube-proxy's KUBE-IPVS-FILTER, kept in step after each sync
        self.source_policy = source_policy  # None: every destination sees the proxy's (node's) address
        self.sockets = make_sockets(netns)
        self.device = device  # a kernel.DummyDevice for kube-ipvs0, or None (addresses only recorded)
        self.timeouts = dict(DEFAULT_TIMEOUTS, **(timeouts or {}))
        self.freebind = freebind
        self.services: dict[VSKey, ServiceRuntime] = {}
        self.masquerade: set[VSKey] = set()  # virtual servers whose traffic is masqueraded whatever its source
        self._bound: set[str] = set()
        self._bound_unknown = True
        self._pending: set[asyncio.Future[Any]] = set()
        self._tick: asyncio.TimerHandle | None = None
        self._last_stats: dict[int, tuple[float, tuple[int, ...]]] = {}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    # ---- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._schedule_tick()

    async def flush(self) -> None:
        """Wait until sockets opened by earlier apply() calls are serving."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def stop(self) -> None:
        await self.flush()
        if self.ipvs_filter is not None:
            await self.ipvs_filter.close()
        if self._tick is not None:
            self._tick.cancel()
        for key in list(self.services):
            self._del_vs(key)
        self.sockets.close()

    # ---- Backend protocol ------------------------------------------------------------------------------------

    def list(self) -> Table:
        """A snapshot of the live table, counters included."""
        return self.list_keys(self.services)

    def list_keys(self, keys: Any) -> Table:
        """A snapshot of the virtual servers among `keys` that exist, counters included."""
        out: Table = {}
        for key in keys:
            rt = self.services.get(key)
            if rt is None:
                continue
            vs = rt.vs
            snap = copy.copy(vs)
            snap.stats = copy.copy(vs.stats)
            snap.rate = copy.copy(vs.rate)
            snap.destinations = []
            for d in vs.destinations:
                c = copy.copy(d)
                c.stats, c.rate = copy.copy(d.stats), copy.copy(d.rate)
                snap.destinations.append(c)
            out[key] = snap
        return out

    def config_table(self) -> Table:
        """The live virtual servers themselves (no copy, for a synchronous read such as saving the table)."""
        return {key: rt.vs for key, rt in self.services.items()}

    def apply(self, op: Op) -> None:
        if self.loop is None:
            self.loop = asyncio.get_event_loop()
        key = op.vs.key
        if op.kind == "add_vs":
            if key in self.services:
                raise FileExistsError(f"virtual server {key} exists")
            self._add_vs(op.vs)
        elif op.kind == "edit_vs":
            rt = self._rt(key)
            if rt.vs.scheduler != op.vs.scheduler:
                rt.scheduler = make_scheduler(op.vs.scheduler)
                rt.scheduler.update(rt.vs.destinations)
            rt.vs.scheduler, rt.vs.flags, rt.vs.timeout, rt.vs.netmask = (
                op.vs.scheduler, op.vs.flags, op.vs.timeout, op.vs.netmask)
            if not rt.vs.persistent:
                self._drop_templates(rt)
        elif op.kind == "del_vs":
            self._rt(key)
            self._del_vs(key)
        else:
            assert op.rs is not None
            rt = self._rt(key)
            cur = rt.vs.dest(op.rs.address, op.rs.port)
            if op.kind == "add_rs":
                if cur is not None:
                    raise FileExistsError(f"destination {op.rs.key} exists")
                rt.vs.destinations.insert(0, RealServer(op.rs.address, op.rs.port, op.rs.weight, op.rs.forward))
            elif op.kind == "edit_rs":
                if cur is None:
                    raise LookupError(f"no destination {op.rs.key}")
                cur.weight, cur.forward = op.rs.weight, op.rs.forward
            elif op.kind == "del_rs":
                if cur is None:
                    raise LookupError(f"no destination {op.rs.key}")
                rt.vs.destinations.remove(cur)
                for t in [c for c, tpl in rt.templates.items() if tpl.dest is cur]:
                    rt.templates.pop(t)
                    cur.persistent -= 1
                for c in list(rt.conns.pop(cur.key, ())):  # expire_nodest_conn
                    self._kill(c)
            rt.scheduler.update(rt.vs.destinations)
            self._update_listener(rt)

    def bound_addresses(self) -> set[str]:
        # Only this agent changes kube-ipvs0, so the device is read once (adopting what a previous agent bound)
        # and then tracked here: reading 1,000 addresses over netlink on every sync would cost most of a sync.
        if self.device is not None and self._bound_unknown:
            self._bound = set(self.device.addresses())
            self._bound_unknown = False
        return set(self._bound)

    def bind(self, address: str) -> None:
        if self.device is not None:
            self.device.add(address)
        self._bound.add(address)

    def unbind(self, address: str) -> None:
        if self.device is not None:
            self.device.remove(address)
        self._bound.discard(address)

    def bind_many(self, addresses: list[str]) -> None:
        if self.device is not None:
            try:
                self.device.add_many(addresses)
            except Exception:
                self._bound_unknown = True  # partly done: read the device again next time
                raise
        self._bound.update(addresses)

    def unbind_many(self, addresses: list[str]) -> None:
        if self.device is not None:
            try:
                self.device.remove_many(addresses)
            except Exception:
                self._bound_unknown = True
                raise
        self._bound.difference_update(addresses)

    def connections(self) -> list[dict[str, Any]]:
        """The connection table like `ipvsadm -L -n -c` (/proc/net/ip_vs_conn): client, virtual server,
        destination, state and seconds to expiry; closed TCP connections linger as TIME_WAIT for the FIN
        timeout, and persistence templates show as state NONE with source port 0, as in the kernel."""
        now = time.monotonic()
        t = self.timeouts
        out = []

        def entry(vs: VirtualServer, client: Any, dest: RealServer, state: str, expires: float) -> None:
            out.append({"protocol": vs.protocol, "client": [client[0], client[1]], "virtual": [vs.address, vs.port],
                        "destination": [dest.address, dest.port], "state": state, "expires": max(0, int(expires))})

        for rt in self.services.values():
            vs = rt.vs
            for conns in rt.conns.values():
                for c in conns:
                    if isinstance(c, UdpFlow):
                        entry(vs, c.client, c.dest, "UDP", t["udp"] - (now - c.last))
                    elif c.state == "syn":
                        entry(vs, c.client_addr, c.dest, "SYN_RECV", SYN_RECV_TIMEOUT - (now - c.last))
                    elif c.state == "est":
                        entry(vs, c.client_addr, c.dest, "ESTABLISHED", t["tcp"] - (now - c.last))
                    else:
                        entry(vs, c.client_addr, c.dest, "FIN_WAIT", t["tcpfin"] - (now - c.last))
            while rt.lingering and now - rt.lingering[0].last >= t["tcpfin"]:
                rt.lingering.popleft()
            for c in rt.lingering:
                entry(vs, c.client_addr, c.dest, "TIME_WAIT", t["tcpfin"] - (now - c.last))
            for client_key, tpl in rt.templates.items():
                entry(vs, (client_key, 0), tpl.dest, "NONE", tpl.expires - now)
        return out

    def timeouts_line(self) -> str:
        return "Timeout (tcp tcpfin udp): {tcp} {tcpfin} {udp}\n".format(**self.timeouts)

    def synced(self) -> None:
        """After a sync (or serving a restored table): the KUBE-IPVS-FILTER's sets follow the table."""
        if self.ipvs_filter is not None:
            self.ipvs_filter.update(self.bound_addresses(), self.services)

    def set_masquerade(self, keys: set[VSKey]) -> None:
        """The virtual servers kube-proxy masquerades whatever the client (NodePorts, external and load-balancer
        IPs with externalTrafficPolicy Cluster: desired.DesiredState.masquerade). Kept by reference: the agent's
        desired state updates it in place."""
        self.masquerade = keys

    def preserve_source(self, client_ip: str, dest_ip: str, vs: VSKey | None = None) -> bool:
        """Whether the connection to `dest_ip` through virtual server `vs` is made from the client's own address
        (see transparent.py)."""
        return (self.source_policy is not None and vs not in self.masquerade
                and self.source_policy.preserve(client_ip, dest_ip))

    # ---- services --------------------------------------------------------------------------------------------

    def _rt(self, key: VSKey) -> ServiceRuntime:
        try:
            return self.services[key]
        except KeyError:
            raise LookupError(f"no virtual server {key}") from None

    def _add_vs(self, vs: VirtualServer) -> None:
        rt = ServiceRuntime(vs.copy_config(), make_scheduler(vs.scheduler))
        self.services[vs.key] = rt
        self._update_listener(rt)

    def _update_listener(self, rt: ServiceRuntime) -> None:
        """Listen on VIP:port exactly while the virtual server has a destination that can take a new connection
        (weight > 0). Kernel IPVS never completes a handshake it cannot schedule: with no destination it answers
        ICMP port unreachable (ip_vs_leave) and the client is refused at once. A listener would accept first and
        could only reset the client afterwards, so without one the node's own stack refuses instead (a TCP reset,
        an ICMP port unreachable for UDP), VIPs being local addresses on kube-ipvs0."""
        usable = any(d.weight > 0 for d in rt.vs.destinations)
        if usable and rt.listen_sock is None:
            try:
                self._listen(rt)
            except OSError:
                log.exception("cannot listen on %s %s:%s", rt.vs.protocol, rt.vs.address, rt.vs.port)
        elif not usable and rt.listen_sock is not None:
            self._close_listener(rt)

    def _listen(self, rt: ServiceRuntime) -> None:
        vs = rt.vs
        if vs.protocol not in ("TCP", "UDP"):
            return
        fam = socket.AF_INET6 if vs.family == 6 else socket.AF_INET
        stype = socket.SOCK_STREAM if vs.protocol == "TCP" else socket.SOCK_DGRAM
        sock = self.sockets.socket(fam, stype)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.freebind:
                sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
            sock.bind((vs.address, vs.port))
            sock.setblocking(False)
            if vs.protocol == "TCP":
                sock.listen(1024)
        except OSError:
            sock.close()
            raise
        rt.listen_sock = sock
        if vs.protocol == "TCP":
            fut = asyncio.ensure_future(
                self.loop.create_server(lambda: _Side(self, rt, True), sock=sock, backlog=1024))
            self._track(fut, rt, sock)
        else:
            self.loop.add_reader(sock.fileno(), self._udp_readable, rt)

    def _close_listener(self, rt: ServiceRuntime) -> None:
        """Stop listening; connections and flows already made stay (they are closed with their destination)."""
        sock, server = rt.listen_sock, rt.server
        rt.listen_sock, rt.server = None, None
        if sock is None:
            return
        if rt.vs.protocol == "UDP":
            with contextlib.suppress(Exception):
                self.loop.remove_reader(sock.fileno())
        if server is not None:
            server.close()
        else:
            sock.close()

    def _track(self, fut: asyncio.Future[Any], rt: ServiceRuntime, sock: socket.socket) -> None:
        self._pending.add(fut)

        def done(f: asyncio.Future[Any]) -> None:
            self._pending.discard(f)
            if f.cancelled() or f.exception() is not None:
                return
            if rt.listen_sock is not sock:  # closed (or closed and reopened) meanwhile
                f.result().close()
            else:
                rt.server = f.result()

        fut.add_done_callback(done)

    def _del_vs(self, key: VSKey) -> None:
        rt = self.services.pop(key)
        self._close_listener(rt)
        for conns in list(rt.conns.values()):
            for c in list(conns):
                self._kill(c)
        rt.conns.clear()

    @staticmethod
    def _kill(c: _Conn | UdpFlow) -> None:
        c.close()

    # ---- scheduling with persistence -------------------------------------------------------------------------

    def _pick(self, rt: ServiceRuntime, client: tuple[str, int]) -> tuple[RealServer | None, Template | None]:
        vs = rt.vs
        if vs.persistent:
            ckey = self._masked(client[0], vs.netmask)
            now = time.monotonic()
            tpl = rt.templates.get(ckey)
            if tpl is not None:
                alive = now < tpl.expires or tpl.n_control > 0
                usable = tpl.dest in vs.destinations and tpl.dest.weight > 0
                if alive and usable:
                    tpl.expires = now + vs.timeout
                    return tpl.dest, tpl
                rt.templates.pop(ckey)
                tpl.dest.persistent -= 1
            dest = rt.scheduler.schedule(vs.destinations, client, (vs.address, vs.port), vs.flags)
            if dest is None:
                return None, None
            tpl = Template(dest, now + vs.timeout)  # type: ignore[arg-type]
            rt.templates[ckey] = tpl
            dest.persistent += 1  # type: ignore[attr-defined]
            return dest, tpl  # type: ignore[return-value]
        dest = rt.scheduler.schedule(vs.destinations, client, (vs.address, vs.port), vs.flags)
        return dest, None  # type: ignore[return-value]

    @staticmethod
    def _masked(addr: str, netmask: str) -> str:
        ip = ipaddress.ip_address(addr)
        if ip.version == 4 and netmask != "255.255.255.255":
            return str(ipaddress.IPv4Address(int(ip) & int(ipaddress.IPv4Address(netmask))))
        return addr

    def _drop_templates(self, rt: ServiceRuntime) -> None:
        for tpl in rt.templates.values():
            tpl.dest.persistent -= 1
        rt.templates.clear()

    # ---- TCP -------------------------------------------------------------------------------------------------

    def _accepted(self, side: _Side) -> None:
        rt = side.rt
        transport = side.transport
        assert transport is not None
        peer = transport.get_extra_info("peername")
        dest, tpl = self._pick(rt, (peer[0], peer[1]))
        if dest is None:  # accepted just before the last usable destination went: the closest to a refusal
            _reset(transport)
            return
        conn = _Conn(self, rt, dest, tpl, side, (peer[0], peer[1]))
        side.conn = conn
        rt.conns.setdefault(dest.key, set()).add(conn)
        transport.pause_reading()
        fut = asyncio.ensure_future(self._connect(side, conn))
        fut.add_done_callback(_ignore_result)

    async def _connect(self, client: _Side, conn: _Conn) -> None:
        dest = conn.dest
        backend = _Side(self, client.rt, False)
        backend.conn = conn
        try:
            if self.preserve_source(conn.client_addr[0], dest.address, conn.rt.vs.key):
                await self._connect_transparent(backend, conn)
            elif self.netns:
                fam = socket.AF_INET6 if ":" in dest.address else socket.AF_INET
                sock = self.sockets.socket(fam, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await self.loop.sock_connect(sock, (dest.address, dest.port))
                except BaseException:
                    sock.close()
                    raise
                await self.loop.create_connection(lambda: backend, sock=sock)
            else:
                await self.loop.create_connection(lambda: backend, dest.address, dest.port)
        except (OSError, asyncio.CancelledError):
            # The destination refused (or could not be reached): with kernel IPVS the client would get the
            # destination's own reset to its SYN. The handshake with the client is done here, so reset it now,
            # before it sends anything or waits for an answer that will never come.
            if client.transport is not None:
                _reset(client.transport)
            return
        if client.transport is None or client.transport.is_closing():
            backend.transport.close()  # type: ignore[union-attr]
            return
        backend.peer, client.peer = client, backend
        conn.established()
        for chunk in client.buffer:
            backend.transport.write(chunk)  # type: ignore[union-attr]
        client.buffer.clear()
        if client.eof and backend.transport.can_write_eof():  # type: ignore[union-attr]
            backend.transport.write_eof()  # type: ignore[union-attr]
        client.transport.resume_reading()

    async def _connect_transparent(self, backend: _Side, conn: _Conn) -> None:
        """Connect from the client's address and port, as IPVS NAT leaves them; if that exact 4-tuple is still
        taken (a previous connection of the same client port in TIME_WAIT here), from another port."""
        dest = conn.dest
        fam = socket.AF_INET6 if ":" in dest.address else socket.AF_INET
        for keep_port in (True, False):
            sock = transparent_socket(self.sockets.socket, fam, socket.SOCK_STREAM, conn.client_addr, keep_port)
            sock.setblocking(False)
            try:
                await self.loop.sock_connect(sock, (dest.address, dest.port))
            except OSError as e:
                sock.close()
                if keep_port and e.errno in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):
                    continue
                raise
            except BaseException:
                sock.close()
                raise
            await self.loop.create_connection(lambda: backend, sock=sock)
            return

    def _linger(self, dest: RealServer, seconds: float) -> None:
        def expire() -> None:
            dest.inactive -= 1

        if seconds <= 0:
            expire()
        else:
            self.loop.call_later(seconds, expire)

    # ---- UDP -------------------------------------------------------------------------------------------------

    def _udp_readable(self, rt: ServiceRuntime) -> None:
        sock = rt.listen_sock
        if sock is None:
            return
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(UDP_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            flow = rt.udp_flows.get(addr)
            if flow is None:
                dest, tpl = self._pick(rt, (addr[0], addr[1]))
                if dest is None:
                    continue
                try:
                    flow = UdpFlow(self, rt, addr, dest, tpl)
                except OSError:
                    log.exception("UDP flow to %s:%s", dest.address, dest.port)
                    continue
                rt.udp_flows[addr] = flow
                rt.conns.setdefault(dest.key, set()).add(flow)
            flow.send(data)

    # ---- housekeeping: UDP expiry, template expiry, rates ----------------------------------------------------

    def _schedule_tick(self) -> None:
        self._tick = self.loop.call_later(1.0, self._on_tick)

    def _on_tick(self) -> None:
        now = time.monotonic()
        try:
            for rt in list(self.services.values()):
                for flow in [f for f in rt.udp_flows.values() if now - f.last >= self.timeouts["udp"]]:
                    flow.close()
                fin = self.timeouts["tcpfin"]
                while rt.lingering and now - rt.lingering[0].last >= fin:
                    rt.lingering.popleft()
                for ckey, tpl in list(rt.templates.items()):
                    if now >= tpl.expires and tpl.n_control <= 0:
                        rt.templates.pop(ckey)
                        tpl.dest.persistent -= 1
                self._estimate(rt.vs, now)
                for d in rt.vs.destinations:
                    self._estimate(d, now)
        finally:
            self._schedule_tick()

    def _estimate(self, obj: VirtualServer | RealServer, now: float) -> None:
        s = obj.stats
        cur = (s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes)
        prev = self._last_stats.get(id(obj))
        if prev is None:
            self._last_stats[id(obj)] = (now, cur)
            return
        dt = now - prev[0]
        if dt < 2.0:
            return
        r = obj.rate
        r.cps, r.inpps, r.outpps, r.inbps, r.outbps = (int((c - p) / dt) for c, p in zip(cur, prev[1], strict=True))
        self._last_stats[id(obj)] = (now, cur)


def _reset(transport: asyncio.BaseTransport) -> None:
    """Close with a TCP reset (SO_LINGER 0), whatever was or was not read: a plain close after an accept would
    send a FIN, and a client that sent nothing yet would read an empty reply instead of a reset."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _ignore_result(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


Snapshot = Callable[[], Table]
