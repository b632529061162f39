"""labkit.dns.transports: queries sent from inside a network namespace the test makes (loopback inside it only)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.dns import dig as digmod
from labkit.dns import fixtures as f
from labkit.dns import transports
from labkit.dns.dig import LocalTransport, dig, dig_main, resolve
from labkit.dns.index import ClusterIndex
from labkit.dns.testing import LocalCoreDNS, kind_corefile
from labkit.netns import CLONE_NEWNET, setns
from labkit.node.names import Names

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make network namespaces")

NGINX = "nginx.default.svc.cluster.local."
NGINX_IP = "10.102.97.154"  # the article's ClusterIP (fixtures.article_objects); data only


def _make_netns(name: str) -> Path:
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return Names.netns_path(name)


def _del_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], check=False)


class ServerInNetns:
    """labkit's DNS server with the article's objects, run by a thread that entered `netns` (127.0.0.1 there)."""

    def __init__(self, netns: Path) -> None:
        self.netns = netns
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with open(self.netns) as ns:
            setns(ns.fileno(), CLONE_NEWNET)
        index = ClusterIndex()
        index.load(f.article_objects())
        index.set_synced()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            server = LocalCoreDNS(kind_corefile(upstream=None), index)
            await server.start()
            self.port = server.port
            self._ready.set()
            await self._stop.wait()
            await server.stop()

        asyncio.run(main())

    def __enter__(self) -> ServerInNetns:
        self._thread.start()
        assert self._ready.wait(10), "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def netns() -> Iterator[Path]:
    name = f"lkt-dns-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    path = _make_netns(name)
    try:
        yield path
    finally:
        _del_netns(name)


@pytest.fixture
def restore_transports() -> Iterator[None]:
    saved = (digmod._pod_factory, digmod._node_transport, digmod._node_factory, digmod._auto_tried)
    # Start from nothing installed, and never pick up a cluster that happens to run at ~/.labkit.
    digmod._pod_factory, digmod._node_transport, digmod._node_factory, digmod._auto_tried = None, None, None, True
    try:
        yield
    finally:
        digmod._pod_factory, digmod._node_transport, digmod._node_factory, digmod._auto_tried = saved


def test_socket_in_netns_lives_in_that_namespace(netns: Path) -> None:
    s = transports.socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # A socket's namespace shows in its /proc fd link target only indirectly; binding a port and finding it
        # listed in the namespace (and not in ours) tells for sure.
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        inside = subprocess.run(["ip", "netns", "exec", netns.name, "ss", "-Hlun", f"sport = :{port}"],
                                capture_output=True, text=True, check=True).stdout
        outside = subprocess.run(["ss", "-Hlun", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert f":{port}" in inside and f":{port}" not in outside
    finally:
        s.close()


def test_missing_namespace_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        transports.socket_in_netns(tmp_path / "nope", socket.AF_INET, socket.SOCK_DGRAM)


@pytest.mark.parametrize("tcp", [False, True])
def test_netns_transport_reaches_a_server_only_visible_in_the_namespace(netns: Path, tcp: bool) -> None:
    with ServerInNetns(netns) as srv:
        t = transports.NetnsTransport(netns, "nameserver 127.0.0.1\n")
        r = dig(NGINX, server="127.0.0.1", port=srv.port, tcp=tcp, transport=t)
        assert r.rcode == "NOERROR" and r.addresses == [NGINX_IP]
        assert [a["ttl"] for a in r.answer] == [30]
        # The same port on the host's loopback has nobody behind it: the query above did not come from here.
        with pytest.raises(OSError):
            dig(NGINX, server="127.0.0.1", port=srv.port, tcp=True, transport=LocalTransport(), timeout=0.5)


def test_resolve_uses_the_transports_resolv_conf(netns: Path) -> None:
    with ServerInNetns(netns) as srv:

        class Port(transports.NetnsTransport):
            def exchange(self, wire: bytes, server: str, port: int, tcp: bool, timeout: float) -> bytes:
                return super().exchange(wire, server, srv.port, tcp, timeout)

        rc = transports.cluster_first_resolv_conf("default", cluster_dns="127.0.0.1")
        res = resolve("nginx", transport=Port(netns, rc))
        assert [t.name for t in res.tries] == [NGINX]
        assert res.addresses == [NGINX_IP]


def test_cluster_first_resolv_conf_is_what_kubelet_writes() -> None:
    from labkit.node.podfiles import resolv_conf

    pod = {"metadata": {"namespace": "web"}, "spec": {}}
    assert transports.cluster_first_resolv_conf("web") == resolv_conf(pod)


def test_pod_transport_finds_the_pods_namespace_and_resolv_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                restore_transports: None) -> None:
    home = tmp_path / "home"
    uid = str(uuid.uuid4())
    names = Names.for_home(home)
    pod_dir = names.pod_dir(uid)
    pod_dir.mkdir(parents=True)
    (pod_dir / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    monkeypatch.setattr(transports, "get_pod", lambda kubeconfig, name, namespace: {
        "metadata": {"name": name, "namespace": namespace, "uid": uid}, "status": {"phase": "Running"}})
    with pytest.raises(FileNotFoundError, match="no network namespace"):
        transports.pod_transport("web-0", "default", home)
    path = _make_netns(names.pod_netns(uid))
    try:
        with ServerInNetns(path) as srv:
            transports.install_embedded(home)
            t = digmod.transport_for("web-0", "default")
            assert isinstance(t, transports.NetnsTransport) and t.netns_path == str(path)
            assert t.resolv_conf() == "nameserver 127.0.0.1\n"
            r = dig(NGINX, from_pod="web-0", port=srv.port)  # server from the pod's resolv.conf
            assert r.addresses == [NGINX_IP]
            node = digmod.transport_for(None, "web")
            assert isinstance(node, transports.NetnsTransport)
            assert node.netns_path == str(names.netns_path(names.node_netns))
            assert "search web.svc.cluster.local" in node.resolv_conf()
    finally:
        _del_netns(path.name)


def test_dig_main_json_through_an_installed_node_transport(netns: Path, restore_transports: None,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import json

    with ServerInNetns(netns) as srv:
        digmod.set_node_transport_factory(lambda ns: transports.NetnsTransport(netns, "nameserver 127.0.0.1\n"))
        assert dig_main([NGINX, "--port", str(srv.port), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["rcode"] == "NOERROR"
        assert [(a["type"], a["rdata"], a["ttl"]) for a in out["answer"]] == [("A", NGINX_IP, 30)]
        assert dig_main([NGINX, "SRV", "--port", str(srv.port), "--short"]) == 0  # unnamed port: bare SRV
        assert capsys.readouterr().out.strip() == "0 100 80 nginx.default.svc.cluster.local."


def test_dig_main_reports_a_missing_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_transports: None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    def missing(kubeconfig: object, name: str, namespace: str) -> dict:
        raise LookupError(f'pods "{name}" not found in namespace "{namespace}"')

    monkeypatch.setattr(transports, "get_pod", missing)
    transports.install_embedded(tmp_path)
    assert dig_main(["x.", "--from", "ghost", "-n", "lab"]) == 1
    assert 'pods "ghost" not found in namespace "lab"' in capsys.readouterr().err


def test_dig_main_with_a_home_uses_that_cluster_without_installing_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_transports: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    asked = []

    def missing(kubeconfig: object, name: str, namespace: str) -> dict:
        asked.append((str(kubeconfig), name, namespace))
        raise LookupError(f'pods "{name}" not found in namespace "{namespace}"')

    monkeypatch.setattr(transports, "get_pod", missing)
    monkeypatch.setattr(transports, "embedded_running", lambda home: True)
    assert dig_main(["x.", "--from", "ghost", "-n", "lab"], home=tmp_path) == 1
    assert asked == [(str(tmp_path / "kubeconfig"), "ghost", "lab")]
    assert digmod._pod_factory is None and digmod._node_factory is None
