"""An event loop on a thread of its own, so that sync code can await async code from anywhere.

A Jupyter kernel already runs an event loop in the main thread: `asyncio.run()` there fails, and blocking on a
coroutine scheduled on that same loop would deadlock. The `Lab` therefore keeps its async work (labkit's API
client, watches) on a private loop in a daemon thread and blocks the caller on a concurrent future — the pattern
kr8s calls a portal. Blocking work that must not see any running loop (a backend starting a cluster) goes to
`run_blocking`, a plain worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    """A private event loop running in a daemon thread."""

    def __init__(self, name: str = "labkit-portal") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._workers = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"{name}-worker")

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the portal's loop and wait for its result (from any thread but the portal's own)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("Portal.call from the portal's own thread would deadlock")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run_blocking(self, fn: Callable[[], T]) -> T:
        """Run blocking `fn` in a worker thread (no event loop runs there) and wait for it."""
        return self._workers.submit(fn).result()

    def submit_blocking(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Start blocking `fn` in a worker thread; the caller keeps the future."""
        return self._workers.submit(fn)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
        self._workers.shutdown(wait=False)
