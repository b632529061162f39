"""loop: detect a forwarding loop back to this server (plugin/loop).

At start-up the plugin sends `HINFO <random>.<random>.<zone>` to its own port, once a second until one query
gets an answer (for 30 s at most), then stands aside. If the probe comes back to this server more than twice,
the queries are going round in circles: it logs `[FATAL] plugin/loop: Loop (127.0.0.1:PORT -> :53) detected for
zone ".", see https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO ..."` (one line) and the process
exits with status 1.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections.abc import Callable

from labkit.dns import wire
from labkit.dns.plugin import Controller, Log, Plugin
from labkit.dns.request import Reply, Request
from labkit.dns.server import exchange

log = Log("loop")


class Loop(Plugin):
    name = "loop"

    def __init__(self, zone: str) -> None:
        self.zone = zone
        self.qname = f"{random.getrandbits(63)}.{random.getrandbits(63)}.{'' if zone == '.' else zone}"
        self.seen = 0
        self.off = False
        self.addr = ""
        self.task: asyncio.Task[None] | None = None
        self.fatal: Callable[[str], None] = log.fatal

    async def serve(self, req: Request) -> Reply:
        if req.qtype != wire.HINFO or self.off:
            return await self.next_or_failure(req)
        name = req.name()
        if not (self.zone == "." or name == self.zone or name.endswith("." + self.zone)):
            return await self.next_or_failure(req)
        req.memo = False
        if name == self.qname:
            self.seen += 1
        if self.seen > 2:
            remote = f"[{req.remote_ip}]" if ":" in req.remote_ip else req.remote_ip
            self.fatal(f'plugin/loop: Loop ({remote}:{req.remote_port} -> {self.addr}) detected for zone '
                       f'"{self.zone}", see https://coredns.io/plugins/loop#troubleshooting. '
                       f'Query: "HINFO {self.qname}"')
        return await self.next_or_failure(req)

    async def probe(self, port: Callable[[], int]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        query = bytearray(wire.HEADER.pack(0, wire.RD, 1, 0, 0, 0))
        for label in wire.name_from_text(self.qname):
            query.append(len(label))
            query += label
        query += b"\x00" + struct.pack("!HH", wire.HINFO, wire.CLASS_IN)
        while loop.time() < deadline:
            struct.pack_into("!H", query, 0, random.getrandbits(16))
            try:
                await asyncio.wait_for(exchange(bytes(query), "127.0.0.1", port(), False), 2)
                break
            except (OSError, TimeoutError):
                self.seen = 0
                await asyncio.sleep(1)
        self.off = True

    def start(self, port_of: Callable[[int], int], port: int) -> None:
        self.addr = f":{port}"
        self.task = asyncio.ensure_future(self.probe(lambda: port_of(port)))

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


def setup(c: Controller) -> None:
    zone = "."
    while c.next_once():
        if c.next_arg():
            raise c.plugin_err(c.arg_err())
        if c.zones:
            zone = c.zones[0]
    plugin = Loop(zone)
    plugin.fatal = c.env.fatal
    env = c.env
    port = c.block.port
    c.add_plugin(plugin)
    # After the listeners are up (a start-up hook runs before they are): the probe waits for its first second.
    c.on_startup(lambda: plugin.start(env.port_of, port))
    c.on_shutdown(plugin.stop)
