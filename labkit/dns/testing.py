"""A CoreDNS of labkit's running in this process on 127.0.0.1, over a prepared cluster index: for unit tests and
benchmarks that need the real plugin chain without an API server or a network namespace.

    async with LocalCoreDNS(kind_corefile(upstream="127.0.0.1:5300"), index) as dnsd:
        reply = await dnsd.handle(query_bytes)          # through the server, without sockets
        msg = await dnsd.query("web.lab.svc.cluster.local.", "A")   # over UDP to 127.0.0.1

Every port the Corefile names is replaced by 0 (an ephemeral port on 127.0.0.1); `bound` tells which.
"""

from __future__ import annotations

import asyncio
import io
import re
import socket
from pathlib import Path

import dns.message

from labkit.backends.bootstrap import COREFILE
from labkit.dns.coredns import CoreDNS, Environment
from labkit.dns.index import ClusterIndex
from labkit.dns.plugin import Log
from labkit.dns.plugins.kubernetes import StaticSources
from labkit.dns.server import exchange

KIND_COREFILE = COREFILE  # what kubeadm puts in the coredns ConfigMap


def kind_corefile(upstream: str | None = None, extra: str = "") -> str:
    """kind's Corefile with local ports: forward to `upstream` (or no forward at all), plus `extra` lines."""
    text = KIND_COREFILE
    if upstream is None:
        text = re.sub(r"    forward [^{]*\{[^}]*\}\n", "", text)
    else:
        text = text.replace("/etc/resolv.conf", upstream)
    if extra:
        text = text.replace("    loadbalance\n", f"    loadbalance\n{extra}")
    return text


def local_ports(corefile: str) -> str:
    """Every listening port of a Corefile → 0 on 127.0.0.1 (DNS keys, health, ready, prometheus)."""
    text = re.sub(r"^(\S+?):\d+(\s*\{)", r"\1:0\2", corefile, flags=re.M)
    text = re.sub(r"^(\s*(?:health|ready|prometheus))\s+:\d+", r"\1 127.0.0.1:0", text, flags=re.M)
    return re.sub(r"^(\s*(?:health|ready))(\s*\{|\s*$)", r"\1 127.0.0.1:0\2", text, flags=re.M)


def refusing_port(host: str = "127.0.0.1") -> int:
    """A port on `host` where nothing listens (UDP nor TCP), so every query there is refused at once, and that no
    socket's automatic bind can take: it lies below the ephemeral range. A freed ephemeral port would not do: a
    forwarder retrying a refused upstream opens thousands of sockets a second, and one of them, bound to that very
    port, would connect to itself and read its own query back."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in range(low - 1, 1023, -1):
        probes = [socket.socket(socket.AF_INET, kind) for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)]
        try:
            for probe in probes:
                probe.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise OSError(f"no free port below {low} on {host}")


class LocalCoreDNS:
    def __init__(self, corefile: str, index: ClusterIndex | None = None, *, local_ips: list[str] | None = None,
                 path: str = "/etc/coredns/Corefile") -> None:
        self.index = index if index is not None else ClusterIndex()
        ips = list(local_ips or [])
        self.env = Environment(listen_host="127.0.0.1", kube=StaticSources(self.index), local_ips=lambda: ips)
        self.fatal: list[str] = []
        self.env.fatal = self.fatal.append  # type: ignore[method-assign]
        self.corefile = local_ports(corefile)
        self.dns = CoreDNS(self.env, path, text=self.corefile)
        self.out = io.StringIO()
        self._saved_out = None

    @property
    def port(self) -> int:
        """The first DNS port bound."""
        return next(iter(self.dns.listeners.values())).port

    def http_port(self, plugin: str) -> int:
        """The port bound for health, ready or prometheus."""
        inst = self.dns.instance
        assert inst is not None
        for addr, routes in inst.http_routes.items():
            if any(p.strip("/") in (plugin, "metrics" if plugin == "prometheus" else plugin) for p in routes):
                return self.dns.bound[addr]
        raise KeyError(plugin)

    def logs(self) -> list[str]:
        return self.out.getvalue().splitlines()

    async def start(self) -> None:
        self._saved_out, Log.out = Log.out, self.out
        await self.dns.start()

    async def stop(self) -> None:
        await self.dns.stop()
        Log.out = self._saved_out

    async def __aenter__(self) -> LocalCoreDNS:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def reload(self, corefile: str) -> None:
        """restart() with another Corefile (its ports made local too); raises CorefileError on failure."""
        await self.dns.restart(local_ports(corefile))

    async def handle(self, data: bytes, proto: str = "udp", remote: tuple[str, int] = ("10.244.0.9", 40000)
                     ) -> bytes | None:
        """One message through the first server (memo first, then the chain), without sockets."""
        server = next(iter(self.dns.instance.servers.values()))  # type: ignore[union-attr]
        return server.fast(data, proto, remote) or await server.serve(data, proto, remote)

    async def ask(self, name: str, rdtype: str | int = "A", *, tcp: bool = False, **kw: object
                  ) -> dns.message.Message:
        """A query through handle(), parsed."""
        reply = await self.handle(dns.message.make_query(name, rdtype, **kw).to_wire(), "tcp" if tcp else "udp")
        assert reply is not None
        return dns.message.from_wire(reply)

    async def query(self, name: str, rdtype: str | int = "A", *, tcp: bool = False, port: int | None = None,
                    **kw: object) -> dns.message.Message:
        """A query over the loopback network."""
        q = dns.message.make_query(name, rdtype, **kw)
        raw = await asyncio.wait_for(exchange(q.to_wire(), "127.0.0.1", port or self.port, tcp), 8)
        return dns.message.from_wire(raw)


__all__ = ["KIND_COREFILE", "LocalCoreDNS", "kind_corefile", "local_ports", "refusing_port"]
