"""agnhost (kubernetes test/images/agnhost) subcommands `netexec`, `serve-hostname` and `pause`.

Behaviour follows test/images/agnhost/netexec/netexec.go, serve-hostname/serve_hostname.go and
pause/pause.go: same ports, flags, endpoints, bodies (no trailing newline on /hostname), JSON shapes of
/dial and /shell, UDP commands, and Go's `log` line format on stderr.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from typing import Any

from labkit.node.workloads.http import Request, Response, serve_http, serve_udp

TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def log(msg: str) -> None:
    """Go's log.Printf: `2006/01/02 15:04:05 msg`."""
    print(time.strftime("%Y/%m/%d %H:%M:%S ") + msg, file=sys.stderr, flush=True)


def parse_flags(argv: list[str], defaults: dict[str, Any]) -> dict[str, Any]:
    """cobra/pflag style: `--name=value`, `--name value`, `--flag` for booleans."""
    flags = dict(defaults)
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        key = name.replace("-", "_")
        if key not in flags:
            continue
        if isinstance(flags[key], bool):
            flags[key] = value.lower() not in ("false", "0") if eq else True
            continue
        if not eq and i < len(argv):
            value = argv[i]
            i += 1
        flags[key] = int(value) if isinstance(flags[key], int) else value
    return flags


def hostname() -> str:
    return socket.gethostname()


def go_error(status: int, msg: str) -> Response:
    """net/http.Error: text body with a newline."""
    return Response(status, (msg + "\n").encode(), [*TEXT, ("X-Content-Type-Options", "nosniff")])


# --------------------------------------------------------------------------------------------- netexec
def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


async def _dial_http(host: str, port: int, request: str) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        writer.write(f"GET /{request} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
                     f"User-Agent: Go-http-client/1.1\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        raise ConnectionError("malformed HTTP response")
    return body.decode(errors="replace")


async def _dial_udp(host: str, port: int, request: str) -> str:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        try:
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, request.encode())
        except OSError as exc:
            raise RuntimeError(f"udp dial failed. err:{exc}") from exc
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
        except (TimeoutError, OSError) as exc:
            raise RuntimeError(f"reading from udp connection failed. err:'read udp: {exc or 'i/o timeout'}'") \
                from exc
        return data.decode(errors="replace")
    finally:
        sock.close()


def netexec(argv: list[str]) -> int:
    flags = parse_flags(argv, {"http_port": 8080, "udp_port": 8081, "sctp_port": -1, "http_override": "",
                               "udp_listen_addresses": "", "tls_cert_file": "", "tls_private_key_file": "",
                               "delay_shutdown": 0})
    ready = {"udp": flags["udp_port"] == -1}
    exit_code: asyncio.Future[int]

    async def handler(req: Request) -> Response:
        if flags["http_override"]:
            req = Request("GET", flags["http_override"], req.version, req.headers, b"", req.peer)
        q = req.query
        path = req.path
        if path in ("/hostname", "/hostName"):
            log(f"GET {path}")
            return Response(200, hostname().encode(), TEXT)
        if path == "/clientip":
            log("GET /clientip")
            return Response(200, f"{req.peer[0]}:{req.peer[1]}".encode(), TEXT)
        if path == "/echo":
            msg, code = q.get("msg", ""), q.get("code", "")
            log(f"GET /echo?msg={msg}&code={code}")
            if code:
                try:
                    return Response(int(code), msg.encode(), TEXT)
                except ValueError:
                    return Response(200, f"argument 'code' must be an integer or empty, got {code!r}\n".encode(),
                                    TEXT)
            return Response(200, msg.encode(), TEXT)
        if path == "/healthz":
            log("GET /healthz")
            return Response(200 if ready["udp"] else 412, b"", TEXT)
        if path == "/dial":
            return await dial(q)
        if path == "/shell":
            cmd = q.get("shellCommand") or q.get("cmd", "")
            log(f"GET /shell?cmd={cmd}")
            proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", cmd, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            result: dict[str, str] = {}
            if out:
                result["output"] = out.decode(errors="replace")
            if proc.returncode:
                result["error"] = f"exit status {proc.returncode}"
            return Response(200, _json(result), TEXT)
        if path == "/exit":
            code = q.get("code", "")
            log(f"GET /exit?code={code}&timeout={q.get('timeout', '')}&wait={q.get('wait', '')}")
            try:
                value = int(code) if code else 0
            except ValueError:
                return Response(200, f"argument 'code' must be an integer [0-127] or empty, got {code!r}\n"
                                .encode(), TEXT)
            asyncio.get_running_loop().call_later(0.05, exit_code.set_result, value)
            return Response(200, b"", TEXT)
        if path == "/shutdown":
            log("GET /shutdown")
            exit_code.set_result(0)
            return Response(200, b"", TEXT)
        if path == "/redirect":
            location, code = q.get("location", ""), q.get("code", "")
            return Response(int(code) if code.isdigit() else 302, b"", [("Location", location)])
        if path == "/header":
            key = q.get("key", "")
            if key:
                return Response(200, req.headers.get(key.lower(), "").encode(), TEXT)
            return Response(200, _json({k.title(): [v] for k, v in req.headers.items()}), TEXT)
        log("GET /")
        return Response(200, f"NOW: {time.strftime('%Y-%m-%d %H:%M:%S')} +0000 UTC".encode(), TEXT)

    async def dial(q: dict[str, str]) -> Response:
        host, port, request = q.get("host", ""), q.get("port", ""), q.get("request", "")
        protocol, tries_param = q.get("protocol", ""), q.get("tries", "")
        log(f"GET /dial?host={host}&protocol={protocol}&port={port}&request={request}&tries={tries_param}")
        try:
            tries = int(tries_param) if tries_param else 1
        except ValueError:
            return go_error(400, f"tries parameter is invalid. strconv.Atoi: parsing {tries_param!r}: invalid syntax")
        if not request:
            return go_error(400, "request parameter not specified. <nil>")
        if protocol.lower() not in ("", "http", "udp"):
            return go_error(400, f"unsupported protocol. {protocol}")
        try:
            port_n = int(port)
            addr = socket.gethostbyname(host)  # resolved once, like net.ResolveTCPAddr
        except (ValueError, OSError) as exc:
            return go_error(400, f"host and/or port param are invalid. {exc}")
        dialer = _dial_udp if protocol.lower() == "udp" else _dial_http
        responses: list[str] = []
        errors: list[str] = []
        last = ""
        for _ in range(tries):
            try:
                last = await dialer(addr, port_n, request)
                responses.append(last)
            except Exception as exc:
                last = ""
                errors.append(str(exc) or type(exc).__name__)
        output: dict[str, list[str]] = {}
        if last:
            output["responses"] = responses
        if errors:
            output["errors"] = errors
        return Response(200, _json(output), TEXT)

    def udp_answer(data: bytes, addr: tuple[str, int]) -> bytes | None:
        text = data.decode(errors="replace").strip().lower()
        if text == "hostname":
            return hostname().encode()
        if text.startswith("echo "):
            return text.split(" ", 1)[1].encode()
        if text == "clientip":
            return f"{addr[0]}:{addr[1]}".encode()
        return None

    async def run() -> int:
        nonlocal exit_code
        exit_code = asyncio.get_running_loop().create_future()
        if flags["udp_port"] != -1:
            for address in (flags["udp_listen_addresses"] or "0.0.0.0").split(","):
                await serve_udp(udp_answer, flags["udp_port"], address)
                log(f"Started UDP server on port {address if address != '0.0.0.0' else ''} {flags['udp_port']}")
            ready["udp"] = True
        await serve_http(handler, flags["http_port"])
        log(f"Started HTTP server on port {flags['http_port']}")
        return await exit_code

    return asyncio.run(run())


# -------------------------------------------------------------------------------------- serve-hostname
def serve_hostname(argv: list[str]) -> int:
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


# ------------------------------------------------------------------------------------------------ pause
def pause(argv: list[str]) -> int:
    from labkit.node.workloads.toolbox import pause as tiny_pause

    return tiny_pause({})


SUBCOMMANDS = {"netexec": netexec, "serve-hostname": serve_hostname, "pause": pause}


def main(spec: dict[str, Any]) -> int:
    argv = list(spec.get("argv") or ["pause"])
    return SUBCOMMANDS[argv[0]](argv[1:])
