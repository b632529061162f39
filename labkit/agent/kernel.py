"""Kernel IPVS backend over pyroute2's generic-netlink IPVS API, plus the `kube-ipvs0` dummy device and sysctls.

pyroute2 pitfalls handled here (see reference ipvs.md §4): IPVSDest defaults to fwd_method=3 (Route), so Masq is
passed explicitly as 0; "update" maps to a DEL command in pyroute2, so edits use "set"; persistence is the
flags attribute {"flags": 1, "mask": 0xFFFF} with a timeout; the kernel adds the HASHED flag (0x2), stripped on read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from socket import IPPROTO_TCP
from typing import Any, TypeVar

from labkit.agent.model import (
    FLAG_HASHED,
    FORWARD_CODES,
    FORWARD_NAMES,
    RealServer,
    Stats,
    Table,
    VirtualServer,
    proto_name,
    proto_number,
)
from labkit.agent.sync import Op

T = TypeVar("T")

log = logging.getLogger(__name__)

_worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="labkit-netlink")


def off_loop(fn: Callable[[], T]) -> T:
    """Run a blocking pyroute2 call. pyroute2 0.9's sync API drives its own asyncio loop, which fails inside a
    running loop, so from event-loop code the call runs (and waits) on one dedicated worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    return _worker.submit(fn).result()

DUMMY_DEVICE = "kube-ipvs0"

# What kube-proxy's IPVS proxier sets (pkg/proxy/ipvs/proxier.go NewProxier).
KUBE_PROXY_SYSCTLS = {
    "net/ipv4/vs/conntrack": "1",
    "net/ipv4/vs/expire_nodest_conn": "1",
    "net/ipv4/vs/expire_quiescent_template": "1",
    "net/ipv4/ip_forward": "1",
}


def kernel_ipvs_available() -> str | None:
    """None when kernel IPVS can be used here, else the reason it cannot."""
    if os.path.exists("/proc/net/ip_vs"):
        return None
    try:
        from pyroute2 import IPVS

        IPVS().close()
        return None
    except Exception as e:  # NetlinkError(2) without the ip_vs module
        return f"kernel IPVS unavailable (/proc/net/ip_vs missing; netlink family IPVS: {e})"


def set_sysctls(values: dict[str, str] = KUBE_PROXY_SYSCTLS, root: str = "/proc/sys") -> dict[str, str]:
    """Write sysctls (in the caller's network namespace); returns those that failed with the reason."""
    failed = {}
    for key, value in values.items():
        try:
            with open(os.path.join(root, key), "w") as f:
                f.write(value)
        except OSError as e:
            failed[key] = str(e)
    return failed


class DummyDevice:
    """The `kube-ipvs0` dummy link holding service VIPs as /32 (/128), optionally inside a named netns.

    Like kube-proxy it stays DOWN (the kernel still installs local routes for its addresses)."""

    def __init__(self, netns: str | None = None, name: str = DUMMY_DEVICE) -> None:
        self.netns = netns
        self.name = name
        # One netlink handle for the device's life: opening one costs milliseconds (15 ms for a NetNS here), and
        # a burst of new Services binds a few addresses per sync. Used only on the netlink worker thread.
        self._handle: Any = None
        self._index: int | None = None

    def _ipr(self) -> Any:
        if self._handle is None:
            from pyroute2 import IPRoute, NetNS

            self._handle = NetNS(self.netns) if self.netns else IPRoute()
        return self._handle

    def _close(self) -> None:
        """Close the netlink handle (the next call opens a new one)."""
        handle, self._handle, self._index = self._handle, None, None
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.close()

    def _retrying(self, call: Callable[[Any], T]) -> T:
        """`call(handle)`, once more on a fresh handle and device index if the first attempt fails (a closed
        socket, the device deleted and re-created by someone else)."""
        try:
            return call(self._ipr())
        except Exception:
            self._close()
            return call(self._ipr())

    def _ensure(self) -> int:
        """Create the device if missing; returns its ifindex."""
        if self._index is not None:
            return self._index

        def ensure(ipr: Any) -> int:
            idx = ipr.link_lookup(ifname=self.name)
            if not idx:
                try:
                    ipr.link("add", ifname=self.name, kind="dummy")
                except Exception as e:
                    # Kernels built without the dummy driver (EOPNOTSUPP): an empty, DOWN bridge holds the
                    # addresses the same way (local routes, no ARP from a port-less bridge).
                    if getattr(e, "code", None) != 95:
                        raise
                    ipr.link("add", ifname=self.name, kind="bridge")
                idx = ipr.link_lookup(ifname=self.name)
            return idx[0]

        self._index = self._retrying(ensure)
        return self._index

    def _addresses(self) -> set[str]:
        def addresses(ipr: Any) -> set[str]:
            idx = ipr.link_lookup(ifname=self.name)
            if not idx:
                return set()
            return {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx[0])}

        return self._retrying(addresses)

    def _add(self, address: str) -> None:
        self._add_many([address])

    def _ip_batch(self, verb: str, addresses: list[str]) -> None:
        """`ip -force -batch -`: one process for many address changes (pyroute2 needs ~1 ms per address, a
        full sync of 1,000 Services binds 1,000). EEXIST/EADDRNOTAVAIL are what kube-proxy tolerates too."""
        lines = "".join(f"addr {verb} {a}/{32 if ':' not in a else 128} dev {self.name}\n" for a in addresses)
        argv = ["ip", *(["-n", self.netns] if self.netns else []), "-force", "-batch", "-"]
        proc = subprocess.run(argv, input=lines, capture_output=True, text=True)
        bad = [line for line in proc.stderr.splitlines()
               if line.strip() and "File exists" not in line and "Cannot assign" not in line
               and not line.startswith("Command failed")]
        if proc.returncode != 0 and bad:
            raise RuntimeError(f"ip -batch addr {verb} failed: {'; '.join(bad[:3])}")

    def _add_many(self, addresses: list[str]) -> None:
        """Bind several addresses at once."""
        self._ensure()
        if len(addresses) > 8 and shutil.which("ip"):
            self._ip_batch("add", addresses)
            return

        def add(ipr: Any) -> None:
            idx = self._ensure()
            for address in addresses:
                plen = 32 if ipaddress.ip_address(address).version == 4 else 128
                try:
                    ipr.addr("add", index=idx, address=address, prefixlen=plen)
                except Exception as e:  # EEXIST is fine (netlink_linux.go tolerates it)
                    if getattr(e, "code", None) != 17:
                        raise

        self._retrying(add)

    def _remove(self, address: str) -> None:
        self._remove_many([address])

    def _remove_many(self, addresses: list[str]) -> None:
        if len(addresses) > 8 and shutil.which("ip"):
            self._ip_batch("del", addresses)
            return

        def remove(ipr: Any) -> None:
            idx = ipr.link_lookup(ifname=self.name) if self._index is None else [self._index]
            if not idx:
                return
            for address in addresses:
                plen = 32 if ipaddress.ip_address(address).version == 4 else 128
                with contextlib.suppress(Exception):
                    ipr.addr("del", index=idx[0], address=address, prefixlen=plen)

        self._retrying(remove)

    def _delete(self) -> None:
        def delete(ipr: Any) -> None:
            idx = ipr.link_lookup(ifname=self.name)
            if idx:
                ipr.link("del", index=idx[0])

        self._retrying(delete)
        self._index = None


def _dd_public(name: str) -> Callable[..., Any]:
    def method(self: DummyDevice, *args: Any) -> Any:
        return off_loop(lambda: getattr(self, "_" + name)(*args))

    method.__name__ = name
    return method


for _n in ("ensure", "addresses", "add", "add_many", "remove", "remove_many", "delete", "close"):
    setattr(DummyDevice, _n, _dd_public(_n))


def service_spec(vs: VirtualServer) -> dict[str, Any]:
    """Keyword arguments of pyroute2's IPVSService for a virtual server."""
    spec: dict[str, Any] = {
        "addr": vs.address,
        "port": vs.port,
        "protocol": proto_number(vs.protocol),
        "sched_name": vs.scheduler,
        "flags": {"flags": vs.flags & ~FLAG_HASHED, "mask": 0xFFFF},
        "timeout": vs.timeout if vs.persistent else 0,
    }
    if vs.family == 4:
        spec["netmask"] = vs.netmask
    return spec


def dest_spec(rs: RealServer) -> dict[str, Any]:
    """Keyword arguments of pyroute2's IPVSDest for a real server (fwd_method given explicitly)."""
    return {"addr": rs.address, "port": rs.port, "weight": rs.weight, "fwd_method": FORWARD_CODES[rs.forward]}


def _attr(msg: Any, name: str, default: Any = None) -> Any:
    v = msg.get_attr(name) if hasattr(msg, "get_attr") else None
    return default if v is None else v


def _stats(nla: Any) -> Stats:
    if nla is None:
        return Stats()
    return Stats(*(int(_attr(nla, f"IPVS_STATS_ATTR_{k}", 0)) for k in ("CONNS", "INPKTS", "OUTPKTS", "INBYTES",
                                                                         "OUTBYTES")))


class KernelBackend:
    """The sync backend programming kernel IPVS (in the caller's network namespace)."""

    def __init__(self, ipvs: Any = None, device: DummyDevice | None = None) -> None:
        if ipvs is None:
            from pyroute2 import IPVS

            ipvs = IPVS()
        self.ipvs = ipvs
        self.device = device or DummyDevice()

    def _svc(self, vs: VirtualServer) -> Any:
        from pyroute2 import IPVSService

        return IPVSService(**service_spec(vs))

    def _dest(self, rs: RealServer) -> Any:
        from pyroute2 import IPVSDest

        return IPVSDest(**dest_spec(rs))

    def apply(self, op: Op) -> None:
        off_loop(lambda: self._apply(op))

    def list(self) -> Table:
        return off_loop(self._list)

    def connections(self, proc: str = "/proc/net/ip_vs_conn") -> list[dict[str, Any]]:
        """The kernel's connection table (in this process's network namespace), for the control socket."""
        from labkit.agent.ipvsadm import parse_proc_connections

        with open(proc) as f:
            return [c.to_dict() for c in parse_proc_connections(f.read())]

    def _apply(self, op: Op) -> None:
        if op.kind == "add_vs":
            self.ipvs.service("add", service=self._svc(op.vs))
        elif op.kind == "edit_vs":
            self.ipvs.service("set", service=self._svc(op.vs))
        elif op.kind == "del_vs":
            self.ipvs.service("del", service=self._svc(op.vs))
        else:
            assert op.rs is not None
            cmd = {"add_rs": "add", "edit_rs": "set", "del_rs": "del"}[op.kind]
            self.ipvs.dest(cmd, service=self._svc(op.vs), dest=self._dest(op.rs))

    def _list(self) -> Table:
        table: Table = {}
        for m in self.ipvs.service("dump"):
            s = m.get_attr("IPVS_CMD_ATTR_SERVICE")
            if _attr(s, "IPVS_SVC_ATTR_FWMARK", 0):
                continue  # fwmark services are not ours
            flags = _attr(s, "IPVS_SVC_ATTR_FLAGS", {"flags": 0})
            flags = flags.get("flags", 0) if isinstance(flags, dict) else int(flags)
            vs = VirtualServer(
                protocol=proto_name(int(_attr(s, "IPVS_SVC_ATTR_PROTOCOL", IPPROTO_TCP))),
                address=str(_attr(s, "IPVS_SVC_ATTR_ADDR")),
                port=int(_attr(s, "IPVS_SVC_ATTR_PORT")),
                scheduler=str(_attr(s, "IPVS_SVC_ATTR_SCHED_NAME", "")),
                flags=flags & ~FLAG_HASHED,
                timeout=int(_attr(s, "IPVS_SVC_ATTR_TIMEOUT", 0)),
                netmask=str(_attr(s, "IPVS_SVC_ATTR_NETMASK", "255.255.255.255")),
                stats=_stats(_attr(s, "IPVS_SVC_ATTR_STATS64") or _attr(s, "IPVS_SVC_ATTR_STATS")),
            )
            for dm in self.ipvs.dest("dump", service=self._svc(vs)):
                d = dm.get_attr("IPVS_CMD_ATTR_DEST")
                vs.destinations.append(RealServer(
                    address=str(_attr(d, "IPVS_DEST_ATTR_ADDR")),
                    port=int(_attr(d, "IPVS_DEST_ATTR_PORT")),
                    weight=int(_attr(d, "IPVS_DEST_ATTR_WEIGHT", 0)),
                    forward=FORWARD_NAMES.get(int(_attr(d, "IPVS_DEST_ATTR_FWD_METHOD", 0)) & 7, "Masq"),
                    active=int(_attr(d, "IPVS_DEST_ATTR_ACTIVE_CONNS", 0)),
                    inactive=int(_attr(d, "IPVS_DEST_ATTR_INACT_CONNS", 0)),
                    persistent=int(_attr(d, "IPVS_DEST_ATTR_PERSIST_CONNS", 0)),
                    stats=_stats(_attr(d, "IPVS_DEST_ATTR_STATS64") or _attr(d, "IPVS_DEST_ATTR_STATS")),
                ))
            table[vs.key] = vs
        return table

    def bound_addresses(self) -> set[str]:
        return self.device.addresses()

    def bind(self, address: str) -> None:
        self.device.add(address)

    def unbind(self, address: str) -> None:
        self.device.remove(address)

    def bind_many(self, addresses: list[str]) -> None:
        self.device.add_many(addresses)

    def unbind_many(self, addresses: list[str]) -> None:
        self.device.remove_many(addresses)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ipvs.close()
