"""The nginx look-alike: its configuration (conf.d server blocks) and how it answers for a root directory."""

from __future__ import annotations

from pathlib import Path

from labkit.node.images import image_files
from labkit.node.workloads import nginx
from labkit.node.workloads.http import Request
from tests.doc_pages import DEFAULT_CONF as TUTORIAL_CONF


def get(site: nginx.StaticSite, target: str, method: str = "GET", host: str = "10.244.0.5") -> tuple[int, dict, bytes]:
    resp = site.serve(Request(method, target, "HTTP/1.1", {"host": host}, b"", ("10.244.0.9", 5)), "http", 80)
    return resp.status, dict(resp.headers), resp.body


def test_the_tutorials_configuration() -> None:
    (server,) = nginx.servers_of(nginx.parse_config(TUTORIAL_CONF))
    assert server.ports == [(80, False), (443, True)]  # the IPv6 listen is skipped
    assert (server.root, server.index) == ("/usr/share/nginx/html", ["index.html"])
    assert (server.certificate, server.certificate_key) == ("/etc/nginx/ssl/tls.crt", "/etc/nginx/ssl/tls.key")


def test_the_images_default_conf_is_used_when_conf_d_is_empty(tmp_path: Path) -> None:
    (server,) = nginx.load_servers(str(tmp_path))
    assert server.ports == [(80, False)] and server.index == ["index.html", "index.htm"]
    (tmp_path / "default.conf").write_text(TUTORIAL_CONF)
    (tmp_path / "notes.txt").write_text("server { listen 9999; }")  # not *.conf: not included
    assert [s.ports for s in nginx.load_servers(str(tmp_path))] == [[(80, False), (443, True)]]
    files = image_files("nginx:1.25")
    assert files["/etc/nginx/conf.d/default.conf"].data.decode() == nginx.DEFAULT_CONF


def test_parsing_comments_quotes_and_nested_blocks() -> None:
    conf = 'server { # a comment\n listen 8080; root "/srv/my site"; location / { index a.html; } }\n'
    (server,) = nginx.servers_of(nginx.parse_config(conf))
    assert (server.ports, server.root, server.index) == ([(8080, False)], "/srv/my site", ["a.html"])


def test_static_files_indexes_redirects_and_errors(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>web-0</h1>\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("a")
    (tmp_path / "empty").mkdir()
    site = nginx.StaticSite(nginx.Server(ports=[(80, False)], root=str(tmp_path)), "1.25.5", 0.0)
    status, headers, body = get(site, "/")
    assert (status, body, headers["Content-Type"]) == (200, b"<h1>web-0</h1>\n", "text/html")
    assert headers["ETag"].startswith('"') and headers["Accept-Ranges"] == "bytes"
    assert get(site, "/docs/a.txt")[::2] == (200, b"a")
    status, headers, _ = get(site, "/docs", host="web-0.nginx:80")
    assert (status, headers["Location"]) == (301, "http://web-0.nginx/docs/")
    status, _, body = get(site, "/empty/")
    assert status == 403 and b"<center><h1>403 Forbidden</h1></center>" in body
    status, _, body = get(site, "/missing")
    assert status == 404 and body.endswith(b"<hr><center>nginx/1.25.5</center>\r\n</body>\r\n</html>\r\n")
    assert get(site, "/../etc/passwd")[0] == 400
    assert get(site, "/index.html", method="POST")[0] == 405


def test_the_images_own_pages_unless_a_volume_hides_them(tmp_path: Path) -> None:
    # The image's html root, with nothing of it on the node's disk: its pages come from memory.
    site = nginx.StaticSite(nginx.Server(ports=[(80, False)]), "1.25.5", 0.0)
    status, _, body = get(site, "/")
    assert status == 200 and body == nginx.WELCOME
    assert get(site, "/50x.html")[2] == nginx.ERROR_50X
    # Another root has no built-in pages: an empty directory is a 403, as nginx answers for it.
    empty = nginx.StaticSite(nginx.Server(ports=[(80, False)], root=str(tmp_path)), "1.25.5", 0.0)
    assert get(empty, "/")[0] == 403
