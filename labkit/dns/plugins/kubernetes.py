"""kubernetes [ZONES...] { pods disabled|insecure|verified; ttl N; fallthrough [ZONES]; endpoint_pod_names;
namespaces NS...; labels SELECTOR; namespace_labels SELECTOR; ignore empty_service; noendpoints;
kubeconfig FILE [CONTEXT] }: the cluster's records (plugin/kubernetes), answered by records.Lookup.

- Zones default to the server block's; at least one must be a forward zone (the first such is the primary:
  PTR targets are named in it). kind: `kubernetes cluster.local in-addr.arpa ip6.arpa`.
- Answers have AA set (log flags `qr,aa,rd`); NXDOMAIN and NODATA carry the zone's SOA.
- A name error in a `fallthrough` zone goes on to the next plugin (kind: reverse lookups of addresses that are
  not the cluster's go to `forward`).
- Until the API has been listed, name errors are SERVFAIL; start-up waits up to 5 s for that, logging
  `waiting for Kubernetes API before starting server` every 0.5 s.
- The cluster objects come from list+watch of Namespaces, Services, EndpointSlices and Pods (in-cluster service
  account, or `kubeconfig`); `labels` / `namespace_labels` become label selectors of those watches. One watch
  set serves every block and reload that asks for the same objects.
- `endpoint`, `tls` (reaching an API server from outside the cluster) are not built into labkit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from labkit.dns import request as rq
from labkit.dns import wire
from labkit.dns.corefile import CorefileError
from labkit.dns.index import ClusterIndex
from labkit.dns.plugin import Controller, Log, Plugin
from labkit.dns.plugins.cache import in_zones
from labkit.dns.records import Lookup, NeedUpstream, Question, UpstreamAnswer, is_reverse
from labkit.dns.request import Reply, Request

if TYPE_CHECKING:
    from labkit.dns.coredns import Environment

log = Log("kubernetes")
STARTUP_TIMEOUT = 5.0
SIOCGIFADDR = 0x8915


# ------------------------------------------------------------------------------------------------ the data


@dataclass(frozen=True)
class SourceKey:
    """What decides which objects are watched."""

    kubeconfig: str = ""
    labels: str = ""
    namespace_labels: str = ""
    endpoints: bool = True


class KubeSource:
    """An index kept current by informers (or filled by hand, in tests)."""

    def __init__(self, key: SourceKey, index: ClusterIndex) -> None:
        self.key = key
        self.index = index
        self.users = 0
        self.task: asyncio.Task[None] | None = None

    @property
    def synced(self) -> bool:
        return self.index.synced


class KubeSources:
    """The process's watch sets, shared by plugins (and kept across reloads) that ask for the same objects."""

    def __init__(self) -> None:
        self.sources: dict[SourceKey, KubeSource] = {}
        self.on_change = lambda: None

    def bind(self, env: Environment) -> None:
        self.on_change = env.changed

    def acquire(self, key: SourceKey) -> KubeSource:
        src = self.sources.get(key)
        if src is None:
            client = api_client(key)
            src = self.sources[key] = KubeSource(key, ClusterIndex())
            src.index.add_listener(lambda: self.on_change())
            src.task = asyncio.ensure_future(run_informers(src, client))
        src.users += 1
        return src

    def release(self, src: KubeSource) -> None:
        src.users -= 1
        if src.users <= 0 and self.sources.get(src.key) is src:
            del self.sources[src.key]
            if src.task is not None:
                src.task.cancel()

    async def close(self) -> None:
        for src in list(self.sources.values()):
            if src.task is not None:
                src.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await src.task
        self.sources.clear()


class StaticSources(KubeSources):
    """One prepared index for every plugin (unit tests, benchmarks without an API server)."""

    def __init__(self, index: ClusterIndex) -> None:
        super().__init__()
        self._src = KubeSource(SourceKey(), index)
        index.add_listener(lambda: self.on_change())

    def acquire(self, key: SourceKey) -> KubeSource:
        return self._src

    def release(self, src: KubeSource) -> None:
        pass

    async def close(self) -> None:
        pass


def api_client(key: SourceKey) -> Any:
    """The API client (kubeconfig, or the pod's service account); CorefileError if there is no configuration."""
    from labkit.client import Client

    if key.kubeconfig:
        try:
            return Client.from_kubeconfig(key.kubeconfig, user_agent="coredns")
        except Exception as exc:
            raise CorefileError(f"plugin/kubernetes: invalid configuration: {exc}") from None
    if not (os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("KUBERNETES_SERVICE_PORT")):
        raise CorefileError("plugin/kubernetes: unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST "
                            "and KUBERNETES_SERVICE_PORT must be defined")
    return Client.in_cluster(user_agent="coredns")


async def run_informers(src: KubeSource, client: Any) -> None:
    """List+watch into the index; mark it synced once every resource has listed."""
    from labkit.client import Informer

    key = src.key
    selectors = {"namespaces": key.namespace_labels or None, "services": key.labels or None,
                 "endpointslices": key.labels or None, "pods": None}
    if not key.endpoints:
        del selectors["endpointslices"]
    informers = []
    tasks = []
    for res, selector in selectors.items():
        inf = Informer(client, res, label_selector=selector)
        inf.add_handler(src.index.handler_for(res))
        informers.append(inf)
        tasks.append(asyncio.ensure_future(inf.run()))
    try:
        await asyncio.gather(*(i.wait_synced() for i in informers))
        src.index.set_synced()
        # The synced index is long-lived: keep it out of the cyclic GC's full collections, whose pauses
        # would show in the latency tail.
        gc.collect()
        gc.freeze()
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await client.close()


def local_ips() -> list[str]:
    """boundIPs for a server on every address: this namespace's non-loopback addresses (the pod IP)."""
    if os.environ.get("POD_IP"):
        return [os.environ["POD_IP"]]
    # ioctl and /proc rather than pyroute2: importing pyroute2 would cost the server ~20 MB of memory.
    addrs: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _index, name in socket.if_nameindex():
            if name == "lo":
                continue
            try:
                res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address on this interface
            addrs.append(socket.inet_ntoa(res[20:24]))
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as f:
        for line in f:
            hexaddr, _idx, _plen, scope, _flags, name = line.split()
            if name != "lo" and scope == "00":  # global scope only (no link-local)
                addrs.append(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    return [a for a in addrs if not a.startswith("127.")]


# ------------------------------------------------------------------------------------------------ the plugin


class Kubernetes(Plugin):
    name = "kubernetes"

    def __init__(self, zones: list[str]) -> None:
        self.zones = zones
        self.zone_names = sorted((wire.name_from_text(z) for z in zones), key=len, reverse=True)
        self.primary = next(z for z in zones if not is_reverse(wire.name_from_text(z)))
        self.ttl = 5
        self.pods = "disabled"
        self.fallthrough: list[str] | None = None
        self.endpoint_pod_names = False
        self.namespaces: set[str] = set()
        self.ignore_empty_service = False
        self.key = SourceKey()
        self.source: KubeSource | None = None
        self.lookup: Lookup | None = None

    def ready(self) -> bool | None:
        return self.source is not None and self.source.synced

    def start(self, env: Environment) -> None:
        self.source = env.kube.acquire(self.key)
        self.lookup = Lookup(self.source.index, self.primary, self.ttl, self.pods, env.local_ips(),
                             namespaces=self.namespaces, endpoint_pod_names=self.endpoint_pod_names,
                             ignore_empty_service=self.ignore_empty_service)

    async def wait_synced(self) -> None:
        """The start-up hook: up to 5 s for the API, logging every 0.5 s (InitKubeCache onStart)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STARTUP_TIMEOUT
        next_log = loop.time() + 0.5
        while self.source is not None and not self.source.synced:
            now = loop.time()
            if now >= deadline:
                log.warning("starting server with unsynced Kubernetes API")
                return
            if now >= next_log:
                log.info("waiting for Kubernetes API before starting server")
                next_log += 0.5
            await asyncio.sleep(0.1)

    def stop(self, env: Environment) -> None:
        if self.source is not None:
            env.kube.release(self.source)

    def falls_through(self, name: str) -> bool:
        return self.fallthrough is not None and (not self.fallthrough or bool(in_zones(name, self.fallthrough)))

    async def serve(self, req: Request) -> Reply:
        lname = wire.lower(req.qname)
        zone_len = next((len(z) for z in self.zone_names if lname[len(lname) - len(z) :] == z), -1)
        if zone_len < 0 or self.lookup is None:
            return await self.next_or_failure(req)
        zone = req.qname[len(req.qname) - zone_len :]
        question = Question(req.qname, req.qtype, zone)
        upstream: dict[tuple[wire.Name, int], UpstreamAnswer] = {}
        for _ in range(12):
            try:
                ans = self.lookup.answer(question, upstream)
                break
            except NeedUpstream as need:
                upstream[(wire.lower(need.target), need.qtype)] = await self._resolve(req, need)
        else:
            return Reply(None, wire.SERVFAIL, "too many upstream lookups")
        if upstream:
            req.memo = False
        if ans.rcode == wire.REFUSED:  # zone transfers
            return Reply(None, wire.REFUSED)
        if ans.rcode == wire.NXDOMAIN:
            if self.falls_through(req.name()):
                return await self.next_or_failure(req)
            if not self.lookup.index.synced:
                ans.rcode = wire.SERVFAIL
        m = rq.reply_to(req)
        m.set_flag(wire.AA, ans.authoritative)
        m.set_flag(wire.TC, ans.truncated)
        m.rcode = ans.rcode
        m.answer, m.authority, m.extra = ans.answer, ans.authority, ans.extra
        return Reply(m, wire.NOERROR, None, self.name)

    async def _resolve(self, req: Request, need: NeedUpstream) -> UpstreamAnswer:
        """An out-of-zone ExternalName target, through the server's own chains (plugin/pkg/upstream)."""
        if req.server is None:
            return UpstreamAnswer([])
        msg = await req.server.lookup(req, need.target, need.qtype)
        if msg is None:
            return UpstreamAnswer([])
        return UpstreamAnswer(list(msg.answer), bool(msg.flags & wire.TC))


def _zone(text: str) -> str:
    return text.lower() if text.endswith(".") else text.lower() + "."


def setup(c: Controller) -> None:
    k: Kubernetes | None = None
    while c.next_once():
        zones = [_zone(z) for z in c.remaining_args()] or list(c.zones)
        if all(is_reverse(wire.name_from_text(z)) for z in zones):
            raise c.plugin_err("non-reverse zone name must be used")
        k = Kubernetes(zones)
        while c.next_block():
            _option(c, k)
    assert k is not None
    if k.namespaces and k.key.namespace_labels:
        raise c.plugin_err(c.err("namespaces and namespace_labels cannot both be set"))
    plugin = k
    env = c.env
    c.add_plugin(plugin)
    c.on_startup(lambda: plugin.start(env))
    c.on_startup(plugin.wait_synced)
    c.on_shutdown(lambda: plugin.stop(env))


def _option(c: Controller, k: Kubernetes) -> None:
    opt = c.val()
    args = c.remaining_args()
    key = k.key
    if opt == "endpoint_pod_names":
        if args:
            raise c.plugin_err(c.arg_err())
        k.endpoint_pod_names = True
    elif opt == "pods":
        if len(args) != 1:
            raise c.plugin_err(c.arg_err())
        if args[0] not in ("disabled", "insecure", "verified"):
            raise c.plugin_err(f"wrong value for pods: {args[0]},  must be one of: disabled, verified, insecure")
        k.pods = args[0]
    elif opt == "namespaces":
        if not args:
            raise c.plugin_err(c.arg_err())
        k.namespaces.update(args)
    elif opt in ("labels", "namespace_labels"):
        if not args:
            raise c.plugin_err(c.arg_err())
        selector = " ".join(args)
        k.key = SourceKey(key.kubeconfig, selector if opt == "labels" else key.labels,
                          selector if opt == "namespace_labels" else key.namespace_labels, key.endpoints)
    elif opt == "fallthrough":
        k.fallthrough = [_zone(z) for z in args]
    elif opt == "ttl":
        if not args:
            raise c.plugin_err(c.arg_err())
        try:
            t = int(args[0])
        except ValueError:
            raise c.plugin_err(f'strconv.Atoi: parsing "{args[0]}": invalid syntax') from None
        if not 0 <= t <= 3600:
            raise c.plugin_err(c.err(f"ttl must be in range [0, 3600]: {t}"))
        k.ttl = t
    elif opt == "noendpoints":
        if args:
            raise c.plugin_err(c.arg_err())
        k.key = SourceKey(key.kubeconfig, key.labels, key.namespace_labels, False)
    elif opt == "ignore":
        if args and args[0] == "empty_service":
            k.ignore_empty_service = True
        elif args:
            raise c.plugin_err(f"unable to parse ignore value: '{args[0]}'")
    elif opt == "kubeconfig":
        if len(args) not in (1, 2):
            raise c.plugin_err(c.arg_err())
        if len(args) == 2:
            raise c.plugin_err(c.err("kubeconfig CONTEXT is not built into labkit (the current context is used)"))
        k.key = SourceKey(args[0], key.labels, key.namespace_labels, key.endpoints)
    elif opt in ("endpoint", "tls"):
        raise c.plugin_err(c.err(f"property '{opt}' (an API server outside the cluster) is not built into labkit"))
    else:
        raise c.plugin_err(c.err(f"unknown property '{opt}'"))


__all__ = ["KubeSource", "KubeSources", "Kubernetes", "SourceKey", "StaticSources", "local_ips", "setup"]
