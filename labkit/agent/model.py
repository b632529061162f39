"""The IPVS virtual-server table as plain data.

One `VirtualServer` per (protocol, address, port), each with its `RealServer`s, exactly the fields
`ipvsadm -L -n` and the IPVS netlink API expose. Desired state, the kernel's table, the userspace data
plane's table and the control API all speak this model.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

# Service flags (include/uapi/linux/ip_vs.h).
FLAG_PERSISTENT = 0x0001
FLAG_HASHED = 0x0002  # set by the kernel on every hashed service; stripped on read (as kube-proxy does)
FLAG_ONEPACKET = 0x0004
FLAG_SCHED1 = 0x0008  # sh-fallback / mh-fallback
FLAG_SCHED2 = 0x0010  # sh-port / mh-port
FLAG_SCHED3 = 0x0020

# Forwarding methods: conn_flags & IP_VS_CONN_F_FWD_MASK.
FORWARD_NAMES = {0: "Masq", 1: "Local", 2: "Tunnel", 3: "Route"}
FORWARD_CODES = {name: code for code, name in FORWARD_NAMES.items()}

PROTOCOLS = ("TCP", "UDP", "SCTP")
DEFAULT_NETMASK = "255.255.255.255"


@dataclass
class Stats:
    """Cumulative counters of a service or destination (struct ip_vs_stats_user)."""

    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("conns", "inpkts", "outpkts", "inbytes", "outbytes")}


@dataclass
class Rate:
    """Per-second rates (the kernel's estimator: cps, inpps, outpps, inbps, outbps)."""

    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("cps", "inpps", "outpps", "inbps", "outbps")}


@dataclass
class RealServer:
    """One destination of a virtual server."""

    address: str
    port: int
    weight: int = 1
    forward: str = "Masq"
    active: int = 0  # ActiveConn
    inactive: int = 0  # InActConn
    persistent: int = 0  # PersistConn (affinity templates)
    stats: Stats = field(default_factory=Stats)
    rate: Rate = field(default_factory=Rate)

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    def sort_key(self) -> tuple[int, int, int]:
        ip = ipaddress.ip_address(self.address)
        return (ip.version, int(ip), self.port)

    def config_equal(self, other: RealServer) -> bool:
        """Same configuration (counters ignored)."""
        return self.key == other.key and self.weight == other.weight and self.forward == other.forward

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "forward": self.forward,
            "weight": self.weight,
            "active": self.active,
            "inactive": self.inactive,
            "persistent": self.persistent,
            "stats": self.stats.to_dict(),
            "rate": self.rate.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RealServer:
        return cls(
            address=d["address"],
            port=int(d["port"]),
            weight=int(d.get("weight", 1)),
            forward=d.get("forward", "Masq"),
            active=int(d.get("active", 0)),
            inactive=int(d.get("inactive", 0)),
            persistent=int(d.get("persistent", 0)),
            stats=Stats(**d.get("stats", {})),
            rate=Rate(**d.get("rate", {})),
        )


VSKey = tuple[str, str, int]  # (protocol, address, port)


@dataclass
class VirtualServer:
    """One IPVS service: protocol, VIP, port, scheduler, flags, persistence timeout and netmask."""

    protocol: str
    address: str
    port: int
    scheduler: str = "rr"
    flags: int = 0
    timeout: int = 0  # persistence timeout in seconds (meaningful with FLAG_PERSISTENT)
    netmask: str = DEFAULT_NETMASK
    destinations: list[RealServer] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    rate: Rate = field(default_factory=Rate)

    @property
    def key(self) -> VSKey:
        return (self.protocol, self.address, self.port)

    @property
    def persistent(self) -> bool:
        return bool(self.flags & FLAG_PERSISTENT)

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.address).version

    def sort_key(self) -> tuple[int, int, int, int]:
        # ipvsadm sorts by fwmark, af, protocol, address, port (ipvs_cmp_services); TCP=6 < UDP=17 < SCTP=132.
        ip = ipaddress.ip_address(self.address)
        return (ip.version, _PROTO_NUM[self.protocol], int(ip), self.port)

    def dest(self, address: str, port: int) -> RealServer | None:
        for d in self.destinations:
            if d.address == address and d.port == port:
                return d
        return None

    def config_equal(self, other: VirtualServer) -> bool:
        """Same service configuration (destinations and counters ignored)."""
        return (
            self.key == other.key
            and self.scheduler == other.scheduler
            and (self.flags & ~FLAG_HASHED) == (other.flags & ~FLAG_HASHED)
            and (self.timeout if self.persistent else 0) == (other.timeout if other.persistent else 0)
            and self.netmask == other.netmask
        )

    def copy_config(self) -> VirtualServer:
        """A copy without destinations or counters."""
        return VirtualServer(self.protocol, self.address, self.port, self.scheduler, self.flags, self.timeout,
                             self.netmask)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "address": self.address,
            "port": self.port,
            "scheduler": self.scheduler,
            "flags": self.flags,
            "persistent": self.timeout if self.persistent else None,
            "netmask": self.netmask,
            "stats": self.stats.to_dict(),
            "rate": self.rate.to_dict(),
            "destinations": [d.to_dict() for d in self.destinations],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VirtualServer:
        flags = int(d.get("flags", 0))
        timeout = d.get("persistent")
        if timeout is not None:
            flags |= FLAG_PERSISTENT
        return cls(
            protocol=d["protocol"],
            address=d["address"],
            port=int(d["port"]),
            scheduler=d.get("scheduler", "rr"),
            flags=flags,
            timeout=int(timeout or d.get("timeout", 0) or 0),
            netmask=d.get("netmask", DEFAULT_NETMASK),
            destinations=[RealServer.from_dict(x) for x in d.get("destinations", [])],
            stats=Stats(**d.get("stats", {})),
            rate=Rate(**d.get("rate", {})),
        )


_PROTO_NUM = {"TCP": 6, "UDP": 17, "SCTP": 132}


def proto_number(protocol: str) -> int:
    """IPPROTO_* number of a protocol name."""
    return _PROTO_NUM[protocol]


def proto_name(number: int) -> str:
    """Protocol name of an IPPROTO_* number."""
    for name, num in _PROTO_NUM.items():
        if num == number:
            return name
    raise ValueError(f"unknown IPVS protocol {number}")


Table = dict[VSKey, VirtualServer]


def table_from_list(vss: list[VirtualServer]) -> Table:
    return {vs.key: vs for vs in vss}


def sorted_services(table: Table | list[VirtualServer]) -> list[VirtualServer]:
    vss = list(table.values()) if isinstance(table, dict) else list(table)
    return sorted(vss, key=VirtualServer.sort_key)


@dataclass(frozen=True)
class Connection:
    """One entry of the IPVS connection table (/proc/net/ip_vs_conn, `ipvsadm -L -n -c`).

    `state` is the kernel's name (ESTABLISHED, SYN_RECV, FIN_WAIT, TIME_WAIT, CLOSE, …; UDP for UDP flows;
    NONE for a persistence template, whose source port is 0). `expires` counts seconds down to its removal.
    """

    protocol: str
    source: tuple[str, int]
    virtual: tuple[str, int]
    destination: tuple[str, int]
    state: str
    expires: int = 0

    @property
    def template(self) -> bool:
        return self.state == "NONE"

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "client": list(self.source), "virtual": list(self.virtual),
                "destination": list(self.destination), "state": self.state, "expires": self.expires}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Connection:
        def pair(v: Any) -> tuple[str, int]:
            return (str(v[0]), int(v[1]))

        return cls(d["protocol"], pair(d["client"]), pair(d["virtual"]), pair(d["destination"]), d["state"],
                   int(d.get("expires", 0)))
