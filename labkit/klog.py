"""Log lines in klog's format, for components that stand in for Kubernetes' own.

`kubectl logs -n kube-system kube-proxy-xxxxx` on kind prints klog's structured lines:

    I1205 08:34:41.123456       1 server_linux.go:66] "Using ipvs Proxier"

severity letter + month/day, wall time with microseconds, the thread id right-aligned in 7 columns, the source
file and line, `]`, then the message quoted as Go's `%q` does, followed by `key=value` pairs
(k8s.io/klog/v2 `formatHeader` and `KObj`/`InfoS`). labkit's stand-ins (the IPVS agent as kube-proxy) log the same
way, so the documentation's "Is kube-proxy running?" step reads what it reads on kind.
"""

from __future__ import annotations

import json
import logging
import os
import time

_SEVERITY = {logging.DEBUG: "I", logging.INFO: "I", logging.WARNING: "W", logging.ERROR: "E", logging.CRITICAL: "F"}


def go_quote(text: str) -> str:
    """Go's `strconv.Quote` for the text klog prints (JSON's escaping agrees with it on everything but a few
    control characters, which log messages don't carry)."""
    return json.dumps(text, ensure_ascii=False)


class KlogFormatter(logging.Formatter):
    """Formats records as klog's structured lines. `extra={"kv": {...}}` adds key=value pairs."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%m%d %H:%M:%S", time.localtime(record.created))
        micros = int((record.created % 1) * 1_000_000)
        severity = _SEVERITY.get(record.levelno, "I")
        line = (f"{severity}{stamp}.{micros:06d} {os.getpid():>7} {record.filename}:{record.lineno}] "
                f"{go_quote(record.getMessage())}")
        for key, value in (getattr(record, "kv", None) or {}).items():
            line += f" {key}={go_quote(str(value)) if isinstance(value, str) else value}"
        if record.exc_info:
            line += " err=" + go_quote(self.formatException(record.exc_info).splitlines()[-1])
        return line


def basic_config(level: int = logging.INFO) -> None:
    """`logging.basicConfig` with klog's line format on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(KlogFormatter())
    logging.basicConfig(level=level, handlers=[handler])
