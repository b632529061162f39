"""The zygote: one preloaded Python process that forks a child per container.

Starting a Python interpreter per container would cost ~10-20 MB each; 50 pods would blow the node's
300 MB budget. The zygote imports every built-in workload once, freezes the GC (so forked children do
not dirty the shared pages while collecting), and forks: a child joins the pod's namespaces with setns,
redirects stdout/stderr to the container's log file, replaces its environment and runs the workload
(or execs a real program, e.g. `/bin/sh -c` for a toolbox script). Children share the zygote's pages
copy-on-write, so a container costs well under a few MB of PSS.

Protocol: JSON lines over a Unix socket. Requests carry "op": spawn | kill | list | forget | ping |
subscribe; every request gets one reply line {"ok": true, ...} or {"ok": false, "error": "..."}. A
`subscribe`d connection then receives {"event": "exited", ...container...} lines. The zygote runs in its
own session, so a node agent restart keeps the containers running: the new agent reconnects and `list`s.
Children get PR_SET_PDEATHSIG=SIGKILL, so if the zygote dies its containers die with it.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from labkit.node import nsutil, rootfs, security, workloads
from labkit.node.names import Names

PR_SET_PDEATHSIG = 1
NS_TYPES = (("net", nsutil.CLONE_NEWNET), ("uts", nsutil.CLONE_NEWUTS), ("ipc", nsutil.CLONE_NEWIPC),
            ("mnt", nsutil.CLONE_NEWNS))


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------------------------------- child side
def start_error(exc: BaseException) -> str:
    """The message containerd gives a container whose process could not start (runc ≥ 1.2's wording)."""
    if isinstance(exc, ExecError):
        detail = str(exc)
    else:
        detail = f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)
    return ("failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create "
            f"failed: unable to start container process: error during container init: {detail}: unknown")


class ExecError(Exception):
    """exec of the container's command failed (Go's exec.LookPath wording)."""


def _child(req: dict[str, Any], started_fd: int) -> int:
    """In the forked child: become the container, then run it. Returns the exit code.

    `started_fd` is the write end of a close-on-exec pipe: closed once the workload runs (by exec, or
    explicitly for a workload in Python), written with the reason when the container cannot start.
    """
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    os.setsid()
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # Open everything that is a host path before switching mount namespace.
    log_fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    ns_fds = [(os.open(req[key], os.O_RDONLY), kind) for key, kind in NS_TYPES if req.get(key)]
    for fd, kind in ns_fds:
        nsutil.setns(fd, kind)
        os.close(fd)
    spec = req["workload"]
    if req.get("rootfs"):
        root = rootfs.RootfsSpec.from_dict(req["rootfs"])
        runtime = rootfs.runtime_sources() if root.runtime else None
        nsutil.unshare(nsutil.CLONE_NEWNS)
        rootfs.build(root, req["staging"])
        if runtime:
            rootfs.remap_imports(runtime)
    os.chdir(req.get("workingDir") or "/")
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.closerange(3, started_fd)
    os.closerange(started_fd + 1, 65536)
    os.environ.clear()
    os.environ.update(req.get("env") or {})
    if req.get("nice"):
        os.setpriority(os.PRIO_PROCESS, 0, int(req["nice"]))  # the pod's CPU weight (status.cpu_nice)
    if req.get("security"):
        security.apply(security.Security.from_dict(req["security"]))
    if spec.get("kind") == "exec" or spec.get("mode") == "shell":
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a real program expects the default
    if req.get("rootfs"):
        # PID 1 of its namespace ignores signals it has no handler for; a workload in Python ends on SIGTERM as
        # a Go program does there (its runtime's handler re-raises, in vain, then exits with 2).
        signal.signal(signal.SIGTERM, lambda *_: os._exit(2))
    return workloads.run(spec, started=lambda: os.close(started_fd))


def _run_child(req: dict[str, Any], started_fd: int) -> None:
    code = 1
    try:
        code = _child(req, started_fd)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:
        try:
            os.write(started_fd, start_error(exc).encode()[:4000])
            code = 128
        except OSError:  # already started: a crash of the workload
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


# ------------------------------------------------------------------------------------------ server side
def warm_up() -> None:
    """Run the workloads' hot paths once (an HTTP and a UDP round trip on loopback) before forking.

    CPython 3.11 specialises bytecode in place as it runs and fills lazy caches; doing that once here
    keeps those writes out of every child, where each would copy a shared page.
    """
    import asyncio

    from labkit.node.workloads.http import Request, Response, serve_http, serve_udp

    async def handler(req: Request) -> Response:
        return Response(200, req.path.encode() + str(req.query).encode())

    async def round_trips() -> None:
        srv = await serve_http(handler, 0, host="127.0.0.1", server_header="warm-up")
        port = srv.sockets[0].getsockname()[1]
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /x?a=b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await reader.read()
            writer.close()
        srv.close()
        udp = await serve_udp(lambda data, addr: data, 0, "127.0.0.1")
        udp.close()

    for _ in range(2):
        asyncio.run(round_trips())


class ZygoteServer:
    """The zygote's single-threaded event loop (selectors; no threads, so fork and setns(mnt) are safe)."""

    def __init__(self, sock_path: str) -> None:
        self.sock_path = sock_path
        self.containers: dict[str, dict[str, Any]] = {}
        self.by_pid: dict[int, str] = {}
        self.sel = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytes] = {}
        self.subscribers: set[socket.socket] = set()
        self.starting: dict[int, tuple[socket.socket, str, int]] = {}  # start pipe → (client, container, pid)
        self.pid_ns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)

    def serve(self) -> None:
        Path(self.sock_path).unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.sock_path)
        os.chmod(self.sock_path, 0o600)
        listener.listen(16)
        self.sel.register(listener, selectors.EVENT_READ, "listen")
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self._shutdown())
        self.sel.register(wake_r, selectors.EVENT_READ, "signal")
        warm_up()
        gc.collect()
        gc.freeze()  # keep the preloaded objects out of future collections: fewer copy-on-write faults
        while True:
            for key, _ in self.sel.select():
                if key.data == "listen":
                    conn, _ = listener.accept()
                    self.buffers[conn] = b""
                    self.sel.register(conn, selectors.EVENT_READ, "client")
                elif key.data == "started":
                    self._started(key.fd)
                elif key.data == "signal":
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
                    self._reap()
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]

    def _shutdown(self) -> None:
        for pid in list(self.by_pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise SystemExit(0)

    def _close(self, conn: socket.socket) -> None:
        self.sel.unregister(conn)
        self.buffers.pop(conn, None)
        self.subscribers.discard(conn)
        conn.close()

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        buf = self.buffers[conn] + data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                reply = self._handle(conn, json.loads(line))
            except Exception as exc:
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if reply is not None:  # None: answered later (a spawn, once the container started)
                self._send(conn, reply)
        self.buffers[conn] = buf

    def _send(self, conn: socket.socket, msg: dict[str, Any]) -> None:
        try:
            conn.setblocking(True)
            conn.sendall(json.dumps(msg).encode() + b"\n")
        except OSError:
            pass

    def _handle(self, conn: socket.socket, req: dict[str, Any]) -> dict[str, Any] | None:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        if op == "subscribe":
            self.subscribers.add(conn)
            return {"ok": True}
        if op == "list":
            return {"ok": True, "containers": list(self.containers.values())}
        if op == "forget":
            c = self.containers.get(req["id"])
            if c and not c["running"]:
                del self.containers[req["id"]]
            return {"ok": True}
        if op == "kill":
            c = self.containers.get(req["id"])
            if c and c["running"]:
                sig = int(req.get("signal", signal.SIGTERM))
                try:
                    if c.get("pidNamespace"):
                        os.kill(c["pid"], sig)  # the container's PID 1, as containerd signals it
                    else:
                        os.killpg(c["pid"], sig)
                except ProcessLookupError:
                    pass
            return {"ok": True, "container": c}
        if op == "spawn":
            return self._spawn(conn, req)
        raise ValueError(f"unknown op {op!r}")

    def _spawn(self, conn: socket.socket, req: dict[str, Any]) -> dict[str, Any] | None:
        """Fork the container. The reply waits until it runs or failed to start (its start pipe says which)."""
        cid = req["id"]
        old = self.containers.get(cid)
        if old and old["running"]:
            raise ValueError(f"container {cid} is running (pid {old['pid']})")
        sys.stdout.flush()
        sys.stderr.flush()
        started_r, started_w = os.pipe2(os.O_CLOEXEC)
        own_pid_ns = bool(req.get("rootfs"))
        if own_pid_ns:  # the next child is PID 1 of a new namespace; ours is restored right after the fork
            nsutil.unshare(nsutil.CLONE_NEWPID)
        try:
            pid = os.fork()
        finally:
            if own_pid_ns and os.getpid() != 1:
                nsutil.setns(self.pid_ns_fd, nsutil.CLONE_NEWPID)
        if pid == 0:
            os.close(started_r)
            _run_child(req, started_w)
        os.close(started_w)
        record = {"id": cid, "pid": pid, "running": True, "startedAt": now_rfc3339(), "finishedAt": None,
                  "exitCode": None, "signal": None, "pidNamespace": own_pid_ns}
        self.containers[cid] = record
        self.by_pid[pid] = cid
        self.starting[started_r] = (conn, cid, pid)
        self.sel.register(started_r, selectors.EVENT_READ, "started")
        return None

    def _started(self, fd: int) -> None:
        """A start pipe closed (the workload runs) or carries why the container could not start."""
        conn, cid, pid = self.starting.pop(fd)
        self.sel.unregister(fd)
        try:
            message = os.read(fd, 65536).decode(errors="replace")
        finally:
            os.close(fd)
        record = self.containers.get(cid)
        if record is None or record["pid"] != pid:
            return
        if message:
            record["startError"] = message
        self._send(conn, {"ok": True, "container": record})

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            cid = self.by_pid.pop(pid, None)
            if cid is None or cid not in self.containers:
                continue
            c = self.containers[cid]
            c["running"] = False
            c["finishedAt"] = now_rfc3339()
            if os.WIFSIGNALED(status):
                c["signal"] = os.WTERMSIG(status)
                c["exitCode"] = 128 + c["signal"]  # what a container runtime reports for a killed process
            else:
                c["exitCode"] = os.WEXITSTATUS(status)
            for sub in list(self.subscribers):
                self._send(sub, {"event": "exited", **c})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="labkit-zygote")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--prefix", required=True, help="cluster prefix (so cleanup finds the zygote)")
    args = parser.parse_args(argv)
    ZygoteServer(args.socket).serve()


# ------------------------------------------------------------------------------------------ client side
def start_zygote(names: Names) -> subprocess.Popen[bytes]:
    """Start the zygote of this cluster in its own session; return once its socket answers."""
    names.node_dir.mkdir(parents=True, exist_ok=True)
    sock = names.zygote_socket
    sock.unlink(missing_ok=True)
    env = {**os.environ, names.marker.split("=")[0]: names.prefix}
    with open(names.node_dir / "zygote.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "labkit.node.zygote", "--socket", str(sock),
                                 "--prefix", names.prefix], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=env, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"zygote exited with {proc.returncode}; see {names.node_dir / 'zygote.log'}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(sock))
                return proc
        except OSError:
            time.sleep(0.02)  # the zygote is importing its workloads
    proc.kill()
    raise RuntimeError("zygote did not start listening in 20 s")


def zygote_alive(names: Names) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(names.zygote_socket))
        return True
    except OSError:
        return False


class ZygoteClient:
    """asyncio client of a running zygote."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _call(self, req: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a connection belongs to one event loop; reconnect in a new one
            self._loop, self._lock, self._writer = loop, asyncio.Lock(), None
        async with self._lock:
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_unix_connection(self.path)
            assert self._reader is not None
            self._writer.write(json.dumps(req).encode() + b"\n")
            await self._writer.drain()
            line = await self._reader.readline()
        if not line:
            self._writer = None
            raise ConnectionError("zygote closed the connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error", "zygote error"))
        return reply

    async def ping(self) -> int:
        return (await self._call({"op": "ping"}))["pid"]

    async def spawn(self, cid: str, workload: dict[str, Any], *, log: str, env: dict[str, str] | None = None,
                    net: str | None = None, uts: str | None = None, ipc: str | None = None,
                    working_dir: str | None = None, nice: int = 0, rootfs: dict[str, Any] | None = None,
                    staging: str | None = None, security: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start container `cid` running `workload` (Workload.to_spec()) in the given namespace files, at
        niceness `nice`; with `rootfs` (RootfsSpec.to_dict(), built over the `staging` directory) in mount and PID
        namespaces of its own, with the privileges of `security` (Security.to_dict())."""
        req = {"op": "spawn", "id": cid, "workload": workload, "log": log, "env": env or {}, "net": net,
               "uts": uts, "ipc": ipc, "workingDir": working_dir, "nice": nice, "rootfs": rootfs, "staging": staging,
               "security": security}
        return (await self._call(req))["container"]

    async def kill(self, cid: str, sig: int = signal.SIGTERM) -> dict[str, Any] | None:
        return (await self._call({"op": "kill", "id": cid, "signal": int(sig)}))["container"]

    async def list(self) -> list[dict[str, Any]]:
        return (await self._call({"op": "list"}))["containers"]

    async def forget(self, cid: str) -> None:
        await self._call({"op": "forget", "id": cid})

    async def events(self):  # type: ignore[no-untyped-def]
        """Yield {"event": "exited", id, pid, exitCode, signal, ...} for every container that ends."""
        reader, writer = await asyncio.open_unix_connection(self.path)
        try:
            writer.write(b'{"op": "subscribe"}\n')
            await writer.drain()
            await reader.readline()
            while line := await reader.readline():
                yield json.loads(line)
        finally:
            writer.close()

    async def wait_exit(self, cid: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll until container `cid` is no longer running; return its record."""
        deadline = time.monotonic() + timeout
        while True:
            c = next((c for c in await self.list() if c["id"] == cid), None)
            if c is None or not c["running"]:
                return c or {}
            if time.monotonic() > deadline:
                raise TimeoutError(f"container {cid} still running")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


if __name__ == "__main__":
    main()
