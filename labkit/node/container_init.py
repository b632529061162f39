"""What runs in a freshly forked child of the zygote to become a container's first process, or a process `kubectl
exec` starts in a container: runc's `init` and `exec`, in Python.

A container's first process joins the pod's network, UTS and IPC namespaces, is PID 1 of a PID namespace of its
own (the zygote unshared it before forking), builds its root filesystem in a mount namespace of its own and pivots
into it (labkit.node.rootfs), takes its stdio (pipes the zygote reads, or a terminal it opens in its own /dev/pts),
drops its privileges (labkit.node.security) and runs the workload. An exec'd process joins all of those
namespaces of the container's first process instead.

Each reports to the zygote over a SOCK_SEQPACKET channel that closes on exec: a `pty` message carries a terminal's
master side, an `error:` message why the process could not start; the channel closing without an error means the
program runs. Messages are containerd's and runc's (containers.md §8), which kubelet passes on.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import stat
import sys
import termios
from typing import Any

from labkit.node import nsutil, rootfs, security, workloads

PR_SET_PDEATHSIG = 1
NS_FILES = (("net", nsutil.CLONE_NEWNET), ("uts", nsutil.CLONE_NEWUTS), ("ipc", nsutil.CLONE_NEWIPC))
EXEC_NS = (("ipc", nsutil.CLONE_NEWIPC), ("uts", nsutil.CLONE_NEWUTS), ("net", nsutil.CLONE_NEWNET),
           ("mnt", nsutil.CLONE_NEWNS))  # the mount namespace last: /proc changes with it


class ExecError(Exception):
    """The program cannot be executed (Go's exec.LookPath wording, as runc reports it)."""


def start_error(exc: BaseException) -> str:
    """containerd's message for a container whose process could not start (runc ≥ 1.2, kind ≥ v0.26)."""
    detail = str(exc) if isinstance(exc, (ExecError, OSError)) else f"{type(exc).__name__}: {exc}"
    return ("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create "
            f"failed: unable to start container process: error during container init: {detail}: unknown")


def exec_error(exc: BaseException) -> str:
    """runc's message for an exec that could not start (containerd adds "failed to exec in container: …")."""
    detail = str(exc) if isinstance(exc, (ExecError, OSError)) else f"{type(exc).__name__}: {exc}"
    return f"OCI runtime exec failed: exec failed: unable to start container process: {detail}: unknown"


_REMAP: rootfs.ImportRemap | None = None


def prepare() -> None:
    """In the zygote, before it forks: what every child would otherwise compute (and dirty pages for) itself."""
    global _REMAP
    _REMAP = rootfs.ImportRemap()
    # ctypes creates a function object on a library's first use of a name, and keeps it: create them here once.
    from labkit import netns

    for lib, names in ((rootfs._libc, ("mount", "umount2", "pivot_root")), (nsutil._libc, ("unshare", "umount2")),
                       (netns._libc, ("setns",)), (security._LIBC, ("prctl", "capset", "setgroups"))):
        for name in names:
            getattr(lib, name)


def _import_remap() -> rootfs.ImportRemap:
    return _REMAP or rootfs.ImportRemap()


def find_executable(name: str, env: dict[str, str]) -> str:
    """exec.LookPath in the container: a name with a slash as is, else the first executable file on its PATH."""
    def executable(path: str) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)

    if "/" in name:
        try:
            os.stat(name)
        except OSError as exc:
            raise ExecError(f'exec: "{name}": stat {name}: {os.strerror(exc.errno or 2).lower()}') from None
        return name
    for folder in (env.get("PATH") or "").split(":"):
        candidate = os.path.join(folder or ".", name)
        if executable(candidate):
            return candidate
    raise ExecError(f'exec: "{name}": executable file not found in $PATH')


def execute(argv: list[str], env: dict[str, str]) -> None:
    """execve the container's program (never returns; ExecError if it cannot)."""
    if not argv:
        raise ExecError("no command specified")
    path = find_executable(argv[0], env)
    try:
        os.execve(path, argv, env)
    except OSError as exc:
        raise ExecError(f'exec: "{argv[0]}": {os.strerror(exc.errno or 13).lower()}') from None


def _reset_signals() -> None:
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)


def _terminal(chan: socket.socket) -> None:
    """A terminal in the container's own /dev/pts as its controlling terminal and stdio; its master side goes to
    the zygote (runc's console socket). Needs a new session (setsid) first."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    socket.send_fds(chan, [b"pty"], [master])
    os.close(master)
    if slave > 2:
        os.close(slave)


def _stdio(stdio: tuple[int, int, int]) -> None:
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)


def _close_all_but(keep: int) -> None:
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)


def _build_in_helper(doc: dict[str, Any], staging: str) -> None:
    """Build the root filesystem in a short-lived child that shares this process's new mount namespace.

    Mounts belong to the namespace and pivot_root moves the root of every process in it, so the result is the
    same as building here; but the Python objects the build allocates would copy pages this process shares with
    the zygote (a megabyte per container), and the helper's copies go when it exits."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        code = 0
        try:
            spec = rootfs.RootfsSpec.from_dict(doc)
            rootfs.build(spec, staging, _import_remap().sources if spec.runtime else None)
        except BaseException as exc:
            detail = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            os.write(write_end, detail.encode()[:4000])
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reason:
        detail = reason.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RootfsError(detail or f"building the root filesystem failed (status {status})")


class RootfsError(Exception):
    """The container's root filesystem could not be built."""


def _take_over(req: dict[str, Any], chan: socket.socket, stdio: tuple[int, int, int] | None) -> dict[str, str]:
    """The steps a container's first process and an exec'd one share: stdio (or a terminal), no other open file,
    the pod's CPU weight (status.cpu_nice), the privileges; returns the process's environment."""
    if stdio is None:
        _terminal(chan)
    else:
        _stdio(stdio)
    _close_all_but(chan.fileno())
    if req.get("nice"):
        os.setpriority(os.PRIO_PROCESS, 0, int(req["nice"]))
    if req.get("security"):
        security.apply(security.Security.from_dict(req["security"]))
    return dict(req.get("env") or {})


def init_container(req: dict[str, Any], chan: socket.socket, stdio: tuple[int, int, int] | None) -> int:
    """Become the container described by `req` (the zygote's spawn request) and run its workload. `stdio` is
    (stdin, stdout, stderr) made by the zygote, None for a terminal (`tty`)."""
    _reset_signals()
    os.setsid()
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    for key, kind in NS_FILES:
        if req.get(key):
            fd = os.open(req[key], os.O_RDONLY)
            nsutil.setns(fd, kind)
            os.close(fd)
    spec = req["workload"]
    if req.get("rootfs"):
        nsutil.unshare(nsutil.CLONE_NEWNS)
        _build_in_helper(req["rootfs"], req["staging"])
        if req["rootfs"].get("runtime"):
            _import_remap().apply()
    os.chdir(req.get("workingDir") or "/")
    env = _take_over(req, chan, stdio)
    os.environ.clear()
    os.environ.update(env)
    if req.get("rootfs"):
        # PID 1 of its namespace ignores the signals it has no handler for; a workload in Python ends on SIGTERM
        # as a Go program does there (its runtime's handler re-raises, in vain, then exits with 2).
        signal.signal(signal.SIGTERM, lambda *_: os._exit(2))
    if spec.get("kind") == "command":
        execute(spec["argv"], env)
    return workloads.run(spec, started=chan.close)


def init_exec(req: dict[str, Any], chan: socket.socket, stdio: tuple[int, int, int] | None) -> int:
    """Become a process of the container whose first process is `req["target"]` and exec `req["argv"]` (the
    zygote put this child in that container's PID namespace before forking it)."""
    _reset_signals()
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    target = int(req["target"])
    fds = [(os.open(f"/proc/{target}/ns/{name}", os.O_RDONLY), kind) for name, kind in EXEC_NS]
    for fd, kind in fds:
        nsutil.setns(fd, kind)
        os.close(fd)
    os.chdir(req.get("workingDir") or "/")
    os.setsid()
    execute(list(req["argv"]), _take_over(req, chan, stdio))
    return 127  # not reached


def run_child(init: Any, req: dict[str, Any], chan: socket.socket, stdio: tuple[int, int, int] | None,
              error: Any = start_error) -> None:
    """Run `init` in the forked child; report a failure before the program runs on `chan`; never return."""
    code = 1
    try:
        code = init(req, chan, stdio)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:
        try:
            chan.send(b"error:" + error(exc).encode()[:4000])
            code = 128
        except OSError:  # the workload already runs: this is its crash
            import traceback

            try:
                traceback.print_exc()
            except BaseException:
                pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
