"""What the API server needs from the node for `pods/exec` and `pods/log` (labkit.apiserver.podio.PodRuntime).

Reads only the node's state on disk (namespace files, container metadata, log files), so it works in
the API server's process while the node agent runs elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from labkit import errors
from labkit.node.names import Names


class NodeRuntime:
    """exec command lines and log files of the pods of the cluster whose state lives in `home`."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.names = Names.for_home(home)

    def _files(self, pod: dict) -> tuple[str, str, str, Path]:
        uid = pod["metadata"].get("uid", "")
        net = Names.netns_path(self.names.pod_netns(uid))
        uts, mnt = self.names.pod_uts_file(uid), self.names.pod_mnt_file(uid)
        return str(net), str(uts), str(mnt), self.names.pod_dir(uid)

    def exec_argv(self, pod: dict, container: str, command: list[str], tty: bool) -> list[str]:
        """nsenter into the pod's namespaces, with the container's environment (and TERM for a tty)."""
        net, uts, mnt, pod_dir = self._files(pod)
        meta_file = pod_dir / "containers" / f"{container}.json"
        if not (os.path.exists(net) and os.path.exists(mnt) and meta_file.exists()):
            raise errors.BadRequest(f'unable to upgrade connection: container not found ("{container}")')
        meta = json.loads(meta_file.read_text())
        env = dict(meta.get("env") or {})
        if tty:
            env.setdefault("TERM", "xterm")
        argv = ["nsenter", f"--net={net}", f"--uts={uts}", f"--mount={mnt}"]
        if meta.get("workingDir"):
            argv.append(f"--wd={meta['workingDir']}")
        # An exec'd process runs in the container's cgroup, at the pod's CPU weight.
        nice = ["nice", "-n", str(meta["nice"])] if meta.get("nice") else []
        return [*nice, *argv, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]

    def log_file(self, pod: dict, container: str, previous: bool) -> Path:
        """The log of the container's current run, or of the run before it (`--previous`)."""
        _, _, _, pod_dir = self._files(pod)
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
