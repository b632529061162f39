# ruff: noqa: UP031 - printf-style formats on purpose: they mirror ipvsadm.c / ip_vs_ctl.c byte for byte
"""`ipvsadm -L -n` text (plain, --stats, --rate), its JSON form, and /proc/net/ip_vs (render and parse).

Formats as in ipvsadm.c (print_title, print_service_entry, print_largenum, addrport_to_anyname with
FMT_NUMERIC, list_all) and the kernel's ip_vs_ctl.c `ip_vs_info_seq_show`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from labkit.agent.model import (
    DEFAULT_NETMASK,
    FLAG_ONEPACKET,
    FLAG_PERSISTENT,
    Connection,
    RealServer,
    Table,
    VirtualServer,
    sorted_services,
)

CONN_TAB_SIZE = 4096  # ip_vs_conn_tab_size with the default CONFIG_IP_VS_TAB_BITS=12
VERSION_LINE = f"IP Virtual Server version 1.2.1 (size={CONN_TAB_SIZE})\n"


def _addrport(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"{address}:{port}" if ip.version == 4 else f"[{ip.compressed}]:{port}"


def largenum(i: int, exact: bool = False) -> str:
    """print_largenum: 9 columns, scaled to K/M/G/T from 10^8 on unless --exact."""
    if exact:
        s = str(i)
        return s.rjust(9 if len(s) <= 8 else len(s) + 1)
    if i < 100_000_000:
        return f"{i:9d}"
    if i < 1_000_000_000:
        return f"{i // 1000:8d}K"
    if i < 100_000_000_000:
        return f"{i // 1_000_000:8d}M"
    if i < 100_000_000_000_000:
        return f"{i // 1_000_000_000:8d}G"
    return f"{i // 1_000_000_000_000:8d}T"


def _title(stats: bool, rate: bool) -> str:
    if stats:
        return "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n" % (
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
    if rate:
        return "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n" % (
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
    return ("Prot LocalAddress:Port Scheduler Flags\n"
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")


def _svc_name(vs: VirtualServer) -> str:
    name = f"{vs.protocol}  {_addrport(vs.address, vs.port)}"
    return name[:33] if vs.family == 4 else name


def _dest_name(vs: VirtualServer, d: RealServer) -> str:
    name = _addrport(d.address, d.port)
    return name[:28] if vs.family == 4 else name


def _service_lines(vs: VirtualServer, stats: bool, rate: bool, exact: bool, nosort: bool) -> str:
    out = []
    svc_name = _svc_name(vs)
    if stats:
        s = vs.stats
        out.append("%-33s" % svc_name + "".join(
            largenum(v, exact) for v in (s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes)) + "\n")
    elif rate:
        r = vs.rate
        out.append("%-33s" % svc_name + "".join(
            largenum(v, exact) for v in (r.cps, r.inpps, r.outpps, r.inbps, r.outbps)) + "\n")
    else:
        line = f"{svc_name} {vs.scheduler}"
        if vs.flags & FLAG_PERSISTENT:
            line += f" persistent {vs.timeout}"
            default_mask = DEFAULT_NETMASK if vs.family == 4 else "128"
            if str(vs.netmask) not in (default_mask, DEFAULT_NETMASK):
                line += f" mask {vs.netmask}"
            if vs.flags & FLAG_ONEPACKET:
                line += " ops"
        out.append(line + "\n")
    dests = list(vs.destinations) if nosort else sorted(vs.destinations, key=RealServer.sort_key)
    for d in dests:
        dname = _dest_name(vs, d)
        if stats:
            s = d.stats
            out.append("  -> %-28s" % dname + "".join(
                largenum(v, exact) for v in (s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes)) + "\n")
        elif rate:
            r = d.rate
            out.append("  -> %-28s %8u %8u %8u" % (dname, r.cps, r.inpps, r.outpps)
                       + largenum(r.inbps, exact) + largenum(r.outbps, exact) + "\n")
        else:
            out.append("  -> %-28s %-7s %-6d %-10u %-10u\n" % (dname, d.forward, d.weight, d.active, d.inactive))
    return "".join(out)


def render_list(table: Table | list[VirtualServer], *, stats: bool = False, rate: bool = False,
                exact: bool = False, nosort: bool = False) -> str:
    """What `ipvsadm -L -n [--stats|--rate] [--exact] [--nosort]` prints for this table."""
    vss = (list(table.values()) if isinstance(table, dict) else list(table)) if nosort else sorted_services(table)
    return VERSION_LINE + _title(stats, rate) + "".join(_service_lines(vs, stats, rate, exact, nosort) for vs in vss)


def render_json(table: Table | list[VirtualServer]) -> list[dict[str, Any]]:
    """The table as JSON-able data (sorted like ipvsadm), counters included."""
    out = []
    for vs in sorted_services(table):
        out.append({
            "protocol": vs.protocol,
            "address": vs.address,
            "port": vs.port,
            "scheduler": vs.scheduler,
            "flags": vs.flags,
            "persistent": vs.timeout if vs.persistent else None,
            "netmask": vs.netmask,
            "stats": vs.stats.to_dict(),
            "rate": vs.rate.to_dict(),
            "destinations": [
                {"address": d.address, "port": d.port, "forward": d.forward, "weight": d.weight,
                 "active": d.active, "inactive": d.inactive, "persistent": d.persistent,
                 "stats": d.stats.to_dict(), "rate": d.rate.to_dict()}
                for d in sorted(vs.destinations, key=RealServer.sort_key)
            ],
        })
    return out


# --- /proc/net/ip_vs ---------------------------------------------------------------------------------------

def _hex_addr(address: str) -> str:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return f"{int(ip):08X}"
    return "[" + ip.exploded + "]"  # %pI6: eight 4-digit groups


def render_proc(table: Table | list[VirtualServer], *, hz: int) -> str:
    """/proc/net/ip_vs as ip_vs_info_seq_show prints it (table order, no sorting) on a kernel ticking `hz` times a
    second: a persistent service's timeout is printed in jiffies (see parse_proc)."""
    out = [VERSION_LINE, "Prot LocalAddress:Port Scheduler Flags\n",
           "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"]
    vss = list(table.values()) if isinstance(table, dict) else list(table)
    for vs in vss:
        if vs.family == 4:
            line = "%s  %s:%04X %s %s " % (vs.protocol, _hex_addr(vs.address), vs.port, vs.scheduler,
                                           "ops " if vs.flags & FLAG_ONEPACKET else "")
        else:
            line = "%s  %s:%04X %s " % (vs.protocol, _hex_addr(vs.address), vs.port, vs.scheduler)
        if vs.flags & FLAG_PERSISTENT:
            mask = int(ipaddress.ip_address(vs.netmask)) if vs.family == 4 else int(vs.netmask)
            line += "persistent %d %08X\n" % (vs.timeout * hz, mask)
        else:
            line += "\n"
        out.append(line)
        for d in vs.destinations:
            out.append("  -> %s:%04X      %-7s %-6d %-10d %-10d\n" % (
                _hex_addr(d.address), d.port, d.forward, d.weight, d.active, d.inactive))
    return "".join(out)


_VS_RE = re.compile(r"^(TCP|UDP|SCTP|FWM)\s+(\[[0-9a-fA-F:]+\]|[0-9A-Fa-f]{8}):([0-9A-Fa-f]{4})\s+(\S+)\s*(.*)$")
_RS_RE = re.compile(
    r"^\s+->\s+(\[[0-9a-fA-F:]+\]|[0-9A-Fa-f]{8}):([0-9A-Fa-f]{4})\s+(\S+)\s+(-?\d+)\s+(\d+)\s+(\d+)\s*$")


def _parse_hex_addr(text: str) -> str:
    if text.startswith("["):
        return str(ipaddress.IPv6Address(text[1:-1]))
    return str(ipaddress.IPv4Address(int(text, 16)))


def lists_persistent(text: str) -> bool:
    """Does this /proc/net/ip_vs text list a persistent service (whose timeout parse_proc needs HZ to read)?"""
    return " persistent " in text


def parse_proc(text: str, *, hz: int | None = None) -> list[VirtualServer]:
    """Parse /proc/net/ip_vs into the model (order kept). FWM services are skipped.

    The kernel keeps a service's persistence timeout in jiffies (ip_vs_ctl.c: `svc->timeout = u->timeout * HZ`)
    and /proc prints that field as is, while ipvsadm's netlink answer divides it by HZ: `persistent 2700000` is
    kube-proxy's 10800 s on a kernel with HZ=250. `hz` (kernel_hz) turns it back into seconds; a text that
    lists a persistent service cannot be read without it.
    """
    out: list[VirtualServer] = []
    current: VirtualServer | None = None
    for line in text.splitlines():
        if not line.strip() or line.startswith(("IP Virtual Server", "Prot ", "  -> RemoteAddress")):
            continue
        m = _VS_RE.match(line)
        if m:
            proto, addr, port, sched, rest = m.groups()
            if proto == "FWM":
                current = None
                continue
            flags, timeout, netmask = 0, 0, DEFAULT_NETMASK
            words = rest.split()
            if "ops" in words:
                flags |= FLAG_ONEPACKET
            if "persistent" in words:
                i = words.index("persistent")
                flags |= FLAG_PERSISTENT
                if hz is None:
                    raise ValueError("/proc/net/ip_vs lists a persistent service: its timeout is in jiffies, "
                                     "and reading it needs the kernel's HZ")
                timeout = int(words[i + 1]) // hz
                if len(words) > i + 2:
                    mask = int(words[i + 2], 16)
                    netmask = str(ipaddress.IPv4Address(mask)) if not addr.startswith("[") else str(mask)
            current = VirtualServer(proto, _parse_hex_addr(addr), int(port, 16), sched, flags, timeout, netmask)
            out.append(current)
            continue
        m = _RS_RE.match(line)
        if m and current is not None:
            addr, port, fwd, weight, active, inactive = m.groups()
            current.destinations.append(RealServer(_parse_hex_addr(addr), int(port, 16), int(weight), fwd,
                                                   int(active), int(inactive)))
    return out


# The kernel's tick rate (CONFIG_HZ: 100, 250, 300 or 1000) is not exported as such. /proc/timer_list shows the
# monotonic clock ("now at N nsecs") and the jiffies counter, which starts at INITIAL_JIFFIES = (unsigned
# int)(-300 * HZ) (include/linux/jiffies.h), i.e. 2**32 - 300 * HZ on a 64-bit kernel: jiffies - 2**32 = HZ * (t - 300).
CONFIG_HZ_CHOICES = (100, 250, 300, 1000)
_NOW_RE = re.compile(r"^now at (\d+) nsecs$", re.MULTILINE)
_JIFFIES_RE = re.compile(r"^jiffies: (\d+)$", re.MULTILINE)


def kernel_hz(timer_list: str) -> int:
    """The kernel's HZ, from the text of its /proc/timer_list (its first `now at` and `jiffies:` lines)."""
    now, jiffies = _NOW_RE.search(timer_list), _JIFFIES_RE.search(timer_list)
    if now is None or jiffies is None:
        raise ValueError("/proc/timer_list shows no `now at … nsecs` and `jiffies:` lines")
    seconds = int(now[1]) / 1e9 - 300
    if abs(seconds) < 60:  # around 300 s after boot both sides are near 0: too close to tell
        raise ValueError(f"the kernel's HZ cannot be told {int(now[1]) / 1e9:.0f}s after boot (try again later)")
    estimate = (int(jiffies[1]) - 2**32) / seconds
    best = min(CONFIG_HZ_CHOICES, key=lambda hz: abs(hz - estimate))
    if abs(best - estimate) > 0.02 * best:
        raise ValueError(f"/proc/timer_list gives HZ ≈ {estimate:.1f}, none of {CONFIG_HZ_CHOICES}")
    return best


# --- the connection table: `ipvsadm -L -n -c` and /proc/net/ip_vs_conn ------------------------------------------

CONN_PROC_HEADER = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"


def render_connections(conns: list[Connection]) -> str:
    """What `ipvsadm -L -n -c` prints (ipvsadm.c list_conn/print_conn; expire as minutes:seconds)."""
    out = ["IPVS connection entries\n", "pro expire %-11s %-18s %-18s %s\n" % ("state", "source", "virtual",
                                                                             "destination")]
    for c in conns:
        expire = "%02d:%02d" % (c.expires // 60, c.expires % 60)
        out.append("%-3s %-6s %-11s %-18s %-18s %s\n" % (
            c.protocol, expire, c.state, _addrport(*c.source), _addrport(*c.virtual), _addrport(*c.destination)))
    return "".join(out)


def render_proc_connections(conns: list[Connection]) -> str:
    """/proc/net/ip_vs_conn as ip_vs_conn_seq_show prints it (no persistence engine data)."""
    out = [CONN_PROC_HEADER]
    for c in conns:
        out.append("%-3s %s %04X %s %04X %s %04X %-11s %7d\n" % (
            c.protocol, _hex_addr(c.source[0]), c.source[1], _hex_addr(c.virtual[0]), c.virtual[1],
            _hex_addr(c.destination[0]), c.destination[1], c.state, c.expires))
    return "".join(out)


def parse_proc_connections(text: str) -> list[Connection]:
    """Parse /proc/net/ip_vs_conn (what the kind backend reads from a node) into the model."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 9 or words[0] == "Pro":
            continue
        proto, caddr, cport, vaddr, vport, daddr, dport, state, expires = words[:9]
        out.append(Connection(proto, (_parse_hex_addr(caddr), int(cport, 16)),
                              (_parse_hex_addr(vaddr), int(vport, 16)), (_parse_hex_addr(daddr), int(dport, 16)),
                              state, int(expires)))
    return out
