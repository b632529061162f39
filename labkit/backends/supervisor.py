"""The embedded cluster's supervisor: its processes, started in order and restarted when they die.

The supervisor starts the cluster's components as child processes, restarts any that dies
(with a short back-off for crash loops), and on SIGTERM stops them and removes everything the
cluster made. Children are tied to it with PR_SET_PDEATHSIG, so killing the supervisor with
SIGKILL takes them down too; the next `labkit up` then cleans whatever else was left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import time

from labkit import errors
from labkit import pki as pki_mod
from labkit.backends.embedded import Paths, _tail, cleanup_leftovers
from labkit.backends.processes import Component, _import_client, plan, spawn

log = logging.getLogger("labkit.supervisor")

class Supervisor:
    """Runs the cluster's processes until SIGTERM; `api` is the already started API server."""

    def __init__(self, paths: Paths, api: Component) -> None:
        self.paths = paths
        self.components: list[Component] = [api]
        self._stop = asyncio.Event()

    def _start(self, comp: Component) -> None:
        spawn(self.paths, comp)
        self._write_status()

    def _write_status(self) -> None:
        doc = {c.name: {"pid": c.process.pid if c.process else None,
                        "running": bool(c.process and c.process.poll() is None),
                        "restarts": c.restarts} for c in self.components}
        tmp = self.paths.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.paths.status_file)

    async def _keep_running(self, comp: Component) -> None:
        """Restart a component whenever it exits, with a short back-off for crash loops."""
        while not self._stop.is_set():
            assert comp.process is not None
            code = await asyncio.to_thread(comp.process.wait)
            if self._stop.is_set() or comp.stopping:
                return
            comp.exits.append(code)
            ran_for = time.monotonic() - comp.started_at
            delay = 0.05 if ran_for > 5 else min(0.05 * 2 ** min(comp.restarts, 6), 2.0)
            log.warning("%s exited with %s after %.1fs; restarting in %.2fs", comp.name, code, ran_for, delay)
            await asyncio.sleep(delay)
            comp.restarts += 1
            self._start(comp)

    async def _wait_api(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        ready = self.paths.home / "apiserver.ready"
        while time.monotonic() < deadline:
            if ready.exists():
                return
            api = self.components[0].process
            if api is not None and api.poll() is not None:
                raise errors.ClusterError(f"the API server exited with {api.returncode}: "
                                          f"{_tail(self.paths.logs / 'apiserver.log')}")
            await asyncio.sleep(0.005)
        raise errors.ClusterError("the API server did not become ready")

    async def run(self) -> None:
        paths = self.paths
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.components += [c for c in plan(paths) if c.name != self.components[0].name]
        self._write_status()
        # The API server is starting (it makes the PKI on a first start); the node's network is
        # built meanwhile, and the API server starts listening inside it once it exists.
        from labkit.node.names import Names
        from labkit.node.network import NodeNetwork

        network = asyncio.create_task(asyncio.to_thread(NodeNetwork(Names.for_home(paths.home)).setup))
        # aiohttp takes a while to import: do it while the API server starts.
        client_modules = asyncio.create_task(asyncio.to_thread(_import_client))
        await self._wait_api()
        await client_modules
        pki = pki_mod.Pki(paths.home / "pki")
        from labkit.backends import bootstrap
        from labkit.client import Client
        from labkit.kubeconfig import write_kubeconfig

        port = int(paths.port_file.read_text())
        write_kubeconfig(paths.kubeconfig, f"https://127.0.0.1:{port}", pki.admin_token.read_text().strip(),
                         pki.ca_cert.read_bytes())
        async with Client.from_kubeconfig(paths.kubeconfig, user_agent="labkit-bootstrap") as client:
            await bootstrap.ensure_objects(client, paths.proxy_mode())
        (paths.run / "ready").write_text("ok")
        await network
        for comp in self.components[1:]:
            self._start(comp)
        watchers = [asyncio.create_task(self._keep_running(c)) for c in self.components]
        await self._stop.wait()
        await self._shutdown()
        for w in watchers:
            w.cancel()

    async def _shutdown(self) -> None:
        for comp in reversed(self.components):
            comp.stopping = True
            proc = comp.process
            if proc is None or proc.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.to_thread(proc.wait)
        cleanup_leftovers(self.paths)
        for pid_file in self.paths.run.glob("*.pid"):
            pid_file.unlink(missing_ok=True)
        (self.paths.run / "ready").unlink(missing_ok=True)


