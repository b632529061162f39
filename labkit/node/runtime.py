"""What the API server needs from the node for `pods/exec` and `pods/log` (labkit.apiserver.podio.PodRuntime).

Reads only the node's state on disk (namespace files, container metadata, log files), so it works in
the API server's process while the node agent runs elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from labkit import errors
from labkit.node import nsutil, system_pods
from labkit.node.names import Names
from labkit.node.security import Security, exec_argv


class NodeRuntime:
    """exec command lines and log files of the pods of the cluster whose state lives in `home`."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.names = Names.for_home(home)
        self.home = Path(home)

    def exec_argv(self, pod: dict, container: str, command: list[str], tty: bool) -> list[str]:
        """nsenter into the container's namespaces, with its privileges and environment (and TERM for a tty)."""
        uid = pod["metadata"].get("uid", "")
        meta_file = self.names.pod_dir(uid) / "containers" / f"{container}.json"
        try:
            meta = json.loads(meta_file.read_text())
            pid = int(meta["pid"])
            running = nsutil.ns_inode(f"/proc/{pid}/ns/net") == nsutil.ns_inode(
                Names.netns_path(self.names.pod_netns(uid)))
        except (OSError, ValueError, KeyError, TypeError):
            running = False
        if not running:
            raise errors.BadRequest(f'unable to upgrade connection: container not found ("{container}")')
        env = dict(meta.get("env") or {})
        if tty:
            env.setdefault("TERM", "xterm")
        argv = exec_argv(pid, command, env, Security.from_dict(meta.get("security") or {}), meta.get("workingDir"))
        # An exec'd process runs in the container's cgroup, at the pod's CPU weight.
        return ["nice", "-n", str(meta["nice"]), *argv] if meta.get("nice") else argv

    def log_file(self, pod: dict, container: str, previous: bool) -> Path:
        """The log of the container's current run, or of the run before it (`--previous`)."""
        component_log = system_pods.log_file(self.home, pod)
        if component_log is not None:  # kube-proxy, the control plane: the supervised process's own log
            return component_log
        pod_dir = self.names.pod_dir(pod["metadata"].get("uid", ""))
        logs = sorted((pod_dir / "logs" / container).glob("*.log"), key=lambda p: int(p.stem))
        name = pod["metadata"]["name"]
        if previous:
            if len(logs) < 2:
                raise errors.BadRequest(f'previous terminated container "{container}" in pod "{name}" not found')
            return logs[-2]
        if not logs:
            raise errors.BadRequest(f'container "{container}" in pod "{name}" is waiting to start: '
                                    "ContainerCreating")
        return logs[-1]
