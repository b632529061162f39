"""An nginx look-alike: the default site of the official nginx image (`/usr/share/nginx/html`).

Answers like nginx 1.2x with the stock default.conf: `/` and `/index.html` serve the "Welcome to nginx!"
page, `/50x.html` the error page, anything else nginx's 404 page; HEAD is supported, other methods on
static files get 405. Headers: Server: nginx/<version>, Content-Type, Last-Modified, ETag, Accept-Ranges.
"""

from __future__ import annotations

import asyncio
import email.utils
import signal
import sys
import time
from typing import Any

from labkit.node.workloads.http import Request, Response, serve_http

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


def main(spec: dict[str, Any]) -> int:
    version = spec.get("version", "1.29.1")
    server = f"nginx/{version}"
    started = time.time()
    modified = email.utils.formatdate(started, usegmt=True)
    files = {"/": WELCOME, "/index.html": WELCOME, "/50x.html": ERROR_50X}

    async def handler(req: Request) -> Response:
        body = files.get(req.path)
        if body is None:
            return Response(404, error_page(404, "Not Found", version), [("Content-Type", "text/html")])
        if req.method not in ("GET", "HEAD"):
            return Response(405, error_page(405, "Not Allowed", version), [("Content-Type", "text/html")])
        etag = f'"{int(started):x}-{len(body):x}"'
        return Response(200, body, [("Content-Type", "text/html"), ("Last-Modified", modified),
                                    ("ETag", etag), ("Accept-Ranges", "bytes")])

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)  # nginx exits 0 on TERM (fast) and QUIT (graceful)
        srv = await serve_http(handler, int(spec.get("port", 80)), server_header=server)
        # What the official image's entrypoint prints (docker-entrypoint.sh) before nginx starts.
        print("/docker-entrypoint.sh: Configuration complete; ready for start up", file=sys.stderr, flush=True)
        await stop.wait()
        srv.close()

    asyncio.run(run())
    return 0
