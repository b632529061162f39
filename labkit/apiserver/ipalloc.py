"""Service ClusterIP and NodePort allocation, as the API server does it on Service writes.

This is the in-memory equivalent of upstream's `pkg/registry/core/service/ipallocator` (bitmap
`Range`) and `portallocator` (`PortAllocator`), driven the way `pkg/registry/core/service/storage/alloc.go`
drives them. It is called synchronously inside the API server's write path: no I/O, no awaits.

Facts kept from upstream:
- The usable IPs of a CIDR exclude the network and the broadcast address (`Range.max = RangeSize - 2`).
- Both bitmaps have a *static band* at the bottom, `min(max(16, size/16), 256)` addresses for IPs and
  `min(max(16, size/32), 128)` ports for node ports (`calculateRangeOffset`). A dynamic pick chooses at
  random in the upper band first and falls back to the static band only when the upper band is full
  (`randomScanStrategyWithOffset`), so statically requested IPs such as 10.96.0.10 rarely collide.
- Error texts: `failed to allocate IP <ip>: provided IP is already allocated`, `the provided IP (<ip>) is
  not in the valid range. The range of valid IPs is <cidr>`, and for node ports `provided port is already
  allocated` / `provided port is not in the valid range. The range of valid ports is 30000-32767`, reported
  as field errors on `spec.clusterIPs` and `spec.ports[i].nodePort`.
- Headless (`clusterIP: None`) Services get no IP; ExternalName Services have no clusterIP, clusterIPs,
  ipFamilies or ipFamilyPolicy at all. NodePort and LoadBalancer Services get a node port per port.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable
from typing import Any

from labkit import errors

IP_FAMILY = "IPv4"
_NONE = "None"


def _go_string_slice(values: list[str]) -> str:
    """How Go's `%#v` prints a []string, which is how field.Invalid shows `spec.clusterIPs`."""
    return "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"


def _band(size: int, lo: int, hi: int, step: int) -> int:
    """Upstream's `calculateRangeOffset`: the size of the static band, 0 for tiny ranges."""
    if size <= lo:
        return 0
    return max(lo, min(size // step, hi))


class _Bitmap:
    """A set of taken offsets in [0, size) with upstream's banded random pick."""

    def __init__(self, size: int, offset: int, rng: random.Random) -> None:
        self.size = size
        self.offset = offset
        self.taken: set[int] = set()
        self.rng = rng

    def take(self, i: int) -> bool:
        if i in self.taken:
            return False
        self.taken.add(i)
        return True

    def release(self, i: int) -> None:
        self.taken.discard(i)

    def _scan(self, lo: int, hi: int) -> int | None:
        n = hi - lo
        if n <= 0:
            return None
        start = self.rng.randrange(n)
        for k in range(n):
            i = lo + (start + k) % n
            if i not in self.taken:
                return i
        return None

    def take_next(self) -> int | None:
        i = self._scan(self.offset, self.size)
        if i is None:
            i = self._scan(0, self.offset)
        if i is not None:
            self.taken.add(i)
        return i


def _invalid(name: str, field: str, shown: str, message: str) -> errors.Invalid:
    return errors.invalid("Service", name, [{
        "reason": "FieldValueInvalid",
        "field": field,
        "message": f"Invalid value: {shown}: {message}",
    }])


def _needs_node_ports(svc: dict) -> bool:
    spec = svc.get("spec") or {}
    t = spec.get("type") or "ClusterIP"
    if t == "NodePort":
        return True
    return t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def _is_external_name(svc: dict) -> bool:
    return ((svc.get("spec") or {}).get("type")) == "ExternalName"


def _requested_ips(svc: dict) -> list[str]:
    spec = svc.get("spec") or {}
    ips = [ip for ip in (spec.get("clusterIPs") or []) if ip]
    if not ips and spec.get("clusterIP"):
        ips = [spec["clusterIP"]]
    return ips


class ServiceAllocator:
    """ClusterIPs from one IPv4 service CIDR and node ports from one port range."""

    def __init__(self, service_cidr: str = "10.96.0.0/16", node_ports: tuple[int, int] = (30000, 32767),
                 rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.cidr = ipaddress.IPv4Network(service_cidr)
        # offset 0 is network+1; the last usable offset is broadcast-1.
        self._base = int(self.cidr.network_address) + 1
        ip_size = max(self.cidr.num_addresses - 2, 0)
        self.ips = _Bitmap(ip_size, _band(self.cidr.num_addresses, 16, 256, 16), self.rng)
        self.port_lo, self.port_hi = node_ports
        port_size = self.port_hi - self.port_lo + 1
        self.ports = _Bitmap(port_size, _band(port_size, 16, 128, 32), self.rng)

    # ----------------------------------------------------------------- IPs
    def _ip_offset(self, ip: str) -> int | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if not isinstance(addr, ipaddress.IPv4Address) or addr not in self.cidr:
            return None
        off = int(addr) - self._base
        return off if 0 <= off < self.ips.size else None

    def _ip_at(self, off: int) -> str:
        return str(ipaddress.IPv4Address(self._base + off))

    def _take_ip(self, svc: dict, ip: str, shown: list[str]) -> int:
        name = (svc.get("metadata") or {}).get("name", "")
        off = self._ip_offset(ip)
        if off is None:
            raise _invalid(name, "spec.clusterIPs", _go_string_slice(shown),
                           f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
                           f"The range of valid IPs is {self.cidr}")
        if not self.ips.take(off):
            raise _invalid(name, "spec.clusterIPs", _go_string_slice(shown),
                           f"failed to allocate IP {ip}: provided IP is already allocated")
        return off

    def _next_ip(self) -> int:
        off = self.ips.take_next()
        if off is None:
            # upstream: an InternalError "failed to allocate a serviceIP: range is full"
            raise errors.ApiError("Internal error occurred: failed to allocate a serviceIP: range is full")
        return off

    # --------------------------------------------------------------- ports
    def _take_port(self, svc: dict, index: int, port: int) -> None:
        name = (svc.get("metadata") or {}).get("name", "")
        field = f"spec.ports[{index}].nodePort"
        if not self.port_lo <= port <= self.port_hi:
            raise _invalid(name, field, str(port),
                           "provided port is not in the valid range. The range of valid ports is "
                           f"{self.port_lo}-{self.port_hi}")
        if not self.ports.take(port - self.port_lo):
            raise _invalid(name, field, str(port), "provided port is already allocated")

    def _next_port(self) -> int:
        off = self.ports.take_next()
        if off is None:
            raise errors.ApiError("Internal error occurred: failed to allocate a nodePort: range is full")
        return off + self.port_lo

    def _release_port(self, port: int) -> None:
        if self.port_lo <= port <= self.port_hi:
            self.ports.release(port - self.port_lo)

    def _release_ip(self, ip: str) -> None:
        off = self._ip_offset(ip)
        if off is not None:
            self.ips.release(off)

    # ------------------------------------------------------------- public
    def load(self, services: Iterable[dict]) -> None:
        """Rebuild the bitmaps from stored Services (API server start)."""
        self.ips.taken.clear()
        self.ports.taken.clear()
        for svc in services:
            for ip in _requested_ips(svc):
                off = self._ip_offset(ip)
                if off is not None:
                    self.ips.take(off)
            for p in (svc.get("spec") or {}).get("ports") or []:
                if p.get("nodePort"):
                    np = int(p["nodePort"])
                    if self.port_lo <= np <= self.port_hi:
                        self.ports.take(np - self.port_lo)

    def allocate(self, svc: dict) -> Callable[[], None]:
        """On create: fill in clusterIP(s), IP family fields and node ports. Returns an undo callable.

        Raises `errors.Invalid` (422) when a requested IP or node port is taken or out of range;
        nothing stays allocated then.
        """
        took_ips: list[str] = []
        took_ports: list[int] = []

        def undo() -> None:
            for ip in took_ips:
                self._release_ip(ip)
            for p in took_ports:
                self._release_port(p)

        try:
            self._allocate_ips(svc, took_ips)
            self._allocate_ports(svc, None, took_ports)
        except Exception:
            undo()
            raise
        return undo

    def _allocate_ips(self, svc: dict, took: list[str]) -> None:
        spec = svc.setdefault("spec", {})
        if _is_external_name(svc):
            for k in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                spec.pop(k, None)
            return
        requested = _requested_ips(svc)
        if requested and requested[0] == _NONE:
            spec["clusterIP"] = _NONE
            spec["clusterIPs"] = [_NONE]
            spec.setdefault("ipFamilies", [IP_FAMILY])
            # upstream: headless Services without a selector default to RequireDualStack
            default_policy = "SingleStack" if spec.get("selector") else "RequireDualStack"
            spec.setdefault("ipFamilyPolicy", default_policy)
            return
        if requested:
            ip = requested[0]
            self._take_ip(svc, ip, requested)
        else:
            ip = self._ip_at(self._next_ip())
        took.append(ip)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]
        spec.setdefault("ipFamilies", [IP_FAMILY])
        spec.setdefault("ipFamilyPolicy", "SingleStack")

    def _allocate_ports(self, svc: dict, keep: dict[tuple[str, int], int] | None, took: list[int],
                        held: set[int] | None = None) -> None:
        """Give each port of a NodePort/LoadBalancer Service a node port.

        `keep` maps (protocol, port) → node port already held from the old object (update), `held`
        is every node port the old object holds (asking for one of them again is no conflict).
        One node port number may serve several protocols of the same Service, as upstream allows.
        """
        ports = (svc.get("spec") or {}).get("ports") or []
        if not _needs_node_ports(svc):
            for p in ports:
                p.pop("nodePort", None)
            return
        keep = keep or {}
        held = set(held or ()) | set(keep.values())
        mine: set[int] = set()
        for i, p in enumerate(ports):
            np = int(p.get("nodePort") or 0)
            if not np:
                np = keep.get((p.get("protocol") or "TCP", int(p.get("port") or 0)), 0)
                if np:
                    p["nodePort"] = np
                    continue
            if np:
                if np in held or np in mine:
                    continue  # already ours (same service)
                self._take_port(svc, i, np)
            else:
                np = self._next_port()
                p["nodePort"] = np
            mine.add(np)
            took.append(np)

    def reallocate(self, old: dict, new: dict) -> Callable[[], None]:
        """On update: keep what `old` holds, allocate or release for type changes. Returns an undo callable."""
        old_ips = [] if _is_external_name(old) else [ip for ip in _requested_ips(old) if ip != _NONE]
        old_ports = {int(p["nodePort"]) for p in (old.get("spec") or {}).get("ports") or [] if p.get("nodePort")}
        old_ports = old_ports if _needs_node_ports(old) else set()
        took_ips: list[str] = []
        took_ports: list[int] = []
        released_ips: list[str] = []
        released_ports: list[int] = []

        def undo() -> None:
            for ip in took_ips:
                self._release_ip(ip)
            for p in took_ports:
                self._release_port(p)
            for ip in released_ips:
                off = self._ip_offset(ip)
                if off is not None:
                    self.ips.take(off)
            for p in released_ports:
                if self.port_lo <= p <= self.port_hi:
                    self.ports.take(p - self.port_lo)

        try:
            spec = new.setdefault("spec", {})
            name = (new.get("metadata") or {}).get("name", "")
            if _is_external_name(new):
                for ip in old_ips:
                    self._release_ip(ip)
                    released_ips.append(ip)
                for k in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
                    spec.pop(k, None)
            elif old_ips or (not _is_external_name(old) and _requested_ips(old)[:1] == [_NONE]):
                # IPs are immutable once set: an empty field on PUT means "keep" (patchAllocatedValues).
                requested = _requested_ips(new)
                current = _requested_ips(old)
                if requested and requested[0] != current[0]:
                    raise _invalid(name, "spec.clusterIPs[0]", _go_string_slice(requested), "may not change once set")
                spec["clusterIP"] = current[0]
                spec["clusterIPs"] = list(current)
                for k in ("ipFamilies", "ipFamilyPolicy"):
                    if k in (old.get("spec") or {}) and k not in spec:
                        spec[k] = old["spec"][k]
            else:
                self._allocate_ips(new, took_ips)
            keep: dict[tuple[str, int], int] = {}
            if _needs_node_ports(old) and _needs_node_ports(new):
                for p in (old.get("spec") or {}).get("ports") or []:
                    if p.get("nodePort"):
                        keep[(p.get("protocol") or "TCP", int(p.get("port") or 0))] = int(p["nodePort"])
            self._allocate_ports(new, keep, took_ports, held=old_ports)
            still = {int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort")}
            for np in old_ports - still:
                self._release_port(np)
                released_ports.append(np)
        except Exception:
            undo()
            raise
        return undo

    def release(self, svc: dict) -> None:
        """On delete: give back the Service's IPs and node ports."""
        if not _is_external_name(svc):
            for ip in _requested_ips(svc):
                if ip != _NONE:
                    self._release_ip(ip)
        if _needs_node_ports(svc):
            for p in (svc.get("spec") or {}).get("ports") or []:
                if p.get("nodePort"):
                    self._release_port(int(p["nodePort"]))

    # ------------------------------------------------------------- introspection (tests, debugging)
    def is_allocated_ip(self, ip: str) -> bool:
        off = self._ip_offset(ip)
        return off is not None and off in self.ips.taken

    def is_allocated_port(self, port: int) -> bool:
        return self.port_lo <= port <= self.port_hi and (port - self.port_lo) in self.ports.taken


def describe(svc: dict[str, Any]) -> str:
    """A short `ns/name` for log lines."""
    md = svc.get("metadata") or {}
    return f"{md.get('namespace', '')}/{md.get('name', '')}"
