"""Small Linux namespace helpers: setns/mount via libc, `ip`/`nsenter` runners, sockets made inside a netns.

Python 3.11 has no os.setns, so setns/unshare/mount/umount2 come from libc through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

# One implementation of entering namespaces for all of labkit; re-exported for the node's modules.
from labkit.netns import CLONE_NEWNET, NetnsSockets, setns  # noqa: F401

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def umount(path: str | os.PathLike[str], lazy: bool = True) -> None:
    _check(_libc.umount2(os.fsencode(path), MNT_DETACH if lazy else 0), f"umount {path}")


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a short command (ip, nft, unshare, ...); raise with its stderr when it fails."""
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def ip(netns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`ip [-n netns] args...`."""
    return run(["ip", *(["-n", netns] if netns else []), *args], check=check)


def ip_batch(netns: str | None, lines: Sequence[str]) -> None:
    """Several `ip` commands in one process (`ip -batch -`)."""
    run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], input="\n".join(lines) + "\n")


def nsenter_argv(net: str | os.PathLike[str] | None = None, uts: str | os.PathLike[str] | None = None,
                 mnt: str | os.PathLike[str] | None = None) -> list[str]:
    """The `nsenter` prefix that runs a command in the given namespace files."""
    argv = ["nsenter"]
    if net:
        argv.append(f"--net={net}")
    if uts:
        argv.append(f"--uts={uts}")
    if mnt:
        argv.append(f"--mount={mnt}")
    return [*argv, "--"]


def ns_inode(path: str | os.PathLike[str]) -> int | None:
    """Inode of a namespace (file under /run/netns, or /proc/PID/ns/net); None if it is gone."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def mountpoints() -> list[tuple[str, str]]:
    """(mount point, fstype) of every mount in this process's mount namespace."""
    result = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        point = fields[4].encode().decode("unicode_escape") if "\\" in fields[4] else fields[4]
        result.append((point, right.split()[0]))
    return result


