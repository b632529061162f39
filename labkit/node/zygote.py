"""The zygote: one preloaded Python process that forks every container, and holds their stdio as a shim does.

Starting a Python interpreter per container would cost ~10-20 MB each; 50 pods would blow the node's
300 MB budget. The zygote imports every built-in workload once, freezes the GC (so forked children do
not dirty the shared pages while collecting), and forks: a child becomes the container (labkit.node.container_init:
the pod's namespaces, a PID namespace and a root filesystem of its own, its privileges) and runs the workload or
execs the container's program. Children share the zygote's pages copy-on-write, so a container costs well under a
few MB of PSS.

It is also the containers' shim (labkit.node.shim): it keeps the parent's side of their stdio, writes their logs in
the CRI format, serves `attach`, and starts the processes `kubectl exec` runs in a container.

Protocol: JSON lines over a Unix socket. Requests carry "op": spawn | exec | attach | kill | list | forget | ping |
subscribe; every request gets one reply line {"ok": true, ...} or {"ok": false, "error": "..."}. A `subscribe`d
connection then receives {"event": "exited", ...container...} lines; after the reply to `exec` or `attach` the
connection carries shim frames (labkit.node.shim). The zygote runs in its own session, so a node agent restart
keeps the containers running: the new agent reconnects and `list`s. Children get PR_SET_PDEATHSIG=SIGKILL, so if
the zygote dies its containers die with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.node import container_init, nsutil
from labkit.node.container_init import exec_error, init_container, init_exec, run_child
from labkit.node.names import Names
from labkit.node.shim import CLOSE, EXIT, HEADER, RESIZE, STDIN, Process, Session, set_nonblocking

CLOEXEC = os.O_CLOEXEC


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


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


@dataclass(eq=False)
class Starting:
    """A child that has not yet started its program: its report channel and who waits for the answer."""

    chan: socket.socket
    conn: socket.socket
    process: Process
    session: Session | None  # an exec's session, answered (and relayed) once the program runs


class ZygoteServer:
    """The zygote's single-threaded event loop (selectors; no threads, so fork, setns and unshare are safe)."""

    def __init__(self, sock_path: str) -> None:
        self.sock_path = sock_path
        self.containers: dict[str, dict[str, Any]] = {}   # container id → record (what `list` shows)
        self.processes: dict[str, Process] = {}           # live containers and exec'd processes
        self.by_pid: dict[int, str] = {}
        self.sel = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytes] = {}
        self.subscribers: set[socket.socket] = set()
        self.starting: dict[int, Starting] = {}
        self.sessions: dict[socket.socket, Session] = {}
        self.io: dict[int, Process] = {}                  # stdio fd → its process
        self.exec_ids = itertools.count(1)
        self.pid_ns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)

    # ---- loop ----
    def serve(self) -> None:
        Path(self.sock_path).unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.sock_path)
        os.chmod(self.sock_path, 0o600)
        listener.listen(64)
        self.sel.register(listener, selectors.EVENT_READ, "listen")
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self._shutdown())
        self.sel.register(wake_r, selectors.EVENT_READ, "signal")
        warm_up()
        container_init.prepare()
        gc.collect()
        gc.freeze()  # keep the preloaded objects out of future collections: fewer copy-on-write faults
        while True:
            for key, events in self.sel.select():
                kind = key.data
                if kind == "listen":
                    conn, _ = listener.accept()
                    self.buffers[conn] = b""
                    self.sel.register(conn, selectors.EVENT_READ, "client")
                elif kind == "signal":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 512)
                    self._reap()
                elif kind == "start":
                    self._start_report(key.fd)
                elif kind == "io":
                    self._io(key.fd, events)
                elif kind == "session":
                    self._session_io(key.fileobj, events)  # type: ignore[arg-type]
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]

    def _shutdown(self) -> None:
        for pid in list(self.by_pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        raise SystemExit(0)

    # ---- JSON requests ----
    def _close(self, conn: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
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
        while b"\n" in buf and conn in self.buffers:
            line, buf = buf.split(b"\n", 1)
            try:
                reply = self._handle(conn, json.loads(line))
            except Exception as exc:
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if reply is not None:  # None: answered later (once the process started), or a session now
                self._send(conn, reply)
        if conn in self.buffers:
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
                with contextlib.suppress(ProcessLookupError):
                    if c.get("pidNamespace"):
                        os.kill(c["pid"], sig)  # the container's PID 1, as containerd signals it
                    else:
                        os.killpg(c["pid"], sig)
            return {"ok": True, "container": c}
        if op == "spawn":
            return self._spawn(conn, req)
        if op == "exec":
            return self._exec(conn, req)
        if op == "attach":
            return self._attach(conn, req)
        raise ValueError(f"unknown op {op!r}")

    # ---- starting processes ----
    def _fork(self, child: Callable[[], None], *, new_pid_ns: bool = False, join_pid_of: int | None = None) -> int:
        """fork(); the child is PID 1 of a new PID namespace, or in the PID namespace of process `join_pid_of`
        (a setns of PID namespace applies to the children made afterwards; ours is restored at once)."""
        sys.stdout.flush()
        sys.stderr.flush()
        if new_pid_ns:
            nsutil.unshare(nsutil.CLONE_NEWPID)
        elif join_pid_of is not None:
            fd = os.open(f"/proc/{join_pid_of}/ns/pid", os.O_RDONLY)
            try:
                nsutil.setns(fd, nsutil.CLONE_NEWPID)
            finally:
                os.close(fd)
        try:
            pid = os.fork()
        except BaseException:
            if new_pid_ns or join_pid_of is not None:
                nsutil.setns(self.pid_ns_fd, nsutil.CLONE_NEWPID)
            raise
        if pid == 0:
            child()  # never returns
        if new_pid_ns or join_pid_of is not None:
            nsutil.setns(self.pid_ns_fd, nsutil.CLONE_NEWPID)
        return pid

    def _stdio(self, process: Process, stdin: bool, tty: bool) -> tuple[tuple[int, int, int] | None, list[int]]:
        """Pipes for the child's stdio (None for a terminal, which the child opens); the child's ends to close
        in the parent once it forked."""
        if tty:
            return None, []
        out_r, out_w = os.pipe2(CLOEXEC)
        err_r, err_w = os.pipe2(CLOEXEC)
        if stdin:
            in_r, in_w = os.pipe2(CLOEXEC)
            set_nonblocking(in_w)
            process.stdin_fd = in_w
        else:
            in_r = os.open(os.devnull, os.O_RDONLY | CLOEXEC)
        process.add_stream(out_r, "stdout")
        process.add_stream(err_r, "stderr")
        return (in_r, out_w, err_w), [in_r, out_w, err_w]

    def _register_streams(self, process: Process) -> None:
        for fd in process.streams:
            self.io[fd] = process
            self.sel.register(fd, selectors.EVENT_READ, "io")
        if process.stdin_fd is not None:
            self.io[process.stdin_fd] = process

    def _spawn(self, conn: socket.socket, req: dict[str, Any]) -> None:
        """Fork a container. The reply waits until it runs or failed to start (its report channel says which)."""
        cid = req["id"]
        old = self.containers.get(cid)
        if old and old["running"]:
            raise ValueError(f"container {cid} is running (pid {old['pid']})")
        pod_container = bool(req.get("rootfs"))
        tty = pod_container and bool(req.get("tty"))
        record = {"id": cid, "pid": 0, "running": True, "startedAt": now_rfc3339(), "finishedAt": None,
                  "exitCode": None, "signal": None, "pidNamespace": pod_container, "tty": tty}
        process = Process(cid, 0, record, tty=tty, stdin_once=bool(req.get("stdinOnce")))
        parent_chan, child_chan = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if pod_container:
            process.log_fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | CLOEXEC, 0o640)
            stdio, child_ends = self._stdio(process, bool(req.get("stdin")), tty)
        else:  # a host of the outside world: its output straight to its log
            log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | CLOEXEC, 0o640)
            null = os.open(os.devnull, os.O_RDONLY | CLOEXEC)
            stdio, child_ends = (null, log, log), [null, log]
        target = req.get("pidTarget")  # an ephemeral container: in its target's PID namespace
        pid = self._fork(lambda: (parent_chan.close(), run_child(init_container, req, child_chan, stdio)),
                         new_pid_ns=pod_container and not target, join_pid_of=target)
        self.containers[cid] = record
        self._forked(process, pid, child_chan, child_ends, Starting(parent_chan, conn, process, None))

    def _exec(self, conn: socket.socket, req: dict[str, Any]) -> dict[str, Any] | None:
        """Start `argv` in a running container; once it runs, the connection is its session."""
        container = self.containers.get(req["id"])
        if not container or not container["running"] or not container.get("pidNamespace"):
            return {"ok": False, "error": f"container {req['id']} is not running"}
        eid = f"{req['id']}#exec{next(self.exec_ids)}"
        tty = bool(req.get("tty"))
        record = {"id": eid, "pid": 0, "running": True, "exitCode": None, "signal": None}
        process = Process(eid, 0, record, tty=tty)
        session = Session(conn, process, stdin=bool(req.get("stdin")), stdout=bool(req.get("stdout", True)),
                          stderr=bool(req.get("stderr", True)))
        parent_chan, child_chan = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        stdio, child_ends = self._stdio(process, session.stdin, tty)
        child_req = {**req, "target": container["pid"]}
        pid = self._fork(lambda: (parent_chan.close(),
                                  run_child(init_exec, child_req, child_chan, stdio, error=exec_error)),
                         join_pid_of=container["pid"])
        process.sessions.add(session)
        self._forked(process, pid, child_chan, child_ends, Starting(parent_chan, conn, process, session))
        return None

    def _forked(self, process: Process, pid: int, child_chan: socket.socket, child_ends: list[int],
                starting: Starting) -> None:
        """The parent's side once a child is forked: drop its ends, track it, wait for its start report."""
        child_chan.close()
        for fd in child_ends:
            os.close(fd)
        process.pid = process.record["pid"] = pid
        self.by_pid[pid] = process.id
        self.processes[process.id] = process
        self._register_streams(process)
        self._await_start(starting)

    def _attach(self, conn: socket.socket, req: dict[str, Any]) -> dict[str, Any] | None:
        process = self.processes.get(req["id"])
        record = self.containers.get(req["id"])
        if process is None or record is None or not record["running"] or process.reaped:
            return {"ok": False, "error": "container is in CONTAINER_EXITED state"}
        session = Session(conn, process, stdin=bool(req.get("stdin")), stdout=bool(req.get("stdout", True)),
                          stderr=bool(req.get("stderr", True)))
        process.sessions.add(session)
        self._send(conn, {"ok": True, "tty": process.tty})
        self._become_session(session)
        return None

    def _await_start(self, starting: Starting) -> None:
        self.starting[starting.chan.fileno()] = starting
        self.sel.register(starting.chan, selectors.EVENT_READ, "start")

    def _start_report(self, fd: int) -> None:
        """A child's report: a terminal's master side, why it could not start, or (the channel closing) that
        its program runs."""
        starting = self.starting[fd]
        process = starting.process
        try:
            message, fds, _, _ = socket.recv_fds(starting.chan, 65536, 1)
        except OSError:
            message, fds = b"", []
        if message == b"pty" and fds:
            process.add_stream(fds[0], "stdout")
            self.io[fds[0]] = process
            self.sel.register(fds[0], selectors.EVENT_READ, "io")
            return
        for extra in fds:
            os.close(extra)
        if message.startswith(b"error:"):
            process.record["startError"] = message[len(b"error:"):].decode(errors="replace")
            self._drop_session(process, starting.session)
        elif message:
            return  # not ours to understand; wait for the channel to close
        del self.starting[fd]
        self.sel.unregister(starting.chan)
        starting.chan.close()
        if starting.session is None:  # a container: the spawn's reply
            self._send(starting.conn, {"ok": True, "container": process.record})
        elif "startError" in process.record:
            self._send(starting.conn, {"ok": False, "error": process.record["startError"]})
        else:
            self._send(starting.conn, {"ok": True, "id": process.id, "pid": process.pid})
            self._become_session(starting.session)

    def _drop_session(self, process: Process, session: Session | None) -> None:
        if session is not None:
            process.sessions.discard(session)

    # ---- sessions ----
    def _become_session(self, session: Session) -> None:
        """After its reply, a connection carries frames (the bytes already read after the request line too)."""
        conn = session.conn
        rest = self.buffers.pop(conn, b"")
        self.sel.unregister(conn)
        conn.setblocking(False)
        self.sessions[conn] = session
        self.sel.register(conn, selectors.EVENT_READ, "session")
        if rest:
            self._session_frames(session, rest)
        if session.process.reaped:
            session.process.sessions.discard(session)
            self._close_session(session)
        self._flush_session(session)

    def _session_io(self, conn: socket.socket, events: int) -> None:
        session = self.sessions.get(conn)
        if session is None:
            return
        if events & selectors.EVENT_READ:
            try:
                data = conn.recv(65536)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data == b"":
                self._session_gone(session)
                return
            if data:
                self._session_frames(session, data)
        if events & selectors.EVENT_WRITE or session.outbuf:
            self._flush_session(session)

    def _session_frames(self, session: Session, data: bytes) -> None:
        process = session.process
        for channel, payload in session.frames(data):
            if channel == STDIN and session.stdin:
                process.write_stdin(payload)
            elif channel == RESIZE:
                process.resize(payload)
            elif channel == CLOSE and session.stdin:
                process.close_stdin()
            self._want_write(process)

    def _flush_session(self, session: Session) -> None:
        conn = session.conn
        if conn not in self.sessions:
            return
        if session.outbuf:
            try:
                sent = conn.send(session.outbuf)
                del session.outbuf[:sent]
            except BlockingIOError:
                pass
            except OSError:
                self._session_gone(session)
                return
        if not session.outbuf and session.closing:
            self._end_session(session)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if session.outbuf else 0)
        self.sel.modify(conn, events, "session")

    def _session_gone(self, session: Session) -> None:
        """The client left: a non-terminal container's stdin closes if it is stdinOnce (containerd's Attach)."""
        process = session.process
        process.sessions.discard(session)
        if session.stdin and process.stdin_once and not process.tty:
            process.close_stdin()
        self._end_session(session)

    def _close_session(self, session: Session) -> None:
        session.closing = True

    def _end_session(self, session: Session) -> None:
        self.sessions.pop(session.conn, None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(session.conn)
        session.conn.close()

    # ---- process stdio ----
    def _io(self, fd: int, events: int) -> None:
        process = self.io.get(fd)
        if process is None:
            return
        if events & selectors.EVENT_READ and fd in process.streams:
            try:
                alive = process.read(fd)
            except OSError:
                alive = False
            if not alive:
                self._unwatch(fd, process)
                process.close_stream(fd)
        if events & selectors.EVENT_WRITE:
            process.flush_stdin()
        self._want_write(process)
        for session in list(process.sessions):
            if session.outbuf:
                self._flush_session(session)

    def _unwatch(self, fd: int, process: Process) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(fd)
        if fd != process.stdin_fd:
            self.io.pop(fd, None)

    def _want_write(self, process: Process) -> None:
        """Watch a process's stdin (or terminal) for writability while some of its input waits."""
        target = process.master if process.tty else process.stdin_fd
        if target is None:
            return
        events = (selectors.EVENT_READ if target in process.streams else 0) | \
            (selectors.EVENT_WRITE if process.stdin_pending else 0)
        try:
            key = self.sel.get_key(target)
        except KeyError:
            key = None
        if key is None and events:
            self.io[target] = process
            self.sel.register(target, events, "io")
        elif key is not None and events and key.events != events:
            self.sel.modify(target, events, "io")
        elif key is not None and not events:
            self.sel.unregister(target)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            pid_id = self.by_pid.pop(pid, None)
            process = self.processes.pop(pid_id, None) if pid_id else None
            if process is None:
                continue
            record = process.record
            record["running"] = False
            record["finishedAt"] = now_rfc3339()
            if os.WIFSIGNALED(status):
                record["signal"] = os.WTERMSIG(status)
                record["exitCode"] = 128 + record["signal"]  # what a container runtime reports for a killed process
            else:
                record["exitCode"] = os.WEXITSTATUS(status)
            process.reaped = True
            for fd in [*process.streams, process.stdin_fd]:
                if fd is not None:
                    with contextlib.suppress(KeyError, ValueError):
                        self.sel.unregister(fd)
                    self.io.pop(fd, None)
            process.finish()
            for session in list(process.sessions):
                self._flush_session(session)
            if process.id in self.containers:
                for sub in list(self.subscribers):
                    self._send(sub, {"event": "exited", **record})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="labkit-zygote")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--prefix", required=True, help="cluster prefix (so cleanup finds the zygote)")
    args = parser.parse_args(argv)
    Path(args.socket).parent.mkdir(parents=True, exist_ok=True)
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


class SessionError(Exception):
    """An exec or attach the zygote refused (the message is the runtime's)."""


class ZygoteSession:
    """The client side of an exec or attach session (frames: labkit.node.shim)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        self.reader, self.writer, self.reply = reader, writer, reply

    async def frames(self) -> AsyncIterator[tuple[int, bytes]]:
        """(channel, payload) until the exit frame (included) or the connection's end."""
        while True:
            try:
                header = await self.reader.readexactly(HEADER.size)
                channel, length = HEADER.unpack(header)
                payload = await self.reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            yield channel, payload
            if channel == EXIT:
                return

    async def send(self, channel: int, payload: bytes) -> None:
        """Send a frame. Once the session has ended (the process exited, the zygote closed the connection), what
        the client still sends (stdin typed late, its end, a resize) is dropped, as a container runtime drops
        input for a process that is gone: the end was, or will be, read from frames()."""
        if self.writer.is_closing():
            return
        try:
            self.writer.write(HEADER.pack(channel, len(payload)) + payload)
            await self.writer.drain()
        except ConnectionError:
            pass

    def close(self) -> None:
        self.writer.close()


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
                    staging: str | None = None, security: dict[str, Any] | None = None, tty: bool = False,
                    stdin: bool = False, stdin_once: bool = False, pid_target: int | None = None) -> dict[str, Any]:
        """Start container `cid` running `workload` (Workload.to_spec()) in the given namespace files, at
        niceness `nice`; with `rootfs` (RootfsSpec.to_dict(), built over the `staging` directory) in mount and PID
        namespaces of its own, with the privileges of `security` (Security.to_dict()), a terminal (`tty`) or an
        open stdin. The record has `startError` when its program could not start."""
        req = {"op": "spawn", "id": cid, "workload": workload, "log": log, "env": env or {}, "net": net,
               "uts": uts, "ipc": ipc, "workingDir": working_dir, "nice": nice, "rootfs": rootfs, "staging": staging,
               "security": security, "tty": tty, "stdin": stdin, "stdinOnce": stdin_once, "pidTarget": pid_target}
        return (await self._call(req))["container"]

    async def session(self, req: dict[str, Any]) -> ZygoteSession:
        """An `exec` or `attach` request on a connection of its own, which then carries the session's frames.
        Raises SessionError with the zygote's reason (e.g. the program could not start)."""
        reader, writer = await asyncio.open_unix_connection(self.path, limit=1 << 20)
        writer.write(json.dumps(req).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
        reply = json.loads(line) if line else {"ok": False, "error": "the zygote closed the connection"}
        if not reply.get("ok"):
            writer.close()
            raise SessionError(reply.get("error", "zygote error"))
        return ZygoteSession(reader, writer, reply)

    async def kill(self, cid: str, sig: int = signal.SIGTERM) -> dict[str, Any] | None:
        return (await self._call({"op": "kill", "id": cid, "signal": int(sig)}))["container"]

    async def list(self) -> list[dict[str, Any]]:
        return (await self._call({"op": "list"}))["containers"]

    async def forget(self, cid: str) -> None:
        await self._call({"op": "forget", "id": cid})

    async def events(self):  # type: ignore[no-untyped-def]
        """Yield {"event": "subscribed"} once subscribed, then {"event": "exited", id, pid, exitCode, signal, ...}
        for every container that ends."""
        reader, writer = await asyncio.open_unix_connection(self.path)
        try:
            writer.write(b'{"op": "subscribe"}\n')
            await writer.drain()
            if not await reader.readline():
                raise ConnectionError("the zygote closed the connection")
            yield {"event": "subscribed"}
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
