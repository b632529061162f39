"""A minimal asyncio HTTP/1.1 server for the built-in workloads (keep-alive, HEAD, Content-Length).

Deliberately tiny: every container is a forked child of the zygote, and whatever it imports or allocates
is paid once per container.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import ssl as ssl_lib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

REASONS = {200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content", 301: "Moved Permanently",
           302: "Found", 304: "Not Modified", 307: "Temporary Redirect", 400: "Bad Request", 403: "Forbidden",
           404: "Not Found", 405: "Not Allowed", 412: "Precondition Failed", 417: "Expectation Failed",
           500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.target).query, keep_blank_values=True).items()}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    reason: str | None = None
    close: bool = False


Handler = Callable[[Request], Awaitable[Response]]


def http_date() -> str:
    return email.utils.formatdate(usegmt=True)


async def _read_request(reader: asyncio.StreamReader, peer: tuple[str, int]) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3:
        return Request("", "", "", {}, b"", peer)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    length = int(headers.get("content-length", "0") or 0)
    if length:
        body = await reader.readexactly(length)
    return Request(parts[0], parts[1], parts[2], headers, body, peer)


async def _serve_connection(handler: Handler, server_header: str | None, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")[:2]
    try:
        while True:
            req = await _read_request(reader, peer)
            if req is None:
                break
            if not req.method:
                resp = Response(400, b"", close=True)
            else:
                try:
                    resp = await handler(req)
                except Exception as exc:  # a workload bug must not kill the container
                    resp = Response(500, f"{exc}\n".encode())
            keep = (req.version == "HTTP/1.1" and req.headers.get("connection", "").lower() != "close") or \
                   (req.version == "HTTP/1.0" and req.headers.get("connection", "").lower() == "keep-alive")
            keep = keep and not resp.close
            head = [f"HTTP/1.1 {resp.status} {resp.reason or REASONS.get(resp.status, 'Unknown')}"]
            names = {k.lower() for k, _ in resp.headers}
            if server_header and "server" not in names:
                head.append(f"Server: {server_header}")
            if "date" not in names:
                head.append(f"Date: {http_date()}")
            head += [f"{k}: {v}" for k, v in resp.headers]
            if "content-length" not in names:
                head.append(f"Content-Length: {len(resp.body)}")
            head.append(f"Connection: {'keep-alive' if keep else 'close'}")
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            if req.method != "HEAD":
                writer.write(resp.body)
            await writer.drain()
            if not keep:
                break
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def serve_http(handler: Handler, port: int, host: str | None = None,
                     server_header: str | None = None, ssl: ssl_lib.SSLContext | None = None) -> asyncio.Server:
    """Listen on host:port (all addresses by default) and answer with `handler` (over TLS with `ssl`)."""
    return await asyncio.start_server(
        lambda r, w: _serve_connection(handler, server_header, r, w), host=host or "0.0.0.0", port=port,
        family=socket.AF_INET, reuse_address=True, ssl=ssl)


class UDPHandler(asyncio.DatagramProtocol):
    """A datagram server calling `answer(data, addr) -> bytes | None` for every datagram."""

    def __init__(self, answer: Callable[[bytes, tuple[str, int]], bytes | None]) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = self.answer(data, addr)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


async def serve_udp(answer: Callable[[bytes, tuple[str, int]], bytes | None], port: int,
                    host: str = "0.0.0.0") -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: UDPHandler(answer), local_addr=(host, port))
    return transport
