"""The userspace data plane's table saved on disk, so a restarted agent serves again before it reaches the API.

Kernel IPVS outlives kube-proxy: when kube-proxy crashes, the kernel's table keeps forwarding and the next
kube-proxy adopts it. The userspace table dies with the agent, so the agent writes its configuration (no
counters) after every sync that changed it, and a restarted agent re-creates that table first thing; the first
sync after the API informers are full then adopts it like kube-proxy adopts the kernel's table. The file is
written atomically (rename), so a SIGKILL mid-write leaves the previous version.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from labkit.agent.model import RealServer, Table, VirtualServer
from labkit.agent.sync import Op


def save_table(path: str | os.PathLike[str], table: Table) -> None:
    """Write the table's configuration (services, destinations, weights) atomically."""
    doc = [[vs.protocol, vs.address, vs.port, vs.scheduler, vs.flags, vs.timeout, vs.netmask,
            [[d.address, d.port, d.weight, d.forward] for d in vs.destinations]]
           for vs in table.values()]
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(orjson.dumps(doc))
    os.replace(tmp, target)


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
