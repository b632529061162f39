"""The embedded node's runtime: network + sandboxes + zygote, the layer the kubelet loop drives.

    node = Node(home); node.start()
    sb = node.create_sandbox(pod, serviceaccount_dir)
    wl = resolve_image(image, command, args)            # Workload | ImageError
    rec = await node.start_container(sb, "web", wl, env, restart_count=0)
    argv = node.exec_argv(rec["pid"], ["cat", "/etc/resolv.conf"])     # for `kubectl exec`
    node.remove_sandbox(uid); node.stop()              # stop() = cleanup(prefix)
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from labkit.node import nsutil
from labkit.node.cleanup import CleanupReport, cleanup
from labkit.node.images import ImageFile, Workload
from labkit.node.names import Names
from labkit.node.network import ExternalHost, NodeNetwork
from labkit.node.rootfs import Mount, RootfsSpec
from labkit.node.sandbox import Sandbox, SandboxManager
from labkit.node.security import Security, exec_argv
from labkit.node.zygote import ZygoteClient, start_zygote, zygote_alive

EXTERNAL_WEB_HOSTS = "ext/web"  # the zygote id of the process serving the outside world's web hosts
ZYGOTE_WAIT_SECONDS = 30.0


def container_id(uid: str, container: str) -> str:
    return f"{uid}/{container}"


class Node:
    """One embedded node of the cluster whose state lives in `home`."""

    def __init__(self, home: str | os.PathLike[str], **sandbox_options: Any) -> None:
        self.names = Names.for_home(home)
        self.network = NodeNetwork(self.names)
        self.sandboxes = SandboxManager(self.names, **sandbox_options)
        self.zygote = ZygoteClient(self.names.zygote_socket)

    # ---- lifecycle ----
    def start(self, own_zygote: bool = True) -> None:
        """Create the node network (if missing) and start the zygote (if not running; with `own_zygote` False,
        wait for the one the cluster's supervisor starts). Idempotent: after a node agent restart, existing
        sandboxes and containers are kept."""
        self.names.node_dir.mkdir(parents=True, exist_ok=True)
        self.network.setup()
        if own_zygote:
            if not zygote_alive(self.names):
                start_zygote(self.names)
            return
        deadline = time.monotonic() + ZYGOTE_WAIT_SECONDS
        while not zygote_alive(self.names):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the zygote did not answer at {self.names.zygote_socket}")
            time.sleep(0.02)  # the supervisor started it moments ago; it is importing its workloads

    def stop(self) -> CleanupReport:
        """Remove everything this cluster made on the host (= cleanup(prefix)) and forget pod IPs."""
        report = cleanup(self.names.prefix)
        self.sandboxes.ipam.reset()
        return report

    async def start_external_hosts(self) -> None:
        """Run the web hosts of the outside world (203.0.113.x:80, each answering with its name).

        They share the outside world's network namespace, so one process serves every host's address: the
        outside world is a stand-in for the internet, and three interpreters would cost the node's memory
        budget ~7 MB for nothing a client can tell apart."""
        hosts = [{"name": h.name, "ip": h.ip} for h in self.network.external_hosts if h.http]
        running = {c["id"] for c in await self.zygote.list() if c["running"]}
        if not hosts or EXTERNAL_WEB_HOSTS in running:
            return
        log = self.names.node_dir / "ext" / "web.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        await self.zygote.spawn(EXTERNAL_WEB_HOSTS, {"kind": "webhost", "hosts": hosts, "port": 80},
                                log=str(log), net=self.network.ext_netns_path)

    # ---- sandboxes ----
    def create_sandbox(self, pod: dict[str, Any]) -> Sandbox:
        return self.sandboxes.create(pod)

    def get_sandbox(self, pod: dict[str, Any]) -> Sandbox | None:
        return self.sandboxes.get(pod)

    def remove_sandbox(self, uid: str) -> None:
        self.sandboxes.remove(uid)

    # ---- containers ----
    @staticmethod
    def log_path(sandbox: Sandbox, container: str, restart_count: int) -> Path:
        """Log of one run of a container (`kubectl logs` reads the newest, `--previous` the one before)."""
        return Path(sandbox.pod_dir) / "logs" / container / f"{restart_count}.log"

    async def start_container(self, sandbox: Sandbox, container: str, workload: Workload,
                              env: dict[str, str] | None = None, restart_count: int = 0,
                              working_dir: str | None = None, nice: int = 0,
                              mounts: list[Mount] | None = None, security: Security | None = None,
                              image_files: dict[str, ImageFile] | None = None, tty: bool = False,
                              stdin: bool = False, stdin_once: bool = False,
                              pid_target: int | None = None) -> dict[str, Any]:
        """Start a container in the pod: in a root filesystem and PID namespace of its own with `mounts` (its
        volumes) and `image_files` (the image's own files), as `security` says, with env as given plus
        PATH/HOSTNAME like a container runtime, at the pod's CPU weight `nice` (status.cpu_nice). The record has
        `startError` when its process could not start. With `pid_target` (an ephemeral container's target) it joins
        the PID namespace of that process instead of having its own."""
        log = self.log_path(sandbox, container, restart_count)
        log.parent.mkdir(parents=True, exist_ok=True)
        full_env = self.container_env(sandbox, env, tty)
        security = security or Security()
        files = {path: (f.data.decode(), f.mode) for path, f in (image_files or {}).items()}
        root = RootfsSpec(pod_files=sandbox.pod_dir, mounts=list(mounts or []), read_only_root=security.read_only_root,
                          runtime=workload.runtime or bool(files), files=files)
        self.names.rootfs_staging.mkdir(parents=True, exist_ok=True)
        rec = await self.zygote.spawn(container_id(sandbox.uid, container), workload.to_spec(), log=str(log),
                                      env=full_env, net=sandbox.net_file, uts=sandbox.uts_file, ipc=sandbox.ipc_file,
                                      working_dir=working_dir, nice=nice, rootfs=root.to_dict(),
                                      staging=str(self.names.rootfs_staging), security=security.to_dict(),
                                      tty=tty, stdin=stdin, stdin_once=stdin_once, pid_target=pid_target)
        # What a restarted node agent needs to adopt the container: its process, environment, privileges.
        meta = Path(sandbox.pod_dir) / "containers" / f"{container}.json"
        meta.parent.mkdir(parents=True, exist_ok=True)
        meta.write_text(json.dumps({"env": full_env, "restartCount": restart_count, "workingDir": working_dir,
                                    "nice": nice, "pid": rec.get("pid"), "security": security.to_dict()}))
        return rec

    @staticmethod
    def container_env(sandbox: Sandbox, env: dict[str, str] | None, tty: bool = False) -> dict[str, str]:
        """The container's environment as a container runtime makes it: a default PATH, HOSTNAME, TERM for a
        terminal, then the pod's variables."""
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": sandbox.hostname,
                **({"TERM": "xterm"} if tty else {}), **(env or {})}

    async def kill_container(self, uid: str, container: str, sig: int = signal.SIGTERM) -> None:
        await self.zygote.kill(container_id(uid, container), sig)

    # ---- exec ----
    @staticmethod
    def exec_argv(pid: int, argv: list[str], env: dict[str, str] | None = None, security: Security | None = None,
                  working_dir: str | None = None) -> list[str]:
        """argv that runs `argv` in the container whose first process is `pid`: its namespaces (mount, PID,
        network, UTS, IPC), its privileges, its environment."""
        return exec_argv(pid, argv, env, security, working_dir)

    def node_exec_argv(self, argv: list[str]) -> list[str]:
        """argv that runs `argv` in the node's network namespace (e.g. the IPVS agent, probes, curl)."""
        return nsutil.nsenter_argv(net=self.network.node_netns_path) + list(argv)

    def ext_exec_argv(self, argv: list[str]) -> list[str]:
        """argv that runs `argv` in the outside world's namespace (e.g. the upstream DNS at 203.0.113.53)."""
        return nsutil.nsenter_argv(net=self.network.ext_netns_path) + list(argv)


__all__ = ["ExternalHost", "Node", "container_id"]
