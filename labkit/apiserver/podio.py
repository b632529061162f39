"""`pods/exec` and `pods/log`, served by the API server from the node's state on this host.

In a real cluster the API server proxies these to the kubelet; here the node's
pods live on the same host, so the API server runs the command inside the
pod's namespaces itself and reads the container logs the node agent writes.
Where a pod's namespaces and logs are is the node's business: it provides a
`PodRuntime` (see `labkit.node.runtime`).

exec speaks the WebSocket channel protocols kubectl and the Python client use
(kubectl-contract.md §8): `v5.channel.k8s.io` (kubectl ≥ 1.30) and
`v4.channel.k8s.io` (the Python client). Frames carry a channel byte: 0 stdin,
1 stdout, 2 stderr, 3 the final Status, 4 terminal resize; v5 adds 255 + channel
to close a stream (the client closing stdin). SPDY, which kubectl ≤ 1.29 uses,
is not served.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import struct
import termios
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from aiohttp import WSMsgType, web

from labkit import errors
from labkit.apiserver.server import ApiServer

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


class PodRuntime(Protocol):
    """What the node tells the API server about its pods."""

    def exec_argv(self, pod: dict, container: str, command: list[str], tty: bool) -> list[str]:
        """The host command line that runs `command` in the container's namespaces (ApiError if it can't)."""

    def log_file(self, pod: dict, container: str, previous: bool) -> Path:
        """The file holding the container's (or its previous instance's) output (ApiError if none)."""


def _container(pod: dict, query: dict) -> str:
    containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    name = query.get("container") or (containers[0] if len(containers) == 1 else "")
    pod_name = pod["metadata"]["name"]
    if not name:
        raise errors.BadRequest(f"a container name must be specified for pod {pod_name}, choose one of: "
                                f"[{' '.join(containers)}]")
    if name not in containers:
        raise errors.BadRequest(f"container {name} is not valid for pod {pod_name}")
    return name


def exit_status(code: int) -> dict:
    """The Status sent on the error channel when the command ends."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: "
            f"error executing command [...], exit code {code}", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def make_exec_handler(runtime: PodRuntime) -> Callable[[web.Request, dict, dict], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request, pod: dict, query: dict) -> web.StreamResponse:
        command = request.query.getall("command", [])
        if not command:
            raise errors.BadRequest("you must specify at least 1 command")
        container = _container(pod, query)
        tty = request.query.get("tty") in ("true", "1")
        use_stdin = request.query.get("stdin") in ("true", "1")
        argv = runtime.exec_argv(pod, container, command, tty)
        ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0)
        if not ws.can_prepare(request).ok:
            raise errors.BadRequest("exec requires a WebSocket upgrade with protocol v5.channel.k8s.io or "
                                    "v4.channel.k8s.io (SPDY is not supported by labkit)")
        await ws.prepare(request)
        v5 = ws.ws_protocol == "v5.channel.k8s.io"
        await _run(ws, argv, tty=tty, use_stdin=use_stdin, v5=v5)
        return ws

    return handle


async def _run(ws: web.WebSocketResponse, argv: list[str], *, tty: bool, use_stdin: bool, v5: bool) -> None:
    master = None
    if tty:
        master, slave = os.openpty()
        proc = await asyncio.create_subprocess_exec(*argv, stdin=slave, stdout=slave, stderr=slave,
                                                    start_new_session=True)
        os.close(slave)
    else:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if use_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def pump(reader: asyncio.StreamReader, channel: int) -> None:
        while chunk := await reader.read(65536):
            await ws.send_bytes(bytes([channel]) + chunk)

    pumps = []
    if tty:
        assert master is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(master, "rb", buffering=0, closefd=False))
        pumps.append(asyncio.create_task(_pump_pty(reader, ws)))
    else:
        assert proc.stdout is not None and proc.stderr is not None
        pumps += [asyncio.create_task(pump(proc.stdout, STDOUT)), asyncio.create_task(pump(proc.stderr, STDERR))]
    feeder = asyncio.create_task(_feed(ws, proc, master, v5))
    code = await proc.wait()
    await asyncio.gather(*pumps, return_exceptions=True)
    feeder.cancel()
    if tty:
        transport.close()
        with contextlib.suppress(OSError):
            os.close(master)
    with contextlib.suppress(ConnectionResetError):
        await ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(code)).encode())
        await ws.close()


async def _pump_pty(reader: asyncio.StreamReader, ws: web.WebSocketResponse) -> None:
    while True:
        try:
            chunk = await reader.read(65536)
        except OSError:  # EIO: the terminal's last writer exited
            return
        if not chunk:
            return
        await ws.send_bytes(bytes([STDOUT]) + chunk)


async def _feed(ws: web.WebSocketResponse, proc: asyncio.subprocess.Process, master: int | None, v5: bool) -> None:
    """Client frames: stdin data, stdin close (v5), terminal resizes."""
    async for msg in ws:
        if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            break
        data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
        if not data:
            continue
        channel, payload = data[0], data[1:]
        if channel == STDIN and payload:
            if master is not None:
                os.write(master, payload)
            elif proc.stdin is not None:
                proc.stdin.write(payload)
                await proc.stdin.drain()
        elif channel == CLOSE and v5 and payload[:1] == bytes([STDIN]):
            if proc.stdin is not None:
                proc.stdin.close()
            elif master is not None:
                os.write(master, b"\x04")
        elif channel == RESIZE and master is not None:
            with contextlib.suppress(ValueError, OSError):
                size = json.loads(payload)
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size["Height"], size["Width"], 0, 0))


def make_log_handler(runtime: PodRuntime) -> Callable[[web.Request, dict, dict], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request, pod: dict, query: dict) -> web.StreamResponse:
        container = _container(pod, query)
        previous = query.get("previous") in ("true", "1")
        follow = query.get("follow") in ("true", "1")
        tail = int(query["tailLines"]) if query.get("tailLines") else None
        path = runtime.log_file(pod, container, previous)
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        with open(path, "rb") as f:
            data = f.read()
            if tail is not None:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-tail:]) if tail > 0 else b""
            await response.write(data)
            while follow:
                chunk = f.read(65536)
                if chunk:
                    await response.write(chunk)
                    continue
                current = runtime.log_file(pod, container, previous)
                if current != path or not current.exists():
                    break  # the container restarted or went away
                await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    return handle


def install(server: ApiServer, home: Path) -> None:
    """Attach exec/log handlers when the node package provides a PodRuntime."""
    try:
        from labkit.node.runtime import NodeRuntime  # type: ignore[import-not-found]
    except ImportError:
        return
    runtime = NodeRuntime(home)
    server.exec_handler = make_exec_handler(runtime)
    server.log_handler = make_log_handler(runtime)
