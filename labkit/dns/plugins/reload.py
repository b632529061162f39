"""reload [INTERVAL [JITTER]]: re-read the Corefile and restart with it when it changed (plugin/reload).

Every INTERVAL ± JITTER/2 the file is parsed (without checking directives) and hashed (SHA512 of the parsed
blocks, so comment and white-space edits do not count, changed line numbers do). A new hash restarts CoreDNS
with the new Corefile: `[INFO] Reloading`, the new `Running configuration SHA512`, `[INFO] Reloading complete`.
If that fails the old configuration keeps running and the error is logged; the same content is not retried.
An unparsable file logs `[WARNING] plugin/reload: Corefile parse failed: ...` at each tick.

One deliberate difference: CoreDNS checks every 30 s ± 7.5 s by default; labkit checks every 2 s ± 0.5 s
(CoreDNS's minimum interval and jitter), so an edited ConfigMap takes effect within seconds in a lab. An explicit
INTERVAL is honoured as written.
"""

from __future__ import annotations

import random

from labkit.dns.plugin import Controller
from labkit.dns.plugins.durations import format_duration, parse_duration

DEFAULT_INTERVAL = 2.0  # CoreDNS: 30 s (see the module docstring)
DEFAULT_JITTER = 1.0  # CoreDNS: 15 s
MIN_INTERVAL = 2.0
MIN_JITTER = 1.0


def setup(c: Controller) -> None:
    c.next()
    args = c.remaining_args()
    if len(args) > 2:
        raise c.plugin_err(c.arg_err())
    try:
        interval = parse_duration(args[0]) if args else DEFAULT_INTERVAL
        jitter = parse_duration(args[1]) if len(args) > 1 else DEFAULT_JITTER
    except ValueError as exc:
        raise c.plugin_err(exc) from None
    if interval < MIN_INTERVAL:
        raise c.plugin_err(f"interval value must be greater or equal to {format_duration(MIN_INTERVAL)}")
    if jitter < MIN_JITTER:
        raise c.plugin_err(f"jitter value must be greater or equal to {format_duration(MIN_JITTER)}")
    jitter = min(jitter, interval / 2)
    c.block.instance.reload_interval = (interval + random.uniform(-jitter / 2, jitter / 2), 0.0)
