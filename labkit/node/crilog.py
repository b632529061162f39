"""Container logs in the CRI format kubelet reads: one line per record, `TIMESTAMP STREAM TAG MESSAGE`.

    2024-05-01T10:20:30.123456789Z stdout F hello
    2024-05-01T10:20:30.123456789Z stderr P first 16 KiB of a longer line…

TIMESTAMP is RFC 3339 with nanoseconds in UTC (containerd writes time.RFC3339Nano; kubelet prints it back as
RFC3339NanoFixed, always 9 digits), STREAM stdout|stderr, TAG F (full line) or P (partial: the line goes on in the
next record, because it was longer than 16 KiB). A container with a TTY has only stdout.

Sources: containerd internal/cri/io/logger.go (redirectLogs, maxLen 16 KiB), kubernetes
staging/src/k8s.io/cri-client/pkg/logs/logs.go (parseCRILog, ReadLogs: tailLines, sinceTime, limitBytes,
timestamps).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from dataclasses import dataclass

MAX_LINE = 16 * 1024


def timestamp(ns: int | None = None) -> str:
    """RFC3339NanoFixed in UTC: `2006-01-02T15:04:05.000000000Z`."""
    ns = time.time_ns() if ns is None else ns
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def parse_timestamp(text: str) -> float:
    """Seconds since the epoch of a CRI timestamp (the fraction may have fewer than 9 digits)."""
    main, _, frac = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + (float("0." + frac) if frac else 0.0)


class LineWriter:
    """Turns one stream's raw output into CRI records; whole lines as they complete, a partial line only once it
    reaches MAX_LINE or the stream ends."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.pending = b""

    def feed(self, data: bytes) -> bytes:
        buf = self.pending + data
        out = []
        stamp = timestamp().encode()
        head = stamp + b" " + self.stream.encode()
        while True:
            nl = buf.find(b"\n")
            if nl == -1 or nl > MAX_LINE:
                if len(buf) >= MAX_LINE:
                    out.append(head + b" P " + buf[:MAX_LINE] + b"\n")
                    buf = buf[MAX_LINE:]
                    continue
                break
            out.append(head + b" F " + buf[:nl] + b"\n")
            buf = buf[nl + 1:]
        self.pending = buf
        return b"".join(out)

    def close(self) -> bytes:
        """What remains when the stream ends: a last line without its newline, as a full record."""
        if not self.pending:
            return b""
        rest, self.pending = self.pending, b""
        return timestamp().encode() + b" " + self.stream.encode() + b" F " + rest + b"\n"


@dataclass(frozen=True)
class Record:
    time: str
    stream: str
    partial: bool
    message: bytes

    @property
    def text(self) -> bytes:
        """The output as the container wrote it (a full record ends its line)."""
        return self.message if self.partial else self.message + b"\n"


def parse(line: bytes) -> Record | None:
    """One record (the trailing newline removed); None for a malformed line."""
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        return None
    message = parts[3] if len(parts) == 4 else b""
    return Record(parts[0].decode(errors="replace"), parts[1].decode(errors="replace"), parts[2] == b"P", message)


def records(data: bytes) -> Iterator[Record]:
    for line in data.split(b"\n"):
        if line:
            rec = parse(line)
            if rec is not None:
                yield rec


def render(recs: list[Record], *, timestamps: bool = False) -> bytes:
    """What `kubectl logs` prints for these records: the output, each line prefixed with its time when asked
    (a partial record's continuation gets no prefix)."""
    out = []
    continuing = False
    for rec in recs:
        if timestamps and not continuing:
            out.append(rec.time.encode() + b" ")
        out.append(rec.text)
        continuing = rec.partial
    return b"".join(out)


def tail(recs: list[Record], lines: int) -> list[Record]:
    """The records of the last `lines` lines (a line is a run of partial records and the full one ending it)."""
    if lines < 0:
        return recs
    if lines == 0:
        return []
    count = 0
    for i in range(len(recs) - 1, -1, -1):
        if not recs[i].partial:
            count += 1
            if count > lines:
                return recs[i + 1:]
    return recs
