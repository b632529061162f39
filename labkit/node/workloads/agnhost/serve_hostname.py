"""agnhost serve-hostname (test/images/agnhost/serve-hostname/serve_hostname.go), also what the standalone
`serve_hostname` image of the Debug Services page runs: the pod's hostname over HTTP (default), raw TCP or UDP
on port 9376, without a trailing newline."""

from __future__ import annotations

import asyncio
import signal

from labkit.node.workloads.agnhost.common import TEXT, hostname, log, parse_flags
from labkit.node.workloads.http import Request, Response, serve_http, serve_udp


def main(argv: list[str]) -> int:
    flags = parse_flags(argv, {"http": True, "tcp": False, "udp": False, "close": False, "port": 9376})
    if flags["http"] and (flags["tcp"] or flags["udp"]):
        log("Can't server TCP/UDP mode and HTTP mode at the same time")  # log.Fatalf: exit status 1
        return 1
    port = flags["port"]
    name = hostname()

    async def handler(req: Request) -> Response:
        log(f"HTTP request from {req.peer[0]}:{req.peer[1]}")
        return Response(200, name.encode(), TEXT, close=flags["close"])

    async def tcp_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        log(f"TCP request from {peer[0]}:{peer[1]}")
        writer.write(name.encode())
        await writer.drain()
        writer.close()

    def udp_answer(data: bytes, addr: tuple[str, int]) -> bytes:
        log(f"UDP request from {addr[0]}:{addr[1]}")
        return name.encode()

    async def run() -> int:
        loop = asyncio.get_running_loop()
        term = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, term.set)
        if flags["tcp"]:
            await asyncio.start_server(tcp_client, "0.0.0.0", port, reuse_address=True)
        if flags["udp"]:
            await serve_udp(udp_answer, port)
        if flags["http"]:
            await serve_http(handler, port)
        log(f"Serving on port {port}.")
        await term.wait()
        # Like upstream: keep serving until the kubelet's grace period ends (it then sends SIGKILL).
        log("Shutting down after receiving signal: terminated.")
        log("Awaiting pod deletion.")
        await asyncio.sleep(60)
        return 0

    return asyncio.run(run())

