"""kube-proxy's KUBE-IPVS-FILTER for the userspace IPVS data plane: a ClusterIP answers only on its Services' ports.

In IPVS mode every ClusterIP (and external or load-balancer IP) is an address of the node's `kube-ipvs0`, so
without more the node's own stack would answer anything sent to it: ping, and any port a node process listens on
(kubernetes#72236). Since v1.27 kube-proxy's IPVS proxier adds, in the filter table's INPUT (pkg/proxy/ipvs/
proxier.go, writeIptablesRules): RETURN for destinations in KUBE-LOAD-BALANCER, KUBE-CLUSTER-IP, KUBE-EXTERNAL-IP
(`dst,dst`: address and port), then `-m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT`
(KUBE-IPVS-IPS: the addresses on kube-ipvs0; REJECT answers ICMP port unreachable). So a ClusterIP does not
answer ping (kubernetes/website#41002 shows it on 1.27) and an unused port is refused.

The same rules as one nftables table in the node's namespace, `ip labkit-ipvs-filter` (kube-proxy writes them
with iptables, which on a kind node is iptables-nft: `table ip filter`, chain KUBE-IPVS-FILTER). Its sets follow
the data plane's table after each sync, written by `nft -f` off the event loop (the loop is the data plane).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from labkit.agent.model import VSKey

log = logging.getLogger(__name__)

TABLE = "ip labkit-ipvs-filter"


def _service(key: VSKey) -> str:
    protocol, address, port = key
    return f"{address} . {protocol.lower()} . {port}"


def setup_lines(ips: Iterable[str], services: Iterable[VSKey]) -> list[str]:
    """The whole table, replacing whatever an earlier agent left (add, delete, add: one transaction)."""
    t = TABLE
    lines = [f"add table {t}", f"delete table {t}",
             f"add table {t} {{ comment \"kube-proxy's KUBE-IPVS-FILTER (IPVS mode)\" ; }}",
             f"add set {t} ipvs-ips {{ type ipv4_addr ; comment \"KUBE-IPVS-IPS: addresses on kube-ipvs0\" ; }}",
             f"add set {t} services {{ type ipv4_addr . inet_proto . inet_service ; "
             "comment \"KUBE-CLUSTER-IP, KUBE-EXTERNAL-IP, KUBE-LOAD-BALANCER\" ; }",
             f"add chain {t} input {{ type filter hook input priority 0 ; }}",
             f"add rule {t} input ip daddr . meta l4proto . th dport @services return",
             f"add rule {t} input ct state new ip daddr @ipvs-ips reject"]
    lines += [f"add element {t} ipvs-ips {{ {ip} }}" for ip in sorted(ips) if ":" not in ip]
    lines += [f"add element {t} services {{ {_service(k)} }}" for k in sorted(services) if ":" not in k[1]]
    return lines


class IpvsFilter:
    """Keeps the filter's two sets equal to the data plane's bound addresses and virtual servers."""

    def __init__(self) -> None:
        self._want: tuple[frozenset[str], frozenset[VSKey]] = (frozenset(), frozenset())
        self._have: tuple[frozenset[str], frozenset[VSKey]] | None = None  # None: rewrite the whole table
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def update(self, ips: Iterable[str], services: Iterable[VSKey]) -> None:
        """Ask for the sets to become these (applied soon, in the background; bursts coalesce)."""
        self._want = (frozenset(ips), frozenset(k for k in services if k[0] in ("TCP", "UDP", "SCTP")))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    def transaction(self) -> list[str]:
        """What turns the kernel's sets from what was last written into what is wanted."""
        ips, services = self._want
        if self._have is None:
            return setup_lines(ips, services)
        had_ips, had_services = self._have
        t = TABLE
        lines = [f"delete element {t} ipvs-ips {{ {ip} }}" for ip in sorted(had_ips - ips)]
        lines += [f"delete element {t} services {{ {_service(k)} }}" for k in sorted(had_services - services)]
        lines += [f"add element {t} ipvs-ips {{ {ip} }}" for ip in sorted(ips - had_ips) if ":" not in ip]
        lines += [f"add element {t} services {{ {_service(k)} }}" for k in sorted(services - had_services)
                  if ":" not in k[1]]
        return lines

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            want, lines = self._want, self.transaction()
            if not lines:
                continue
            proc = await asyncio.create_subprocess_exec(
                "nft", "-f", "-", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate(("\n".join(lines) + "\n").encode())
            if proc.returncode == 0:
                self._have = want
            else:  # write the whole table next time
                self.failures += 1
                self._have = None
                log.error("KUBE-IPVS-FILTER not updated: %s", err.decode(errors="replace").strip()[:500])
                await asyncio.sleep(1.0)
                self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
