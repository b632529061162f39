"""The embedded cluster's processes: what runs, in which order, and how each is started.

Kept free of asyncio so the supervisor can start the API server, the start-up's critical
path, before it imports the rest of itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from labkit.backends.embedded import NODE_IP, NODE_NAME, UPSTREAM_DNS, Paths

PR_SET_PDEATHSIG = 1


@dataclass
class Component:
    """One child process of the cluster."""

    name: str
    argv: list[str]
    needs_module: str
    process: subprocess.Popen[bytes] | None = None
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


def plan(paths: Paths) -> list[Component]:
    """The cluster's processes, in start order. The API server comes first; the rest need it."""
    from labkit.node.names import Names

    names = Names.for_home(paths.home)
    home, kc, py = str(paths.home), str(paths.kubeconfig), sys.executable
    node_netns, ext_netns = names.node_netns, names.ext_netns
    run = paths.run
    in_ext = ["nsenter", f"--net={Names.netns_path(ext_netns)}", "--"]
    config = paths.home / "outside-world.yaml"
    upstream_config = ["--config", str(config)] if config.exists() else []
    components = [
        Component("apiserver", [py, "-m", "labkit.apiserver", "--home", home, "--node-netns", node_netns,
                                "--kubelet-socket", str(names.kubelet_socket)],
                  "labkit.apiserver.__main__"),
        Component("controller-manager", [py, "-m", "labkit.controllers", "--kubeconfig", kc],
                  "labkit.controllers.__main__"),
        # The containers' runtime, a child of the supervisor's: it outlives a restart of the node agent (pods
        # keep running, as with kubelet and containerd) but not the cluster (it ends, so do the pods).
        Component("zygote", [py, "-m", "labkit.node.zygote", "--socket", str(names.zygote_socket),
                             "--prefix", names.prefix], "labkit.node.zygote"),
        Component("node", [py, "-m", "labkit.node", "--kubeconfig", kc, "--home", home, "--external-zygote"],
                  "labkit.node.__main__"),
        # Short drain timers: a lab shows a deleted pod leave the table in seconds, not minutes.
        Component("ipvs-agent", [py, "-m", "labkit.agent", "--kubeconfig", kc, "--node-name", NODE_NAME,
                                 "--proxy-mode", paths.proxy_mode(), "--backend", "userspace", "--netns", node_netns,
                                 "--control-socket", str(run / "ipvs.sock"), "--node-ip", NODE_IP,
                                 "--tcp-fin-timeout", "5", "--graceful-check-period", "2"],
                  "labkit.agent.__main__"),
        Component("outside-dns", [*in_ext, py, "-m", "labkit.dns", "upstream", "--listen",
                                  f"{UPSTREAM_DNS}:53", *upstream_config],
                  "labkit.dns.upstream"),
    ]
    return [c for c in components if _module_exists(c.needs_module)]


def spawn(paths: Paths, comp: Component) -> None:
    """Start one component, its output appended to its log, tied to this process's life."""
    # The components reach the API server over its Unix socket rather than HTTPS (labkit.client.SOCKET_ENV,
    # spelled out here so that the supervisor does not import aiohttp before it must).
    env = {**os.environ, "LABKIT_APISERVER_SOCKET": str(paths.home / "apiserver.sock")}
    with open(paths.logs / f"{comp.name}.log", "ab") as out:
        comp.process = subprocess.Popen(comp.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent, close_fds=True, env=env)
    comp.started_at = time.monotonic()
    (paths.run / f"{comp.name}.pid").write_text(str(comp.process.pid))
