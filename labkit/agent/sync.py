"""Reconcile desired vs actual IPVS state with minimal operations, like kube-proxy's IPVS proxier.

`diff()` is the pure part: which VS/RS to add, edit or delete. `Syncer` applies it through a backend
(kernel or userspace) and adds kube-proxy's graceful termination (pkg/proxy/ipvs/graceful_termination.go):
a removed real server is deleted at once when the service is UDP/SCTP or the RS has no connections;
otherwise its weight goes to 0 (no new connections) and it is re-checked later (`process_graceful`), until
its connections are gone. An endpoint that comes back while draining is deleted and added again.
VIPs are bound to `kube-ipvs0`: the backend binds what is newly wanted and unbinds `bound - wanted`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from labkit.agent.desired import DesiredState
from labkit.agent.model import RealServer, Table, VirtualServer, VSKey

log = logging.getLogger(__name__)

OpKind = Literal["add_vs", "edit_vs", "del_vs", "add_rs", "edit_rs", "del_rs"]


@dataclass
class Op:
    """One IPVS operation; `vs` carries the service config, `rs` the destination for *_rs ops."""

    kind: OpKind
    vs: VirtualServer
    rs: RealServer | None = None

    def __str__(self) -> str:
        s = f"{self.kind} {self.vs.protocol} {self.vs.address}:{self.vs.port}"
        if self.rs is not None:
            s += f" -> {self.rs.address}:{self.rs.port} w{self.rs.weight}"
        return s


class Backend(Protocol):
    """What a data plane offers the syncer."""

    def list(self) -> Table: ...  # the live table, with counters (optional: list_keys(keys) -> a part of it)

    def apply(self, op: Op) -> None: ...

    def bound_addresses(self) -> set[str]: ...

    def bind(self, address: str) -> None: ...

    def unbind(self, address: str) -> None: ...


def diff(desired: Table, actual: Table) -> list[Op]:
    """Operations turning `actual` into `desired` (no graceful termination: removed RSs are deleted)."""
    ops: list[Op] = []
    for key, vs in actual.items():
        if key not in desired:
            ops.append(Op("del_vs", vs.copy_config()))
    for key, want in desired.items():
        have = actual.get(key)
        if have is None:
            ops.append(Op("add_vs", want.copy_config()))
            ops.extend(Op("add_rs", want.copy_config(), _rs(d)) for d in want.destinations)
            continue
        if not want.config_equal(have):
            ops.append(Op("edit_vs", want.copy_config()))
        ops.extend(_diff_rs(want, have))
    return ops


def _rs(d: RealServer, weight: int | None = None) -> RealServer:
    return RealServer(d.address, d.port, d.weight if weight is None else weight, d.forward)


def _diff_rs(want: VirtualServer, have: VirtualServer) -> list[Op]:
    ops = []
    have_by = {d.key: d for d in have.destinations}
    want_by = {d.key: d for d in want.destinations}
    for k, d in have_by.items():
        if k not in want_by:
            ops.append(Op("del_rs", want.copy_config(), _rs(d)))
    for k, d in want_by.items():
        cur = have_by.get(k)
        if cur is None:
            ops.append(Op("add_rs", want.copy_config(), _rs(d)))
        elif not d.config_equal(cur):
            ops.append(Op("edit_rs", want.copy_config(), _rs(d)))
    return ops


RSKey = tuple[VSKey, tuple[str, int]]


class Syncer:
    """Applies desired state to a backend; keeps the graceful-termination list."""

    def __init__(self, backend: Backend, clock: Callable[[], float] = time.monotonic,
                 check_interval: float = 60.0) -> None:
        self.backend = backend
        self.clock = clock
        self.check_interval = check_interval  # rsCheckDeleteInterval
        self.terminating: dict[RSKey, float] = {}  # RS draining at weight 0 -> when it was queued
        self.failures = 0  # operations that failed so far (the agent then asks for a full sync)

    def sync(self, desired: DesiredState, keys: set[VSKey] | None = None) -> list[Op]:
        """One sync; returns the operations applied. With `keys`, a partial sync: only those virtual servers are
        compared and changed (the ones of Services that changed, see incremental.py); others are left alone."""
        if keys is None:
            actual = self.backend.list()
            want = desired.table
        else:
            actual = self._list_keys(keys)
            want = {k: desired.table[k] for k in keys if k in desired.table}
        applied: list[Op] = []
        for op in diff(want, actual):
            key: RSKey | None = (op.vs.key, op.rs.key) if op.rs is not None else None
            if op.kind == "del_rs":
                assert key is not None and op.rs is not None
                if key in self.terminating:
                    continue  # already draining
                cur = actual[op.vs.key].dest(*op.rs.key)
                applied.extend(self._graceful_delete(op.vs, cur or op.rs))
                continue
            if op.kind in ("add_rs", "edit_rs") and key in self.terminating:
                # An endpoint that returns while draining: delete it now, then add it fresh (kube-proxy).
                del self.terminating[key]  # type: ignore[arg-type]
                if op.kind == "edit_rs":
                    applied.append(self._apply(Op("del_rs", op.vs, op.rs)))
                    op = Op("add_rs", op.vs, op.rs)
            if op.kind == "del_vs":
                self.terminating = {k: t for k, t in self.terminating.items() if k[0] != op.vs.key}
            applied.append(self._apply(op))
        self._sync_bindings(desired.bind_addresses)
        set_masquerade = getattr(self.backend, "set_masquerade", None)
        if set_masquerade is not None:
            set_masquerade(desired.masquerade)
        synced = getattr(self.backend, "synced", None)  # e.g. the userspace plane's KUBE-IPVS-FILTER
        if synced is not None:
            synced()
        return applied

    def _list_keys(self, keys: set[VSKey]) -> Table:
        some = getattr(self.backend, "list_keys", None)
        if some is not None:  # the backend can snapshot just these (userspace: no copy of the whole table)
            return some(keys)
        table = self.backend.list()
        return {k: table[k] for k in keys if k in table}

    def _graceful_delete(self, vs: VirtualServer, rs: RealServer) -> list[Op]:
        if vs.protocol in ("UDP", "SCTP") or rs.active + rs.inactive == 0:
            return [self._apply(Op("del_rs", vs, _rs(rs)))]
        self.terminating[(vs.key, rs.key)] = self.clock()
        if rs.weight != 0:
            return [self._apply(Op("edit_rs", vs, _rs(rs, weight=0)))]
        return []

    def process_graceful(self) -> list[Op]:
        """Delete draining real servers whose connections are gone (kube-proxy checks every minute)."""
        if not self.terminating:
            return []
        actual = self.backend.list()
        applied = []
        for key in list(self.terminating):
            vs = actual.get(key[0])
            rs = vs.dest(*key[1]) if vs else None
            if vs is None or rs is None:
                del self.terminating[key]
                continue
            if rs.active + rs.inactive == 0:
                del self.terminating[key]
                applied.append(self._apply(Op("del_rs", vs.copy_config(), _rs(rs))))
        return applied

    def _apply(self, op: Op) -> Op:
        try:
            self.backend.apply(op)
        except Exception:  # one failed op must not stop the sync (kube-proxy logs and continues)
            self.failures += 1
            log.exception("IPVS operation failed: %s", op)
        return op

    def _sync_bindings(self, wanted: set[str]) -> None:
        bound = self.backend.bound_addresses()
        many = getattr(self.backend, "bind_many", None), getattr(self.backend, "unbind_many", None)
        if many[0] is not None and many[1] is not None:  # one netlink socket for the whole batch
            try:
                if wanted - bound:
                    many[0](sorted(wanted - bound))
                if bound - wanted:
                    many[1](sorted(bound - wanted))
                return
            except Exception:
                log.exception("cannot bind addresses in a batch; one at a time")
        for addr in sorted(wanted - bound):
            try:
                self.backend.bind(addr)
            except Exception:
                log.exception("cannot bind %s", addr)
        for addr in sorted(bound - wanted):
            try:
                self.backend.unbind(addr)
            except Exception:
                log.exception("cannot unbind %s", addr)
