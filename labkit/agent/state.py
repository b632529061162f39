"""The userspace data plane's table saved on disk, so a restarted agent serves again before it reaches the API.

Kernel IPVS outlives kube-proxy: when kube-proxy crashes, the kernel's table keeps forwarding and the next
kube-proxy adopts it. The userspace table dies with the agent, so the agent writes its configuration (no
counters) after every sync that changed it, and a restarted agent re-creates that table first thing; the first
sync after the API informers are full then adopts it like kube-proxy adopts the kernel's table. The file is
written atomically (rename), so a SIGKILL mid-write leaves the previous version.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import orjson

from labkit.agent.model import RealServer, Table, VirtualServer, VSKey
from labkit.agent.sync import Op


def _row(vs: VirtualServer) -> bytes:
    return orjson.dumps([vs.protocol, vs.address, vs.port, vs.scheduler, vs.flags, vs.timeout, vs.netmask,
                         [[d.address, d.port, d.weight, d.forward] for d in vs.destinations]])


class TableSaver:
    """Writes the table's configuration (services, destinations, weights) atomically, re-encoding only the
    virtual servers said to have changed since the last save: a sync touches a few of 1,000, and encoding all of
    them for every save was most of what saving cost."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._rows: dict[VSKey, bytes] = {}

    def save(self, table: Table, changed: Iterable[VSKey] | None = None) -> None:
        """Save `table`; `changed` names the virtual servers that may differ from the last save (None: all)."""
        if changed is None:
            self._rows = {key: _row(vs) for key, vs in table.items()}
        else:
            for key in changed:
                vs = table.get(key)
                if vs is None:
                    self._rows.pop(key, None)
                else:
                    self._rows[key] = _row(vs)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(b"[" + b",".join(self._rows.values()) + b"]")
        os.replace(tmp, self.path)


def save_table(path: str | os.PathLike[str], table: Table) -> None:
    """Write the whole table's configuration atomically."""
    TableSaver(path).save(table)


def load_table(path: str | os.PathLike[str]) -> Table:
    """The saved table, or an empty one when there is no (readable) file."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except (OSError, ValueError):
        return {}
    table: Table = {}
    try:
        for proto, addr, port, sched, flags, timeout, netmask, dests in doc:
            vs = VirtualServer(proto, addr, int(port), sched, int(flags), int(timeout), netmask)
            vs.destinations = [RealServer(a, int(p), int(w), f) for a, p, w, f in dests]
            table[vs.key] = vs
    except (TypeError, ValueError):
        return {}
    return table


def restore_ops(table: Table) -> list[Op]:
    """Operations re-creating `table` on an empty backend with the same destination order (newest first):
    a backend inserts an added destination at the head, so destinations are added oldest first."""
    ops: list[Op] = []
    for vs in table.values():
        ops.append(Op("add_vs", vs.copy_config()))
        ops.extend(Op("add_rs", vs.copy_config(), RealServer(d.address, d.port, d.weight, d.forward))
                   for d in reversed(vs.destinations))
    return ops
