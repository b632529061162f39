"""Durable object storage with a global resourceVersion and a watch history.

Everything lives in memory for speed and in SQLite for durability. A write is
committed to SQLite (WAL journal) before it is acknowledged, so killing the API
server process loses no acknowledged write; on start the objects, the current
resourceVersion and the recent history are read back, so watchers resume from
the resourceVersion they last saw.

Stored objects are never mutated in place: callers copy before they change one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from labkit.errors import Gone

ResourceKey = tuple[str, str]  # (group, plural)
ObjectKey = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True)
class WatchEvent:
    """One change, as the watch history and watchers see it."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    resource: ResourceKey
    object: dict
    old: dict | None = None  # the previous state, for selector transitions
    # `object` as compact JSON, encoded once for SQLite; the API server builds watch lines from it
    # instead of encoding the object again (None for events read back from an older history row format).
    raw: bytes | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    rv INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (resource, namespace, name));
CREATE TABLE IF NOT EXISTS history (
    rv INTEGER PRIMARY KEY, type TEXT NOT NULL, resource TEXT NOT NULL, data TEXT NOT NULL, old TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _res_str(resource: ResourceKey) -> str:
    return f"{resource[1]}.{resource[0]}" if resource[0] else resource[1]


def _res_key(text: str) -> ResourceKey:
    plural, _, group = text.partition(".")
    return (group, plural)


class _Checkpointer:
    """A thread that checkpoints the WAL every `period` seconds over a connection of its own (PASSIVE: it never
    blocks the writer; sqlite3 releases the GIL while it works), and once more, truncating, when stopped."""

    def __init__(self, path: Path, period: float = 0.5) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._period = period
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self._period):
            try:
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # busy or closing: the next round checkpoints

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()


class Store:
    """Objects by resource and key; history of the last `history_limit` changes."""

    def __init__(self, path: Path | str, history_limit: int = 20000) -> None:
        self.path = Path(path)
        self.history_limit = history_limit
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # WAL with synchronous=NORMAL is durable against a crash of this process (the
        # OS keeps the committed WAL pages); it gives up only durability on power loss.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # Checkpoints (copying the WAL into the database, with its fsync) run on a thread of their own instead of
        # inside every thousandth write's COMMIT: an automatic one made the average commit 2.5x as costly, on the
        # event loop. Commits stay as durable: a checkpoint only decides when the WAL file shrinks.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = _Checkpointer(self.path)
        self._objects: dict[ResourceKey, dict[ObjectKey, dict]] = {}
        self._history: deque[WatchEvent] = deque(maxlen=history_limit)
        self._listeners: list[Callable[[WatchEvent], None]] = []
        self.rv = 0
        self._oldest_rv = 0  # events with rv > _oldest_rv are all in the history
        self._load()

    # -- loading ------------------------------------------------------------------------------
    def _load(self) -> None:
        # The current resourceVersion is the newest history row's (trimming never removes the newest); databases
        # written before that kept it in meta as well, so take the larger of the two.
        row = self._db.execute("SELECT value FROM meta WHERE key='rv'").fetchone()
        newest = self._db.execute("SELECT MAX(rv) FROM history").fetchone()[0]
        self.rv = max(int(row[0]) if row else 0, newest or 0)
        for resource, ns, name, data in self._db.execute("SELECT resource, namespace, name, data FROM objects"):
            self._objects.setdefault(_res_key(resource), {})[(ns, name)] = orjson.loads(data)
        rows = self._db.execute(
            "SELECT rv, type, resource, data, old FROM history ORDER BY rv DESC LIMIT ?", (self.history_limit,)
        ).fetchall()
        for rv, typ, resource, data, old in reversed(rows):
            self._history.append(WatchEvent(rv, typ, _res_key(resource), orjson.loads(data),
                                            orjson.loads(old) if old else None))
        row = self._db.execute("SELECT value FROM meta WHERE key='oldest_rv'").fetchone()
        self._oldest_rv = int(row[0]) if row else 0
        if self._history:
            self._oldest_rv = max(self._oldest_rv, self._history[0].rv - 1)

    def close(self) -> None:
        self._checkpointer.stop()
        self._db.close()

    # -- reads --------------------------------------------------------------------------------
    def get(self, resource: ResourceKey, namespace: str, name: str) -> dict | None:
        return self._objects.get(resource, {}).get((namespace or "", name))

    def list(self, resource: ResourceKey, namespace: str | None = None) -> list[dict]:
        bucket = self._objects.get(resource, {})
        items = [obj for (ns, _), obj in bucket.items() if ns == namespace] if namespace else list(bucket.values())
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items

    def count(self, resource: ResourceKey) -> int:
        return len(self._objects.get(resource, {}))

    def namespaces_in_use(self, namespace: str) -> Iterator[tuple[ResourceKey, dict]]:
        for resource, bucket in self._objects.items():
            for (ns, _), obj in bucket.items():
                if ns == namespace:
                    yield resource, obj

    # -- writes -------------------------------------------------------------------------------
    def put(self, resource: ResourceKey, obj: dict, old: dict | None = None) -> dict:
        """Store a created or updated object; give it the next resourceVersion."""
        self.rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.rv)
        key = (meta.get("namespace", "") or "", meta["name"])
        typ = "MODIFIED" if old is not None else "ADDED"
        raw = self._commit(resource, key, obj, typ, old, delete=False)
        self._objects.setdefault(resource, {})[key] = obj
        self._emit(WatchEvent(self.rv, typ, resource, obj, old, raw))
        return obj

    def remove(self, resource: ResourceKey, obj: dict) -> dict:
        """Delete an object; the DELETED event carries it with a new resourceVersion."""
        self.rv += 1
        gone = dict(obj)
        gone["metadata"] = dict(obj["metadata"], resourceVersion=str(self.rv))
        key = (gone["metadata"].get("namespace", "") or "", gone["metadata"]["name"])
        raw = self._commit(resource, key, gone, "DELETED", obj, delete=True)
        self._objects.get(resource, {}).pop(key, None)
        self._emit(WatchEvent(self.rv, "DELETED", resource, gone, obj, raw))
        return gone

    def _commit(self, resource: ResourceKey, key: ObjectKey, obj: dict, typ: str,
                old: dict | None, *, delete: bool) -> bytes:
        """Write one change in one transaction; returns the object's JSON. Committed before it returns.

        orjson instead of the json module: encoding is a visible share of a write's CPU, and the bytes
        are stored as TEXT (UTF-8) exactly as before, so databases written by either read back alike.
        """
        res = _res_str(resource)
        raw = orjson.dumps(obj)
        data = raw.decode()
        db = self._db
        db.execute("BEGIN")
        try:
            if delete:
                db.execute("DELETE FROM objects WHERE resource=? AND namespace=? AND name=?", (res, *key))
            else:
                db.execute("INSERT OR REPLACE INTO objects VALUES (?,?,?,?,?)", (res, *key, self.rv, data))
            # The history keeps the previous state only where watchers need it: selector transitions.
            db.execute("INSERT INTO history VALUES (?,?,?,?,?)",
                       (self.rv, typ, res, data, orjson.dumps(old).decode() if old else None))
            if self.rv % 1000 == 0:
                cutoff = self.rv - self.history_limit
                db.execute("DELETE FROM history WHERE rv <= ?", (cutoff,))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('oldest_rv', ?)", (str(max(cutoff, 0)),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self.rv -= 1
            raise
        return raw

    # -- watching -----------------------------------------------------------------------------
    def _emit(self, event: WatchEvent) -> None:
        if len(self._history) == self._history.maxlen:
            self._oldest_rv = self._history[0].rv
        self._history.append(event)
        for listener in list(self._listeners):
            listener(event)

    def subscribe(self, listener: Callable[[WatchEvent], None]) -> Callable[[], None]:
        """Call `listener` for every future change; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def events_since(self, rv: int) -> list[WatchEvent]:
        """The changes after `rv`, oldest first; Gone if the history no longer reaches back."""
        if rv < self._oldest_rv:
            raise Gone(f"too old resource version: {rv} ({self._oldest_rv + 1})")
        if rv >= self.rv:
            return []
        events = []
        for event in reversed(self._history):
            if event.rv <= rv:
                break
            events.append(event)
        events.reverse()
        return events
