"""ready [ADDR]: `GET ADDR/ready` answers 200 "OK" once every plugin that has an opinion is ready (the
`kubernetes` plugin: once the API has been listed), else 503 with the names still waited for
(`[INFO] plugin/ready: Still waiting on: "kubernetes"`), and 503 "Shutting down" once the process has been asked
to stop (while `health`'s lameduck keeps DNS serving). ADDR defaults to :8181 (plugin/ready).
"""

from __future__ import annotations

from aiohttp import web

from labkit.dns.plugin import Controller, Log

log = Log("ready")


def setup(c: Controller) -> None:
    addr = ":8181"
    while c.next_once():
        addr = c.address_arg(addr)
        while c.next_block():
            raise c.plugin_err(c.arg_err())
    instance = c.block.instance
    done: set[str] = set()  # a plugin that has been ready is not asked again

    async def ready(request: web.Request) -> web.Response:
        if instance.shutting_down:
            return web.Response(status=503, text="Shutting down")
        waiting = sorted({p.name for p in instance.plugins() if p.name not in done and p.ready() is False})
        done.update(p.name for p in instance.plugins() if p.ready() is True and p.name not in waiting)
        if not waiting:
            return web.Response(text="OK")
        todo = ",".join(waiting)
        log.info(f'Still waiting on: "{todo}"')
        return web.Response(status=503, text=todo)

    c.http_route(addr, "/ready", ready)
