"""`kubectl port-forward` on the node: connections to a pod's ports, opened inside the pod's network namespace.

Two protocols reach here over a WebSocket (labkit.node.streaming):

- `SPDY/3.1+portforward.k8s.io` (kubectl ≥ 1.31, containers.md §4): a SPDY session in the WebSocket's byte stream.
  For each local connection kubectl opens two streams with the headers `streamType: error|data`, `port` and
  `requestID`; the node pairs them, dials 127.0.0.1:PORT (then [::1]:PORT) in the pod's network namespace, copies
  the data stream both ways, and writes a failure as text on the error stream (kubectl then reports "an error
  occurred forwarding L -> R" and ends with "lost connection to pod").
- `v4.channel.k8s.io` with `?ports=P1,P2` (the Python client's portforward): channels 2i (data) and 2i+1 (error)
  for the i-th port, each opened by the server with the port number as two little-endian bytes.

Nothing listens anywhere: the only sockets are the WebSocket and the connections made in the pod's namespace.
Messages are kubelet's and containerd's (kubelet pkg/kubelet/cri/streaming/portforward, containerd
internal/cri/server/sandbox_portforward_linux.go).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from labkit.netns import run_in_netns
from labkit.node import spdy

log = logging.getLogger("labkit.node.portforward")
SPDY_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
CHANNEL_PROTOCOL = "v4.channel.k8s.io"
PROTOCOLS = (SPDY_PROTOCOL, CHANNEL_PROTOCOL)
CHUNK = 32 * 1024


async def dial(netns: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to localhost:PORT inside `netns` (IPv4, then IPv6), with containerd's error text."""
    loop = asyncio.get_running_loop()
    errors = []
    for family, address, label in ((socket.AF_INET, "127.0.0.1", "IPv4: dial tcp4 127.0.0.1"),
                                   (socket.AF_INET6, "::1", "IPv6 dial tcp6 [::1]")):
        sock = await asyncio.to_thread(run_in_netns, netns, lambda f=family: socket.socket(f, socket.SOCK_STREAM))
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (address, port))
        except OSError as exc:
            sock.close()
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            errors.append(f"{label}:{port}: connect: {reason.lower()}")
            continue
        return await asyncio.open_connection(sock=sock)
    raise ConnectionError(f"failed to connect to localhost:{port} inside namespace, {' '.join(errors)} ")


def forward_error(pod: dict[str, Any], port: int, netns: str, reason: str) -> str:
    uid = pod["metadata"].get("uid", "")
    return (f"error forwarding port {port} to pod {uid}, uid : failed to execute portforward in network namespace "
            f'"{netns}": {reason}')


@dataclass
class Pair:
    """The two streams kubectl opens for one local connection."""

    request_id: str
    port: int = 0
    error: int = 0
    data: int = 0
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None
    pending: list[tuple[bytes, bool]] = field(default_factory=list)  # data that came before the connection


class SpdyTunnel:
    """One kubectl port-forward session: SPDY frames in WebSocket messages."""

    def __init__(self, ws: web.WebSocketResponse, pod: dict[str, Any], netns: str) -> None:
        self.ws, self.pod, self.netns = ws, pod, netns
        self.session = spdy.Session()
        self.pairs: dict[str, Pair] = {}
        self.by_stream: dict[int, Pair] = {}
        self.lock = asyncio.Lock()

    async def send(self, frame: bytes) -> None:
        async with self.lock:  # the session's zlib context and frame order: one writer at a time
            if not self.ws.closed:
                await self.ws.send_bytes(frame)

    async def run(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    break
                for frame in self.session.feed(msg.data):
                    await self._frame(frame)
        except spdy.ProtocolError as exc:
            log.warning("port-forward session ended: %s", exc)
        finally:
            for pair in self.pairs.values():
                if pair.task is not None:
                    pair.task.cancel()
                if pair.writer is not None:
                    pair.writer.close()

    async def _frame(self, frame: spdy.Frame) -> None:
        if frame.type == spdy.SYN_STREAM:
            await self._new_stream(frame)
        elif frame.type == 0:
            pair = self.by_stream.get(frame.stream)
            if frame.data:
                await self.send(self.session.window_update(frame.stream, len(frame.data)) +
                                self.session.window_update(0, len(frame.data)))
            if pair is not None and frame.stream == pair.data:
                await self._to_pod(pair, frame.data, frame.fin)
        elif frame.type == spdy.RST_STREAM:
            pair = self.by_stream.get(frame.stream)
            if pair is not None and pair.writer is not None:
                pair.writer.close()
        elif frame.type == spdy.PING:
            await self.send(self.session.ping(frame.value))
        elif frame.type == spdy.GOAWAY:
            await self.ws.close()

    async def _new_stream(self, frame: spdy.Frame) -> None:
        headers = frame.headers
        kind, request_id = headers.get("streamtype", ""), headers.get("requestid", "")
        await self.send(self.session.syn_reply(frame.stream))
        pair = self.pairs.setdefault(request_id, Pair(request_id))
        self.by_stream[frame.stream] = pair
        try:
            pair.port = int(headers.get("port", "0"))
        except ValueError:
            pair.port = 0
        if kind == "error":
            pair.error = frame.stream
        elif kind == "data":
            pair.data = frame.stream
        if pair.error and pair.data and pair.task is None:
            pair.task = asyncio.create_task(self._forward(pair))

    async def _to_pod(self, pair: Pair, data: bytes, fin: bool) -> None:
        if pair.writer is None:
            pair.pending.append((data, fin))
            return
        if pair.writer.is_closing():
            return  # the pod closed its side first (an HTTP/1.0 answer): what kubectl still sends goes nowhere
        # The pod's connection may end at any moment: that ends this pair, never the session.
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if data:
                pair.writer.write(data)
                await pair.writer.drain()
            if fin and pair.writer.can_write_eof():
                pair.writer.write_eof()

    async def _forward(self, pair: Pair) -> None:
        try:
            reader, pair.writer = await dial(self.netns, pair.port)
        except (ConnectionError, OSError) as exc:
            message = forward_error(self.pod, pair.port, self.netns, str(exc))
            # kubelet closes both streams: kubectl waits for the data stream's end, then reads the error.
            await self.send(self.session.data(pair.error, message.encode(), fin=True) +
                            self.session.data(pair.data, b"", fin=True))
            return
        for data, fin in pair.pending:
            await self._to_pod(pair, data, fin)
        pair.pending.clear()
        try:
            while chunk := await reader.read(CHUNK):
                await self.send(self.session.data(pair.data, chunk))
        except ConnectionError:
            pass
        finally:
            pair.writer.close()
            await self.send(self.session.data(pair.data, b"", fin=True) + self.session.data(pair.error, b"", fin=True))


async def channel_tunnel(ws: web.WebSocketResponse, pod: dict[str, Any], netns: str, ports: list[int]) -> None:
    """kubelet's WebSocket port-forward (the Python client): one connection per requested port."""
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = []
    for i, port in enumerate(ports):
        for channel in (2 * i, 2 * i + 1):
            await ws.send_bytes(bytes([channel]) + struct.pack("<H", port))
        try:
            conns.append(await dial(netns, port))
        except (ConnectionError, OSError) as exc:
            conns.append(None)
            await ws.send_bytes(bytes([2 * i + 1]) + forward_error(pod, port, netns, str(exc)).encode())

    open_conns = [sum(c is not None for c in conns)]

    async def from_pod(i: int, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(CHUNK):
            await ws.send_bytes(bytes([2 * i]) + chunk)
        open_conns[0] -= 1
        if not open_conns[0]:  # every connection ended: so does the session (the client reads to its end)
            await ws.close()

    readers = [asyncio.create_task(from_pod(i, c[0])) for i, c in enumerate(conns) if c is not None]
    try:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                break
            channel, payload = msg.data[0], msg.data[1:]
            conn = conns[channel // 2] if channel % 2 == 0 and channel // 2 < len(conns) else None
            if conn is not None and payload:
                conn[1].write(payload)
                await conn[1].drain()
    finally:
        for task in readers:
            task.cancel()
        for conn in conns:
            if conn is not None:
                conn[1].close()


async def serve(request: web.Request, pod: dict[str, Any], netns: str) -> web.WebSocketResponse:
    """The node's /portForward endpoint."""
    ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0, autoping=True)
    await ws.prepare(request)
    if ws.ws_protocol == SPDY_PROTOCOL:
        await SpdyTunnel(ws, pod, netns).run()
    else:
        ports = [int(p) for p in ",".join(request.query.getall("ports", [])).split(",") if p.strip().isdigit()]
        await channel_tunnel(ws, pod, netns, ports)
    with contextlib.suppress(Exception):
        await ws.close()
    return ws
