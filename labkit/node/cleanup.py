"""Remove every process, mount and namespace one cluster made — also after everything was SIGKILLed.

Everything is found from the cluster prefix alone (no state needed, since the state may be stale):
- processes: the zygote and its forked children (their cmdline / environment carry the prefix) and any
  process living in one of the cluster's network namespaces (exec'd shells, `kubectl exec` sessions,
  processes other components started in the node namespace);
- mounts: every mount point with a path component named `<prefix>` or starting with `<prefix>-` — the
  /run/netns/<prefix>-* files and the private directory of pod UTS/mount namespace files;
- memory-backed emptyDir volumes, under /dev/shm/labkit-<prefix>;
- links and nftables rules need no work: they live only inside the cluster's namespaces and vanish with
  them. The host namespace never holds any.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from labkit.node import nsutil
from labkit.node.names import NETNS_DIR, SHM_DIR


@dataclass
class CleanupReport:
    processes: list[int] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)


def _ours(path: str, prefix: str) -> bool:
    return any(part == prefix or part.startswith(prefix + "-") for part in Path(path).parts)


def cluster_netns(prefix: str) -> list[str]:
    """Names of this cluster's network namespaces under /run/netns."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix + "-"))
    except FileNotFoundError:
        return []


def cluster_processes(prefix: str) -> list[int]:
    """PIDs of live processes that belong to the cluster."""
    inodes = {nsutil.ns_inode(NETNS_DIR / n) for n in cluster_netns(prefix)} - {None}
    marker_env = f"LABKIT_CLUSTER={prefix}".encode()
    marker_cmd = f"--prefix\0{prefix}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if nsutil.ns_inode(f"/proc/{entry}/ns/net") in inodes:
                found.append(int(entry))
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if b"labkit.node.zygote" in cmdline and marker_cmd in cmdline:
                found.append(int(entry))
                continue
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            if marker_env in environ.split(b"\0"):
                found.append(int(entry))
        except OSError:
            continue  # gone meanwhile
    return found


def kill_cluster_processes(prefix: str, timeout: float = 5.0) -> list[int]:
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while (pids := cluster_processes(prefix)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.01)  # let the kernel finish them (zombies no longer show namespaces)
    return sorted(set(killed))


def cleanup(prefix: str) -> CleanupReport:
    """Kill the cluster's processes, unmount its namespace files, delete its network namespaces."""
    if not prefix.startswith("lk") or len(prefix) < 4:
        raise ValueError(f"refusing to clean up with prefix {prefix!r}")
    report = CleanupReport()
    report.processes = kill_cluster_processes(prefix)
    dirs: set[str] = set()
    for point, _fstype in sorted(nsutil.mountpoints(), key=lambda m: -len(m[0])):
        if _ours(point, prefix):
            try:
                nsutil.umount(point)
                report.mounts.append(point)
            except OSError:
                pass
            if Path(point).name == prefix:
                dirs.add(point)
    for d in dirs:  # the directory that held pod UTS/mount namespace files
        for f in Path(d).glob(f"{prefix}-*"):
            f.unlink(missing_ok=True)
    for name in cluster_netns(prefix):
        try:
            nsutil.umount(NETNS_DIR / name)
        except OSError:
            pass
        (NETNS_DIR / name).unlink(missing_ok=True)
        report.netns.append(name)
    shutil.rmtree(SHM_DIR / f"labkit-{prefix}", ignore_errors=True)  # memory-backed emptyDirs
    return report
