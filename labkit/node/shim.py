"""The zygote's shim side: the stdio of every container and exec'd process, as containerd's shim holds it.

A `Process` owns the parent's ends of a process's stdio: the read ends of its stdout and stderr pipes (or the
master side of its terminal) and the write end of its stdin. What the process writes goes to its log in the CRI
format (containers only; labkit.node.crilog) and to every attached `Session`. A session is a connection to the
zygote (an `attach` or an `exec` request) turned into a stream of frames:

    frame = channel (1 byte) + length (4 bytes, big-endian) + payload
    zygote → client   1 stdout, 2 stderr, 3 exit {"exitCode": n, "signal": s} (last frame; then the zygote closes)
    client → zygote   0 stdin, 4 resize {"Width": w, "Height": h}, 255 stdin closed

the node's streaming server relays them to kubectl's channels (labkit.node.streaming). Everything here runs on the
zygote's single thread: reads and writes are non-blocking, what cannot be written yet waits in a buffer.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import struct
import termios
from dataclasses import dataclass, field
from typing import Any

from labkit.node.crilog import LineWriter

HEADER = struct.Struct(">BI")
STDIN, STDOUT, STDERR, EXIT, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
SESSION_BUFFER_LIMIT = 8 << 20  # a client that falls this far behind is dropped


def frame(channel: int, payload: bytes) -> bytes:
    return HEADER.pack(channel, len(payload)) + payload


def set_nonblocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


@dataclass(eq=False)
class Session:
    """One attached client (kubectl attach, run -i, exec) of a process."""

    conn: socket.socket
    process: Process
    stdin: bool
    stdout: bool
    stderr: bool
    inbuf: bytes = b""
    outbuf: bytearray = field(default_factory=bytearray)
    closing: bool = False  # close once outbuf is sent

    def send(self, channel: int, payload: bytes) -> None:
        if len(self.outbuf) > SESSION_BUFFER_LIMIT:
            return
        self.outbuf += frame(channel, payload)

    def frames(self, data: bytes) -> list[tuple[int, bytes]]:
        """Complete frames received so far (the rest waits in inbuf)."""
        self.inbuf += data
        found = []
        while len(self.inbuf) >= HEADER.size:
            channel, length = HEADER.unpack_from(self.inbuf)
            if len(self.inbuf) < HEADER.size + length:
                break
            found.append((channel, self.inbuf[HEADER.size:HEADER.size + length]))
            self.inbuf = self.inbuf[HEADER.size + length:]
        return found


@dataclass(eq=False)
class Process:
    """A container's first process or an exec'd process, seen from its shim."""

    id: str
    pid: int
    record: dict[str, Any]
    tty: bool = False
    stdin_once: bool = False
    log_fd: int | None = None
    streams: dict[int, str] = field(default_factory=dict)   # fd → "stdout" | "stderr"
    writers: dict[str, LineWriter] = field(default_factory=dict)
    stdin_fd: int | None = None
    stdin_pending: bytes = b""
    stdin_closing: bool = False
    sessions: set[Session] = field(default_factory=set)
    reaped: bool = False

    @property
    def master(self) -> int | None:
        return next(iter(self.streams), None) if self.tty else None

    def add_stream(self, fd: int, name: str) -> None:
        set_nonblocking(fd)
        self.streams[fd] = name
        if self.log_fd is not None:
            self.writers[name] = LineWriter(name)

    def output(self, fd: int, data: bytes) -> None:
        """What the process wrote on `fd`: to its log and its sessions."""
        name = self.streams[fd]
        if self.log_fd is not None:
            records = self.writers[name].feed(data)
            if records:
                _write_all(self.log_fd, records)
        channel = STDERR if name == "stderr" else STDOUT
        for session in self.sessions:
            if (session.stderr if channel == STDERR else session.stdout) or (self.tty and session.stdout):
                session.send(channel, data)

    def read(self, fd: int) -> bool:
        """Read what `fd` has now; False once it ended (EOF, or EIO from a terminal whose last user left)."""
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return False
                raise
            if not data:
                return False
            self.output(fd, data)
            if len(data) < 65536:
                return True

    def close_stream(self, fd: int) -> None:
        name = self.streams.pop(fd, None)
        if name is not None and name in self.writers and self.log_fd is not None:
            rest = self.writers.pop(name).close()
            if rest:
                _write_all(self.log_fd, rest)
        if fd != self.stdin_fd:
            with contextlib.suppress(OSError):
                os.close(fd)

    # ---- input from sessions ----
    def write_stdin(self, data: bytes) -> None:
        target = self.master if self.tty else self.stdin_fd
        if target is None or self.stdin_closing:
            return
        self.stdin_pending += data
        self.flush_stdin()

    def flush_stdin(self) -> bool:
        """Write pending stdin; True when some is left (the caller then waits until the fd is writable)."""
        target = self.master if self.tty else self.stdin_fd
        while self.stdin_pending and target is not None:
            try:
                n = os.write(target, self.stdin_pending)
            except BlockingIOError:
                return True
            except OSError:
                self.stdin_pending = b""
                break
            self.stdin_pending = self.stdin_pending[n:]
        if self.stdin_closing and not self.stdin_pending:
            self._close_stdin_now()
        return False

    def close_stdin(self) -> None:
        """The client's stdin ended: EOF for the process (on a terminal: the EOF character, as a user's ^D)."""
        if self.tty:
            self.write_stdin(b"\x04")
            return
        self.stdin_closing = True
        if not self.stdin_pending:
            self._close_stdin_now()

    def _close_stdin_now(self) -> None:
        if self.stdin_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.stdin_fd)
            self.stdin_fd = None

    def resize(self, payload: bytes) -> None:
        master = self.master
        if master is None:
            return
        with contextlib.suppress(ValueError, OSError, KeyError, TypeError):
            size = json.loads(payload)
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", int(size["Height"]), int(size["Width"]),
                                                                0, 0))

    def finish(self) -> None:
        """The process was reaped: drain what it left, close everything, tell the sessions how it ended."""
        for fd in list(self.streams):
            with contextlib.suppress(OSError):
                self.read(fd)
            self.close_stream(fd)
        self._close_stdin_now()
        if self.log_fd is not None:
            os.close(self.log_fd)
            self.log_fd = None
        end = json.dumps({"exitCode": self.record.get("exitCode"), "signal": self.record.get("signal")}).encode()
        for session in self.sessions:
            session.send(EXIT, end)
            session.closing = True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
