"""agnhost's subcommands as upstream's behave: outputs, exit codes, files served, ports.

Everything here talks to loopback of the test's own namespace only (no cluster address is ever used).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.node.workloads import agnhost
from labkit.node.workloads.agnhost import common, connect, dnsinfo, porter, webserver
from labkit.node.workloads.http import Request


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------- flags etc.
def test_go_durations() -> None:
    assert common.parse_go_duration("5s") == 5
    assert common.parse_go_duration("1m30s") == 90
    assert common.parse_go_duration("250ms") == pytest.approx(0.25)
    assert common.parse_go_duration("1.5h") == 5400
    assert common.parse_go_duration("0") == 0
    for bad in ("5", "s", "1x", ""):
        with pytest.raises(ValueError, match="time: invalid duration"):
            common.parse_go_duration(bad)


def test_flags_and_positionals() -> None:
    flags, args = common.parse_args(["x:80", "--timeout=2s", "--protocol", "udp", "--verbose"],
                                    {"timeout": "0", "protocol": "tcp"})
    assert flags == {"timeout": "2s", "protocol": "udp"} and args == ["x:80"]


# ------------------------------------------------------------------------------------ dns-* and etc-hosts
@pytest.fixture
def resolver_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search ns1.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n"
                      "nameserver 10.96.0.11\noptions ndots:5\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.244.0.5\tweb-0.nginx\tweb-0\n")
    monkeypatch.setattr(dnsinfo, "RESOLV_CONF", str(resolv))
    monkeypatch.setattr(dnsinfo, "ETC_HOSTS", str(hosts))
    return tmp_path


def test_dns_suffix_and_server_list(resolver_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert agnhost.cli(["dns-suffix"]) == 0
    assert capsys.readouterr().out == "ns1.svc.cluster.local,svc.cluster.local,cluster.local\n"
    assert agnhost.cli(["dns-server-list"]) == 0
    assert capsys.readouterr().out == "10.96.0.10\n"  # upstream reads the first nameserver line only


def test_etc_hosts_prints_the_file_and_a_newline(resolver_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert agnhost.cli(["etc-hosts"]) == 0
    assert capsys.readouterr().out == (resolver_files / "hosts").read_text() + "\n"


def test_a_resolv_conf_without_search_panics(resolver_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (resolver_files / "resolv.conf").write_text("nameserver 10.96.0.10\n")
    assert agnhost.cli(["dns-suffix"]) == 2
    assert capsys.readouterr().err.startswith("panic: Could not find DNS search list!\n")
    (resolver_files / "resolv.conf").unlink()
    assert agnhost.cli(["dns-server-list"]) == 2
    assert "panic: open " in capsys.readouterr().err


def test_unknown_subcommand_is_cobras_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert agnhost.cli(["frobnicate"]) == 1
    assert capsys.readouterr().err.startswith('Error: unknown command "frobnicate" for "app"')


# ------------------------------------------------------------------------------------------------ connect
def test_connect_tcp_success_refused_and_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert agnhost.cli(["connect", f"127.0.0.1:{port}", "--timeout=2s"]) == 0
        assert capsys.readouterr().err == ""
    assert agnhost.cli(["connect", f"127.0.0.1:{free_port()}"]) == 1
    assert capsys.readouterr().err == "REFUSED\n"
    assert agnhost.cli(["connect", "127.0.0.1"]) == 1
    assert capsys.readouterr().err == "UNKNOWN: address 127.0.0.1: missing port in address\n"
    assert agnhost.cli(["connect"]) == 1
    assert capsys.readouterr().err.startswith("Error: accepts 1 arg(s), received 0\n")
    assert agnhost.cli(["connect", "127.0.0.1:1", "--protocol=icmp"]) == 1
    assert capsys.readouterr().err == "Unsupported protocol\nicmp"


def test_connect_names_that_do_not_resolve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    def no_such_host(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(connect.socket, "getaddrinfo", no_such_host)
    monkeypatch.setattr(common, "first_nameserver", lambda: "10.96.0.10")
    assert agnhost.cli(["connect", "nosuch:80"]) == 1
    assert capsys.readouterr().err == "DNS: lookup nosuch on 10.96.0.10:53: no such host\n"


def test_connect_udp_reply_timeout_and_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        got: list[bytes] = []

        def answer_once() -> None:
            data, peer = server.recvfrom(100)
            got.append(data)
            server.sendto(b"pod-a", peer)

        thread = threading.Thread(target=answer_once)
        thread.start()
        assert agnhost.cli(["connect", f"127.0.0.1:{port}", "--protocol=udp", "--timeout=5s"]) == 0
        thread.join()
        assert got == [b"hostname\n"]
        # Nobody answers now: the read times out.
        assert agnhost.cli(["connect", f"127.0.0.1:{port}", "--protocol=udp", "--timeout=200ms"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("TIMEOUT: read udp 127.0.0.1:") and err.endswith(f"->127.0.0.1:{port}: i/o timeout\n")
    closed = free_port(socket.SOCK_DGRAM)
    assert agnhost.cli(["connect", f"127.0.0.1:{closed}", "--protocol=udp", "--timeout=2s"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("REFUSED: read udp 127.0.0.1:")
    assert err.endswith(f"->127.0.0.1:{closed}: read: connection refused\n")


# --------------------------------------------------------------------------------------------- test-webserver
def get(root: Path, target: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = Request("GET", target, "HTTP/1.1", {k.lower(): v for k, v in headers.items()}, b"", ("127.0.0.1", 1))
    resp = webserver.serve_path(req, str(root))
    return resp.status, dict(resp.headers), resp.body


def test_test_webserver_serves_files_like_go_file_server(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "wheezy_udp@kubernetes.default").write_text("OK\n")
    (results / "page.html").write_text("<p>hi</p>")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<html>index</html>")

    status, headers, body = get(tmp_path, "/results/wheezy_udp@kubernetes.default")
    assert (status, body) == (200, b"OK\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8" and headers["Accept-Ranges"] == "bytes"
    assert "Last-Modified" in headers
    assert get(tmp_path, "/results/page.html")[1]["Content-Type"] == "text/html; charset=utf-8"

    status, headers, body = get(tmp_path, "/results/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert body == (b'<!doctype html>\n<meta name="viewport" content="width=device-width">\n<pre>\n'
                    b'<a href="page.html">page.html</a>\n'
                    b'<a href="wheezy_udp@kubernetes.default">wheezy_udp@kubernetes.default</a>\n</pre>\n')
    assert get(tmp_path, "/results")[:2] == (301, {"Location": "results/"})
    assert get(tmp_path, "/results/page.html/")[:2] == (301, {"Location": "../page.html"})
    assert get(tmp_path, "/site/index.html?x=1")[:2] == (301, {"Location": "./?x=1"})
    assert get(tmp_path, "/site/")[2] == b"<html>index</html>"

    status, headers, body = get(tmp_path, "/results/nothing")
    assert (status, body) == (404, b"404 page not found\n")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert get(tmp_path, "/results/../x")[::2] == (400, b"invalid URL path\n")
    status, headers, body = get(tmp_path, "/results/page.html", Range="bytes=3-5")
    assert (status, body, headers["Content-Range"]) == (206, b"hi<", "bytes 3-5/9")


def test_content_sniffing() -> None:
    assert webserver.detect_content_type(b"  <!DOCTYPE html><html>") == "text/html; charset=utf-8"
    assert webserver.detect_content_type(b"\x89PNG\r\n\x1a\nxxxx") == "image/png"
    assert webserver.detect_content_type(b"") == "text/plain; charset=utf-8"
    assert webserver.detect_content_type(b"\x00\x01\x02") == "application/octet-stream"
    assert webserver.go_url_path("a:b") == "./a:b" and webserver.go_url_path("a b?") == "a%20b%3F"


# ------------------------------------------------------------------------------------------------- porter
def run_agnhost(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "labkit.node.workloads.agnhost", *args],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_listening(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


@pytest.fixture
def porter_ports() -> Iterator[tuple[int, int, subprocess.Popen[str]]]:
    plain, tls = free_port(), free_port()
    proc = run_agnhost("porter", env={f"SERVE_PORT_{plain}": "foo", f"SERVE_TLS_PORT_{tls}": "tls foo"})
    try:
        wait_listening(plain, proc)
        wait_listening(tls, proc)
        yield plain, tls, proc
    finally:
        proc.kill()
        proc.communicate()


def test_porter_serves_each_variables_value(porter_ports: tuple[int, int, subprocess.Popen[str]]) -> None:
    plain, tls, _ = porter_ports
    with urllib.request.urlopen(f"http://127.0.0.1:{plain}/anything") as resp:
        assert resp.read() == b"foo" and resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"https://127.0.0.1:{tls}/", context=ctx) as resp:
        assert resp.read() == b"tls foo"
    cert = ssl.DER_cert_to_PEM_cert(
        ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls)), server_hostname="x").getpeercert(True))
    verify = ssl.create_default_context(cadata=cert)  # the certificate names 127.0.0.1, like the image's
    with urllib.request.urlopen(f"https://127.0.0.1:{tls}/", context=verify) as resp:
        assert resp.read() == b"tls foo"


def test_porter_json_response_and_nothing_to_serve() -> None:
    port = free_port()
    proc = run_agnhost("porter", "--json-response", env={f"SERVE_PORT_{port}": "a<b"})
    try:
        wait_listening(port, proc)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/", method="POST", data=b"")
        with urllib.request.urlopen(req) as resp:
            assert resp.read() == b'{"Method":"POST","Body":"a\\u003cb"}'
            assert resp.headers["Content-Type"] == "application/json"
    finally:
        proc.kill()
        proc.communicate()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")}
    done = subprocess.run([sys.executable, "-m", "labkit.node.workloads.agnhost", "porter"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "fatal error: all goroutines are asleep - deadlock!" in done.stderr
    assert porter.go_json({"Body": "&"}) == '{"Body":"\\u0026"}'
