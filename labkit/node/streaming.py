"""The node's streaming server: a pod's exec, attach, logs and port-forward, as kubelet serves them.

The API server authenticates the user and proxies here (labkit.apiserver.podio), as kube-apiserver proxies to
kubelet's port 10250. It listens on a Unix socket of the node's (0600: the API server is its only client) with
kubelet's paths:

    GET /containerLogs/{namespace}/{pod}/{container}?follow=&timestamps=&previous=&tailLines=&sinceSeconds=&limitBytes=
    GET /exec/{namespace}/{pod}/{container}?command=…&stdin=&stdout=&stderr=&tty=      (WebSocket)
    GET /attach/{namespace}/{pod}/{container}?stdin=&stdout=&stderr=&tty=              (WebSocket)
    GET /portForward/{namespace}/{pod}                                                 (WebSocket, SPDY inside)
    *   /proxy/{ip}/{port}/{path}          an HTTP request to a pod, sent from the node's network namespace

exec and attach speak the channel protocols `v5.channel.k8s.io` and `v4.channel.k8s.io` (containers.md §2):
every WebSocket message is one binary frame `[channel][payload]`; 0 stdin, 1 stdout, 2 stderr, 3 the final
Status, 4 terminal resize, 255 (v5) closing a stream. They are relayed to and from the zygote, which holds the
containers' stdio (labkit.node.shim). An error found before the upgrade is answered with its HTTP status and the
message in the body and in the `X-Stream-Error` header (what the API server passes on to the user).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from labkit.netns import run_in_netns
from labkit.node import crilog, portforward
from labkit.node.shim import CLOSE, EXIT, RESIZE, STDERR, STDIN, STDOUT
from labkit.node.zygote import SessionError, ZygoteClient

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
ERROR_HEADER = "X-Stream-Error"
FOLLOW_POLL_SECONDS = 0.1


class StreamError(Exception):
    """An answer before the upgrade: HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LogSource:
    """Where a container's output is: a CRI-format log of the node's (`cri`), or a plain text file (`raw`: the
    log of a labkit component shown as a pod's container, e.g. kube-proxy's)."""

    path: Path
    format: str = "cri"


@dataclass(frozen=True)
class ExecTarget:
    """What an exec needs to know of a running container."""

    container_id: str          # the zygote's id
    env: dict[str, str]
    security: dict[str, Any]
    working_dir: str | None
    nice: int


class PodRuntime(Protocol):
    """What the streaming server asks the kubelet."""

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def exec_target(self, pod: dict[str, Any], container: str) -> ExecTarget | None:
        """None when the container does not run."""

    def attach_target(self, pod: dict[str, Any], container: str) -> str | None:
        """The zygote id of the running container, None when it does not run."""

    def log_source(self, pod: dict[str, Any], container: str, previous: bool) -> LogSource:
        """Raises StreamError (400) when there is no such log (waiting to start, no previous run)."""

    def log_running(self, pod: dict[str, Any], container: str, source: LogSource) -> bool:
        """Whether that log may still grow (`kubectl logs -f` ends when it may not)."""

    def pod_netns(self, pod: dict[str, Any]) -> str | None:
        """The pod's network namespace file, None when it has no sandbox."""


def _flag(query: Any, name: str) -> bool:
    return query.get(name) in ("true", "1", "True")


def exit_status(code: int) -> dict[str, Any]:
    """The Status sent on the error channel when the command ends (kubelet's remotecommand)."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command [...], exit code {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def internal_error(message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
            "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500}


class StreamingServer:
    """The node's streaming endpoints (one aiohttp application)."""

    def __init__(self, runtime: PodRuntime, zygote: ZygoteClient, node_netns: str) -> None:
        self.runtime = runtime
        self.zygote = zygote
        self.node_netns = node_netns
        self.app = web.Application(middlewares=[self._errors])
        self.app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        self.app.router.add_get("/exec/{namespace}/{pod}/{container}", self._exec)
        self.app.router.add_get("/attach/{namespace}/{pod}/{container}", self._attach)
        self.app.router.add_get("/portForward/{namespace}/{pod}", self._port_forward)
        self.app.router.add_route("*", "/proxy/{ip}/{port}/{path:.*}", self._proxy)
        self._runner: web.AppRunner | None = None

    async def start(self, socket_path: str | os.PathLike[str]) -> None:
        path = Path(socket_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.UnixSite(self._runner, str(path))
        await site.start()
        os.chmod(path, 0o600)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except StreamError as exc:
            return web.Response(status=exc.status, text=str(exc), headers={ERROR_HEADER: _header_safe(str(exc))})

    def _pod(self, request: web.Request) -> dict[str, Any]:
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        pod = self.runtime.pod(ns, name)
        if pod is None:
            raise StreamError(404, f'pod "{name}" not found')
        return pod

    # ---- logs ----
    async def _logs(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        container = request.match_info["container"]
        q = request.query
        source = self.runtime.log_source(pod, container, _flag(q, "previous"))
        follow, timestamps = _flag(q, "follow"), _flag(q, "timestamps")
        tail = int(q["tailLines"]) if q.get("tailLines") else -1
        since = time.time() - int(q["sinceSeconds"]) if q.get("sinceSeconds") else None
        if q.get("sinceTime"):
            since = crilog.parse_timestamp(q["sinceTime"])
        limit = int(q["limitBytes"]) if q.get("limitBytes") else None
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        sent = 0

        async def write(data: bytes) -> bool:
            """False once limitBytes is reached (the output stops there, mid-line if need be)."""
            nonlocal sent
            if limit is not None:
                data = data[: max(0, limit - sent)]
            if data:
                await response.write(data)
                sent += len(data)
            return limit is None or sent < limit

        with open(source.path, "rb") as f:
            data, pending = f.read(), b""
            first = _select(source, data, tail=tail, since=since, timestamps=timestamps)
            keep_going = await write(first.output)
            pending = first.rest
            while follow and keep_going:
                chunk = f.read(65536)
                if chunk:
                    more = _select(source, pending + chunk, tail=-1, since=since, timestamps=timestamps)
                    pending = more.rest
                    keep_going = await write(more.output)
                    continue
                if not self.runtime.log_running(pod, container, source):
                    rest = f.read()  # the last lines the container wrote before it ended
                    if rest:
                        await write(_select(source, pending + rest, tail=-1, since=since,
                                            timestamps=timestamps).output)
                    break
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
        await response.write_eof()
        return response

    # ---- exec and attach ----
    async def _exec(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        container = request.match_info["container"]
        command = request.query.getall("command", [])
        if not command:
            raise StreamError(400, "you must specify at least 1 command")
        target = self.runtime.exec_target(pod, container)
        if target is None:
            raise StreamError(404, f'container not found ("{container}")')
        tty, stdin = _flag(request.query, "tty"), _flag(request.query, "stdin")
        env = dict(target.env)
        if tty:
            env.setdefault("TERM", "xterm")
        ws = await self._upgrade(request)
        req = {"op": "exec", "id": target.container_id, "argv": command, "env": env, "security": target.security,
               "workingDir": target.working_dir, "nice": target.nice, "tty": tty, "stdin": stdin,
               "stdout": _flag(request.query, "stdout"), "stderr": _flag(request.query, "stderr")}
        try:
            session = await self.zygote.session(req)
        except SessionError as exc:
            message = f'error executing command in container: failed to exec in container: failed to start exec ' \
                      f'"{secrets.token_hex(32)}": {exc}'
            await _finish(ws, internal_error(message))
            return ws
        await self._relay(ws, session, tty=tty, report_exit=True)
        return ws

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        container = request.match_info["container"]
        cid = self.runtime.attach_target(pod, container)
        if cid is None:
            raise StreamError(400, f'container {container} is not running')
        req = {"op": "attach", "id": cid, "stdin": _flag(request.query, "stdin"),
               "stdout": _flag(request.query, "stdout"), "stderr": _flag(request.query, "stderr")}
        try:
            session = await self.zygote.session(req)
        except SessionError as exc:
            raise StreamError(500, f"error attaching to container: {exc}") from None
        ws = await self._upgrade(request)
        await self._relay(ws, session, tty=bool(session.reply.get("tty")), report_exit=False)
        return ws

    @staticmethod
    async def _upgrade(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=0, autoping=True)
        if not ws.can_prepare(request).ok:
            raise StreamError(400, "a WebSocket upgrade with protocol v5.channel.k8s.io or v4.channel.k8s.io "
                                   "is required")
        await ws.prepare(request)
        return ws

    async def _relay(self, ws: web.WebSocketResponse, session: Any, *, tty: bool, report_exit: bool) -> None:
        """WebSocket channels ⇄ zygote frames, until the process ends or the client leaves."""
        v5 = ws.ws_protocol == "v5.channel.k8s.io"
        await ws.send_bytes(bytes([STDOUT]))  # kube-apiserver's greeting: an empty frame on the first writable channel

        async def from_client() -> None:
            async for msg in ws:
                if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    break
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                if not data:
                    continue
                channel, payload = data[0], data[1:]
                if channel == STDIN and payload:
                    await session.send(STDIN, payload)
                elif channel == RESIZE and tty:
                    for line in payload.splitlines():  # newline-separated JSON (a json.Decoder on the other side)
                        if line.strip():
                            await session.send(RESIZE, line)
                elif channel == CLOSE and v5 and payload[:1] == bytes([STDIN]):
                    await session.send(CLOSE, bytes([STDIN]))

        reader = asyncio.create_task(from_client())
        end: dict[str, Any] | None = None
        try:
            async for channel, payload in session.frames():
                if channel in (STDOUT, STDERR):
                    await ws.send_bytes(bytes([STDOUT if tty else channel]) + payload)
                elif channel == EXIT:
                    end = json.loads(payload)
        except ConnectionResetError:
            pass
        finally:
            reader.cancel()
            session.close()
        if end is None and ws.closed:
            return
        status = exit_status(int((end or {}).get("exitCode") or 0)) if report_exit else exit_status(0)
        await _finish(ws, status)

    # ---- port-forward and proxy ----
    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        pod = self._pod(request)
        netns = self.runtime.pod_netns(pod)
        if netns is None:
            raise StreamError(400, f'pod {pod["metadata"]["name"]} has no network namespace on this node')
        if not web.WebSocketResponse(protocols=portforward.PROTOCOLS).can_prepare(request).ok:
            raise StreamError(400, f"a WebSocket upgrade with protocol {portforward.SPDY_PROTOCOL} is required")
        return await portforward.serve(request, pod, netns)

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        """An HTTP request to ip:port sent from the node's network namespace, the answer passed back as it is."""
        try:
            port = int(request.match_info["port"])
        except ValueError:
            raise StreamError(400, "invalid port") from None
        ip, path = request.match_info["ip"], "/" + request.match_info["path"]
        target = path + (f"?{request.query_string}" if request.query_string else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "host"}
        headers["Host"] = f"{ip}:{port}"
        body = await request.read()
        try:
            status, reason, answer_headers, answer = await asyncio.to_thread(
                _http_request, self.node_netns, ip, port, request.method, target, headers, body)
        except OSError as exc:
            raise StreamError(503, f"error trying to reach service: dial tcp {ip}:{port}: connect: "
                                   f"{(exc.strerror or str(exc)).lower()}") from None
        out = web.Response(status=status, reason=reason, body=answer)
        for name, value in answer_headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                out.headers.add(name, value)
        return out


HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "authorization"}
PROXY_TIMEOUT = 30.0


def _http_request(netns: str, ip: str, port: int, method: str, target: str, headers: dict[str, str],
                  body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
    """One HTTP/1.1 request over a connection made inside `netns` (never from the host's namespace)."""
    sock = run_in_netns(netns, lambda: socket.create_connection((ip, port), timeout=PROXY_TIMEOUT))
    conn = http.client.HTTPConnection(ip, port, timeout=PROXY_TIMEOUT)
    conn.sock = sock
    try:
        conn.request(method, target, body=body or None, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.reason, answer.getheaders(), answer.read()
    finally:
        conn.close()


async def _finish(ws: web.WebSocketResponse, status: dict[str, Any]) -> None:
    """The last frame (the Status on the error channel), then a normal close (1000): the client reads EOF."""
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await ws.send_bytes(bytes([3]) + json.dumps(status).encode())
        await ws.close()


def _header_safe(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ").encode("ascii", "replace").decode()


@dataclass(frozen=True)
class Selected:
    output: bytes
    rest: bytes  # an incomplete last line, kept for the next read


def _select(source: LogSource, data: bytes, *, tail: int, since: float | None, timestamps: bool) -> Selected:
    """The part of `data` (complete lines only) that `kubectl logs` prints with these options."""
    end = data.rfind(b"\n") + 1
    complete, rest = data[:end], data[end:]
    if source.format == "raw":
        lines = complete.splitlines(keepends=True)
        if tail >= 0:
            lines = lines[-tail:] if tail else []
        stamp = crilog.timestamp(int(os.stat(source.path).st_mtime_ns)).encode() + b" " if timestamps else b""
        return Selected(b"".join(stamp + line for line in lines), rest)
    recs = list(crilog.records(complete))
    if since is not None:
        recs = [r for r in recs if crilog.parse_timestamp(r.time) >= since]
    recs = crilog.tail(recs, tail)
    return Selected(crilog.render(recs, timestamps=timestamps), rest)
