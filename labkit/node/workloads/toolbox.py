"""Toolbox containers (busybox, alpine, netshoot, dnsutils, ...): sleep, or run a shell script.

The node has no images, so a toolbox runs the host's /bin/sh inside the pod's namespaces when the
command is a shell script (`sh -c '...'`), sleeps for `sleep N`, and otherwise sleeps forever so that
`kubectl exec` into it works.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from typing import Any

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_sleep(arg: str) -> float | None:
    """`sleep` durations: seconds, with an optional s/m/h/d suffix; `infinity` → None (forever)."""
    arg = arg.strip().lower()
    if arg in ("inf", "infinity"):
        return None
    unit = _UNITS.get(arg[-1:])
    number = arg[:-1] if unit else arg
    return float(number) * (unit or 1)


def main(spec: dict[str, Any]) -> int:
    if spec.get("mode") == "shell":
        argv = spec["argv"]
        os.execv(argv[0], argv)  # never returns
    if spec.get("note"):
        print(spec["note"], file=sys.stderr, flush=True)
    seconds = spec.get("seconds")
    # A real `sleep` costs ~0.2 MB instead of the ~2 MB a Python child dirties; it dies on SIGTERM with
    # the status the real image would show (143).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sleep = shutil.which("sleep") or "/bin/sleep"
    os.execv(sleep, [sleep, "infinity" if seconds is None else f"{float(seconds):g}"])
    return 0  # not reached


PAUSE_SCRIPT = (
    'echo Paused >&2; '
    'trap \'kill $! 2>/dev/null; echo "Shutting down, got signal: Terminated" >&2; exit 0\' TERM; '
    'trap \'kill $! 2>/dev/null; echo "Shutting down, got signal: Interrupt" >&2; exit 0\' INT; '
    'while :; do sleep 2147483647 & wait $!; done'
)


def pause(spec: dict[str, Any]) -> int:
    """agnhost/pause: print "Paused", exit 0 on SIGTERM/SIGINT (pause.c) — as a tiny shell, not Python."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.execv("/bin/sh", ["/bin/sh", "-c", PAUSE_SCRIPT])
    return 0  # not reached
