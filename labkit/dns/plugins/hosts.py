"""hosts [FILE [ZONES...]] { ADDRESS NAMES...; ttl SECONDS; no_reverse; reload DURATION; fallthrough [ZONES] }:
answers from an /etc/hosts-style file and inline lines (plugin/hosts).

- FILE defaults to /etc/hosts (in a coredns pod: the pod's own hosts file); it is re-read every `reload` (5 s)
  when its modification time or size changed. Inline lines are added to it.
- A, AAAA and PTR only (PTR records made from every address unless `no_reverse`); TTL 3600 by default; AA set;
  owner names in lower case.
- A name that exists with the other address family, or queried for another type → NODATA (no SOA).
- A name that is not there → SERVFAIL, unless `fallthrough` covers it (then the next plugin answers).
  A PTR that is not there always goes on to the next plugin.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os

from labkit.dns import request as rq
from labkit.dns import wire
from labkit.dns.plugin import Controller, Log, Plugin
from labkit.dns.plugins.cache import in_zones
from labkit.dns.plugins.durations import parse_duration
from labkit.dns.request import Reply, Request
from labkit.dns.wire import RR

log = Log("hosts")


def normalize(name: str) -> str:
    return (name if name.endswith(".") else name + ".").lower()


class HostsMap:
    """name → addresses per family, address → names (hostsfile.go Map)."""

    def __init__(self) -> None:
        self.name4: dict[str, list[str]] = {}
        self.name6: dict[str, list[str]] = {}
        self.addr: dict[str, list[str]] = {}

    @classmethod
    def parse(cls, text: str, origins: list[str], auto_reverse: bool) -> HostsMap:
        m = cls()
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            fields = line.split()
            if len(fields) < 2:
                continue
            try:
                ip = ipaddress.ip_address(fields[0].split("%", 1)[0])
            except ValueError:
                continue
            table = m.name4 if ip.version == 4 else m.name6
            for raw in fields[1:]:
                name = normalize(raw)
                if not in_zones(name, origins):
                    continue
                table.setdefault(name, []).append(ip.compressed)
                if auto_reverse:
                    m.addr.setdefault(ip.compressed, []).append(name)
        return m


def address_from_reverse(name: str) -> str | None:
    """dnsutil.ExtractAddressFromReverse: the address a full reverse name stands for."""
    labels = name.rstrip(".").split(".")
    try:
        if name.endswith(".in-addr.arpa.") and len(labels) == 6:
            return ipaddress.IPv4Address(".".join(reversed(labels[:4]))).compressed
        if name.endswith(".ip6.arpa.") and len(labels) == 34:
            return ipaddress.IPv6Address(int("".join(reversed(labels[:32])), 16)).compressed
    except ValueError:
        return None
    return None


class Hosts(Plugin):
    name = "hosts"

    def __init__(self, path: str, origins: list[str]) -> None:
        self.path = path
        self.origins = origins
        self.ttl = 3600
        self.auto_reverse = True
        self.reload = 5.0
        self.fallthrough: list[str] | None = None  # None: no fallthrough
        self.inline_lines: list[str] = []
        self.inline = HostsMap()
        self.file = HostsMap()
        self.stamp: tuple[float, int] | None = None
        self.on_change = lambda: None
        self.task: asyncio.Task[None] | None = None

    def read_file(self) -> None:
        """readHosts: re-parse the file when its mtime or size changed."""
        try:
            st = os.stat(self.path)
            with open(self.path) as f:
                text = f.read()
        except OSError:
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self.stamp:
            return
        self.file = HostsMap.parse(text, self.origins, self.auto_reverse)
        self.stamp = stamp
        self.on_change()

    async def _reloading(self) -> None:
        while True:
            await asyncio.sleep(self.reload)
            self.read_file()

    def start(self) -> None:
        self.inline = HostsMap.parse("\n".join(self.inline_lines), self.origins, self.auto_reverse)
        self.read_file()
        if self.reload > 0:
            self.task = asyncio.ensure_future(self._reloading())

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    def lookup(self, table: str, name: str) -> list[str]:
        return getattr(self.file, table).get(name, []) + getattr(self.inline, table).get(name, [])

    def falls_through(self, name: str) -> bool:
        return self.fallthrough is not None and (not self.fallthrough or bool(in_zones(name, self.fallthrough)))

    async def serve(self, req: Request) -> Reply:
        qname = req.name()
        qtype = req.qtype
        if not in_zones(qname, self.origins) and qtype != wire.PTR:
            return await self.next_or_failure(req)
        answers: list[RR] = []
        owner = wire.name_from_text(qname)
        if qtype == wire.PTR:
            ip = address_from_reverse(qname)
            names = self.lookup("addr", ip) if ip else []
            if not names:
                return await self.next_or_failure(req)
            answers = [RR(owner, wire.PTR, self.ttl, wire.name_from_text(n)) for n in names]
        elif qtype in (wire.A, wire.AAAA):
            for ip in self.lookup("name4" if qtype == wire.A else "name6", qname):
                answers.append(RR(owner, qtype, self.ttl, ipaddress.ip_address(ip).packed))
        if not answers and not (self.lookup("name4", qname) or self.lookup("name6", qname)):
            if self.falls_through(qname):
                return await self.next_or_failure(req)
            return Reply(None, wire.SERVFAIL)
        m = rq.reply_to(req)
        m.set_flag(wire.AA)
        m.answer = answers
        return Reply(m, wire.NOERROR, None, self.name)


def setup(c: Controller) -> None:
    h = Hosts("/etc/hosts", list(c.zones))
    while c.next_once():
        args = c.remaining_args()
        if args:
            h.path = args[0]
            args = args[1:]
            if not os.path.exists(h.path):
                log.warning(f"File does not exist: {h.path}")
            elif os.path.isdir(h.path):
                log.warning(f'Hosts file "{h.path}" is a directory')
        h.origins = [normalize(a) for a in args] or list(c.zones)
        while c.next_block():
            opt = c.val()
            if opt == "fallthrough":
                h.fallthrough = [normalize(z) for z in c.remaining_args()]
            elif opt == "no_reverse":
                h.auto_reverse = False
            elif opt == "ttl":
                rest = c.remaining_args()
                if not rest:
                    raise c.plugin_err(c.err("ttl needs a time in second"))
                if not rest[0].lstrip("-").isdigit():
                    raise c.plugin_err(c.err("ttl needs a number of second"))
                ttl = int(rest[0])
                if ttl <= 0 or ttl > 65535:
                    raise c.plugin_err(c.err("ttl provided is invalid"))
                h.ttl = ttl
            elif opt == "reload":
                rest = c.remaining_args()
                if len(rest) != 1:
                    raise c.plugin_err(c.err("reload needs a duration (zero seconds to disable)"))
                try:
                    h.reload = parse_duration(rest[0])
                except ValueError:
                    raise c.plugin_err(c.err(f"invalid duration for reload '{rest[0]}'")) from None
                if h.reload < 0:
                    raise c.plugin_err(c.err(f"invalid negative duration for reload '{rest[0]}'"))
            elif h.fallthrough is None:
                h.inline_lines.append(" ".join([opt, *c.remaining_args()]))
            else:
                raise c.plugin_err(c.err(f"unknown property '{opt}'"))
    env = c.env
    h.on_change = env.changed
    c.add_plugin(h)
    c.on_startup(h.start)
    c.on_shutdown(h.stop)
