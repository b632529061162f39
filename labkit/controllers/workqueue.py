"""A per-key, coalescing, rate-limited work queue for asyncio (client-go's workqueue, in small).

A key added many times before a worker picks it up is processed once; a key added while it is being
processed is processed again afterwards (never concurrently). Failed keys come back with exponential
backoff. Keys can also be scheduled for later (`add_after`), e.g. for minReadySeconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

from labkit import aio

log = logging.getLogger(__name__)


class WorkQueue:
    """Dirty set + FIFO + processing set, with N workers running `handler(key)`.

    The FIFO is an asyncio.Queue so that adding a key wakes exactly one idle worker; a shared Event would wake
    all N of them for every key (a thundering herd that cost the controller manager CPU on every informer event).
    """

    def __init__(self, name: str, handler: Callable[[Hashable], Awaitable[None]], workers: int = 1,
                 base_delay: float = 0.005, max_delay: float = 30.0) -> None:
        self.name = name
        self.handler = handler
        self.workers = workers
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._dirty: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task] = []
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, key: Hashable) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        self._idle.clear()
        if key not in self._processing:
            self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        old = self._timers.get(key)
        when = loop.time() + delay
        if old is not None and old.when() <= when:
            return
        if old is not None:
            old.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def __len__(self) -> int:
        return self._queue.qsize()

    async def _worker(self) -> None:
        while True:
            if self._queue.empty() and not self._processing:
                self._idle.set()
            key = await self._queue.get()
            self._dirty.discard(key)
            self._processing.add(key)
            try:
                await self.handler(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a controller error must not kill the worker: retry with backoff
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                delay = min(self.base_delay * (2 ** n), self.max_delay)
                log.warning("%s: sync %r failed (%s: %s); retry in %.3fs", self.name, key,
                            type(exc).__name__, exc, delay)
                self.add_after(key, delay)
            finally:
                self._processing.discard(key)
                if key in self._dirty:
                    self._queue.put_nowait(key)

    def start(self) -> None:
        for _ in range(self.workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"wq-{self.name}"))

    async def stop(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        await aio.cancel_and_wait(self._tasks)
        self._tasks.clear()

    async def wait_idle(self) -> None:
        """Until nothing is queued or processing (timers may still be pending)."""
        while True:
            await self._idle.wait()
            if self._queue.empty() and not self._processing:
                return
            self._idle.clear()
