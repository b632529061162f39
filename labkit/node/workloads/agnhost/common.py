"""What agnhost's subcommands share: Go's log line format, cobra/pflag-style flags, Go durations and errors."""

from __future__ import annotations

import errno
import os
import re
import socket
import sys
import time
from typing import Any

from labkit.node.workloads.http import Response

TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def log(msg: str) -> None:
    """Go's log.Printf: `2006/01/02 15:04:05 msg` on stderr."""
    print(time.strftime("%Y/%m/%d %H:%M:%S ") + msg, file=sys.stderr, flush=True)


def parse_flags(argv: list[str], defaults: dict[str, Any]) -> dict[str, Any]:
    """cobra/pflag style: `--name=value`, `--name value`, `--flag` for booleans; other words are skipped."""
    flags, _ = parse_args(argv, defaults)
    return flags


def parse_args(argv: list[str], defaults: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Flags as `parse_flags` reads them, plus the positional arguments in order."""
    flags = dict(defaults)
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional += argv[i:]
            break
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        key = name.replace("-", "_")
        if key not in flags:
            continue
        if isinstance(flags[key], bool):
            flags[key] = value.lower() not in ("false", "0") if eq else True
            continue
        if not eq and i < len(argv):
            value = argv[i]
            i += 1
        flags[key] = int(value) if isinstance(flags[key], int) else value
    return flags, positional


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration in seconds: `5s`, `1m30s`, `250ms`, `1.5h`, `0`. ValueError otherwise."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    total, pos = 0.0, 0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total


def go_errno(code: int | None) -> str:
    """An errno as Go's syscall.Errno prints it (lower-case: "connection refused")."""
    text = os.strerror(code) if code else "unknown error"
    return text[:1].lower() + text[1:]


def go_error(status: int, msg: str) -> Response:
    """net/http.Error: the message and a newline as text/plain, nosniff."""
    return Response(status, (msg + "\n").encode(), [*TEXT, ("X-Content-Type-Options", "nosniff")])


def first_nameserver() -> str:
    """The resolver Go's pure-Go lookups name in their errors (`lookup x on 10.96.0.10:53: ...`)."""
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    return fields[1]
    except OSError:
        pass
    return "127.0.0.1"


def go_lookup_error(host: str, exc: socket.gaierror) -> str:
    """A failed name lookup as Go's *net.DNSError prints it."""
    server = f"{first_nameserver()}:53"
    if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
        return f"lookup {host} on {server}: no such host"
    if exc.errno == socket.EAI_AGAIN:
        return f"lookup {host} on {server}: server misbehaving"
    return f"lookup {host} on {server}: {exc.strerror}"


def is_timeout(code: int | None) -> bool:
    """syscall.Errno.Timeout(): EAGAIN, EWOULDBLOCK and ETIMEDOUT count as timeouts."""
    return code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ETIMEDOUT)


def hostname() -> str:
    return socket.gethostname()
