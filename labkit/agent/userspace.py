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
import os
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
READS_PER_WAKEUP = 4  # reads of one socket per readiness (see _Pipe.readable)
ACCEPTS_PER_WAKEUP = 32
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
    listen_sock: socket.socket | None = None
    conns: dict[tuple[str, int], set[Any]] = field(default_factory=dict)  # dest key -> live TCP conns / UDP flows
    udp_flows: dict[Any, UdpFlow] = field(default_factory=dict)
    # closed TCP connections in TIME_WAIT, oldest first: (closed at, client address, destination)
    lingering: collections.deque[tuple[float, tuple[str, int], RealServer]] = field(
        default_factory=collections.deque)
    linger_timer: asyncio.TimerHandle | None = None  # due when the oldest lingering entry expires


class _Conn:
    """One proxied TCP connection: the client's socket (accepted), the destination's (connected by the proxy), a
    pipe each way, and the IPVS bookkeeping (conn states reduced to: syn, est, closing, gone).

    Plain non-blocking sockets driven by the loop's reader/writer callbacks, not asyncio transports: a
    transport-based splice forwarded a FIN one or two loop iterations after the data before it (uvloop reads the
    EOF on a later poll and defers shutdown() to its next iteration). A client that closes as soon as its answer
    is complete (wrk, any HTTP/1.0-style client) then closed first and kept a TIME_WAIT per connection for
    60 s, until its ephemeral ports towards the ClusterIP ran out (~470 new connections/s). Through kernel IPVS,
    as directly, the backend's FIN arrives right behind its data and the client closes second."""

    __slots__ = ("client_addr", "client_sock", "dest", "dest_sock", "last", "pipes", "plane", "rt", "state",
                 "template")

    def __init__(self, plane: UserspaceDataPlane, rt: ServiceRuntime, dest: RealServer, tpl: Template | None,
                 client_sock: socket.socket, client_addr: tuple[str, int]):
        self.plane, self.rt, self.dest, self.template = plane, rt, dest, tpl
        self.client_sock: socket.socket | None = client_sock
        self.dest_sock: socket.socket | None = None
        self.client_addr = client_addr
        self.pipes: tuple[_Pipe, ...] = ()
        self.state = "syn"
        self.last = time.monotonic()  # the last state change or payload: the kernel re-arms its timer then
        dest.inactive += 1
        dest.stats.conns += 1
        rt.vs.stats.conns += 1
        if tpl is not None:
            tpl.n_control += 1

    def established(self) -> None:
        """The destination accepted: splice both ways."""
        client, dest = self.client_sock, self.dest_sock
        assert client is not None and dest is not None
        self.state = "est"
        self.last = time.monotonic()
        self.dest.inactive -= 1
        self.dest.active += 1
        self.pipes = (_Pipe(self, client, dest, True), _Pipe(self, dest, client, False))
        for pipe in self.pipes:
            self.plane.loop.add_reader(pipe.src_fd, pipe.readable)

    def fin(self) -> None:
        if self.state == "est":
            self.dest.active -= 1
            self.dest.inactive += 1
        if self.state != "gone":
            self.state = "closing"
        self.last = time.monotonic()

    def count(self, inbound: bool, n: int) -> None:
        """A read of `n` payload bytes (client → destination is "in"): one packet, as far as the stats go."""
        self.last = time.monotonic()
        dest, vs = self.dest.stats, self.rt.vs.stats
        if inbound:
            dest.inpkts += 1
            dest.inbytes += n
            vs.inpkts += 1
            vs.inbytes += n
        else:
            dest.outpkts += 1
            dest.outbytes += n
            vs.outpkts += 1
            vs.outbytes += n

    def close(self, reset: bool = True) -> None:
        """Close both sides: with a reset (the destination refused or was deleted: expire_nodest_conn; the
        service was deleted; one side reset or failed), or plainly once both FINs went through. The connection
        then lingers in InActConn for the FIN timeout, as TIME_WAIT."""
        loop = self.plane.loop
        for sock in (self.client_sock, self.dest_sock):
            if sock is None:
                continue
            fd = sock.fileno()
            if fd >= 0:
                loop.remove_reader(fd)
                loop.remove_writer(fd)
                if reset:
                    _reset(sock)
                else:
                    sock.close()
        self.client_sock = self.dest_sock = None
        self.pipes = ()
        conns = self.rt.conns.get(self.dest.key)
        if conns is not None:
            conns.discard(self)
        if self.state == "gone":
            return
        self.fin()
        self.state = "gone"
        if self.template is not None:
            self.template.n_control -= 1
            self.template = None
        self.plane._linger(self.rt, self.client_addr, self.dest)


class _Pipe:
    """One direction of a spliced connection: what `src` reads is sent to `dst`, and src's EOF becomes dst's FIN.
    What `dst` cannot take yet waits in `pending` while src is not read (the kernel's buffers push back)."""

    __slots__ = ("conn", "done", "dst", "dst_fd", "eof", "inbound", "pending", "src", "src_fd")

    def __init__(self, conn: _Conn, src: socket.socket, dst: socket.socket, inbound: bool) -> None:
        self.conn, self.src, self.dst, self.inbound = conn, src, dst, inbound
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.pending = b""
        self.eof = False   # src has sent its FIN
        self.done = False  # ... and it went on to dst

    def readable(self) -> None:
        conn = self.conn
        view = conn.plane.buffer  # one buffer for every pipe: the loop runs one callback at a time
        # Read again after forwarding: a FIN queued right behind the data leaves with it, as it would through the
        # kernel, instead of a poll later (by then the client may have closed first). Bounded to stay fair.
        for _ in range(READS_PER_WAKEUP):
            try:
                n = self.src.recv_into(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the peer reset: so does the proxy towards the other side
                conn.close()
                return
            if not n:
                self.eof = True
                conn.plane.loop.remove_reader(self.src_fd)
                conn.fin()
                self._forward_fin()
                return
            conn.count(self.inbound, n)
            try:
                sent = self.dst.send(view[:n])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                conn.close()
                return
            if sent < n:
                self.pending = bytes(view[sent:n])
                conn.plane.loop.remove_reader(self.src_fd)
                conn.plane.loop.add_writer(self.dst_fd, self.writable)
                return

    def writable(self) -> None:
        try:
            sent = self.dst.send(self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.conn.close()
            return
        self.pending = self.pending[sent:]
        if self.pending:
            return
        self.conn.plane.loop.remove_writer(self.dst_fd)
        if self.eof:
            self._forward_fin()
        else:
            self.conn.plane.loop.add_reader(self.src_fd, self.readable)

    def _forward_fin(self) -> None:
        if self.pending:
            return  # after the data, from writable()
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:  # the other side is gone already
            self.conn.close()
            return
        self.done = True
        if all(pipe.done for pipe in self.conn.pipes):
            self.conn.close(reset=False)


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
        self.buffer = memoryview(bytearray(READ_SIZE))  # what a TCP pipe reads, before it sends it on
        self._tick: asyncio.TimerHandle | None = None
        self._last_stats: dict[int, tuple[float, tuple[int, ...]]] = {}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]

    # ---- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._schedule_tick()

    async def stop(self) -> None:
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
            for closed_at, client, dest in rt.lingering:
                if now - closed_at < t["tcpfin"]:
                    entry(vs, client, dest, "TIME_WAIT", t["tcpfin"] - (now - closed_at))
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
        self.loop.add_reader(sock.fileno(), self._tcp_acceptable if vs.protocol == "TCP" else self._udp_readable, rt)

    def _close_listener(self, rt: ServiceRuntime) -> None:
        """Stop listening; connections and flows already made stay (they are closed with their destination)."""
        sock = rt.listen_sock
        rt.listen_sock = None
        if sock is None:
            return
        self.loop.remove_reader(sock.fileno())
        sock.close()

    def _del_vs(self, key: VSKey) -> None:
        rt = self.services.pop(key)
        self._close_listener(rt)
        for conns in list(rt.conns.values()):
            for c in list(conns):
                self._kill(c)
        rt.conns.clear()
        if rt.linger_timer is not None:
            rt.linger_timer.cancel()

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

    def _tcp_acceptable(self, rt: ServiceRuntime) -> None:
        lsock = rt.listen_sock
        if lsock is None:
            return
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, peer = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:  # out of descriptors or memory: pause rather than spin on a ready socket
                log.warning("accept on %s:%s: %s; pausing for 1 s", rt.vs.address, rt.vs.port, e)
                self.loop.remove_reader(lsock.fileno())
                self.loop.call_later(1.0, self._resume_accepting, rt, lsock)
                return
            sock.setblocking(False)
            self._accepted(rt, sock, (peer[0], peer[1]))

    def _resume_accepting(self, rt: ServiceRuntime, lsock: socket.socket) -> None:
        if rt.listen_sock is lsock:
            self.loop.add_reader(lsock.fileno(), self._tcp_acceptable, rt)

    def _accepted(self, rt: ServiceRuntime, sock: socket.socket, peer: tuple[str, int]) -> None:
        dest, tpl = self._pick(rt, peer)
        if dest is None:  # accepted just before the last usable destination went: the closest to a refusal
            _reset(sock)
            return
        conn = _Conn(self, rt, dest, tpl, sock, peer)
        rt.conns.setdefault(dest.key, set()).add(conn)
        # The client is not read until the destination accepts: what it sends meanwhile waits in the kernel.
        try:
            dsock = self._connect(conn)
        except OSError:
            # The destination refused (or could not be reached): with kernel IPVS the client would get the
            # destination's own reset to its SYN. The handshake with the client is done here, so reset it now,
            # before it sends anything or waits for an answer that will never come.
            conn.close()
            return
        conn.dest_sock = dsock
        self.loop.add_writer(dsock.fileno(), self._connected, conn)

    def _connect(self, conn: _Conn) -> socket.socket:
        """A socket connecting (non-blocking) to the destination: from the client's address and port when kube-proxy
        would not masquerade (as IPVS NAT leaves them), else from the node's. If that exact 4-tuple is still taken
        (a previous connection of the same client port in TIME_WAIT here), from another port."""
        dest = conn.dest
        fam = socket.AF_INET6 if ":" in dest.address else socket.AF_INET
        transparent = self.preserve_source(conn.client_addr[0], dest.address, conn.rt.vs.key)
        for keep_port in (True, False):
            if transparent:
                sock = transparent_socket(self.sockets.socket, fam, socket.SOCK_STREAM, conn.client_addr, keep_port)
            else:
                sock = self.sockets.socket(fam, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex((dest.address, dest.port))
            if err in (0, errno.EINPROGRESS):
                return sock
            sock.close()
            if not (transparent and keep_port and err in (errno.EADDRNOTAVAIL, errno.EADDRINUSE)):
                break
        raise OSError(err, os.strerror(err))

    def _connected(self, conn: _Conn) -> None:
        dsock, csock = conn.dest_sock, conn.client_sock
        if dsock is None or csock is None:  # closed meanwhile (its destination or service deleted)
            return
        self.loop.remove_writer(dsock.fileno())
        err = dsock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:  # refused or unreachable: reset the client (see _accepted)
            conn.close()
            return
        for sock in (csock, dsock):  # forward each read as it comes, as IPVS forwards each segment
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.established()

    def _linger(self, rt: ServiceRuntime, client: tuple[str, int], dest: RealServer) -> None:
        """A closed connection stays in InActConn (listed as TIME_WAIT) for the FIN timeout."""
        if self.timeouts["tcpfin"] <= 0:
            dest.inactive -= 1
            return
        rt.lingering.append((time.monotonic(), client, dest))
        if rt.linger_timer is None:
            rt.linger_timer = self.loop.call_later(self.timeouts["tcpfin"], self._expire_lingering, rt)

    def _expire_lingering(self, rt: ServiceRuntime) -> None:
        """One timer per virtual server, due when its oldest lingering connection expires."""
        rt.linger_timer = None
        now, fin = time.monotonic(), self.timeouts["tcpfin"]
        while rt.lingering and now - rt.lingering[0][0] >= fin:
            rt.lingering.popleft()[2].inactive -= 1
        if rt.lingering and rt.vs.key in self.services:
            rt.linger_timer = self.loop.call_later(max(0.001, fin - (now - rt.lingering[0][0])),
                                                   self._expire_lingering, rt)

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


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), whatever was or was not read: a plain close after an accept would
    send a FIN, and a client that sent nothing yet would read an empty reply instead of a reset."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


Snapshot = Callable[[], Table]
