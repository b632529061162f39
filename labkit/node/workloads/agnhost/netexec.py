"""agnhost netexec (test/images/agnhost/netexec/netexec.go): same ports, flags, endpoints, bodies (no trailing
newline on /hostname), JSON shapes of /dial and /shell, UDP commands, and Go's `log` line format on stderr."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from typing import Any

from labkit.node.workloads.agnhost.common import TEXT, go_error, hostname, log, parse_flags
from labkit.node.workloads.http import Request, Response, serve_http, serve_udp


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


def main(argv: list[str]) -> int:
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
        delay = int(flags["delay_shutdown"] or 0)
        if delay > 0:
            # agnhost netexec --delay-shutdown: keep serving that many seconds after SIGTERM, then exit 0.
            loop = asyncio.get_running_loop()

            def on_term() -> None:
                log(f"Sleeping {delay} seconds before terminating...")
                loop.call_later(delay, lambda: exit_code.done() or exit_code.set_result(0))

            loop.add_signal_handler(signal.SIGTERM, on_term)
        return await exit_code

    return asyncio.run(run())

