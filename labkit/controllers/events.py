"""core/v1 Events the way client-go's record.EventRecorder writes them.

An Event is named `<involvedObject.name>.<hex unix nanoseconds>`, carries `source.component`,
`reportingComponent` (= the component), `firstTimestamp`/`lastTimestamp`/`count`, and repeats of the
same (object, type, reason, message, component) bump `count` and `lastTimestamp` on the existing Event
instead of creating a new one (the EventCorrelator's dedup). Writes happen in background tasks so a
controller never waits on them; a failed write is logged and dropped, as upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from labkit import errors

from .util import fmt_micro, fmt_time, meta

log = logging.getLogger(__name__)

NODE_NAME = "labkit-control-plane"


def involved_object(obj: dict) -> dict:
    md = meta(obj)
    ref = {
        "kind": obj.get("kind", ""),
        "namespace": md.get("namespace", ""),
        "name": md.get("name", ""),
        "uid": md.get("uid", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "resourceVersion": md.get("resourceVersion", ""),
    }
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    """Records Events for one component (e.g. `deployment-controller`)."""

    def __init__(self, client: Any, component: str, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        # dedup key → (namespace, event name, count)
        self._seen: dict[tuple, tuple[str, str, int]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()

    def event(self, obj: dict, etype: str, reason: str, message: str) -> None:
        """Fire and forget."""
        task = asyncio.create_task(self._write(obj, etype, reason, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def make_event(self, obj: dict, etype: str, reason: str, message: str) -> dict:
        ref = involved_object(obj)
        ts = fmt_time()
        source: dict[str, str] = {"component": self.component}
        if self.host:
            source["host"] = self.host
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{ref.get('name', '')}.{time.time_ns():x}",
                "namespace": ref.get("namespace") or "default",
            },
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "source": source,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
            "type": etype,
            "eventTime": None,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }

    async def _write(self, obj: dict, etype: str, reason: str, message: str) -> None:
        md = meta(obj)
        key = (md.get("namespace", ""), obj.get("kind", ""), md.get("name", ""), md.get("uid", ""),
               etype, reason, message)
        async with self._lock:  # serialise so two repeats do not race into two Events
            try:
                seen = self._seen.get(key)
                if seen is not None:
                    ns, name, count = seen
                    try:
                        await self.client.patch("events", name, {"count": count + 1, "lastTimestamp": fmt_time()},
                                                namespace=ns)
                        self._seen[key] = (ns, name, count + 1)
                        return
                    except errors.NotFound:
                        pass
                ev = self.make_event(obj, etype, reason, message)
                created = await self.client.create(ev, namespace=ev["metadata"]["namespace"])
                self._seen[key] = (ev["metadata"]["namespace"], meta(created).get("name", ev["metadata"]["name"]), 1)
                if len(self._seen) > 4096:  # bounded memory: forget the oldest
                    for k in list(self._seen)[:1024]:
                        del self._seen[k]
            except Exception as exc:  # events are best effort
                log.debug("event %s/%s dropped: %s", reason, message, exc)

    async def flush(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


__all__ = ["NODE_NAME", "EventRecorder", "fmt_micro", "involved_object"]
