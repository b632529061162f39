"""The embedded backend: a Docker-free cluster on this host, supervised in the background.

`labkit up` starts a supervisor process (`python -m labkit.backends.embedded
supervise --home H`) detached from the terminal. The supervisor starts the
cluster's components as child processes, restarts any that dies, and on
SIGTERM stops them and removes everything the cluster made. Children are
tied to it with PR_SET_PDEATHSIG, so killing the supervisor with SIGKILL takes
them down too; the next `up` then cleans whatever else was left.

State lives under LABKIT_HOME (default ~/.labkit):

    pki/             CA, serving certificate, tokens
    state.db         the API server's objects (SQLite)
    kubeconfig       for kubectl and the Python client
    apiserver.port   the loopback port, kept across restarts
    run/             supervisor.pid, status.json
    logs/            one log per component
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from labkit import errors
from labkit import pki as pki_mod

log = logging.getLogger("labkit.embedded")

PR_SET_PDEATHSIG = 1
NODE_NAME = "labkit-control-plane"
NODE_IP = "172.18.0.2"
UPSTREAM_DNS = "203.0.113.53"
KUBE_DNS_IP = "10.96.0.10"


def default_home() -> Path:
    return Path(os.environ.get("LABKIT_HOME") or Path.home() / ".labkit").expanduser().absolute()


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    @property
    def port_file(self) -> Path:
        return self.home / "apiserver.port"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def pid_file(self) -> Path:
        return self.run / "supervisor.pid"

    @property
    def status_file(self) -> Path:
        return self.run / "status.json"

    @property
    def logs(self) -> Path:
        return self.home / "logs"


# -- the user's side: up / down / status -------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def supervisor_pid(paths: Paths) -> int | None:
    """The running supervisor's pid, if one runs for this home."""
    try:
        pid = int(paths.pid_file.read_text())
    except (OSError, ValueError):
        return None
    if not _pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return pid if str(paths.home).encode() in cmdline else None


def _api_ready(paths: Paths) -> bool:
    """Whether the API server answers /readyz over TLS with the cluster's CA."""
    try:
        port = int(paths.port_file.read_text())
        ca = (paths.home / "pki" / "ca.crt").read_text()
    except (OSError, ValueError):
        return False
    import http.client
    import ssl

    ctx = ssl.create_default_context(cadata=ca)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=1)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def up(home: Path | None = None, timeout: float = 30.0) -> tuple[Paths, bool]:
    """Start the cluster unless it runs; return (paths, started_now)."""
    paths = Paths(home or default_home())
    if supervisor_pid(paths) is not None and paths.kubeconfig.exists():
        return paths, False
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(exist_ok=True)
    paths.run.mkdir(exist_ok=True)
    ready_marker = paths.run / "ready"
    ready_marker.unlink(missing_ok=True)
    with open(paths.logs / "supervisor.log", "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "labkit.backends.embedded", "supervise", "--home", str(paths.home)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_marker.exists():
            return paths, True
        if proc.poll() is not None:
            tail = _tail(paths.logs / "supervisor.log")
            raise errors.ClusterError(f"the embedded cluster failed to start (exit {proc.returncode}): {tail}")
        time.sleep(0.01)
    raise errors.ClusterError(f"the embedded cluster did not answer within {timeout:.0f}s; see {paths.logs}")


def wait_usable(paths: Paths, timeout: float = 60.0) -> None:
    """Wait until a learner can use the cluster: the node is Ready and kube-dns answers through its VIP.

    `up` returns as soon as the API answers (kind's `--wait 0s`); the node, the coredns pods and the
    load balancer's virtual server for 10.96.0.10 take a few seconds more.
    """
    import asyncio

    from labkit.agent.control import read_table
    from labkit.client import Client

    async def node_and_dns_ready(client: Client) -> bool:
        node = await client.get("nodes", NODE_NAME)
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in (node.get("status") or {}).get("conditions") or [])
        endpoints = await client.get("endpoints", "kube-dns", "kube-system")
        return ready and any(s.get("addresses") for s in endpoints.get("subsets") or [])

    def dns_vip_programmed() -> bool:
        try:
            table = read_table(str(paths.run / "ipvs.sock"), timeout=1.0)
        except (OSError, ValueError):
            return False
        return any(vs.address == KUBE_DNS_IP and vs.port == 53 and vs.destinations for vs in table)

    async def wait() -> None:
        deadline = time.monotonic() + timeout
        async with Client.from_kubeconfig(paths.kubeconfig) as client:
            while time.monotonic() < deadline:
                try:
                    if await node_and_dns_ready(client) and dns_vip_programmed():
                        return
                except errors.NotFound:
                    pass
                await asyncio.sleep(0.1)
        raise errors.ClusterError(f"the cluster was not ready within {timeout:.0f}s (node Ready, kube-dns "
                                  f"endpoints, the load balancer's 10.96.0.10); see {paths.logs}")

    asyncio.run(wait())


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def down(home: Path | None = None, timeout: float = 20.0) -> bool:
    """Stop the cluster and delete its state; True if one was running."""
    paths = Paths(home or default_home())
    pid = supervisor_pid(paths)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.02)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    cleanup_leftovers(paths)
    if paths.home.exists():
        shutil.rmtree(paths.home, ignore_errors=True)
    return pid is not None


def status(home: Path | None = None) -> dict:
    paths = Paths(home or default_home())
    pid = supervisor_pid(paths)
    info: dict = {"backend": "embedded", "home": str(paths.home), "running": pid is not None}
    if pid is None:
        return info
    info["supervisorPid"] = pid
    info["kubeconfig"] = str(paths.kubeconfig)
    try:
        info["server"] = f"https://127.0.0.1:{int(paths.port_file.read_text())}"
    except (OSError, ValueError):
        pass
    try:
        info["components"] = json.loads(paths.status_file.read_text())
    except (OSError, ValueError):
        info["components"] = {}
    info["apiserverReady"] = _api_ready(paths)
    return info


def cleanup_leftovers(paths: Paths) -> None:
    """Remove processes, namespaces, links and mounts a crashed cluster left behind."""
    for pid_file in paths.run.glob("*.pid") if paths.run.exists() else []:
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(paths.home).encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    from labkit.node import cleanup, names

    cleanup.cleanup(names.cluster_prefix(paths.home))


# -- the supervisor --------------------------------------------------------------------------

@dataclass
class Component:
    """One child process of the cluster."""

    name: str
    argv: list[str]
    needs_module: str
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    stopping: bool = False
    exits: list[int] = field(default_factory=list)


def _import_client() -> None:
    import labkit.backends.bootstrap
    import labkit.client  # noqa: F401


def _module_exists(module: str) -> bool:
    """Whether labkit ships this module, without importing its package (some are slow to import)."""
    base = Path(__file__).resolve().parent.parent.parent
    path = base.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Supervisor:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.components: list[Component] = []
        self._stop = asyncio.Event()

    def _plan(self) -> list[Component]:
        """The cluster's processes, in start order. The API server comes first; the rest need it."""
        from labkit.node.names import Names

        names = Names.for_home(self.paths.home)
        home, kc, py = str(self.paths.home), str(self.paths.kubeconfig), sys.executable
        node_netns, ext_netns = names.node_netns, names.ext_netns
        run = self.paths.run
        in_ext = ["nsenter", f"--net={Names.netns_path(ext_netns)}", "--"]
        return [
            Component("apiserver", [py, "-m", "labkit.apiserver", "--home", home, "--node-netns", node_netns],
                      "labkit.apiserver.__main__"),
            Component("controller-manager", [py, "-m", "labkit.controllers", "--kubeconfig", kc],
                      "labkit.controllers.__main__"),
            Component("node", [py, "-m", "labkit.node", "--kubeconfig", kc, "--home", home],
                      "labkit.node.__main__"),
            # Short drain timers: a lab shows a deleted pod leave the table in seconds, not minutes.
            Component("ipvs-agent", [py, "-m", "labkit.agent", "--kubeconfig", kc, "--node-name", NODE_NAME,
                                     "--backend", "userspace", "--netns", node_netns,
                                     "--control-socket", str(run / "ipvs.sock"), "--node-ip", NODE_IP,
                                     "--tcp-fin-timeout", "5", "--graceful-check-period", "2"],
                      "labkit.agent.__main__"),
            Component("outside-dns", [*in_ext, py, "-m", "labkit.dns", "upstream", "--listen",
                                      f"{UPSTREAM_DNS}:53", *self._upstream_config()],
                      "labkit.dns.upstream"),
        ]

    def _upstream_config(self) -> list[str]:
        config = self.paths.home / "outside-world.yaml"
        return ["--config", str(config)] if config.exists() else []

    async def _start(self, comp: Component) -> None:
        with open(self.paths.logs / f"{comp.name}.log", "ab") as out:
            comp.process = await asyncio.create_subprocess_exec(
                *comp.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent)
        comp.started_at = time.monotonic()
        (self.paths.run / f"{comp.name}.pid").write_text(str(comp.process.pid))
        self._write_status()

    def _write_status(self) -> None:
        doc = {c.name: {"pid": c.process.pid if c.process else None,
                        "running": bool(c.process and c.process.returncode is None),
                        "restarts": c.restarts} for c in self.components}
        tmp = self.paths.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.paths.status_file)

    async def _keep_running(self, comp: Component) -> None:
        """Restart a component whenever it exits, with a short back-off for crash loops."""
        while not self._stop.is_set():
            assert comp.process is not None
            code = await comp.process.wait()
            if self._stop.is_set() or comp.stopping:
                return
            comp.exits.append(code)
            ran_for = time.monotonic() - comp.started_at
            delay = 0.05 if ran_for > 5 else min(0.05 * 2 ** min(comp.restarts, 6), 2.0)
            log.warning("%s exited with %s after %.1fs; restarting in %.2fs", comp.name, code, ran_for, delay)
            await asyncio.sleep(delay)
            comp.restarts += 1
            await self._start(comp)

    async def _wait_api(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        ready = self.paths.home / "apiserver.ready"
        while time.monotonic() < deadline:
            if ready.exists():
                return
            api = self.components[0].process
            if api is not None and api.returncode is not None:
                raise errors.ClusterError(f"the API server exited with {api.returncode}: "
                                          f"{_tail(self.paths.logs / 'apiserver.log')}")
            await asyncio.sleep(0.005)
        raise errors.ClusterError("the API server did not become ready")

    async def run(self) -> None:
        paths = self.paths
        paths.run.mkdir(parents=True, exist_ok=True)
        paths.logs.mkdir(parents=True, exist_ok=True)
        cleanup_leftovers(paths)
        paths.pid_file.write_text(str(os.getpid()))
        (paths.home / "apiserver.ready").unlink(missing_ok=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self.components = [c for c in self._plan() if _module_exists(c.needs_module)]
        # The API server starts first (it makes the PKI on a first start); the node's network is
        # built meanwhile, and the API server starts listening inside it once it exists.
        await self._start(self.components[0])
        from labkit.node.names import Names
        from labkit.node.network import NodeNetwork

        network = asyncio.create_task(asyncio.to_thread(NodeNetwork(Names.for_home(paths.home)).setup))
        # aiohttp takes a while to import: do it while the API server starts.
        client_modules = asyncio.create_task(asyncio.to_thread(_import_client))
        await self._wait_api()
        await client_modules
        pki = pki_mod.Pki(paths.home / "pki")
        from labkit.backends import bootstrap
        from labkit.client import Client, write_kubeconfig

        port = int(paths.port_file.read_text())
        write_kubeconfig(paths.kubeconfig, f"https://127.0.0.1:{port}", pki.admin_token.read_text().strip(),
                         pki.ca_cert.read_bytes())
        async with Client.from_kubeconfig(paths.kubeconfig, user_agent="labkit-bootstrap") as client:
            await bootstrap.ensure_objects(client)
        (paths.run / "ready").write_text("ok")
        await network
        for comp in self.components[1:]:
            await self._start(comp)
        watchers = [asyncio.create_task(self._keep_running(c)) for c in self.components]
        await self._stop.wait()
        await self._shutdown()
        for w in watchers:
            w.cancel()

    async def _shutdown(self) -> None:
        for comp in reversed(self.components):
            comp.stopping = True
            proc = comp.process
            if proc is None or proc.returncode is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        cleanup_leftovers(self.paths)
        for pid_file in self.paths.run.glob("*.pid"):
            pid_file.unlink(missing_ok=True)
        (self.paths.run / "ready").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m labkit.backends.embedded")
    sub = parser.add_subparsers(dest="command", required=True)
    sup = sub.add_parser("supervise", help="run the cluster in the foreground (labkit up does this detached)")
    sup.add_argument("--home", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s supervisor %(levelname)s %(message)s")
    try:
        asyncio.run(Supervisor(Paths(args.home.absolute())).run())
    except errors.LabkitError as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
