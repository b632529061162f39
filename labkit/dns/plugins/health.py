"""health [ADDR] { lameduck DURATION }: `GET ADDR/health` answers 200 "OK" while the process runs
(plugin/health). ADDR defaults to :8080. With `lameduck`, a SIGTERM keeps serving for DURATION before the
process exits (`[INFO] plugin/health: Going into lameduck mode for 5s`).
"""

from __future__ import annotations

from aiohttp import web

from labkit.dns.plugin import Controller
from labkit.dns.plugins.durations import parse_duration


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


def setup(c: Controller) -> None:
    addr = ":8080"
    lameduck = 0.0
    while c.next():
        addr = c.address_arg(addr)
        while c.next_block():
            if c.val() != "lameduck":
                raise c.plugin_err(c.err(f"unknown property '{c.val()}'"))
            rest = c.remaining_args()
            if len(rest) != 1:
                raise c.plugin_err(c.arg_err())
            try:
                lameduck = parse_duration(rest[0])
            except ValueError as exc:
                raise c.plugin_err(exc) from None
    c.http_route(addr, "/health", _health)
    c.block.instance.lameduck = max(c.block.instance.lameduck, lameduck)
