"""Container probes (httpGet, tcpSocket, exec) and the per-probe worker loop, as kubelet's prober runs them.

Network probes connect from the node's network namespace (sockets made by `NetnsSockets`), the way kubelet
reaches pod IPs from the node — never from the host's namespace. Exec probes run in the pod's namespaces.

Sources (read, not copied), kubernetes v1.32: pkg/kubelet/prober/worker.go (initialDelaySeconds, periodSeconds,
successThreshold/failureThreshold counting, results only reported on a change),
pkg/kubelet/prober/prober.go (`<Kind> probe failed: <output>` events), pkg/probe/http/http.go
(2xx/3xx success, `HTTP probe failed with statuscode: N`, User-Agent `kube-probe/<major>.<minor>`),
pkg/probe/tcp/tcp.go, pkg/probe/exec/exec.go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from labkit.node.nsutil import NetnsSockets

log = logging.getLogger("labkit.node.probes")

USER_AGENT = "kube-probe/1.32"
# A failed first readiness/startup probe right after the container started most often means its workload has
# not bound its port yet (a forked workload needs a few milliseconds). Kubelet would then wait a whole
# periodSeconds; we retry quickly for this long instead, so a pod becomes Ready within milliseconds. The
# window covers the slowest built-in workload's start (the cluster DNS: an interpreter, then an informer sync),
# which the real CoreDNS binary does in a fraction of that.
EARLY_RETRY_WINDOW = 5.0
EARLY_RETRY_STEP = 0.05


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str = ""


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    """An int, a numeric string, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"couldn't find port: {port} in {container.get('name', '')}")


class Prober:
    """Runs single probes of one pod's containers."""

    def __init__(self, sockets: NetnsSockets, exec_argv: Callable[[list[str]], list[str]]) -> None:
        self.sockets = sockets
        self.exec_argv = exec_argv  # wraps a command so it runs inside the pod

    async def run(self, probe: dict[str, Any], container: dict[str, Any], pod_ip: str) -> ProbeResult:
        timeout = float(probe.get("timeoutSeconds") or 1)
        try:
            if "httpGet" in probe:
                return await self._http(probe["httpGet"], container, pod_ip, timeout)
            if "tcpSocket" in probe:
                return await self._tcp(probe["tcpSocket"], container, pod_ip, timeout)
            if "exec" in probe:
                return await self._exec(probe["exec"].get("command") or [], timeout)
        except ValueError as exc:
            return ProbeResult(False, str(exc))
        return ProbeResult(False, "unsupported probe (labkit runs httpGet, tcpSocket and exec probes)")

    async def _connect(self, host: str, port: int) -> Any:
        sock = self.sockets.socket()
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def _tcp(self, spec: dict[str, Any], container: dict[str, Any], pod_ip: str,
                   timeout: float) -> ProbeResult:
        host, port = spec.get("host") or pod_ip, resolve_port(spec.get("port"), container)
        try:
            sock = await asyncio.wait_for(self._connect(host, port), timeout)
        except TimeoutError:
            return ProbeResult(False, f"dial tcp {host}:{port}: i/o timeout")
        except OSError as exc:
            return ProbeResult(False, f"dial tcp {host}:{port}: connect: {_errtext(exc)}")
        sock.close()
        return ProbeResult(True)

    async def _http(self, spec: dict[str, Any], container: dict[str, Any], pod_ip: str,
                    timeout: float) -> ProbeResult:
        host, port = spec.get("host") or pod_ip, resolve_port(spec.get("port"), container)
        scheme = (spec.get("scheme") or "HTTP").lower()
        path = spec.get("path") or "/"
        if not path.startswith("/"):
            path = "/" + path
        url = f"{scheme}://{host}:{port}{path}"
        headers = {"Host": f"{host}:{port}", "User-Agent": USER_AGENT, "Accept": "*/*"}
        for h in spec.get("httpHeaders") or []:
            headers[h.get("name", "")] = h.get("value", "")
        request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + \
            "Connection: close\r\n\r\n"

        async def exchange() -> int:
            try:
                sock = await self._connect(host, port)
            except OSError as exc:
                raise ConnectionError(f"dial tcp {host}:{port}: connect: {_errtext(exc)}") from exc
            ctx = None
            if scheme == "https":
                ctx = ssl.create_default_context()
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # kubelet skips verification
            reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx,
                                                           server_hostname=host if ctx else None)
            try:
                writer.write(request.encode())
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
            parts = status_line.split()
            if len(parts) < 2 or not parts[1].isdigit():
                raise ConnectionError("malformed HTTP response")
            return int(parts[1])

        try:
            code = await asyncio.wait_for(exchange(), timeout)
        except TimeoutError:
            return ProbeResult(False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while '
                                      "awaiting headers)")
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            return ProbeResult(False, f'Get "{url}": {exc}')
        if 200 <= code < 400:
            return ProbeResult(True)
        return ProbeResult(False, f"HTTP probe failed with statuscode: {code}")

    async def _exec(self, command: list[str], timeout: float) -> ProbeResult:
        proc = await asyncio.create_subprocess_exec(*self.exec_argv(command), stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return ProbeResult(False, f"command {' '.join(repr(c) for c in command)} timed out")
        text = out.decode(errors="replace")[:10240]
        return ProbeResult(proc.returncode == 0, text)


def _errtext(exc: OSError) -> str:
    import os

    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


OnResult = Callable[[str, bool], None]
OnFailure = Callable[[str, str], None]


async def probe_loop(kind: str, probe: dict[str, Any], run_once: Callable[[], Awaitable[ProbeResult]],
                     on_result: OnResult, on_failure: OnFailure, started_at: float) -> None:
    """One probe worker: wait initialDelaySeconds after `started_at` (monotonic), then probe every
    periodSeconds; report a result (`on_result(kind, ok)`) when successThreshold successes or
    failureThreshold failures in a row change it, and every failure (`on_failure(kind, message)`)."""
    initial = float(probe.get("initialDelaySeconds") or 0)
    period = float(probe.get("periodSeconds") or 10)
    success_threshold = int(probe.get("successThreshold") or 1)
    failure_threshold = int(probe.get("failureThreshold") or 3)
    await asyncio.sleep(max(0.0, started_at + initial - time.monotonic()))
    early_until = time.monotonic() + EARLY_RETRY_WINDOW
    result: bool | None = None
    successes = failures = 0
    while True:
        outcome = await run_once()
        if outcome.ok:
            successes, failures = successes + 1, 0
            if successes >= success_threshold and result is not True:
                result = True
                on_result(kind, True)
        else:
            if result is None and kind != "liveness" and time.monotonic() < early_until:
                await asyncio.sleep(EARLY_RETRY_STEP)
                continue
            successes, failures = 0, failures + 1
            on_failure(kind, outcome.message)
            if failures >= failure_threshold and result is not False:
                result = False
                on_result(kind, False)
                if kind in ("liveness", "startup"):
                    failures = 0  # the container is restarted; a new worker starts with it
        await asyncio.sleep(period)
