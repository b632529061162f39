"""Doing things inside a network namespace from a process that lives outside it.

Sockets keep the namespace they were created in, so a listener for an address
that exists only inside a labkit namespace is made by a thread that enters the
namespace (setns(2) affects only the calling thread), creates the socket and
returns. Python 3.11 has no os.setns, hence ctypes.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def setns(fd: int, nstype: int = 0) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def run_in_netns(netns: str | Path, func: Callable[[], T]) -> T:
    """Run `func` in a short-lived thread that has entered the named network namespace."""
    path = Path(netns) if "/" in str(netns) else NETNS_DIR / str(netns)
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            with open(path) as ns:
                setns(ns.fileno(), CLONE_NEWNET)
            result.append(func())
        except BaseException as exc:  # handed back to the caller's thread
            error.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{path.name}")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def listen_in_netns(netns: str | Path, host: str, port: int, kind: int = socket.SOCK_STREAM,
                    freebind: bool = False) -> socket.socket:
    """A bound (and for TCP listening) socket that lives in `netns`."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if freebind:
            sock.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(512)
        sock.setblocking(False)
        return sock

    return run_in_netns(netns, make)


class NetnsSockets:
    """Creates sockets *inside* a network namespace without moving the calling process there.

    A socket belongs to the namespace it was created in, whichever thread uses it later. One worker
    thread joins the namespace once (setns of a netns is per thread) and creates sockets on request;
    asyncio code then connects them normally (`loop.sock_connect`, `asyncio.open_connection(sock=...)`).
    The kubelet uses this for probes: traffic to pod IPs leaves from the node's namespace, never the host's.
    """

    def __init__(self, netns_path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(netns_path)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, initializer=self._enter)

    def _enter(self) -> None:
        fd = os.open(self._path, os.O_RDONLY)
        try:
            setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
        return self._pool.submit(socket.socket, family, type, proto).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False)
