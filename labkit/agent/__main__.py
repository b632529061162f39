"""`python -m labkit.agent`: the node's kube-proxy, in IPVS mode or nftables mode, knowing only the Kubernetes API.

`--proxy-mode ipvs` (the article's) programs IPVS virtual servers (the userspace data plane here, kernel IPVS
where it exists); `--proxy-mode nftables` programs kube-proxy's `ip kube-proxy` table into the node namespace's
kernel (nftables.py). Both render the same desired state (desired.py, incremental.py).

Informers on Services and EndpointSlices; nothing is programmed until both have synced; every change requests a
sync, coalesced by a bounded-frequency runner (kube-proxy's BoundedFrequencyRunner: at most one run per
`--min-sync-period`, at least one per `--sync-period`); draining real servers are re-checked periodically.
At start the backend's existing state is adopted and whatever is not desired is removed (cleanLegacyService).

Syncs are incremental (incremental.py): a sync recomputes and diffs only the Services whose Service or
EndpointSlices changed since the last one, so one change costs the same at 10 or 1,000 Services. A full sync
(everything recomputed from the informer caches, the whole table diffed) runs first, then at least once per
`--sync-period`, and after a sync in which an operation failed.

The userspace data plane keeps client pods' addresses towards backend pods (transparent.py, `--cluster-cidr`),
as kernel IPVS NAT does, and masquerades where kube-proxy does.

With `--netns` the whole process joins the node's network namespace first thing, as kube-proxy runs with
hostNetwork: VIP listeners, connections to pods, kube-ipvs0 and IPVS netlink are all native there. Only the API
client's connections are made in the namespace the agent was started in, where the kubeconfig's address is.

A restarted userspace agent serves its saved table (state.py) before it imports the API client, so traffic
through the VIPs resumes a few hundred milliseconds after a crash; the first sync then adopts that table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from labkit import aio, klog
from labkit.agent import transparent
from labkit.agent.control import serve_control
from labkit.agent.incremental import DesiredCache
from labkit.agent.ipvsfilter import IpvsFilter
from labkit.agent.kernel import DummyDevice, KernelBackend, kernel_ipvs_available, set_sysctls
from labkit.agent.model import Table, VSKey
from labkit.agent.nftables import NftablesProxier, NftError
from labkit.agent.nftables import cleanup as nftables_cleanup
from labkit.agent.state import TableSaver, load_table, restore_ops
from labkit.agent.sync import Syncer
from labkit.agent.userspace import UserspaceDataPlane

log = logging.getLogger("labkit.agent")


class BoundedFrequencyRunner:
    """Runs `fn` when requested, no more often than `min_interval`, and at least every `max_interval`."""

    def __init__(self, fn: Any, min_interval: float, max_interval: float, burst: int = 2) -> None:
        self.fn, self.min_interval, self.max_interval = fn, min_interval, max_interval
        self.burst = burst
        self._event = asyncio.Event()
        self._runs: list[float] = []

    def request(self) -> None:
        self._event.set()

    async def loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), self.max_interval)
            self._event.clear()
            if self.min_interval > 0:
                # token bucket: `burst` runs allowed within one min_interval
                now = time.monotonic()
                self._runs = [t for t in self._runs if now - t < self.min_interval]
                if len(self._runs) >= self.burst:
                    await asyncio.sleep(self.min_interval - (now - self._runs[0]))
            self._runs.append(time.monotonic())
            try:
                self.fn()
            except Exception:
                log.exception("sync failed")


def node_addresses(netns: str | None, skip: str = "kube-ipvs0") -> list[str]:
    """The node's addresses (all interfaces but kube-ipvs0; loopback dropped later)."""
    from pyroute2 import IPRoute, NetNS

    with NetNS(netns) if netns else IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        return [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr() if names.get(a["index"]) != skip]


class Agent:
    """Watches the API and keeps the backend's table equal to the desired state."""

    def __init__(self, client: Any, node_name: str, backend: Any, scheduler: str = "rr",
                 netns: str | None = None, node_ips: list[str] | None = None, state_file: str | None = None,
                 ) -> None:
        self.client, self.node_name, self.backend, self.scheduler = client, node_name, backend, scheduler
        self.netns = netns
        self._node_ips = node_ips
        self.state_file = state_file
        # nftables mode: the backend is the nftables proxier, which renders ServicePorts itself
        self.proxier: NftablesProxier | None = backend if isinstance(backend, NftablesProxier) else None
        self.syncer = Syncer(backend)
        self.cache = DesiredCache(node_name, scheduler, ipvs=self.proxier is None)
        self._runner: BoundedFrequencyRunner | None = None
        self.full_period = 30.0       # a full sync at least this often (the runner's sync period)
        self._full_needed = True
        self._last_full = 0.0
        self._save_handle: asyncio.TimerHandle | None = None
        self._last_save_seconds = 0.0
        self._saver: TableSaver | None = None
        self._changed: set[VSKey] | None = None  # virtual servers changed since the last save (None: any)
        self.services: Any = None
        self.slices: Any = None
        self.last_sync: dict[str, float] = {}  # when the last sync ran and how long it took (bench, logs)
        self.first_sync: dict[str, float] = {}

    def node_ips(self) -> list[str]:
        if self._node_ips is not None:
            return self._node_ips
        try:
            return node_addresses(self.netns)
        except Exception:
            log.exception("cannot list node addresses")
            return []

    def sync(self) -> None:
        """A partial sync of the Services changed since the last sync, or a full one when it is due."""
        start = time.perf_counter()
        full = self._full_needed or time.monotonic() - self._last_full >= self.full_period
        if self.proxier is not None:
            self._sync_nftables(full, start)
            return
        failed_before = self.syncer.failures
        if full:
            self._last_full = time.monotonic()
            self._full_needed = False
            desired = self.cache.rebuild(self.services.items(), self.slices.items(), self.node_ips())
            ops = self.syncer.sync(desired)
        else:
            keys = self.cache.update()
            ops = self.syncer.sync(self.cache.state(), keys) if keys else []
        if self.syncer.failures != failed_before:
            self._full_needed = True  # a partial sync trusts the table; after a failure, check all of it
        if ops:
            self.save_state(None if full else {op.vs.key for op in ops})
            log.info("sync (%s): %d operations in %.1f ms: %s", "full" if full else "partial", len(ops),
                     (time.perf_counter() - start) * 1e3, "; ".join(map(str, ops[:20])))
        self.last_sync = {"at": time.time(), "seconds": time.perf_counter() - start, "ops": len(ops),
                          "full": full}
        if not self.first_sync:
            self.first_sync = self.last_sync

    def _sync_nftables(self, full: bool, start: float) -> None:
        """One `nft -f` transaction: everything (full) or the Services changed since the last sync."""
        assert self.proxier is not None
        if full:
            self._last_full = time.monotonic()
            self._full_needed = False
            node_ips = self.node_ips()
            self.cache.rebuild(self.services.items(), self.slices.items(), node_ips)
            self.proxier.node_ips = [ip for ip in node_ips if "." in ip and not ip.startswith("127.")]
            self.cache.take_changed()
            changed = None
        else:
            self.cache.update()
            changed = self.cache.take_changed()
        lines = 0
        if full or changed or self.proxier.stale_due() == 0:
            try:
                lines = self.proxier.sync(self.cache.ports, changed)
            except NftError:
                log.exception("nftables sync failed; the next sync is a full one")
                self._full_needed = True
        if lines:
            log.info("sync (%s): a transaction of %d lines in %.1f ms", "full" if full else "partial", lines,
                     (time.perf_counter() - start) * 1e3)
        self.last_sync = {"at": time.time(), "seconds": time.perf_counter() - start, "ops": lines, "full": full}
        if not self.first_sync:
            self.first_sync = self.last_sync
        due = self.proxier.stale_due()
        if due is not None and self._runner is not None:  # come back to delete the chains gone stale
            asyncio.get_running_loop().call_later(due + 0.05, self._runner.request)

    # Saving never takes more than about 1/SAVE_COST_RATIO of the agent's time: a save re-encodes only what changed
    # but still writes the whole file, so under a burst over thousands of services saves are spaced out further.
    SAVE_COST_RATIO = 20

    def save_state(self, changed: set[VSKey] | None = None, delay: float = 0.1) -> None:
        """Save the table soon, once for a burst of syncs: writing 1,000 services takes milliseconds that
        the next change should not wait for. What a SIGKILL loses in between, the restarted agent's first
        (full) sync puts right: the saved table only spares the data plane a gap while the agent restarts.
        `changed`: the virtual servers the change touched (None: any)."""
        if not self.state_file:
            return
        if changed is None or self._changed is None:
            self._changed = None
        else:
            self._changed |= changed
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._save_now()
            return
        if self._save_handle is None:
            delay = max(delay, self._last_save_seconds * self.SAVE_COST_RATIO)
            self._save_handle = loop.call_later(delay, self._save_now)

    def flush_state(self) -> None:
        """Save now if a save is pending (a clean stop keeps the newest table)."""
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save_now()

    def _save_now(self) -> None:
        self._save_handle = None
        snapshot = getattr(self.backend, "config_table", None) or self.backend.list
        changed, self._changed = self._changed, set()
        start = time.perf_counter()
        try:
            if self._saver is None:
                self._saver = TableSaver(self.state_file)  # type: ignore[arg-type]
                changed = None
            self._saver.save(snapshot(), changed)
        except Exception:  # never lose track of what is unsaved: write all of it next time
            log.exception("cannot save the table to %s", self.state_file)
            self._saver, self._changed = None, None
        self._last_save_seconds = time.perf_counter() - start

    async def run(self, sync_period: float = 30.0, min_sync_period: float = 0.0,
                  graceful_period: float = 60.0) -> None:
        from labkit.client import Informer

        self.services = Informer(self.client, "services")
        self.slices = Informer(self.client, "endpointslices")
        runner = BoundedFrequencyRunner(self.sync, min_sync_period, sync_period)
        self._runner = runner
        # nftables mode: a full resync only after a failure or once an hour (kube-proxy's FullSyncPeriod); partial
        # syncs rewrite what changed, and a periodic full one would rewrite a thousand Services' chains
        self.full_period = sync_period if self.proxier is None else max(sync_period, 3600.0)
        synced = False

        def changed(*_: Any) -> None:
            if synced:
                runner.request()

        self.services.add_handler(self.cache.service_event)
        self.slices.add_handler(self.cache.slice_event)
        self.services.add_handler(changed)
        self.slices.add_handler(changed)
        tasks = [asyncio.create_task(self.services.run()), asyncio.create_task(self.slices.run())]
        try:
            await asyncio.gather(self.services.wait_synced(), self.slices.wait_synced())
            synced = True
            self.sync()  # first sync as soon as both caches are full
            tasks.append(asyncio.create_task(runner.loop()))
            if self.proxier is None:
                tasks.append(asyncio.create_task(self._graceful_loop(graceful_period)))
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def _graceful_loop(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                ops = self.syncer.process_graceful()
                if ops:
                    self.save_state({op.vs.key for op in ops})
            except Exception:
                log.exception("graceful termination check failed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m labkit.agent", description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", help="kubeconfig path (default: in-cluster service account)")
    p.add_argument("--node-name", required=True)
    p.add_argument("--proxy-mode", choices=("ipvs", "nftables"), default="ipvs",
                   help="kube-proxy's mode: IPVS virtual servers, or the nftables ruleset in the node's kernel")
    p.add_argument("--backend", choices=("kernel", "userspace", "auto"), default="auto",
                   help="ipvs mode: kernel IPVS or the userspace data plane (auto: kernel if it exists)")
    p.add_argument("--scheduler", default="rr")
    p.add_argument("--netns", help="the node's network namespace (the agent joins it: sockets, VIPs, IPVS)")
    p.add_argument("--control-socket", help="unix socket serving the live table as JSON")
    p.add_argument("--state-file", help="userspace: where the table is saved for a restart "
                                        "(default: ipvs-table.json beside the control socket)")
    p.add_argument("--sync-period", type=float, default=30.0)
    p.add_argument("--min-sync-period", type=float, default=0.0)
    p.add_argument("--graceful-check-period", type=float, default=60.0, help="rsCheckDeleteInterval (kube-proxy: 60)")
    p.add_argument("--tcp-fin-timeout", type=int, default=120, help="userspace: seconds closed TCP conns stay InAct")
    p.add_argument("--udp-timeout", type=int, default=300, help="userspace: idle seconds before a UDP flow expires")
    p.add_argument("--node-ip", action="append", help="node addresses for NodePort (default: discovered)")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16",
                   help="userspace: the pod network (kube-proxy's --cluster-cidr); connections from a pod to a pod "
                        "keep the client's address, others are masqueraded; '' masquerades everything")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.state_file is None and args.control_socket:
        args.state_file = str(Path(args.control_socket).with_name("ipvs-table.json"))
    return args


def enter_netns(name: str) -> int:
    """Move this (still single-threaded) process into the named network namespace; returns an fd of the
    namespace it left. setns(2) moves only the calling thread, and threads started later inherit its namespace,
    so this must run before any thread exists."""
    from labkit import netns
    from labkit.node.names import Names

    if threading.active_count() != 1:
        raise RuntimeError("enter_netns must run before any thread is started")
    left = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open(Names.netns_path(name), os.O_RDONLY)
    try:
        netns.setns(fd, netns.CLONE_NEWNET)
    finally:
        os.close(fd)
    return left


def api_client(args: argparse.Namespace, home_netns_fd: int | None) -> Any:
    """The API client; with `home_netns_fd` its connections are made in that namespace (the kubeconfig's)."""
    import aiohttp

    from labkit.client import Client

    if home_netns_fd is None:
        return Client.from_kubeconfig(args.kubeconfig) if args.kubeconfig else Client.in_cluster()
    from labkit.netns import NetnsSockets

    sockets = NetnsSockets(f"/proc/self/fd/{home_netns_fd}")

    class HomeNetnsClient(Client):
        @property
        def session(self) -> aiohttp.ClientSession:
            if self._session is None or self._session.closed:
                connector = aiohttp.TCPConnector(ssl=self._ssl, limit=64,
                                                 socket_factory=lambda ai: sockets.socket(ai[0], ai[1]))
                self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
            return self._session

    if args.kubeconfig:
        return HomeNetnsClient.from_kubeconfig(args.kubeconfig, user_agent="labkit-ipvs-agent")
    return HomeNetnsClient.in_cluster(user_agent="labkit-ipvs-agent")


async def amain(args: argparse.Namespace, home_netns_fd: int | None = None) -> None:
    t0 = time.monotonic()
    device: DummyDevice | None = None
    backend: Any
    if args.proxy_mode == "nftables":
        kind = "nftables"
        backend = NftablesProxier(args.node_ip or [], args.cluster_cidr or "10.244.0.0/16")
    else:
        kind = args.backend
        if kind == "auto":
            kind = "kernel" if kernel_ipvs_available() is None else "userspace"
        device = DummyDevice()  # in the agent's namespace: the node's
        backend = await _ipvs_backend(args, kind, device, t0)
    control = None
    agent: Agent | None = None
    if args.control_socket:
        def info() -> dict[str, Any]:
            out = {"backend": kind, "proxyMode": args.proxy_mode, "pid": os.getpid(),
                   "sync": {"first": agent.first_sync, "last": agent.last_sync} if agent is not None else {},
                   "timeouts": getattr(backend, "timeouts", {"tcp": 900, "tcpfin": 120, "udp": 300})}
            if isinstance(backend, NftablesProxier):  # which chains the last transaction wrote (benchmarks)
                out["transaction"] = {"lines": backend.last_transaction.count("\n"),
                                      "chains": backend.last_chains[:200], "chainCount": len(backend.last_chains)}
            return out

        def snapshot() -> Table:
            return {} if isinstance(backend, NftablesProxier) else backend.list()  # ipvsadm: empty in nftables mode

        def services() -> Table:
            """What the load balancer serves, as virtual servers (nftables mode: its ClusterIP ports)."""
            return dict(backend.views) if isinstance(backend, NftablesProxier) else backend.list()

        def lookup(key: Any) -> Any:
            if isinstance(backend, NftablesProxier):
                return backend.views.get(key)
            rt = backend.services.get(key) if isinstance(backend, UserspaceDataPlane) else backend.list().get(key)
            return getattr(rt, "vs", rt)

        control = await serve_control(args.control_socket, snapshot, info,
                                      getattr(backend, "connections", None), lookup, services)
    # The API client (aiohttp) takes long to import: off the loop, which is serving meanwhile.
    await asyncio.to_thread(importlib.import_module, "labkit.client")
    await asyncio.to_thread(importlib.import_module, "pyroute2")  # kube-ipvs0 bindings at the first sync
    client = api_client(args, home_netns_fd)
    log.info("backend %s, node %s, netns %s, ready to sync after %.0f ms", kind, args.node_name,
             args.netns or "(own)", (time.monotonic() - t0) * 1e3)
    agent = Agent(client, args.node_name, backend, args.scheduler, args.netns, args.node_ip,
                  args.state_file if kind == "userspace" else None)
    log.info("Using %s Proxier", "nftables" if agent.proxier is not None else "ipvs")  # kube-proxy's words
    if agent.proxier is None:
        # kube-proxy removes the other modes' leftovers when it starts (here: a table from an nftables-mode agent)
        try:
            await asyncio.to_thread(nftables_cleanup)
        except (OSError, NftError):
            log.exception("cannot remove nftables mode's table")
    stop = asyncio.Event()
    got: list[int] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: (got.append(s), stop.set()))
    run = asyncio.create_task(agent.run(args.sync_period, args.min_sync_period, args.graceful_check_period))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({run, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if run.done():
            run.result()
        if got:
            log.info("stopping on signal %s", signal.Signals(got[0]).name)
    finally:
        run.cancel()
        stopper.cancel()
        if control is not None:
            control.close()
        agent.flush_state()
        if isinstance(backend, UserspaceDataPlane):
            await backend.stop()
        if device is not None:
            device.close()
        await client.close()


async def _ipvs_backend(args: argparse.Namespace, kind: str, device: DummyDevice, t0: float) -> Any:
    """The IPVS mode's backend: kernel IPVS, or the userspace data plane serving its saved table at once."""
    if kind == "kernel":
        from pyroute2 import IPVS

        failed = set_sysctls()
        if failed:
            log.warning("sysctls not set: %s", failed)
        return KernelBackend(IPVS(), device)
    policy = None
    if args.cluster_cidr:
        # Keep client pods' addresses towards backend pods (kernel IPVS NAT does); needs the TPROXY return
        # path in this (the node's) namespace. Without it, every backend sees the node, as before.
        try:
            transparent.install_return_path()
            policy = transparent.SourcePolicy(args.cluster_cidr, transparent.local_addresses())
        except (OSError, RuntimeError, subprocess.SubprocessError):
            log.exception("no transparent return path: backends will see the node's address")
    backend = UserspaceDataPlane(None, device, timeouts={"tcpfin": args.tcp_fin_timeout, "udp": args.udp_timeout},
                                 source_policy=policy, ipvs_filter=IpvsFilter())
    await backend.start()
    if args.state_file:
        # Serve the saved table at once; VIPs are still bound on kube-ipvs0 (the device outlives the agent).
        restored = restore_ops(load_table(args.state_file))
        for op in restored:
            try:
                backend.apply(op)
            except Exception:
                log.exception("cannot restore %s", op)
        if restored:
            log.info("restored %d operations from %s in %.0f ms", len(restored), args.state_file,
                     (time.monotonic() - t0) * 1e3)
    backend.synced()
    return backend


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # The agent's log is the kube-proxy pod's (`kubectl logs -n kube-system kube-proxy-…`): klog's lines.
    klog.basic_config(logging.DEBUG if args.verbose else logging.INFO)
    home_netns_fd = enter_netns(args.netns) if args.netns else None
    aio.run(amain(args, home_netns_fd))


if __name__ == "__main__":
    main()
