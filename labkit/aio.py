"""Running labkit's long-lived processes on the fastest event loop available.

uvloop, when installed, runs the main loop; the global event loop policy stays
asyncio's own, because libraries that make loops in worker threads (pyroute2's
netlink sockets) need a loop that supports every socket family, which uvloop's
does not (AF_NETLINK).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main), on uvloop where it is installed."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
