"""The node's network: the node namespace (kind's `labkit-control-plane` container) and the outside world.

    host namespace          (nothing of the cluster: no addresses, routes or links)

    <prefix>-node           lo; cni0 bridge 10.244.0.1/24 (pod veths attach here);
                            eth0 172.18.0.2/16, default via 172.18.0.1; ip_forward=1;
                            no ICMP redirects (pods are routed through the node even to their neighbours,
                            see sandbox.py: a redirect would tell them to bypass it);
                            nftables: pod traffic leaving by eth0 is masqueraded (kind's ip-masq-agent)
         │ veth
    <prefix>-ext            eth0 172.18.0.1/16 (kind's docker network gateway);
                            world0 (empty bridge) 203.0.113.1/24 + the TEST-NET-3 hosts (.10 web, .53 DNS, ...);
                            no route to 10.244.0.0/16 — the outside world does not know pod IPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labkit.node import nsutil
from labkit.node.names import NETNS_DIR, Names

POD_SUBNET = "10.244.0.0/24"
POD_GATEWAY = "10.244.0.1"
BRIDGE_MAC = "0a:58:0a:f4:00:01"  # locally administered; 0a:58 + the gateway's address, as CNI plugins do
POD_CIDR = "10.244.0.0/16"
NODE_IP = "172.18.0.2"
EXT_GATEWAY = "172.18.0.1"
NODE_PREFIXLEN = 16
WORLD_NET = "203.0.113.0/24"
WORLD_GATEWAY = "203.0.113.1"
UPSTREAM_DNS = "203.0.113.53"


@dataclass(frozen=True)
class ExternalHost:
    """A host of the outside world: an address in the ext namespace, optionally serving HTTP on :80."""

    name: str
    ip: str
    http: bool = True


DEFAULT_EXTERNAL_HOSTS = (
    ExternalHost("web1.example.net", "203.0.113.10"),
    ExternalHost("web2.example.net", "203.0.113.11"),
    ExternalHost("web3.example.net", "203.0.113.12"),
    ExternalHost("ns.example.net", UPSTREAM_DNS, http=False),  # served by labkit.dns (the DNS team)
)

NFT_RULES = f"""\
table ip labkit-masq {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {POD_CIDR} ip daddr != {POD_CIDR} oifname "eth0" masquerade
  }}
}}
"""


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def sysctl_in(netns: str, key: str, value: str) -> None:
    """Write a sysctl of a network namespace (/proc/sys/net is per-netns of the opener)."""
    nsutil.run([*nsutil.nsenter_argv(net=Names.netns_path(netns)), "sysctl", "-qw", f"{key}={value}"])


@dataclass
class NodeNetwork:
    """Builds and removes the node and outside-world namespaces of one cluster."""

    names: Names
    external_hosts: tuple[ExternalHost, ...] = field(default=DEFAULT_EXTERNAL_HOSTS)

    @property
    def node_netns_path(self) -> str:
        return str(Names.netns_path(self.names.node_netns))

    @property
    def ext_netns_path(self) -> str:
        return str(Names.netns_path(self.names.ext_netns))

    def exists(self) -> bool:
        return netns_exists(self.names.node_netns) and netns_exists(self.names.ext_netns)

    def setup(self) -> None:
        """Create both namespaces and wire them (idempotent: an existing node network is kept)."""
        if self.exists():
            return
        node, ext = self.names.node_netns, self.names.ext_netns
        for ns in (node, ext):
            if netns_exists(ns):
                nsutil.ip(None, "netns", "del", ns)
            nsutil.ip(None, "netns", "add", ns)
        nsutil.ip_batch(node, [
            "link set lo up",
            # A bridge without an address of its own takes the lowest MAC of its ports, so it would change
            # as pods come and go while pods keep the old one cached for their gateway: pin it.
            f"link add cni0 address {BRIDGE_MAC} type bridge",
            f"addr add {POD_GATEWAY}/24 dev cni0",
            "link set cni0 up",
            f"link add eth0 type veth peer name eth0 netns {ext}",
            f"addr add {NODE_IP}/{NODE_PREFIXLEN} dev eth0",
            "link set eth0 up",
            f"route add default via {EXT_GATEWAY}",
        ])
        world = [f"addr add {WORLD_GATEWAY}/24 dev world0"]
        world += [f"addr add {h.ip}/32 dev world0" for h in self.external_hosts]
        nsutil.ip_batch(ext, [
            "link set lo up",
            f"addr add {EXT_GATEWAY}/{NODE_PREFIXLEN} dev eth0",
            "link set eth0 up",
            "link add world0 type bridge",  # an empty LAN; no `dummy` driver in some kernels
            *world,
            "link set world0 up",
        ])
        sysctl_in(node, "net.ipv4.ip_forward", "1")
        # Pod-to-pod packets enter and leave by cni0; the node must not answer them with "go direct" redirects
        # (send_redirects is OR-ed between `all` and the device).
        for dev in ("all", "default", "cni0"):
            sysctl_in(node, f"net.ipv4.conf.{dev}.send_redirects", "0")
        nsutil.run([*nsutil.nsenter_argv(net=self.node_netns_path), "nft", "-f", "-"], input=NFT_RULES)

    def teardown(self) -> None:
        """Remove both namespaces (their links and nftables rules go with them)."""
        for ns in (self.names.node_netns, self.names.ext_netns):
            if netns_exists(ns):
                nsutil.ip(None, "netns", "del", ns)
