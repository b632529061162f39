"""The store: resourceVersions, durability across reopen, and the watch history."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.apiserver.storage import Store
from labkit.errors import Gone

SVC = ("", "services")


def _svc(name: str, ns: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": {}}


def test_resource_versions_grow_and_survive_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    a = store.put(SVC, _svc("a"))
    b = store.put(SVC, _svc("b"))
    assert int(b["metadata"]["resourceVersion"]) == int(a["metadata"]["resourceVersion"]) + 1
    store.remove(SVC, a)
    store.close()

    again = Store(tmp_path / "s.db")
    assert [o["metadata"]["name"] for o in again.list(SVC)] == ["b"]
    assert again.get(SVC, "default", "b")["metadata"]["resourceVersion"] == b["metadata"]["resourceVersion"]
    assert again.rv == 3
    assert [(e.type, e.object["metadata"]["name"]) for e in again.events_since(1)] == [
        ("ADDED", "b"), ("DELETED", "a")]


def test_listeners_see_each_change_with_previous_state(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    seen = []
    unsubscribe = store.subscribe(lambda e: seen.append((e.type, e.rv, e.old is not None)))
    old = store.put(SVC, _svc("a"))
    new = dict(old, spec={"type": "ClusterIP"})
    new["metadata"] = dict(old["metadata"])
    store.put(SVC, new, old)
    unsubscribe()
    store.put(SVC, _svc("b"))
    assert seen == [("ADDED", 1, False), ("MODIFIED", 2, True)]


def test_compacted_history_is_gone(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db", history_limit=3)
    for i in range(6):
        store.put(SVC, _svc(f"s{i}"))
    assert [e.rv for e in store.events_since(3)] == [4, 5, 6]
    with pytest.raises(Gone, match="too old resource version: 1"):
        store.events_since(1)


def test_namespaced_list_filters(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.put(SVC, _svc("a", "x"))
    store.put(SVC, _svc("b", "y"))
    assert [o["metadata"]["name"] for o in store.list(SVC, "y")] == ["b"]
    assert len(store.list(SVC)) == 2
