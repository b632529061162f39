"""`python -m labkit.agent`: the IPVS agent, a kube-proxy (IPVS mode) that knows only the Kubernetes API.

Informers on Services and EndpointSlices; nothing is programmed until both have synced; every change requests a
sync, coalesced by a bounded-frequency runner (kube-proxy's BoundedFrequencyRunner: at most one run per
`--min-sync-period`, at least one per `--sync-period`); draining real servers are re-checked periodically.
At start the backend's existing state is adopted and whatever is not desired is removed (cleanLegacyService).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from labkit import aio
from labkit.agent.control import serve_control
from labkit.agent.desired import compute_desired
from labkit.agent.kernel import DummyDevice, KernelBackend, kernel_ipvs_available, set_sysctls
from labkit.agent.model import Table
from labkit.agent.sync import Syncer
from labkit.agent.userspace import NetnsSockets, UserspaceDataPlane

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
                 netns: str | None = None, node_ips: list[str] | None = None) -> None:
        self.client, self.node_name, self.backend, self.scheduler = client, node_name, backend, scheduler
        self.netns = netns
        self._node_ips = node_ips
        self.syncer = Syncer(backend)
        self.services: Any = None
        self.slices: Any = None

    def node_ips(self) -> list[str]:
        if self._node_ips is not None:
            return self._node_ips
        try:
            return node_addresses(self.netns)
        except Exception:
            log.exception("cannot list node addresses")
            return []

    def sync(self) -> None:
        desired = compute_desired(self.services.items(), self.slices.items(), self.node_name, self.node_ips(),
                                  self.scheduler)
        ops = self.syncer.sync(desired)
        if ops:
            log.info("sync: %d operations: %s", len(ops), "; ".join(map(str, ops[:20])))

    async def run(self, sync_period: float = 30.0, min_sync_period: float = 0.0,
                  graceful_period: float = 60.0) -> None:
        from labkit.client import Informer

        self.services = Informer(self.client, "services")
        self.slices = Informer(self.client, "endpointslices")
        runner = BoundedFrequencyRunner(self.sync, min_sync_period, sync_period)
        synced = False

        def changed(*_: Any) -> None:
            if synced:
                runner.request()

        self.services.add_handler(changed)
        self.slices.add_handler(changed)
        tasks = [asyncio.create_task(self.services.run()), asyncio.create_task(self.slices.run())]
        try:
            await asyncio.gather(self.services.wait_synced(), self.slices.wait_synced())
            synced = True
            self.sync()  # first sync as soon as both caches are full
            tasks.append(asyncio.create_task(runner.loop()))
            tasks.append(asyncio.create_task(self._graceful_loop(graceful_period)))
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()

    async def _graceful_loop(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                self.syncer.process_graceful()
            except Exception:
                log.exception("graceful termination check failed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m labkit.agent", description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", help="kubeconfig path (default: in-cluster service account)")
    p.add_argument("--node-name", required=True)
    p.add_argument("--backend", choices=("kernel", "userspace", "auto"), default="auto")
    p.add_argument("--scheduler", default="rr")
    p.add_argument("--netns", help="the node's network namespace (sockets, VIPs and IPVS live there)")
    p.add_argument("--control-socket", help="unix socket serving the live table as JSON")
    p.add_argument("--sync-period", type=float, default=30.0)
    p.add_argument("--min-sync-period", type=float, default=0.0)
    p.add_argument("--graceful-check-period", type=float, default=60.0, help="rsCheckDeleteInterval (kube-proxy: 60)")
    p.add_argument("--tcp-fin-timeout", type=int, default=120, help="userspace: seconds closed TCP conns stay InAct")
    p.add_argument("--udp-timeout", type=int, default=300, help="userspace: idle seconds before a UDP flow expires")
    p.add_argument("--node-ip", action="append", help="node addresses for NodePort (default: discovered)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> None:
    from labkit.client import Client

    kind = args.backend
    if kind == "auto":
        with NetnsSockets(args.netns).entered():
            kind = "kernel" if kernel_ipvs_available() is None else "userspace"
    device = DummyDevice(args.netns)
    backend: Any
    if kind == "kernel":
        ns = NetnsSockets(args.netns)
        with ns.entered():  # the netlink socket and sysctls belong to the node's namespace
            from pyroute2 import IPVS

            backend = KernelBackend(IPVS(), device)
            failed = set_sysctls()
        if failed:
            log.warning("sysctls not set: %s", failed)
    else:
        backend = UserspaceDataPlane(args.netns, device,
                                     timeouts={"tcpfin": args.tcp_fin_timeout, "udp": args.udp_timeout})
        await backend.start()
    log.info("backend %s, node %s, netns %s", kind, args.node_name, args.netns or "(own)")
    client = Client.from_kubeconfig(args.kubeconfig) if args.kubeconfig else Client.in_cluster()
    agent = Agent(client, args.node_name, backend, args.scheduler, args.netns, args.node_ip)
    control = None
    if args.control_socket:
        def info() -> dict[str, Any]:
            return {"backend": kind, "timeouts": getattr(backend, "timeouts", {"tcp": 900, "tcpfin": 120,
                                                                                 "udp": 300})}

        def snapshot() -> Table:
            return backend.list()

        control = await serve_control(args.control_socket, snapshot, info)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.create_task(agent.run(args.sync_period, args.min_sync_period, args.graceful_check_period))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({run, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if run.done():
            run.result()
    finally:
        run.cancel()
        stopper.cancel()
        if control is not None:
            control.close()
        if isinstance(backend, UserspaceDataPlane):
            await backend.stop()
        await client.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    aio.run(amain(args))


if __name__ == "__main__":
    main()
