"""Toolbox containers (busybox, alpine, netshoot, dnsutils, ...): sleep, or run a shell script.

The node has no images, so a toolbox runs the host's /bin/sh inside the pod's namespaces when the
command is a shell script (`sh -c '...'`), sleeps for `sleep N`, and otherwise sleeps forever so that
`kubectl exec` into it works.
"""

from __future__ import annotations

import os
import signal
import sys
import time
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
    kind = spec.get("mode", "forever")
    if kind == "shell":
        argv = spec["argv"]
        os.execv(argv[0], argv)  # never returns
    # Die on SIGTERM with the status `sleep` would have (killed by the signal: exit code 143 in Kubernetes).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if spec.get("note"):
        print(spec["note"], file=sys.stderr, flush=True)
    seconds = spec.get("seconds")
    if seconds is None:
        while True:
            signal.pause()
    time.sleep(float(seconds))
    return 0
