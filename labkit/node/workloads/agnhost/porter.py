"""agnhost porter (test/images/agnhost/porter/porter.go): serve environment variables' values on ports.

Every variable `SERVE_PORT_<N>=<value>` starts an HTTP server on 0.0.0.0:N answering `<value>` (no newline) to
any request; `SERVE_TLS_PORT_<N>` does the same over TLS with CERT_FILE/KEY_FILE (default: the image's
`localhost.crt`/`localhost.key` in the working directory, a self-signed certificate for 127.0.0.1 and ::1).
`--json-response` answers `{"Method":"GET","Body":"<value>"}` as application/json instead. A port that cannot
be served is logged and the others keep running, as upstream's goroutines do. SCTP ports are logged as not
served (the embedded node's pods speak TCP and UDP).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import ssl
import sys
from typing import Any

from labkit.node.workloads.agnhost.common import TEXT, log, parse_flags
from labkit.node.workloads.http import Request, Response, serve_http

TCP_PREFIX = "SERVE_PORT_"
SCTP_PREFIX = "SERVE_SCTP_PORT_"
TLS_PREFIX = "SERVE_TLS_PORT_"


def go_json(obj: Any) -> str:
    """encoding/json.Marshal: compact, with <, > and & escaped for HTML safety."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _answer(value: str, as_json: bool):  # type: ignore[no-untyped-def]
    async def handler(req: Request) -> Response:
        if as_json:
            return Response(200, go_json({"Method": req.method, "Body": value}).encode(),
                            [("Content-Type", "application/json")])
        return Response(200, value.encode(), TEXT)

    return handler


def localhost_pem() -> tuple[bytes, bytes]:
    """A self-signed certificate for 127.0.0.1 and ::1 and its key (what the image's localhost.crt holds)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Co")])
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                       x509.IPAddress(ipaddress.ip_address("::1"))])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC))
            .not_valid_after(datetime.datetime(2084, 1, 29, 16, 0, tzinfo=datetime.UTC))
            .add_extension(san, critical=False).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def tls_context(cert_file: str, key_file: str, builtin: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if builtin and not (os.path.exists(cert_file) or os.path.exists(key_file)):
        # The image's own pair is not on this node's disk: load an equivalent one from memory files.
        cert, key = localhost_pem()
        fds = []
        try:
            for data in (cert, key):
                fd = os.memfd_create("porter-localhost")
                os.write(fd, data)
                fds.append(fd)
            ctx.load_cert_chain(f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}")
        finally:
            for fd in fds:
                os.close(fd)
        return ctx
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def main(argv: list[str]) -> int:
    flags = parse_flags(argv, {"json_response": False})

    async def serve(port: str, value: str, tls: bool) -> bool:
        cert_file = os.environ.get("CERT_FILE") or "localhost.crt"
        key_file = os.environ.get("KEY_FILE") or "localhost.key"
        try:
            ctx = tls_context(cert_file, key_file, not os.environ.get("CERT_FILE")) if tls else None
            if not port.isdigit() or not 0 <= int(port) <= 65535:
                raise OSError(f"listen tcp: address {port}: invalid port")
            await serve_http(_answer(value, flags["json_response"]), int(port), ssl=ctx)
            return True
        except (OSError, ssl.SSLError) as exc:
            if tls:
                log(f'tls server on port "{port}" with certFile="{cert_file}", keyFile="{key_file}" failed: {exc}')
            else:
                log(f'server on port "{port}" failed: {exc}')
            return False

    async def run() -> int:
        serving = 0
        for key, value in os.environ.items():
            if key.startswith(TCP_PREFIX):
                serving += await serve(key.removeprefix(TCP_PREFIX), value, tls=False)
            elif key.startswith(SCTP_PREFIX):
                log(f"SCTP port {key.removeprefix(SCTP_PREFIX)} is not served by the embedded labkit node")
            elif key.startswith(TLS_PREFIX):
                serving += await serve(key.removeprefix(TLS_PREFIX), value, tls=True)
        if not serving:
            # Upstream blocks in `select {}` with no server goroutine left: the Go runtime's deadlock error.
            print("fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [select (no cases)]:",
                  file=sys.stderr, flush=True)
            return 2
        await asyncio.get_running_loop().create_future()  # select {}: forever
        return 0

    return asyncio.run(run())
