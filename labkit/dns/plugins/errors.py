"""errors [stdout] { stacktrace; consolidate DURATION REGEXP [LEVEL] }: log the errors plugins return.

Each error becomes `[ERROR] plugin/errors: <rcode> <name> <type>: <error>` (errors.go); with `consolidate`,
errors matching REGEXP are counted instead and summed up once per DURATION:
`[ERROR] plugin/errors: 3 errors like '^read udp .* i/o timeout$' occurred in last 30s`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from labkit.dns.plugin import Controller, Log, Plugin
from labkit.dns.plugins.durations import format_duration, parse_duration
from labkit.dns.request import Reply, Request, type_name

log = Log("errors")


@dataclass
class Pattern:
    period: float
    regexp: re.Pattern[str]
    level: str  # error | warning | info | debug
    count: int = 0
    timer: asyncio.TimerHandle | None = None


class Errors(Plugin):
    name = "errors"

    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns
        self.stopped = False

    async def serve(self, req: Request) -> Reply:
        reply = await self.next_or_failure(req)
        if reply.err is None:
            return reply
        req.memo = False
        for p in self.patterns:
            if p.regexp.search(reply.err):
                if not self.stopped:
                    self._count(p)
                    return reply
                break
        log.error(f"{reply.rcode} {req.name()} {type_name(req.qtype)}: {reply.err}")
        return reply

    def _count(self, p: Pattern) -> None:
        p.count += 1
        if p.count == 1:
            p.timer = asyncio.get_running_loop().call_later(p.period, self._report, p)

    def _report(self, p: Pattern) -> None:
        n, p.count = p.count, 0
        if n:
            text = f"{n} errors like '{p.regexp.pattern}' occurred in last {format_duration(p.period)}"
            {"warning": log.warning, "info": log.info, "debug": lambda _m: None}.get(p.level, log.error)(text)

    def stop(self) -> None:
        self.stopped = True
        for p in self.patterns:
            if p.timer is not None:
                p.timer.cancel()
                self._report(p)  # what was counted so far, as Go's stopped timer reports


def setup(c: Controller) -> None:
    patterns: list[Pattern] = []
    while c.next_once():
        args = c.remaining_args()
        if len(args) > 1:
            raise c.plugin_err(c.arg_err())
        if args and args[0] != "stdout":
            raise c.plugin_err(c.err(f"invalid log file: {args[0]}"))
        while c.next_block():
            if c.val() == "stacktrace":
                continue  # Go stack traces: nothing to show in Python
            if c.val() != "consolidate":
                raise c.plugin_err(c.syntax_err("Unknown field " + c.val()))
            a = c.remaining_args()
            if len(a) not in (2, 3):
                raise c.plugin_err(c.arg_err())
            try:
                period = parse_duration(a[0])
            except ValueError as exc:
                raise c.plugin_err(c.err(str(exc))) from None
            try:
                regexp = re.compile(a[1])
            except re.error as exc:
                raise c.plugin_err(c.err(str(exc))) from None
            level = a[2] if len(a) == 3 else "error"
            if level not in ("warning", "error", "info", "debug"):
                raise c.plugin_err(c.err(f"unknown log level argument in consolidate: {level}"))
            patterns.append(Pattern(period, regexp, level))
    plugin = Errors(patterns)
    c.add_plugin(plugin)
    c.on_shutdown(plugin.stop)
