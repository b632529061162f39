"""Client address preservation for the userspace data plane: transparent sockets and their return path.

Why. Kernel IPVS in NAT (Masq) mode rewrites only the destination of a packet, so a backend pod sees the client
pod's address as the source. kube-proxy adds source NAT only where the reply could not find its way back
through IPVS (pkg/proxy/ipvs/proxier.go, see /work/shared/reference/ipvs.md §1):
- KUBE-CLUSTER-IP `dst,dst` with a source outside `--cluster-cidr` → KUBE-MARK-MASQ: traffic from the node itself
  (or from off-cluster) to a cluster IP is masqueraded; pod → cluster IP is not;
- KUBE-LOOP-BACK `dst,dst,src` → MASQUERADE: hairpin, a pod reaching itself through its own Service, is
  masqueraded (the reply would otherwise never leave the pod);
- to destinations outside the pod network the node's masquerade (kind's ip-masq-agent) applies anyway.

The userspace proxy terminates the client's connection and opens a second one, so without help the backend sees
the node. `client_source()` decides, per connection, which source the second connection gets: the client's own
address and port (pod → pod backend, the IPVS NAT case) or the node's (every case above, which kube-proxy
masquerades). For the client's address the socket is made with IP_TRANSPARENT (bind to an address that is not
local; IP_FREEBIND is implied) — the same socket option Envoy's "original source" and HAProxy's `usesrc client`
use.

The return path. The backend answers to the client pod's address. Two things make that answer come back to the
proxy's socket instead of the client:
1. pods are routed point-to-point through the node (labkit/node/sandbox.py: no on-link subnet route), so the
   reply is sent to the node's cni0, never straight to the neighbouring client pod;
2. in the node namespace, the kernel's TPROXY recipe (Documentation/networking/tproxy.rst): an nftables
   prerouting rule `socket transparent 1` marks a packet that belongs to a transparent socket, `ip rule fwmark
   … lookup 100` and `ip route add local 0.0.0.0/0 dev lo table 100` deliver marked packets locally, where the
   socket lookup finds the proxy's connection. Everything else (pod ↔ pod traffic, probes, the outside world) is
   routed exactly as before.

`install_return_path()` programs (2) in the namespace it runs in, as kube-proxy programs its own rules; the agent
calls it at start in the node's namespace and serves transparently only if it succeeded.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import subprocess
from collections.abc import Iterable

log = logging.getLogger(__name__)

IP_TRANSPARENT = 19  # <linux/in.h>; socket.IP_TRANSPARENT exists only from Python 3.12
FWMARK = 0x1         # the TPROXY mark; kube-proxy's masquerade mark is 0x4000, so the bits do not meet
ROUTE_TABLE = 100
NFT_TABLE = "labkit-tproxy"

NFT_RULES = f"""\
table ip {NFT_TABLE} {{
  chain prerouting {{
    type filter hook prerouting priority mangle; policy accept;
    socket transparent 1 meta mark set meta mark | {FWMARK:#x} accept
  }}
}}
"""


def _run(argv: list[str], input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=10)


def install_return_path() -> None:
    """Program the TPROXY return path in this network namespace (idempotent); raises RuntimeError on failure."""
    _run(["nft", "delete", "table", "ip", NFT_TABLE])  # absent on a first start: ignore
    steps: list[tuple[list[str], str | None]] = [(["nft", "-f", "-"], NFT_RULES)]
    rules = _run(["ip", "-4", "rule", "show"]).stdout
    if f"fwmark {FWMARK:#x}/{FWMARK:#x} lookup {ROUTE_TABLE}" not in rules:
        steps.append((["ip", "-4", "rule", "add", "fwmark", f"{FWMARK:#x}/{FWMARK:#x}", "lookup", str(ROUTE_TABLE)],
                      None))
    steps.append((["ip", "-4", "route", "replace", "local", "0.0.0.0/0", "dev", "lo", "table", str(ROUTE_TABLE)],
                  None))
    for argv, text in steps:
        proc = _run(argv, text)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {proc.stderr.strip()}")


def local_addresses() -> set[str]:
    """The IPv4 addresses of this network namespace (`ip -4 -o addr show`: one process, no netlink import)."""
    out = _run(["ip", "-4", "-o", "addr", "show"]).stdout
    return {fields[3].split("/")[0] for fields in (line.split() for line in out.splitlines()) if len(fields) > 3}


class SourcePolicy:
    """Which source address a connection to a destination gets: the client's (transparent) or the node's.

    `cluster_cidr` is kube-proxy's `--cluster-cidr` (the pod network); `local_addresses` the node's own addresses
    (the node's cni0 gateway lies inside the pod CIDR but is the node, not a pod).
    """

    def __init__(self, cluster_cidr: str, local_addresses: Iterable[str] = ()) -> None:
        self.network = ipaddress.ip_network(cluster_cidr, strict=False)
        self.local = set(local_addresses)
        self._cache: dict[str, bool] = {}

    def _is_pod(self, ip: str) -> bool:
        known = self._cache.get(ip)
        if known is None:
            try:
                known = ip not in self.local and ipaddress.ip_address(ip) in self.network
            except ValueError:
                known = False
            if len(self._cache) > 65536:
                self._cache.clear()
            self._cache[ip] = known
        return known

    def preserve(self, client_ip: str, dest_ip: str) -> bool:
        """True when the destination should see `client_ip` (pod → another pod), False to masquerade."""
        return client_ip != dest_ip and self._is_pod(client_ip) and self._is_pod(dest_ip)


def transparent_socket(make: object, family: int, stype: int, client: tuple[str, int],
                       keep_port: bool = True) -> socket.socket:
    """A socket bound to the client's address (and port, as IPVS NAT keeps it), made by `make(family, type)`.
    When the port is taken here (the same client port already in use towards another destination), the kernel
    picks one instead."""
    sock: socket.socket = make(family, stype)  # type: ignore[operator]
    try:
        sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((client[0], client[1] if keep_port else 0))
        except OSError:
            if not keep_port:
                raise
            sock.bind((client[0], 0))
        return sock
    except BaseException:
        sock.close()
        raise
