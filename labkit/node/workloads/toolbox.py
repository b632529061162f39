"""The pause program (agnhost `pause`, registry.k8s.io/pause) as a tiny shell rather than a Python process.

Toolbox images (busybox, alpine, netshoot, dnsutils, ...) need no workload of their own: their container runs its
command as given, with the host's programs (labkit.node.images.toolbox, labkit.node.container_init.execute).
"""

from __future__ import annotations

import os
import signal
from typing import Any

PAUSE_SCRIPT = (
    'echo Paused >&2; '
    'trap \'kill $! 2>/dev/null; echo "Shutting down, got signal: Terminated" >&2; exit 0\' TERM; '
    'trap \'kill $! 2>/dev/null; echo "Shutting down, got signal: Interrupt" >&2; exit 0\' INT; '
    'while :; do sleep 2147483647 & wait $!; done'
)


def pause(spec: dict[str, Any]) -> int:
    """agnhost/pause: print "Paused", exit 0 on SIGTERM/SIGINT (pause.c) — a shell costs less than Python."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.execv("/bin/sh", ["/bin/sh", "-c", PAUSE_SCRIPT])
    return 0  # not reached
