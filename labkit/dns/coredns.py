"""The coredns process: a Corefile turned into servers and plugin chains, started, reloaded, stopped.

What `registry.k8s.io/coredns/coredns` runs in a kind cluster, behaving as CoreDNS 1.11.3 does:

- `python -m labkit.dns serve -conf /etc/coredns/Corefile` (the coredns Deployment's args) reads the Corefile;
  without `-conf`, `./Corefile`, else CoreDNS's default `.:53 { whoami log }`.
- Start-up: every directive is checked against CoreDNS's plugin list (`Unknown directive 'x'`), then set up in
  plugin.cfg order; a CoreDNS plugin labkit does not implement is an error naming it. A bad Corefile prints
  the error on stderr and exits 1 (CrashLoopBackOff), as `log.Fatal` does. Then the same lines as CoreDNS:
  `.:53`, `[INFO] plugin/reload: Running configuration SHA512 = ...`, `CoreDNS-1.11.3`,
  `linux/amd64, go1.21.11, a6338e9`.
- A server block's keys (`.:53`, `example.org:1053`, `dns://10.0.0.0/24`) give its zones and port; blocks on one
  port share a `server.Server` that routes each query to the block with the longest matching zone.
- Reload (the `reload` plugin, or `restart()`): a new instance is set up beside the running one; if that fails,
  the old one keeps serving. Listeners on unchanged ports are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
from aiohttp import web

from labkit import aio
from labkit.dns import corefile, wire
from labkit.dns.corefile import CorefileError, Dispenser
from labkit.dns.plugin import Controller, Log, Plugin
from labkit.dns.server import Listener, Server

VERSION = "1.11.3"
RELEASE = "linux/amd64, go1.21.11, a6338e9"
DEFAULT_COREFILE = ".:53 {\nwhoami\nlog\n}\n"  # CoreDNS's input when there is no Corefile

# plugin.cfg of CoreDNS v1.11.3, in order: every directive CoreDNS knows, and the order of the plugin chain.
DIRECTIVES = (
    "root", "metadata", "geoip", "cancel", "tls", "timeouts", "reload", "nsid", "bufsize", "bind", "debug", "trace",
    "ready", "health", "pprof", "prometheus", "errors", "log", "dnstap", "local", "dns64", "acl", "any", "chaos",
    "loadbalance", "tsig", "cache", "rewrite", "header", "dnssec", "autopath", "minimal", "template", "transfer",
    "hosts", "route53", "azure", "clouddns", "k8s_external", "kubernetes", "file", "auto", "secondary", "etcd",
    "loop", "forward", "grpc", "erratic", "whoami", "on", "sign", "view",
)  # fmt: skip
log = Log()


def setups() -> dict[str, Callable[[Controller], None]]:
    """The plugins labkit implements: directive → setup function."""
    from labkit.dns.plugins import (
        cache,
        errors,
        forward,
        health,
        hosts,
        kubernetes,
        loadbalance,
        loop,
        metrics,
        ready,
        reload,
        rewrite,
        whoami,
    )
    from labkit.dns.plugins import log as logplugin

    return {
        "reload": reload.setup, "ready": ready.setup, "health": health.setup, "prometheus": metrics.setup,
        "errors": errors.setup, "log": logplugin.setup, "loadbalance": loadbalance.setup, "cache": cache.setup,
        "rewrite": rewrite.setup, "hosts": hosts.setup, "kubernetes": kubernetes.setup, "loop": loop.setup,
        "forward": forward.setup, "whoami": whoami.setup,
    }  # fmt: skip


class Environment:
    """What outlives one Corefile: metrics, the cluster data sources, where to listen, what to read."""

    def __init__(self, *, listen_host: str = "", resolv_conf: str = "/etc/resolv.conf",
                 kube: Any = None, local_ips: Callable[[], list[str]] | None = None) -> None:
        from labkit.dns.plugins.kubernetes import KubeSources
        from labkit.dns.plugins.metrics import Metrics

        self.listen_host = listen_host  # "" = every address, as CoreDNS binds
        self.resolv_conf = resolv_conf
        self.metrics = Metrics()
        self.kube: KubeSources = kube if kube is not None else KubeSources()
        self.kube.bind(self)
        self.local_ips = local_ips or (list)
        self.generation = 0
        self.servers: list[Server] = []
        self.reload_failed = 0
        self.port_of: Callable[[int], int] = lambda port: port  # a block's port → the port bound (port 0 in tests)

    def fatal(self, msg: str) -> None:
        """log.Fatal: the message, then exit 1 (the loop plugin's verdict)."""
        Log.write(f"[FATAL] {msg}")
        os._exit(1)

    def changed(self) -> None:
        """Data behind memoized replies changed (cluster objects, a hosts file, the configuration)."""
        self.generation += 1
        for s in self.servers:
            s.forget()


@dataclass
class BlockConfig:
    """One server block: its zones and port, its plugins in chain order (dnsserver.Config)."""

    keys: list[str]  # normalised: dns://zone.:port
    zones: list[str]
    port: int
    instance: Instance
    plugins: list[Plugin] = field(default_factory=list)
    chain: Plugin | None = None
    zone: str = ""  # the zone this config is registered for in its server (one per key)
    metrics: bool = False  # the block has `prometheus` (its plugins show in coredns_plugin_enabled)

    def build_chain(self) -> None:
        """Link the plugins in setup (plugin.cfg) order: the first one sees each query first."""
        for a, b in zip(self.plugins, self.plugins[1:], strict=False):
            a.next = b
        self.chain = self.plugins[0] if self.plugins else None


def reverse_zones(cidr: str) -> list[str] | None:
    """cidr.Split + cidr.Reverse: the reverse zones of a network, on octet (IPv4) or nibble (IPv6) boundaries."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None
    step = 8 if net.version == 4 else 4
    aligned = -(-net.prefixlen // step) * step
    out = []
    for sub in net.subnets(new_prefix=aligned) if aligned != net.prefixlen else [net]:
        labels = sub.network_address.reverse_pointer.split(".")
        keep = aligned // step
        digits = 4 if net.version == 4 else 32
        out.append(".".join(labels[digits - keep :]) + ".")
    return out


def split_key(key: str) -> tuple[str, list[str], int | None]:
    """A server block key → (transport, zones, port or None) (InspectServerBlocks, plugin.SplitHostPort)."""
    transport = "dns"
    for scheme in ("tls", "dns", "quic", "grpc", "https", "unix"):
        if key.startswith(scheme + "://"):
            transport, key = scheme, key[len(scheme) + 3 :]
            break
    port = None
    colon = key.rfind(":")
    if colon == len(key) - 1:
        raise CorefileError(f'expecting data after last colon: "{key}"')
    if colon != -1 and key[colon + 1 :].isdigit():
        port, key = int(key[colon + 1 :]), key[:colon]
    if len(key) > 255:
        raise CorefileError(f"specified zone is too long: {len(key)} > 255")
    zones = reverse_zones(key) if "/" in key else None
    if zones is None:
        try:
            zones = [dns.name.from_text(key or ".").to_text().lower()]
        except dns.exception.DNSException:
            raise CorefileError(f"zone is not a valid domain name: {key}") from None
    if transport != "dns":
        raise CorefileError(f"{transport}://{key}: labkit's CoreDNS serves plain DNS (dns://) only")
    return transport, zones, port


class Instance:
    """One loaded Corefile: its server block configs, servers per port, hooks and HTTP routes."""

    def __init__(self, env: Environment, path: str, text: str, default_port: int = 53) -> None:
        self.env = env
        self.path = path
        self.text = text
        self.default_port = default_port
        self.configs: list[BlockConfig] = []
        self.servers: dict[int, Server] = {}
        self.startup_hooks: list[Callable[[], Awaitable[None] | None]] = []
        self.shutdown_hooks: list[Callable[[], Awaitable[None] | None]] = []
        self.http_routes: dict[str, dict[str, Callable[..., Awaitable[Any]]]] = {}
        self.reload_interval: tuple[float, float] | None = None  # set by the reload plugin
        self.lameduck = 0.0  # set by health's lameduck option
        self.shutting_down = False  # SIGTERM received: ready answers 503

    def plugins(self) -> list[Plugin]:
        return [p for c in self.configs for p in c.plugins]

    def setup(self) -> None:
        """Parse, check and set up every plugin; raises CorefileError with CoreDNS's message."""
        blocks = corefile.parse(self.path, self.text, DIRECTIVES)
        implemented = setups()
        seen: dict[tuple[str, int], str] = {}
        per_block: list[tuple[corefile.ServerBlock, BlockConfig]] = []
        for block in blocks:
            zones: list[str] = []
            port = None
            for key in block.keys:
                _t, zs, key_port = split_key(key)
                p = self.default_port if key_port is None else key_port
                zones += zs
                port = p if port is None else port
                for z in zs:
                    if (z, p) in seen:
                        raise CorefileError(f"cannot serve dns://{z}:{p} - it is already defined")
                    seen[(z, p)] = z
            port = self.default_port if port is None else port
            cfg = BlockConfig([f"dns://{z}:{port}" for z in zones], zones, port, self)
            per_block.append((block, cfg))
        for directive in DIRECTIVES:
            for block, cfg in per_block:
                toks = block.tokens.get(directive)
                if not toks:
                    continue
                c = Controller(directive, Dispenser(self.path, toks), cfg, self.env)
                fn = implemented.get(directive)
                if fn is None:
                    c.next()
                    raise CorefileError(f"plugin/{directive}: {c.err('this CoreDNS plugin is not built into labkit')}")
                fn(c)
        by_port: dict[int, list[BlockConfig]] = {}
        for _block, cfg in per_block:
            cfg.build_chain()
            self.configs.append(cfg)
            if cfg.metrics:
                for z in cfg.zones:
                    self.env.metrics.enabled.update((f"dns://:{cfg.port}", z, p.name) for p in cfg.plugins)
            for z in cfg.zones:
                zc = BlockConfig(cfg.keys, cfg.zones, cfg.port, self, cfg.plugins, cfg.chain, z)
                by_port.setdefault(cfg.port, []).append(zc)
        self.servers = {port: Server(port, cfgs, self.env) for port, cfgs in by_port.items()}

    async def run_hooks(self, hooks: list[Callable[[], Awaitable[None] | None]]) -> None:
        for fn in hooks:
            res = fn()
            if asyncio.iscoroutine(res):
                await res

    def startup_lines(self) -> list[str]:
        """`.:53`-style lines: each server's zones, sorted (dnsserver startUpZones)."""
        out = []
        for port, server in sorted(self.servers.items()):
            out += [f"{zone}:{port}" for zone in sorted(wire.name_to_text(z) for z in server.zones)]
        return out


def _http_addr(addr: str, listen_host: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    return (host or listen_host or "0.0.0.0"), int(port)


class CoreDNS:
    """The running process: the current instance, its listeners and HTTP sites."""

    def __init__(self, env: Environment, path: str, *, text: str | None = None, quiet: bool = False,
                 default_port: int = 53) -> None:
        self.env = env
        self.path = path
        self.text = text
        self.quiet = quiet
        self.default_port = default_port
        self.instance: Instance | None = None
        self.listeners: dict[int, Listener] = {}
        self.sites: dict[str, web.AppRunner] = {}
        self.bound: dict[str, int] = {}  # "dns:53" / HTTP address → the port actually bound (tests use port 0)
        self.hash = ""
        self._reload_task: asyncio.Task[None] | None = None
        env.port_of = self.port_of

    def read(self) -> str:
        if self.text is not None:
            return self.text
        try:
            with open(self.path) as f:
                return f.read()
        except OSError as exc:
            raise CorefileError(f"open {self.path}: {(exc.strerror or str(exc)).lower()}") from None

    def port_of(self, port: int) -> int:
        """The port a server block's port is bound to (differs only for port 0)."""
        lst = self.listeners.get(port)
        return lst.port if lst is not None else port

    async def start(self) -> None:
        """Load and start; raises CorefileError (the caller exits 1, as CoreDNS's log.Fatal)."""
        text = self.read()
        inst = Instance(self.env, self.path, text, self.default_port)
        inst.setup()
        await self._start_instance(inst)
        if not self.quiet:
            for line in inst.startup_lines():
                Log.write(line)
        self._instance_started(inst)
        if not self.quiet:
            Log.write(f"CoreDNS-{VERSION}")
            Log.write(RELEASE)

    async def _start_instance(self, inst: Instance) -> None:
        await inst.run_hooks(inst.startup_hooks)
        try:
            await self._activate(inst)
        except BaseException:
            await inst.run_hooks(inst.shutdown_hooks)
            raise

    def _instance_started(self, inst: Instance) -> None:
        """The InstanceStartupEvent: the reload plugin logs the configuration's hash and starts watching."""
        if inst.reload_interval is None:
            return
        self.hash = corefile.config_hash(self.path, inst.text)
        Log("reload").info(f"Running configuration SHA512 = {self.hash}")
        if self._reload_task is None or self._reload_task.done():
            self._reload_task = asyncio.ensure_future(self._watch())

    async def _activate(self, inst: Instance) -> None:
        """Bind what is new, point every listener at the new servers, drop what is gone."""
        old = self.instance
        new_listeners: dict[int, Listener] = {}
        try:
            for port, server in inst.servers.items():
                lst = self.listeners.get(port)
                if lst is None:
                    lst = Listener(server, self.env.listen_host, port)
                    try:
                        await lst.start()
                    except OSError as exc:
                        raise CorefileError(f"listen tcp :{port}: bind: {(exc.strerror or str(exc)).lower()}"
                                            ) from None
                    new_listeners[port] = lst
            await self._http(inst)
        except BaseException:
            for lst in new_listeners.values():
                await lst.stop()
            raise
        self.listeners.update(new_listeners)
        for port, server in inst.servers.items():
            self.listeners[port].handler = server
            self.bound[f"dns:{port}"] = self.listeners[port].port
        for port in [p for p in self.listeners if p not in inst.servers]:
            await self.listeners.pop(port).stop()
        self.env.servers = list(inst.servers.values())
        self.instance = inst
        self.env.changed()
        if old is not None:
            await old.run_hooks(old.shutdown_hooks)

    async def _http(self, inst: Instance) -> None:
        """Start the health/ready/metrics listeners the new instance needs; stop the ones it no longer needs."""
        wanted = {_http_addr(a, self.env.listen_host): (a, routes) for a, routes in inst.http_routes.items()}
        for key in [k for k in self.sites if _http_addr(k, self.env.listen_host) not in wanted]:
            await self.sites.pop(key).cleanup()
        for (host, port), (addr, routes) in wanted.items():
            if addr in self.sites:
                await self.sites.pop(addr).cleanup()
            app = web.Application()
            for path, handler in routes.items():
                app.router.add_get(path, handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, host, port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                await runner.cleanup()
                raise CorefileError(f"listen tcp {addr}: bind: {(exc.strerror or str(exc)).lower()}") from None
            self.sites[addr] = runner
            self.bound[addr] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def restart(self, text: str) -> None:
        """caddy's Restart: set the new Corefile up beside the running one; on failure keep the old one."""
        Log.write("[INFO] Reloading")
        try:
            inst = Instance(self.env, self.path, text, self.default_port)
            inst.setup()
            await self._start_instance(inst)
        except CorefileError as exc:
            log.error(f"Restart failed: starting with listener file descriptors: {exc}")
            raise CorefileError(f"starting with listener file descriptors: {exc}") from None
        self._instance_started(inst)
        Log.write("[INFO] Reloading complete")

    async def _watch(self) -> None:
        """The reload plugin's ticker: re-read the Corefile; on a new hash, restart."""
        rlog = Log("reload")
        while self.instance is not None and self.instance.reload_interval is not None:
            interval, jitter = self.instance.reload_interval
            await asyncio.sleep(interval + jitter)
            try:
                text = self.read()
            except CorefileError:
                continue
            try:
                digest = corefile.config_hash(self.path, text)
            except CorefileError as exc:
                rlog.warning(f"Corefile parse failed: {exc}")
                continue
            if digest == self.hash:
                continue
            self.hash = digest  # never retried with the same content, even if it fails
            try:
                await self.restart(text)
            except CorefileError as exc:
                rlog.error(f"Corefile changed but reload failed: {exc}")
                self.env.reload_failed += 1
        # The loop ends when the running Corefile has no `reload` any more.

    async def stop(self) -> None:
        if self._reload_task is not None:
            self._reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reload_task
        if self.instance is not None:
            await self.instance.run_hooks(self.instance.shutdown_hooks)
        for lst in self.listeners.values():
            await lst.stop()
        self.listeners.clear()
        for runner in self.sites.values():
            await runner.cleanup()
        self.sites.clear()
        await self.env.kube.close()

    async def __aenter__(self) -> CoreDNS:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# ------------------------------------------------------------------------------------------------ the binary


def _pod_ips() -> list[str]:
    from labkit.dns.plugins.kubernetes import local_ips

    return local_ips()


async def _run(dns: CoreDNS) -> int:
    try:
        await dns.start()
    except CorefileError as exc:
        print(exc, file=sys.stderr, flush=True)
        await dns.stop()
        return 1
    await aio.stop_event().wait()
    Log.write("[INFO] SIGTERM: Shutting down servers then terminating")
    inst = dns.instance
    if inst is not None:
        inst.shutting_down = True
    if inst is not None and inst.lameduck > 0:
        Log("health").info(f"Going into lameduck mode for {_go_duration(inst.lameduck)}")
        await asyncio.sleep(inst.lameduck)
    await dns.stop()
    return 0


def _go_duration(seconds: float) -> str:
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds}s"


def serve_main(argv: list[str]) -> int:
    """`coredns [-conf FILE] [-dns.port P | -p P] [-quiet] [-version] [-plugins]`."""
    ap = argparse.ArgumentParser(prog="coredns", add_help=False)
    ap.add_argument("-conf", default="", help="Corefile to load (default \"Corefile\")")
    ap.add_argument("-dns.port", "-p", dest="port", default="53", help="Default port")
    ap.add_argument("-quiet", action="store_true", help="Quiet mode (no initialization output)")
    ap.add_argument("-version", action="store_true", help="Show version")
    ap.add_argument("-plugins", action="store_true", help="List installed plugins")
    ap.add_argument("-pidfile", default="", help="Path to write pid file")
    ap.add_argument("-h", "-help", "--help", action="help")
    args, extra = ap.parse_known_args(argv)
    if extra:
        print(f"extra command line arguments: {extra}", file=sys.stderr)
        return 1
    if args.version:
        print(f"CoreDNS-{VERSION}\n{RELEASE}")
        return 0
    if args.plugins:
        print("Server types:\n  dns\n\nCaddyfile loaders:\n  flag\n  default\n\nOther plugins:")
        print("\n".join(f"  dns.{name}" for name in sorted(setups())))
        return 0
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    path, text = args.conf, None
    if not path:
        path = "Corefile"
        if not os.path.exists(path):
            text = DEFAULT_COREFILE.replace(":53", f":{args.port}")
    env = Environment(local_ips=_pod_ips)
    dns = CoreDNS(env, path, text=text, quiet=args.quiet, default_port=int(args.port))
    return aio.run(_run(dns)) or 0


__all__ = ["DIRECTIVES", "BlockConfig", "CoreDNS", "Environment", "Instance", "serve_main", "split_key"]
