"""The agent's control API: JSON lines over a unix socket, so `labkit ipvs` can read the live table.

Request: one JSON object per line, `{"cmd": "table"}`, `{"cmd": "services"}` (what the load balancer serves, as
virtual servers, in either proxy mode: in nftables mode the IPVS table is empty, as `ipvsadm -Ln` is on such a
node), `{"cmd": "conns"}` or `{"cmd": "ping"}`. Response: one
JSON line, `{"ok": true, "table": [...ipvsadm.render_json...], "timeouts": {...}, "backend": "userspace"}`,
`{"ok": true, "conns": [{"protocol", "client", "virtual", "destination", "state"}, ...]}` (like
`ipvsadm -L -n -c`) or `{"ok": false, "error": "..."}`. `{"cmd": "wait", "vs": [proto, addr, port], "dests": n,
"timeout": s}` answers `{"ok": true, "found": bool, "ms": elapsed}` as soon as that virtual server exists with `n`
real servers (n = -1: is absent) — checked in the agent every millisecond, so a benchmark can time convergence
without polling the whole table over the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable
from typing import Any

from labkit.agent.ipvsadm import render_json
from labkit.agent.model import Table, VirtualServer, VSKey


async def serve_control(path: str, snapshot: Callable[[], Table], info: Callable[[], dict[str, Any]] | None = None,
                        conns: Callable[[], list[dict[str, Any]]] | None = None,
                        lookup: Callable[[VSKey], VirtualServer | None] | None = None,
                        services: Callable[[], Table] | None = None) -> asyncio.AbstractServer:
    """Serve the table at `path` (a stale socket file is replaced). `services`: what the load balancer serves
    as virtual servers whatever the proxy mode (default: the IPVS table)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                    cmd = req.get("cmd")
                    if cmd == "ping":
                        resp: dict[str, Any] = {"ok": True}
                    elif cmd == "wait" and lookup is not None:
                        resp = await _wait(lookup, req)
                    elif cmd == "conns":
                        resp = {"ok": True, "conns": conns() if conns else []}
                    elif cmd == "table":
                        resp = {"ok": True, "table": render_json(snapshot()), **(info() if info else {})}
                    elif cmd == "services":
                        resp = {"ok": True, "table": render_json((services or snapshot)()), **(info() if info else {})}
                    else:
                        resp = {"ok": False, "error": f"unknown command {cmd!r}"}
                except Exception as e:
                    resp = {"ok": False, "error": str(e)}
                writer.write(json.dumps(resp).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_unix_server(handle, path=path, limit=1 << 24)
    os.chmod(path, 0o660)
    return server


async def _wait(lookup: Callable[[VSKey], VirtualServer | None], req: dict[str, Any]) -> dict[str, Any]:
    proto, addr, port = req["vs"]
    want = int(req.get("dests", 0))
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + float(req.get("timeout", 5.0))
    while True:
        vs = lookup((proto, addr, int(port)))
        found = vs is None if want < 0 else (vs is not None and len(vs.destinations) == want)
        if found or loop.time() >= deadline:
            return {"ok": True, "found": found, "ms": (loop.time() - start) * 1e3}
        await asyncio.sleep(0.001)


def request(path: str, cmd: str | dict[str, Any] = "table", timeout: float = 5.0) -> dict[str, Any]:
    """One blocking request (for the CLI); `cmd` is a command name or a whole request object."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(cmd if isinstance(cmd, dict) else {"cmd": cmd}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    resp = json.loads(buf)
    if not resp.get("ok"):
        raise RuntimeError(resp.get("error", "control request failed"))
    return resp


async def arequest(path: str, cmd: str = "table") -> dict[str, Any]:
    """One request from async code."""
    reader, writer = await asyncio.open_unix_connection(path, limit=1 << 24)
    try:
        writer.write(json.dumps({"cmd": cmd}).encode() + b"\n")
        await writer.drain()
        resp = json.loads(await reader.readline())
    finally:
        writer.close()
    if not resp.get("ok"):
        raise RuntimeError(resp.get("error", "control request failed"))
    return resp


def read_table(path: str, timeout: float = 5.0, cmd: str = "table") -> list[VirtualServer]:
    """The live IPVS table (`cmd="services"`: what the load balancer serves, in either proxy mode) as model
    objects (blocking)."""
    return [VirtualServer.from_dict(d) for d in request(path, cmd, timeout)["table"]]
