"""The embedded backend: a Docker-free cluster on this host, supervised in the background.

`labkit up` starts a supervisor process (`python -m labkit.backends.embedded
supervise --home H`) detached from the terminal; `labkit.backends.supervisor`
is what it runs. This module is the user's side: up, down, status, waiting,
and cleaning what a crashed cluster left.

State lives under LABKIT_HOME (default ~/.labkit):

    pki/             CA, serving certificate, tokens
    state.db         the API server's objects (SQLite)
    kubeconfig       for kubectl and the Python client
    apiserver.port   the loopback port, kept across restarts
    cluster.json     what `labkit up` chose for the cluster's life: {"proxyMode": "ipvs" | "nftables"}
    run/             supervisor.pid, status.json
    logs/            one log per component
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from labkit import errors
from labkit.backends.base import PROXY_MODES, Backend, ClusterInfo

if TYPE_CHECKING:
    from labkit.agent.cli import HttpConnection
    from labkit.agent.model import Connection, VirtualServer
    from labkit.dns.dig import Transport

log = logging.getLogger("labkit.embedded")

NODE_NAME = "labkit-control-plane"
NODE_IP = "172.18.0.2"
UPSTREAM_DNS = "203.0.113.53"
KUBE_DNS_IP = "10.96.0.10"
DEFAULT_PROXY_MODE = "ipvs"  # the article's; nftables is its successor


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

    @property
    def cluster_file(self) -> Path:
        return self.home / "cluster.json"

    def proxy_mode(self) -> str:
        """The kube-proxy mode this cluster was started with."""
        try:
            mode = json.loads(self.cluster_file.read_text()).get("proxyMode")
        except (OSError, ValueError, AttributeError):
            return DEFAULT_PROXY_MODE
        return mode if mode in PROXY_MODES else DEFAULT_PROXY_MODE


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


def up(home: Path | None = None, timeout: float = 30.0, proxy_mode: str | None = None) -> tuple[Paths, bool]:
    """Start the cluster unless it runs; return (paths, started_now). `proxy_mode`: kube-proxy's mode, "ipvs"
    (default) or "nftables"; a running cluster in another mode is an error (the mode is the cluster's for life)."""
    paths = Paths(home or default_home())
    if proxy_mode is not None and proxy_mode not in PROXY_MODES:
        raise errors.ClusterError(f"unknown proxy mode {proxy_mode!r} (one of: {', '.join(PROXY_MODES)})")
    if supervisor_pid(paths) is not None and paths.kubeconfig.exists():
        running = paths.proxy_mode()
        if proxy_mode is not None and proxy_mode != running:
            raise errors.ClusterError(f"the cluster at {paths.home} runs in {running} mode; `labkit down` first to "
                                      f"start it in {proxy_mode} mode")
        return paths, False
    reap_orphans()
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.cluster_file.write_text(json.dumps({"proxyMode": proxy_mode or DEFAULT_PROXY_MODE}) + "\n")
    from labkit.node import names

    names.register(paths.home)
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
            table = read_table(str(paths.run / "ipvs.sock"), timeout=1.0, cmd="services")
        except (OSError, ValueError, RuntimeError):
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


def down(home: Path | None = None) -> bool:
    """Stop the cluster and delete its state; True if one was running (or had stopped uncleanly).

    Like removing a kind node container: nothing of the cluster is kept, so nothing needs a graceful stop. The
    supervisor is killed, its processes die with it (PR_SET_PDEATHSIG: the components, the zygote and with it
    every container), and cleanup_leftovers removes what remains (namespaces, mounts, a straggler process)."""
    paths = Paths(home or default_home())
    pid = supervisor_pid(paths)
    existed = pid is not None or stopped_uncleanly(paths)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _pid_alive(pid):
            time.sleep(0.002)
    cleanup_leftovers(paths)
    if paths.home.exists():
        shutil.rmtree(paths.home, ignore_errors=True)
    from labkit.node import names

    names.unregister(paths.home)
    return existed


def reap_orphans() -> list[str]:
    """Remove what clusters whose state directory is gone left on the host; return their prefixes.

    A cluster killed with everything around it (a test run SIGKILLed, then its temporary home deleted)
    leaves network namespaces and mounts that no `labkit down` can name any more: nothing else would ever
    remove them. A cluster counts as gone when its cluster.json is (it is written before anything starts)."""
    from labkit.node import cleanup, names

    reaped = []
    for prefix, home in names.registered().items():
        paths = Paths(home)
        if paths.cluster_file.exists() or supervisor_pid(paths) is not None:
            continue
        log.info("removing what the cluster at %s (deleted) left behind", home)
        cleanup.cleanup(prefix)
        names.unregister(home)
        reaped.append(prefix)
    return reaped


def stopped_uncleanly(paths: Paths) -> bool:
    """Whether a cluster's supervisor died without stopping it (killed, or the machine went down): its pid file
    is still there, which a clean stop removes."""
    return paths.pid_file.exists() and supervisor_pid(paths) is None


def status(home: Path | None = None) -> dict:
    paths = Paths(home or default_home())
    pid = supervisor_pid(paths)
    info: dict = {"backend": "embedded", "home": str(paths.home), "running": pid is not None}
    if pid is None:
        if stopped_uncleanly(paths):
            from labkit.node import cleanup, names

            prefix = names.cluster_prefix(paths.home)
            info["stoppedUncleanly"] = True
            info["leftovers"] = {"processes": len(cleanup.cluster_processes(prefix)),
                                 "networkNamespaces": len(cleanup.cluster_netns(prefix))}
        return info
    info["supervisorPid"] = pid
    info["proxyMode"] = paths.proxy_mode()
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


# -- the Backend interface (labkit.backends.base), for labkit.Lab -------------------------------------------

class EmbeddedBackend(Backend):
    """The embedded cluster at `home` (default $LABKIT_HOME or ~/.labkit) as a `Backend`."""

    name = "embedded"
    proxy_modes = PROXY_MODES

    def __init__(self, home: str | Path | None = None) -> None:
        self.paths = Paths(Path(home).expanduser().absolute() if home else default_home())

    def __repr__(self) -> str:
        return f"<EmbeddedBackend {self.paths.home}>"

    def start(self, proxy_mode: str | None = None, timeout: float = 180.0) -> bool:
        if proxy_mode is not None and proxy_mode not in self.proxy_modes:
            raise errors.Unavailable(f"the embedded cluster cannot run kube-proxy's {proxy_mode} mode "
                                     f"(it runs: {', '.join(self.proxy_modes)})")
        # no mode asked: a running cluster is fine whatever its mode; a new one gets the default
        mode = proxy_mode or (self.proxy_mode if self.running() else DEFAULT_PROXY_MODE)
        if self.running() and self.proxy_mode != mode:
            raise errors.ClusterError(f"the cluster at {self.paths.home} runs the {self.proxy_mode} proxy mode, not "
                                      f"{mode}: `lab.down()` it first, or use another LABKIT_HOME")
        _, started = up(self.paths.home, timeout=min(timeout, 60.0), proxy_mode=mode)
        wait_usable(self.paths, timeout=timeout)
        return started

    def connect(self, timeout: float = 60.0) -> None:
        if supervisor_pid(self.paths) is None or not self.paths.kubeconfig.exists():
            raise errors.ClusterNotRunning(f"no embedded cluster is running at {self.paths.home}; "
                                           "start one with Lab.up() or `labkit up`")
        wait_usable(self.paths, timeout=timeout)

    def stop(self) -> bool:
        return down(self.paths.home)

    def running(self) -> bool:
        return supervisor_pid(self.paths) is not None and _api_ready(self.paths)

    @property
    def kubeconfig(self) -> Path:
        return self.paths.kubeconfig

    def describe(self) -> ClusterInfo:
        info = status(self.paths.home)
        return ClusterInfo(backend=self.name, server=info.get("server", ""), kubeconfig=self.paths.kubeconfig,
                           proxy_mode=self.paths.proxy_mode(), nodes=(NODE_NAME,),
                           details=(("home", str(self.paths.home)),))

    @property
    def proxy_mode(self) -> str:
        return self.paths.proxy_mode()

    def _control(self) -> str:
        return str(self.paths.run / "ipvs.sock")

    def ipvs_table(self) -> list[VirtualServer]:
        from labkit.agent.control import read_table

        if self.proxy_mode != "ipvs":
            raise errors.Unavailable(f"the cluster runs kube-proxy in {self.proxy_mode} mode: it has no IPVS table "
                                     "(`ipvsadm -Ln` lists nothing); its rules are in `nft list table ip kube-proxy`")
        try:
            return read_table(self._control())
        except (OSError, ValueError, RuntimeError) as exc:
            raise errors.ClusterError(f"the IPVS agent does not answer at {self._control()} ({exc}); "
                                      "is the cluster up? `labkit status`") from exc

    def nft(self, args: list[str]) -> str:
        from labkit.agent.cli import nft_output

        return nft_output(self.paths.home, args)

    def ipvs_connections(self) -> list[Connection]:
        from labkit.agent.cli import read_connections

        try:
            return read_connections(self.paths.home)
        except (OSError, ValueError, RuntimeError) as exc:
            raise errors.ClusterError(f"the IPVS agent does not answer at {self._control()} ({exc}); "
                                      "is the cluster up? `labkit status`") from exc

    def dns_transport(self, from_pod: str | None, namespace: str) -> Transport:
        from labkit.dns import transports

        if from_pod:
            return transports.pod_transport(from_pod, namespace, self.paths.home)
        return transports.node_transport(self.paths.home, namespace)

    def http_connection(self, host: str, port: int, *, from_pod: str | None, namespace: str,
                        timeout: float = 3.0) -> HttpConnection:
        from labkit.agent import cli

        transport = self.dns_transport(from_pod, namespace)
        address = cli.resolve_host(host, transport)
        netns = transport.netns_path  # type: ignore[attr-defined]
        dialer = cli.NetnsDialer(netns)
        return cli.HttpConnection(dialer.socket, address, port, f"{host}:{port}" if port != 80 else host,
                                  cli.connection_lookup(self.paths.home), timeout)


# -- the supervisor --------------------------------------------------------------------------

def main() -> None:
    """`python -m labkit.backends.embedded supervise --home H`: the supervisor, in the foreground."""
    parser = argparse.ArgumentParser(prog="python -m labkit.backends.embedded")
    sub = parser.add_subparsers(dest="command", required=True)
    sup = sub.add_parser("supervise", help="run the cluster in the foreground (labkit up does this detached)")
    sup.add_argument("--home", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s supervisor %(levelname)s %(message)s")
    paths = Paths(args.home.absolute())
    paths.run.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    cleanup_leftovers(paths)
    paths.pid_file.write_text(str(os.getpid()))
    (paths.home / "apiserver.ready").unlink(missing_ok=True)
    # The API server is the start-up's critical path: start it before this process imports asyncio
    # and the rest of the supervisor (a tenth of a second).
    from labkit.backends import processes

    api = processes.plan(paths)[0]
    processes.spawn(paths, api)
    from labkit import aio
    from labkit.backends import supervisor

    try:
        aio.run(supervisor.Supervisor(paths, api).run())
    except errors.LabkitError as exc:
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
