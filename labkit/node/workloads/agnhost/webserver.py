"""agnhost test-webserver (test/images/agnhost/test-webserver/test-webserver.go): the container's whole
filesystem over HTTP on `--port` (80), as Go's http.FileServer(http.Dir("/")) serves it.

This is how the e2e DNS tests read their probes' results (`/results/<file>` of an emptyDir, through the API
server's pods/proxy). What Go's net/http/fs.go does, kept here:
- a path ending in `/index.html` redirects (301) to `./`; a directory without a trailing slash to `name/`, a
  file with one to `../name`; a directory serves its index.html, else an HTML listing (`<pre>`, one
  `<a href>` per entry, sorted, directories with a trailing slash);
- missing → 404 "404 page not found", unreadable → 403 "403 Forbidden", a `..` element → 400
  "invalid URL path" (net/http.Error bodies: text/plain, a newline, nosniff);
- files: Content-Type from Go's built-in extension table, else sniffed from the first 512 bytes
  (a subset of http.DetectContentType: HTML/XML/PDF/image signatures, text, else octet-stream);
  Last-Modified, Accept-Ranges: bytes, single byte ranges (206);
- the handler's own headers: Cache-Control: private and permissive CORS.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import posixpath
import stat
from urllib.parse import quote, unquote

from labkit.node.workloads.agnhost.common import go_error, parse_flags
from labkit.node.workloads.http import Request, Response, serve_http

CORS = [("Cache-Control", "private"), ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Credentials", "true"), ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
        ("Access-Control-Allow-Headers",
         "DNT,X-Mx-ReqToken,Keep-Alive,User-Agent,X-Requested-With,Cache-Control,Content-Type")]

# mime.TypeByExtension's built-in table (the agnhost image has no /etc/mime.types to add to it).
GO_MIME_TYPES = {
    ".avif": "image/avif", ".css": "text/css; charset=utf-8", ".gif": "image/gif",
    ".htm": "text/html; charset=utf-8", ".html": "text/html; charset=utf-8", ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg", ".js": "text/javascript; charset=utf-8", ".json": "application/json",
    ".mjs": "text/javascript; charset=utf-8", ".pdf": "application/pdf", ".png": "image/png",
    ".svg": "image/svg+xml", ".wasm": "application/wasm", ".webp": "image/webp",
    ".xml": "text/xml; charset=utf-8",
}
_HTML_TAGS = (b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV", b"<FONT",
              b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P", b"<!--")
_MAGIC = ((b"%PDF-", "application/pdf"), (b"%!PS-Adobe-", "application/postscript"),
          (b"\xfe\xff", "text/plain; charset=utf-16be"), (b"\xff\xfe", "text/plain; charset=utf-16le"),
          (b"\xef\xbb\xbf", "text/plain; charset=utf-8"), (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"),
          (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"PK\x03\x04", "application/zip"),
          (b"\x1f\x8b\x08", "application/x-gzip"), (b"\x00asm", "application/wasm"))
_BINARY = set(range(0x09)) | {0x0B} | set(range(0x0E, 0x1B)) | set(range(0x1C, 0x20))


def detect_content_type(data: bytes) -> str:
    """A subset of net/http.DetectContentType over the first 512 bytes."""
    data = data[:512]
    stripped = data.lstrip(b"\t\n\x0c\r ")
    upper = stripped.upper()
    for tag in _HTML_TAGS:
        if upper.startswith(tag) and len(stripped) > len(tag) and stripped[len(tag)] in b" >":
            return "text/html; charset=utf-8"
    if stripped.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    for magic, ctype in _MAGIC:
        if data.startswith(magic):
            return ctype
    if not any(b in _BINARY for b in data):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def go_url_path(name: str) -> str:
    """url.URL{Path: name}.String(): path escaping, and `./` before a first segment holding a colon."""
    escaped = quote(name, safe="-_.~$&+,/:;=@")
    colon = escaped.find(":")
    if colon > -1 and "/" not in escaped[:colon]:
        escaped = "./" + escaped
    return escaped


def go_html_escape(text: str) -> str:
    """html/template's htmlReplacer as net/http uses it for listings."""
    for ch, esc in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&#34;"), ("'", "&#39;")):
        text = text.replace(ch, esc)
    return text


def _redirect(req: Request, location: str) -> Response:
    query = req.target.partition("?")[2]
    return Response(301, b"", [("Location", location + (f"?{query}" if query else ""))])


def _last_modified(mtime: float) -> list[tuple[str, str]]:
    return [("Last-Modified", email.utils.formatdate(mtime, usegmt=True))] if mtime > 0 else []


def _dir_listing(path: str) -> bytes:
    entries = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        name = entry.name + ("/" if entry.is_dir() else "")
        entries.append(f'<a href="{go_url_path(name)}">{go_html_escape(name)}</a>\n')
    return ('<!doctype html>\n<meta name="viewport" content="width=device-width">\n<pre>\n'
            + "".join(entries) + "</pre>\n").encode()


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) of a single `bytes=` range that fits, else None (then the whole file is served)."""
    if not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if not first:
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    return (start, end) if 0 <= start <= end < size else None


def serve_path(req: Request, root: str = "/") -> Response:
    """One GET/HEAD of http.FileServer(http.Dir(root)) for `req`."""
    url_path = unquote(req.path) or "/"
    if not url_path.startswith("/"):
        url_path = "/" + url_path
    if ".." in url_path.split("/"):
        return go_error(400, "invalid URL path")
    if url_path.endswith("/index.html"):
        return _redirect(req, "./")
    name = posixpath.normpath(url_path)
    full = os.path.join(root, name.lstrip("/"))
    try:
        st = os.stat(full)
    except (FileNotFoundError, NotADirectoryError):
        return go_error(404, "404 page not found")
    except PermissionError:
        return go_error(403, "403 Forbidden")
    except OSError:
        return go_error(500, "500 Internal Server Error")
    is_dir = stat.S_ISDIR(st.st_mode)
    if is_dir and not url_path.endswith("/"):
        return _redirect(req, posixpath.basename(url_path) + "/")
    if not is_dir and url_path.endswith("/"):
        base = posixpath.basename(url_path.rstrip("/"))
        return _redirect(req, "../" + base)
    if is_dir:
        index = os.path.join(full, "index.html")
        if os.path.isfile(index):
            full, st, is_dir = index, os.stat(index), False
    try:
        if is_dir:
            return Response(200, _dir_listing(full), [("Content-Type", "text/html; charset=utf-8"),
                                                      *_last_modified(st.st_mtime)])
        with open(full, "rb") as f:
            data = f.read()
    except PermissionError:
        return go_error(403, "403 Forbidden")
    except OSError:
        return go_error(500, "500 Internal Server Error")
    ctype = GO_MIME_TYPES.get(posixpath.splitext(full)[1].lower()) or detect_content_type(data)
    headers = [("Accept-Ranges", "bytes"), ("Content-Type", ctype), *_last_modified(st.st_mtime)]
    wanted = _byte_range(req.headers.get("range", ""), len(data))
    if wanted:
        start, end = wanted
        return Response(206, data[start:end + 1],
                        [*headers, ("Content-Range", f"bytes {start}-{end}/{len(data)}")])
    return Response(200, data, headers)


def main(argv: list[str]) -> int:
    flags = parse_flags(argv, {"port": 80})

    async def handler(req: Request) -> Response:
        resp = serve_path(req)
        resp.headers = [*CORS, *resp.headers]
        return resp

    async def run() -> int:
        await serve_http(handler, flags["port"])
        await asyncio.get_running_loop().create_future()
        return 0

    return asyncio.run(run())
