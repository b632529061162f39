"""What every plugin is built from: the handler base class, the setup controller, CoreDNS's log output.

- `Plugin`: one link of a server block's chain. `serve(req)` answers or calls `self.next_or_failure(req)`;
  the chain is ordered as CoreDNS's plugin.cfg lists the plugins, whatever the Corefile's order.
- `Controller`: what a plugin's setup function gets (caddy.Controller): a `Dispenser` over that directive's tokens
  in one server block, the block's zones and port, and hooks: `add_plugin`, `on_startup`, `on_shutdown`,
  `http_route` (health, ready and metrics listeners), the process environment (`env`).
- `Log`: CoreDNS's log lines on stdout: `[INFO] plugin/NAME: message` (no timestamps, as Go's log flags 0).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from labkit.dns import wire
from labkit.dns.corefile import CorefileError, Dispenser
from labkit.dns.request import Reply, Request

if TYPE_CHECKING:
    from labkit.dns.coredns import BlockConfig, Environment


class Log:
    """CoreDNS's plugin logger (plugin/pkg/log): `[LEVEL] plugin/NAME: msg` on stdout, flushed per line."""

    out: ClassVar[Any] = None  # a text stream; None: sys.stdout at the time of writing

    def __init__(self, plugin: str = "") -> None:
        self.prefix = f"plugin/{plugin}: " if plugin else ""

    @classmethod
    def write(cls, line: str) -> None:
        out = cls.out if cls.out is not None else sys.stdout
        out.write(line + "\n")
        out.flush()

    def info(self, msg: str) -> None:
        self.write(f"[INFO] {self.prefix}{msg}")

    def warning(self, msg: str) -> None:
        self.write(f"[WARNING] {self.prefix}{msg}")

    def error(self, msg: str) -> None:
        self.write(f"[ERROR] {self.prefix}{msg}")

    def fatal(self, msg: str) -> None:
        self.write(f"[FATAL] {self.prefix}{msg}")


class Plugin:
    """A handler in the chain (plugin.Handler)."""

    name: ClassVar[str] = ""
    next: Plugin | None = None

    async def serve(self, req: Request) -> Reply:
        raise NotImplementedError

    async def next_or_failure(self, req: Request) -> Reply:
        """plugin.NextOrFailure: the next plugin's answer, or SERVFAIL when this is the end of the chain."""
        if self.next is None:
            return Reply(None, wire.SERVFAIL, f"plugin/{self.name}: no next plugin found")
        return await self.next.serve(req)

    def ready(self) -> bool | None:
        """The ready plugin asks every plugin that has an opinion (ready.Readiness); None: no opinion."""
        return None


def plugin_error(name: str, err: Exception | str) -> CorefileError:
    """plugin.Error: `plugin/NAME: err`."""
    return CorefileError(f"plugin/{name}: {err}")


class Controller(Dispenser):
    """caddy.Controller for one directive of one server block."""

    def __init__(self, directive: str, dispenser: Dispenser, block: BlockConfig, env: Environment) -> None:
        super().__init__(dispenser.filename, dispenser.tokens)
        self.directive = directive
        self.block = block
        self.env = env
        self.occurrences = 0

    @property
    def server_block_keys(self) -> list[str]:
        """The block's keys as CoreDNS normalises them (`dns://zone.:port`)."""
        return self.block.keys

    @property
    def zones(self) -> list[str]:
        return self.block.zones

    def add_plugin(self, plugin: Plugin) -> None:
        self.block.plugins.append(plugin)

    def on_startup(self, fn: Callable[[], Awaitable[None] | None]) -> None:
        self.block.instance.startup_hooks.append(fn)

    def on_shutdown(self, fn: Callable[[], Awaitable[None] | None]) -> None:
        self.block.instance.shutdown_hooks.append(fn)

    def http_route(self, addr: str, path: str, handler: Callable[..., Awaitable[Any]]) -> None:
        self.block.instance.http_routes.setdefault(addr, {})[path] = handler

    def plugin_err(self, err: Exception | str) -> CorefileError:
        return plugin_error(self.directive, err)

    def next_once(self) -> bool:
        """next() for plugins that take one occurrence per block: the second one is plugin.ErrOnce."""
        if not self.next():
            return False
        self.occurrences += 1
        if self.occurrences > 1:
            raise self.plugin_err("this plugin can only be used once per Server Block")
        return True

    def address_arg(self, default: str) -> str:
        """The optional ADDR argument of health, ready and prometheus (`:8080`, `127.0.0.1:9153`)."""
        args = self.remaining_args()
        if len(args) > 1:
            raise self.plugin_err(self.arg_err())
        addr = args[0] if args else default
        if ":" not in addr:
            raise self.plugin_err(f"address {addr}: missing port in address")
        return addr


__all__ = ["Controller", "Log", "Plugin", "plugin_error"]
