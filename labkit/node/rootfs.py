"""A container's root filesystem, built by its first process in a mount namespace of its own, then pivoted into.

What a container sees (containerd's defaults where they apply, see containers.md §7):

    /                   a tmpfs of its own (the container's writable layer: gone when the container ends)
    /usr /bin /lib…     the host's, read-only (merged-/usr symlinks as on the host)
    /etc                the host's /etc under a writable overlay of the container's own, with the pod's
                        hosts, hostname and resolv.conf bound on top (as kubelet and containerd do)
    /tmp /var /root     empty, private, writable
    /home /run /opt …
    /dev                a tmpfs: null zero full random urandom tty (bound from the host's), pts (a devpts
                        instance of its own), shm, mqueue, the usual symlinks, termination-log
    /proc               of the container's PID namespace; kubelet's masked and read-only paths
    /sys                read-only
    volumes             where the pod spec mounts them (the service-account token among them)

Nothing else of the host is reachable: after pivot_root the old root is detached. Every writable mount is
`nodev`, so a device node a container makes (CAP_MKNOD is in Docker's default set) cannot be opened; the device
files it needs are bind mounts of the host's.

`build(spec, staging)` must run in a process that has just unshared its mount namespace (and joined the pod's
network, UTS, IPC and its own PID namespace): the first thing it does is make every mount private, so nothing it
mounts propagates to the host. `staging` is an existing empty directory of the node's (a tmpfs is mounted over
it in that namespace only).
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
EMPTY_DIRS = {"tmp": 0o1777, "var": 0o755, "var/tmp": 0o1777, "var/log": 0o755, "var/lib": 0o755,
              "var/cache": 0o755, "var/spool": 0o755, "root": 0o700, "home": 0o755, "run": 0o755, "run/lock": 0o1777,
              "opt": 0o755, "srv": 0o755, "mnt": 0o755, "media": 0o755, "proc": 0o555, "sys": 0o555, "dev": 0o755,
              "etc": 0o755}
SYMLINKS = {"var/run": "../run", "var/lock": "../run/lock"}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_SYMLINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore"}
POD_FILES = ("hosts", "hostname", "resolv.conf")
# kubelet's defaults for procMount: Default (pkg/securitycontext/util.go).
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# Where the node's own Python runtime appears in containers of images implemented in Python (the "image's"
# files: the interpreter, the libraries and labkit's package, read-only).
RUNTIME_DIR = "/opt/labkit"
RUNTIME_PYTHON = f"{RUNTIME_DIR}/bin/python3"
RUNTIME_LIB = f"{RUNTIME_DIR}/lib"

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None), f"mount {target}")


def bind(source: str, target: str, *, read_only: bool = False, flags: int = MS_NODEV, recursive: bool = False) -> None:
    """A bind mount; its flags (read-only, nodev, ...) need a remount of the bind to take effect."""
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    mount(None, target, None, MS_REMOUNT | MS_BIND | flags | (MS_RDONLY if read_only else 0))


@dataclass
class Mount:
    """A host path mounted into the container (a volume, the service-account token, a pod file)."""

    source: str
    target: str
    read_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RootfsSpec:
    """Everything the container's root needs from the node (JSON-able, sent to the zygote)."""

    pod_files: str                        # host directory holding the pod's hosts, hostname, resolv.conf
    mounts: list[Mount] = field(default_factory=list)
    read_only_root: bool = False
    runtime: bool = False                 # bind the node's Python runtime at RUNTIME_DIR
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # path → (text, mode): the image's (/agnhost)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mounts": [m.to_dict() for m in self.mounts]}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RootfsSpec:
        return cls(**{**doc, "mounts": [Mount(**m) for m in doc.get("mounts") or []],
                      "files": {p: (t, int(m)) for p, (t, m) in (doc.get("files") or {}).items()}})


# ------------------------------------------------------------------------------------ the Python runtime
def runtime_sources() -> dict[str, str]:
    """Container path → host path of the node's Python runtime (interpreter, site-packages, labkit)."""
    import labkit

    site = next((p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)), None)
    sources = {f"{RUNTIME_DIR}/python": sys.base_prefix,
               f"{RUNTIME_LIB}/labkit": str(Path(labkit.__file__).resolve().parent)}
    if site:
        sources[f"{RUNTIME_DIR}/site-packages"] = site
    return sources


class ImportRemap:
    """This interpreter's import paths, and where they are inside a container that binds the node's runtime.

    After pivot_root a module imported lazily (an encoding, a stdlib module a workload needs once) must be found
    at its path inside the container. The zygote prepares the new paths once, before it forks: a child then only
    swaps the contents of those lists, instead of visiting every module, which would copy the pages of all of them
    (a megabyte per container)."""

    def __init__(self) -> None:
        self.sources = runtime_sources()
        pairs = sorted(((host.rstrip("/"), inside) for inside, host in self.sources.items()), key=lambda p: -len(p[0]))

        def move(path: str) -> str:
            for host, inside in pairs:
                if path == host or path.startswith(host + "/"):
                    return inside + path[len(host):]
            return path

        packages = [m.__path__ for m in list(sys.modules.values())
                    if isinstance(getattr(m, "__path__", None), list)]
        self.lists: list[list[str]] = [sys.path, *packages]
        self.moved = [[move(p) for p in paths] for paths in self.lists]

    def apply(self) -> None:
        for paths, moved in zip(self.lists, self.moved, strict=True):
            paths[:] = moved


def runtime_argv(module: str, args: list[str]) -> list[str]:
    """argv running `python -m module args` on the node's runtime inside a container."""
    return [RUNTIME_PYTHON, "-m", module, *args]


# The interpreter as containers run it: libpython and the import path where the container sees them.
RUNTIME_WRAPPER = f"""#!/bin/sh
# The Python runtime of the embedded labkit node, for the images it implements in Python.
LD_LIBRARY_PATH={RUNTIME_DIR}/python/lib PYTHONPATH={RUNTIME_LIB}:{RUNTIME_DIR}/site-packages \
  exec {RUNTIME_DIR}/python/bin/python3 "$@"
"""


# ---------------------------------------------------------------------------------------------- build
def _system_dir_target(path: str) -> tuple[str, str] | None:
    """(system dir, path inside it) when `path` lies in one of the host's system directories (read-only in
    the container), following the host's merged-/usr symlinks (/bin → usr/bin)."""
    parts = Path(path).parts[1:]
    if not parts or parts[0] not in SYSTEM_DIRS:
        return None
    top = parts[0]
    host = f"/{top}"
    if os.path.islink(host):
        target = os.readlink(host).lstrip("/")
        return _system_dir_target("/" + "/".join([target, *parts[1:]]))
    return top, "/".join(parts[1:])


def secure_join(root: str, path: str) -> str:
    """`path` inside `root`, its symlinks resolved as if `root` were `/` (an absolute link or `..` never leaves
    `root`): a mount point is made where the container would see it, never on the host."""
    parts = [p for p in path.split("/") if p and p != "."]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = "/".join([root, *resolved, part])
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(40, f"too many levels of symbolic links in {path}")
            link = os.readlink(candidate)
            if link.startswith("/"):
                resolved = []
            parts = [p for p in link.split("/") if p and p != "."] + parts
            continue
        resolved.append(part)
    return "/".join([root, *resolved])


def _make_target(path: str, is_dir: bool) -> None:
    """Create a mount point (a directory, or an empty file for a file being mounted) unless it exists. `path`
    comes from secure_join, so no existing component of it is a symlink."""
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if is_dir:
        os.mkdir(path)
    else:
        with open(path, "w"):
            pass


def _system_dirs(root: str, mountpoints: dict[str, list[tuple[str, bool]]]) -> None:
    """The host's system directories, read-only; where a volume goes inside one, a read-only overlay whose upper
    layer holds the mount points (a lower-only overlay cannot be written)."""
    for top in SYSTEM_DIRS:
        host = f"/{top}"
        if os.path.islink(host):
            os.symlink(os.readlink(host), f"{root}/{top}")
            continue
        if not os.path.isdir(host):
            continue
        target = f"{root}/{top}"
        os.mkdir(target)
        points = mountpoints.get(top)
        if not points:
            bind(host, target, read_only=True, flags=0)
            continue
        mount("labkit-layer", target, "tmpfs", MS_NODEV | MS_NOSUID, "mode=755,size=64k")
        layer = f"{target}/mp"
        os.mkdir(layer)
        for inside, is_dir in points:
            _make_target(f"{layer}/{inside}", is_dir)
        mount("overlay", target, "overlay", MS_RDONLY, f"lowerdir={layer}:{host}")


def _etc(root: str, pod_files: str, read_only: bool) -> None:
    """The host's /etc under a writable layer of the container's own, the pod's files bound over it."""
    etc = f"{root}/etc"
    mount("labkit-etc", etc, "tmpfs", MS_NODEV | MS_NOSUID, "mode=755,size=16m")
    os.mkdir(f"{etc}/upper")
    os.mkdir(f"{etc}/work")
    mount("overlay", etc, "overlay", MS_NODEV, f"lowerdir=/etc,upperdir={etc}/upper,workdir={etc}/work")
    for name in POD_FILES:
        path = f"{etc}/{name}"
        if os.path.islink(path):  # e.g. resolv.conf → ../run/systemd/…: the pod's file replaces it
            os.unlink(path)
        _make_target(path, is_dir=False)
        bind(f"{pod_files}/{name}", path, read_only=read_only)


def _dev(root: str) -> None:
    dev = f"{root}/dev"
    mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME | MS_NODEV, "mode=755,size=65536k")
    for name in DEVICES:
        _make_target(f"{dev}/{name}", is_dir=False)
        bind(f"/dev/{name}", f"{dev}/{name}", flags=MS_NOSUID)  # a bind of the host's node: usable despite nodev
    for name in ("pts", "shm", "mqueue"):
        os.mkdir(f"{dev}/{name}")
    mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
    mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777,size=65536k")
    mount("mqueue", f"{dev}/mqueue", "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV)
    for name, target in DEV_SYMLINKS.items():
        os.symlink(target, f"{dev}/{name}")
    with open(f"{dev}/termination-log", "w"):
        pass


def build(spec: RootfsSpec, staging: str, runtime: dict[str, str] | None = None) -> None:
    """Build the container's root at `staging` and pivot into it (see the module docstring for where).
    `runtime`: container path → host path of the node's runtime (runtime_sources), when the spec asks for it."""
    # First: nothing mounted from here on may reach the host's mount namespace.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = staging
    mount("rootfs", root, "tmpfs", MS_NODEV | MS_NOSUID, "mode=755,size=256m")
    for path, mode in EMPTY_DIRS.items():
        os.mkdir(f"{root}/{path}")
        os.chmod(f"{root}/{path}", mode)
    for path, target in SYMLINKS.items():
        os.symlink(target, f"{root}/{path}")
    mounts = sorted(spec.mounts, key=lambda m: len(Path(m.target).parts))
    in_system: dict[str, list[tuple[str, bool]]] = {}
    for m in mounts:
        found = _system_dir_target(m.target)
        if found:
            in_system.setdefault(found[0], []).append((found[1], os.path.isdir(m.source)))
    _system_dirs(root, in_system)
    _etc(root, spec.pod_files, spec.read_only_root)
    _dev(root)
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV)
    mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV)
    files = dict(spec.files)
    if spec.runtime:
        for inside, host in (runtime or runtime_sources()).items():
            _make_target(secure_join(root, inside), is_dir=True)
            bind(host, secure_join(root, inside), read_only=True)
        files[RUNTIME_PYTHON] = (RUNTIME_WRAPPER, 0o755)
    for path, (text, mode) in files.items():
        target = secure_join(root, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w") as f:
            f.write(text)
        os.chmod(target, mode)
    for m in mounts:
        target = secure_join(root, m.target)
        _make_target(target, os.path.isdir(m.source))
        bind(m.source, target, read_only=m.read_only)
    if spec.read_only_root:
        mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NODEV | MS_NOSUID)
        mount(None, f"{root}/etc", None, MS_REMOUNT | MS_RDONLY | MS_NODEV)
    pivot(root)
    _mask_proc()


def pivot(root: str) -> None:
    """Make `root` this mount namespace's root; the old root is detached, so no path leads back to it."""
    os.chdir(root)
    _check(_libc.pivot_root(b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detaching the old root")
    os.chdir("/")


def _mask_proc() -> None:
    for path in MASKED_PATHS:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            mount("tmpfs", path, "tmpfs", MS_RDONLY)
        else:
            bind("/dev/null", path, flags=0)
    for path in READONLY_PATHS:
        if os.path.exists(path):
            bind(path, path, read_only=True, flags=MS_NOSUID | MS_NODEV | MS_NOEXEC, recursive=True)
