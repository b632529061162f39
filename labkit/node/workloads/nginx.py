"""An nginx look-alike serving static files as the official nginx image does.

It reads the server blocks of /etc/nginx/conf.d/*.conf (the image's default.conf, which labkit.node.images
places there, or a ConfigMap mounted over the directory, as the "Connecting Applications with Services"
tutorial does): `listen PORT [ssl]`, `root`, `index`, `ssl_certificate`, `ssl_certificate_key`; other
directives are ignored and IPv6 listens are skipped (pods have IPv4 only). A request is served as nginx's
static module does: a file under the root; a directory without its trailing slash → 301 to it; a directory
→ its index file, else 403; nothing → nginx's 404 page. HEAD is supported, other methods get 405. Headers:
Server: nginx/<version>, Content-Type (nginx's mime.types), Last-Modified, ETag, Accept-Ranges.

The image's own pages (index.html, 50x.html) live under /usr/share/nginx/html in the image; a container here
sees the host's read-only /usr, so they are served from memory unless something is found on disk at that
path, and not at all when a volume is mounted over the root (as a StatefulSet's claim hides them).
A certificate that cannot be loaded is nginx's `[emerg]`: the container exits 1.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import posixpath
import re
import signal
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from labkit.node.workloads.http import Request, Response, serve_http

CONF_DIR = "/etc/nginx/conf.d"
HTML_ROOT = "/usr/share/nginx/html"
# The official image's /etc/nginx/conf.d/default.conf, without its commented-out examples.
DEFAULT_CONF = """server {
    listen       80;
    listen  [::]:80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
"""
# nginx's mime.types for what a static site holds; anything else is default_type application/octet-stream.
MIME_TYPES = {".html": "text/html", ".htm": "text/html", ".shtml": "text/html", ".css": "text/css",
              ".xml": "text/xml", ".gif": "image/gif", ".jpeg": "image/jpeg", ".jpg": "image/jpeg",
              ".js": "application/javascript", ".txt": "text/plain", ".png": "image/png", ".svg": "image/svg+xml",
              ".ico": "image/x-icon", ".json": "application/json", ".pdf": "application/pdf"}

WELCOME = b"""<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""

ERROR_50X = b"""<!DOCTYPE html>
<html>
<head>
<title>Error</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>An error occurred.</h1>
<p>Sorry, the page you are looking for is currently unavailable.<br/>
Please try again later.</p>
<p>If you are the system administrator of this resource then you should check
the error log for details.</p>
<p><em>Faithfully yours, nginx.</em></p>
</body>
</html>
"""


def error_page(status: int, reason: str, version: str) -> bytes:
    """nginx's built-in error page (ngx_http_special_response.c: CRLF line ends)."""
    return (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n"
            f"<hr><center>nginx/{version}</center>\r\n</body>\r\n</html>\r\n").encode()


@dataclass
class Server:
    """One `server { … }` block: what the static module needs of it."""

    ports: list[tuple[int, bool]] = field(default_factory=list)  # (port, ssl)
    root: str = HTML_ROOT
    index: list[str] = field(default_factory=lambda: ["index.html"])
    certificate: str = ""
    certificate_key: str = ""


Directive = tuple[str, list[str], "list[Any] | None"]


def parse_config(text: str) -> list[Directive]:
    """nginx's configuration syntax: `name args…;` and `name args… { … }`, `#` comments, quoted words."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[{};]|[^\s{};"\']+',
                        re.sub(r"(?m)#.*$", "", text))

    def block(pos: int) -> tuple[list[Directive], int]:
        out: list[Directive] = []
        words: list[str] = []
        while pos < len(tokens):
            tok = tokens[pos]
            pos += 1
            if tok == ";":
                if words:
                    out.append((words[0], words[1:], None))
                words = []
            elif tok == "{":
                inner, pos = block(pos)
                out.append((words[0] if words else "", words[1:], inner))
                words = []
            elif tok == "}":
                return out, pos
            else:
                words.append(tok[1:-1] if tok[:1] in "\"'" else tok)
        return out, pos

    return block(0)[0]


def servers_of(directives: list[Directive]) -> list[Server]:
    servers = []
    for name, _, inner in directives:
        if name != "server" or inner is None:
            continue
        server = Server()
        for key, args, sub in inner:
            if key == "listen" and args:
                addr = args[0]
                if addr.startswith("["):
                    continue  # IPv6
                port = addr.rsplit(":", 1)[-1]
                if port.isdigit():
                    server.ports.append((int(port), "ssl" in args[1:]))
            elif key == "root" and args:
                server.root = args[0]
            elif key == "index" and args:
                server.index = args
            elif key == "ssl_certificate" and args:
                server.certificate = args[0]
            elif key == "ssl_certificate_key" and args:
                server.certificate_key = args[0]
            elif key == "location" and args == ["/"] and sub is not None:
                for k, a, _ in sub:
                    if k == "root" and a:
                        server.root = a[0]
                    elif k == "index" and a:
                        server.index = a
        servers.append(server)
    return servers


def load_servers(conf_dir: str = CONF_DIR) -> list[Server]:
    """The servers of conf.d/*.conf (nginx.conf's `include`); the image's default.conf when there are none."""
    try:
        names = sorted(n for n in os.listdir(conf_dir) if n.endswith(".conf"))
    except OSError:
        names = []
    texts = []
    for name in names:
        with open(os.path.join(conf_dir, name)) as f:
            texts.append(f.read())
    servers = [s for text in texts for s in servers_of(parse_config(text))]
    return servers or servers_of(parse_config(DEFAULT_CONF))


def image_pages(root: str) -> dict[str, bytes]:
    """The image's own files under its html root, unless a volume is mounted over that root."""
    if root.rstrip("/") != HTML_ROOT or os.path.ismount(root):
        return {}
    return {"/index.html": WELCOME, "/50x.html": ERROR_50X}


class StaticSite:
    """How nginx's static and index modules answer for one server's root."""

    def __init__(self, server: Server, version: str, started: float) -> None:
        self.server = server
        self.version = version
        self.started = started
        self.builtin = image_pages(server.root)

    def error(self, status: int, reason: str) -> Response:
        return Response(status, error_page(status, reason, self.version), [("Content-Type", "text/html")])

    def file(self, path: str) -> tuple[bytes, float] | None:
        """(content, mtime) of a URI path's file: on disk, else among the image's pages."""
        full = self.server.root.rstrip("/") + path
        if os.path.isfile(full):  # unreadable: PermissionError, a 403 for the caller
            with open(full, "rb") as f:
                return f.read(), os.stat(full).st_mtime
        if path in self.builtin and not os.path.exists(full):
            return self.builtin[path], self.started
        return None

    def is_dir(self, path: str) -> bool:
        return (path == "/" and bool(self.builtin)) or os.path.isdir(self.server.root.rstrip("/") + path)

    def serve(self, req: Request, scheme: str, port: int) -> Response:
        raw = unquote(req.path) or "/"
        depth = 0
        for part in raw.split("/"):
            depth += -1 if part == ".." else (part not in ("", "."))
            if depth < 0:
                return self.error(400, "Bad Request")  # above the root (ngx_http_parse_complex_uri)
        path = posixpath.normpath(raw).replace("//", "/")
        if raw.endswith("/") and path != "/":
            path += "/"
        try:
            if path.endswith("/"):
                for name in self.server.index:
                    found = self.file(path + name)
                    if found:
                        return self.ok(req, path + name, *found)
                return self.error(403, "Forbidden") if self.is_dir(path) else self.error(404, "Not Found")
            found = self.file(path)
            if found:
                return self.ok(req, path, *found)
            if self.is_dir(path):
                host = (req.headers.get("host") or "localhost").split(":")[0]
                default = 443 if scheme == "https" else 80
                where = f"{scheme}://{host}{'' if port == default else f':{port}'}{path}/"
                resp = self.error(301, "Moved Permanently")
                resp.headers.append(("Location", where))
                return resp
        except PermissionError:
            return self.error(403, "Forbidden")
        return self.error(404, "Not Found")

    def ok(self, req: Request, path: str, body: bytes, mtime: float) -> Response:
        if req.method not in ("GET", "HEAD"):
            return self.error(405, "Not Allowed")
        ctype = MIME_TYPES.get(posixpath.splitext(path)[1].lower(), "application/octet-stream")
        etag = f'"{int(mtime):x}-{len(body):x}"'
        return Response(200, body, [("Content-Type", ctype),
                                    ("Last-Modified", email.utils.formatdate(mtime, usegmt=True)),
                                    ("ETag", etag), ("Accept-Ranges", "bytes")])


def tls_context(server: Server) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(server.certificate, server.certificate_key)
    except (OSError, ssl.SSLError) as exc:
        raise RuntimeError(f'nginx: [emerg] cannot load certificate "{server.certificate}": {exc}') from exc
    return ctx


def main(spec: dict[str, Any]) -> int:
    version = spec.get("version", "1.29.1")
    started = time.time()
    servers = load_servers()

    async def run() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)  # nginx exits 0 on TERM (fast) and QUIT (graceful)
        listening = []
        try:
            for server in servers:
                site = StaticSite(server, version, started)
                for port, tls in server.ports:
                    ctx = tls_context(server) if tls else None

                    async def handler(req: Request, site: StaticSite = site, port: int = port,
                                      scheme: str = "https" if tls else "http") -> Response:
                        return site.serve(req, scheme, port)

                    listening.append(await serve_http(handler, port, server_header=f"nginx/{version}", ssl=ctx))
        except (RuntimeError, OSError) as exc:
            print(exc if isinstance(exc, RuntimeError) else f"nginx: [emerg] bind() failed ({exc})",
                  file=sys.stderr, flush=True)
            return 1
        # What the official image's entrypoint prints (docker-entrypoint.sh) before nginx starts.
        print("/docker-entrypoint.sh: Configuration complete; ready for start up", file=sys.stderr, flush=True)
        await stop.wait()
        for srv in listening:
            srv.close()
        return 0

    return asyncio.run(run())
