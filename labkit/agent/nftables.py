"""kube-proxy's nftables mode: the desired `ServicePort`s rendered as kube-proxy's `ip kube-proxy` table, programmed
into the node namespace's kernel with `nft -f` transactions.

Facts followed (kubernetes/kubernetes pkg/proxy/nftables/proxier.go as of v1.32/v1.33, its proxier_test.go, and
/work/shared/reference/nftables.md, which cites them):
- One table `ip kube-proxy`. Base chains in the layout used up to v1.33: filter-{prerouting,input,forward,output}
  at priority -110 (dstnat - 10, before DNAT), filter-output-post-dnat at -90, nat-prerouting and nat-output at
  -100 (dstnat), nat-postrouting at 100 (srcnat). The first sync of a process adds then deletes each base chain so
  that a changed priority applies.
- Dispatch: `services` looks `ip daddr . meta l4proto . th dport` up in the `service-ips` verdict map (ClusterIPs,
  external and load-balancer IPs) and, for the node's addresses (`nodeport-ips`, kube-proxy's
  `--nodeport-addresses primary`), `meta l4proto . th dport` in `service-nodeports`.
- A service port's chain `service-HASH-ns/svc/proto/port` (HASH: the first 8 characters of the base32 SHA-256 of
  the rest of the name) masquerades traffic to the ClusterIP from outside the pod network, then spreads new
  connections with `numgen random mod N vmap` over endpoint chains `endpoint-HASH-ns/svc/proto/port__ip/port`, each
  of which marks hairpin traffic for masquerade and DNATs. `external-…` chains mark NodePort/external traffic for
  masquerade (externalTrafficPolicy Cluster) or short-circuit pod and local traffic (Local); `local-…` chains hold
  the local endpoints; `firewall-…` chains drop sources outside loadBalancerSourceRanges.
- ClientIP affinity: one timed set `affinity-…` per endpoint (`flags dynamic,timeout`, the Service's timeout),
  checked with `ip saddr @affinity-… goto endpoint-…` before the `numgen`, refreshed by
  `update @affinity-… { ip saddr }` in the endpoint chain.
- No endpoints at all: no nat chains, and `goto reject-chain` elements in `no-endpoint-services` /
  `no-endpoint-nodeports`, checked from the filter chains for new connections: the client is refused at once. A
  Local traffic policy with no local endpoint drops instead. Other ports of a ClusterIP are rejected by
  `cluster-ips-check` (so is ICMP: a ClusterIP does not answer ping). The "Drop traffic to unallocated ClusterIPs"
  rule needs the ServiceCIDR informer (MultiCIDRServiceAllocator, off by default in v1.32), so it is not written.
- Syncs: a full sync (the first one, after a failure) re-creates the base chains, flushes and refills the maps,
  rewrites every service's chains and flushes chains that are no longer used, all in one transaction, so a
  restarted agent replaces what the previous one left atomically and established connections (conntrack) never
  notice. A partial sync rewrites only the chains of the Services that changed and adds or deletes only their map
  elements. Stale chains are flushed at once and deleted over a second later in a transaction of their own (before
  kernel 6.2 a chain dropped from a map is noticed as unreferenced a little late); stale affinity sets are deleted
  at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from labkit.agent.desired import Endpoint, ServicePort
from labkit.agent.model import RealServer, VirtualServer, VSKey

log = logging.getLogger(__name__)

TABLE = "ip kube-proxy"
MASQUERADE_MARK = "0x4000"  # 1 << --iptables-masquerade-bit (14)
STALE_CHAIN_DELAY = 1.0  # seconds a flushed chain waits before it is deleted
NAME_BASE_MAX = 256 - 16  # knftables.NameLengthMax minus the longest prefix

# (name, type, hook, priority): the base chains, v1.32/v1.33 layout.
BASE_CHAINS = (
    ("filter-prerouting", "filter", "prerouting", -110),
    ("filter-input", "filter", "input", -110),
    ("filter-forward", "filter", "forward", -110),
    ("filter-output", "filter", "output", -110),
    ("filter-output-post-dnat", "filter", "output", -90),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)
# (chain, from base chain, match): the jumps from the base chains, in kube-proxy's order.
JUMPS = (
    ("nodeport-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-forward", "ct state new"),
    ("service-endpoints-check", "filter-output", "ct state new"),
    ("firewall-check", "filter-prerouting", "ct state new"),
    ("firewall-check", "filter-output", "ct state new"),
    ("services", "nat-output", ""),
    ("services", "nat-prerouting", ""),
    ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new"),
    ("cluster-ips-check", "filter-output-post-dnat", "ct state new"),
)
# The sets and maps whose elements belong to Services.
CONTAINERS = {
    "cluster-ips": ("set", "type ipv4_addr ; comment \"Active ClusterIPs\""),
    "service-ips": ("map", "type ipv4_addr . inet_proto . inet_service : verdict ; "
                           "comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\""),
    "service-nodeports": ("map", "type inet_proto . inet_service : verdict ; comment \"NodePort traffic\""),
    "no-endpoint-services": ("map", "type ipv4_addr . inet_proto . inet_service : verdict ; "
                                    "comment \"vmap to drop or reject packets to services with no endpoints\""),
    "no-endpoint-nodeports": ("map", "type inet_proto . inet_service : verdict ; "
                                     "comment \"vmap to drop or reject packets to service nodeports with no "
                                     "endpoints\""),
    "firewall-ips": ("map", "type ipv4_addr . inet_proto . inet_service : verdict ; "
                            "comment \"destinations that are subject to LoadBalancerSourceRanges\""),
}


# ---- names -----------------------------------------------------------------------------------------------------

def hash_and_truncate(name: str) -> str:
    """`HASH-name`: HASH is the first 8 characters of the base32 SHA-256 of `name` (kube-proxy's hashAndTruncate)."""
    out = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode()[:8] + "-" + name
    return out if len(out) <= NAME_BASE_MAX else out[:NAME_BASE_MAX - 3] + "..."


def service_base(sp: ServicePort) -> str:
    return hash_and_truncate(f"{sp.namespace}/{sp.name}/{sp.protocol.lower()}/{sp.port_name}")


def endpoint_base(sp: ServicePort, ep: Endpoint) -> str:
    ip = ep.ip.replace(":", ".")
    return hash_and_truncate(f"{sp.namespace}/{sp.name}/{sp.protocol.lower()}/{sp.port_name}__{ip}/{ep.port}")


def is_service_chain(name: str) -> bool:
    """Service and endpoint chains have a `/` in their names; kube-proxy's fixed chains do not."""
    return "/" in name


# ---- one Service's share of the table --------------------------------------------------------------------------

ElementKey = tuple[str, str]  # (set or map, key)


@dataclass
class Element:
    value: str = ""  # a map's verdict ("goto service-…", "drop"); "" for a set element
    comment: str | None = None


@dataclass
class Fragment:
    """Everything one Service contributes: its chains with their rules, affinity sets (name → timeout), elements
    of the shared sets and maps, and (for the agent's `wait`) a virtual-server view of its ClusterIP ports."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    sets: dict[str, int] = field(default_factory=dict)
    elements: dict[ElementKey, Element] = field(default_factory=dict)
    views: dict[VSKey, VirtualServer] = field(default_factory=dict)


def render_service(ports: Iterable[ServicePort], cluster_cidr: str) -> Fragment:
    """One Service's chains, affinity sets and elements, as kube-proxy's syncProxyRules writes them."""
    frag = Fragment()
    for sp in ports:
        _render_port(frag, sp, cluster_cidr)
    return frag


def _render_port(frag: Fragment, sp: ServicePort, cluster_cidr: str) -> None:
    proto, base = sp.protocol.lower(), service_base(sp)
    cluster_chain, local_chain = "service-" + base, "local-" + base
    external_chain, firewall_chain = "external-" + base, "firewall-" + base
    uses_cluster = not sp.internal_local or (sp.externally_accessible and not sp.external_local)
    uses_local = sp.internal_local or sp.external_local
    ep_chain = {ep: "endpoint-" + endpoint_base(sp, ep) for ep in sp.reachable}
    affinity = {ep: "affinity-" + endpoint_base(sp, ep) for ep in sp.reachable} if sp.affinity_timeout else {}

    chains = frag.chains
    for name in ep_chain.values():
        chains.setdefault(name, [])
    uses_cluster_chain = bool(sp.cluster) and uses_cluster
    if uses_cluster_chain:
        chains.setdefault(cluster_chain, [])
    uses_local_chain = bool(sp.local) and uses_local
    if uses_local_chain:
        chains.setdefault(local_chain, [])
    internal_chain, has_internal = cluster_chain, sp.has_endpoints
    if sp.internal_local:
        internal_chain, has_internal = local_chain, has_internal and bool(sp.local)
    external_policy_chain, has_external = cluster_chain, sp.has_endpoints
    if sp.external_local:
        external_policy_chain, has_external = local_chain, has_external and bool(sp.local)
    uses_external_chain = sp.has_endpoints and sp.externally_accessible
    if uses_external_chain:
        chains.setdefault(external_chain, [])
    internal_verdict = external_verdict = "goto reject-chain"
    if sp.has_endpoints:
        internal_verdict = "" if has_internal else "drop"
        external_verdict = "" if has_external else "drop"

    def element(container: str, key: str, value: str = "", comment: str | None = None) -> None:
        frag.elements[(container, key)] = Element(value, comment)

    element("cluster-ips", sp.cluster_ip)
    vip_key = f"{sp.cluster_ip} . {proto} . {sp.port}"
    if has_internal:
        element("service-ips", vip_key, f"goto {internal_chain}")
    else:
        element("no-endpoint-services", vip_key, internal_verdict, sp.port_key)
    for ip in sp.external_ips + sp.lb_ips:
        key = f"{ip} . {proto} . {sp.port}"
        if sp.has_endpoints:
            element("service-ips", key, f"goto {external_chain}")
        if not has_external:
            element("no-endpoint-services", key, external_verdict, sp.port_key)
    uses_firewall = bool(sp.lb_ips) and bool(sp.lb_source_ranges)
    if uses_firewall:
        chains.setdefault(firewall_chain, [])
        for ip in sp.lb_ips:
            element("firewall-ips", f"{ip} . {proto} . {sp.port}", f"goto {firewall_chain}")
    if sp.node_port:
        key = f"{proto} . {sp.node_port}"
        if sp.has_endpoints:
            element("service-nodeports", key, f"goto {external_chain}")
        if not has_external:
            element("no-endpoint-nodeports", key, external_verdict, sp.port_key)

    if has_internal:
        chains[internal_chain].append(f"ip daddr {sp.cluster_ip} {proto} dport {sp.port} ip saddr != {cluster_cidr} "
                                      "jump mark-for-masquerade")
        view = VirtualServer(sp.protocol, sp.cluster_ip, sp.port)
        view.destinations = [RealServer(e.ip, e.port) for e in (sp.local if sp.internal_local else sp.cluster)]
        frag.views[view.key] = view
    else:
        frag.views[(sp.protocol, sp.cluster_ip, sp.port)] = VirtualServer(sp.protocol, sp.cluster_ip, sp.port)
    if uses_external_chain:
        rules = chains[external_chain]
        if not sp.external_local:
            rules.append("jump mark-for-masquerade")
        else:
            if uses_cluster_chain:
                rules.append(f"ip saddr {cluster_cidr} goto {cluster_chain} comment \"short-circuit pod traffic\"")
            rules.append("fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"")
            if uses_cluster_chain:
                rules.append(f"fib saddr type local goto {cluster_chain} comment \"short-circuit local traffic\"")
        if has_external:
            rules.append(f"goto {external_policy_chain}")
    if uses_firewall:
        sources = list(sp.lb_source_ranges)
        chains[firewall_chain].append(f"ip saddr != {{ {', '.join(sources)} }} drop")
    for name in affinity.values():
        frag.sets[name] = sp.affinity_timeout
    if uses_cluster_chain:
        _spread(chains[cluster_chain], sp.cluster, ep_chain, affinity)
    if uses_local_chain:
        _spread(chains[local_chain], sp.local, ep_chain, affinity)
    for ep, name in ep_chain.items():
        rules = chains[name]
        rules.append(f"ip saddr {ep.ip} jump mark-for-masquerade")
        if ep in affinity:
            rules.append(f"update @{affinity[ep]} {{ ip saddr }}")
        rules.append(f"meta l4proto {proto} dnat to {ep.ip}:{ep.port}")


def _spread(rules: list[str], eps: list[Endpoint], ep_chain: dict[Endpoint, str], affinity: dict[Endpoint, str]
            ) -> None:
    for ep in eps:
        if ep in affinity:
            rules.append(f"ip saddr @{affinity[ep]} goto {ep_chain[ep]}")
    vmap = " , ".join(f"{i} : goto {ep_chain[ep]}" for i, ep in enumerate(eps))
    rules.append(f"numgen random mod {len(eps)} vmap {{ {vmap} }}")


# ---- transactions ----------------------------------------------------------------------------------------------

def _element_line(verb: str, container: str, key: str, el: Element | None) -> str:
    if el is None or verb == "delete":
        return f"delete element {TABLE} {container} {{ {key} }}"
    comment = f" comment \"{el.comment}\"" if el.comment else ""
    value = f" : {el.value}" if el.value else ""
    return f"add element {TABLE} {container} {{ {key}{comment}{value} }}"


def setup_lines(node_ips: Iterable[str], first: bool) -> Iterator[str]:
    """The table, its base chains, fixed chains, sets and maps, with the Service containers flushed
    (setupNFTables)."""
    t = TABLE
    yield f"add table {t} {{ comment \"rules for kube-proxy\" ; }}"
    if first:
        for name, *_ in BASE_CHAINS:
            yield f"add chain {t} {name}"
            yield f"delete chain {t} {name}"
    for name, typ, hook, prio in BASE_CHAINS:
        yield f"add chain {t} {name} {{ type {typ} hook {hook} priority {prio} ; }}"
        yield f"flush chain {t} {name}"
    created: set[str] = set()

    def ensure(chain: str) -> Iterator[str]:
        if chain not in created:
            created.add(chain)
            yield f"add chain {t} {chain}"
            yield f"flush chain {t} {chain}"

    for chain, src, match in JUMPS:
        yield from ensure(chain)
        yield f"add rule {t} {src} {match + ' ' if match else ''}jump {chain}"
    for chain in ("services", "cluster-ips-check", "masquerading", "mark-for-masquerade"):
        yield from ensure(chain)
    yield f"add rule {t} mark-for-masquerade mark set mark or {MASQUERADE_MARK}"
    yield f"add rule {t} masquerading mark and {MASQUERADE_MARK} == 0 return"
    yield f"add rule {t} masquerading mark set mark xor {MASQUERADE_MARK}"
    yield f"add rule {t} masquerading masquerade fully-random"
    yield f"add set {t} cluster-ips {{ {CONTAINERS['cluster-ips'][1]} ; }}"
    yield (f"add rule {t} cluster-ips-check ip daddr @cluster-ips reject "
           "comment \"Reject traffic to invalid ports of ClusterIPs\"")
    yield f"add set {t} nodeport-ips {{ type ipv4_addr ; comment \"IPs that accept NodePort traffic\" ; }}"
    yield f"flush set {t} nodeport-ips"
    for ip in node_ips:
        yield f"add element {t} nodeport-ips {{ {ip} }}"
    for name in ("no-endpoint-services", "no-endpoint-nodeports"):
        yield f"add map {t} {name} {{ {CONTAINERS[name][1]} ; }}"
    yield f"add chain {t} reject-chain {{ comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ; }}"
    yield f"flush chain {t} reject-chain"
    yield f"add rule {t} reject-chain reject"
    yield f"add rule {t} service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services"
    yield (f"add rule {t} nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport "
           "vmap @no-endpoint-nodeports")
    yield f"add map {t} firewall-ips {{ {CONTAINERS['firewall-ips'][1]} ; }}"
    yield from ensure("firewall-check")
    yield f"add rule {t} firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips"
    for name in ("service-ips", "service-nodeports"):
        yield f"add map {t} {name} {{ {CONTAINERS[name][1]} ; }}"
    yield f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips"
    yield f"add rule {t} services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"
    for name, (kind, _) in CONTAINERS.items():
        yield f"flush {kind} {t} {name}"


def _service_lines(frag: Fragment) -> Iterator[str]:
    """Create (or empty) a Service's chains and affinity sets, then write its rules."""
    for chain in frag.chains:
        yield f"add chain {TABLE} {chain}"
        yield f"flush chain {TABLE} {chain}"
    for name, timeout in frag.sets.items():
        yield f"add set {TABLE} {name} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"
    for chain, rules in frag.chains.items():
        for rule in rules:
            yield f"add rule {TABLE} {chain} {rule}"


class NftError(RuntimeError):
    """`nft` refused a transaction or a listing."""


def run_nft(args: list[str], stdin: str | None = None) -> str:
    """Run the `nft` binary (in this process's network namespace: the agent's is the node's)."""
    proc = subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise NftError(f"nft {' '.join(args)}: {proc.stderr.strip()[:2000]}")
    return proc.stdout


def list_table_objects() -> tuple[set[str], set[str]]:
    """The chains and the sets of the kube-proxy table as the kernel has them (none if there is no table). Listed
    without their rules and elements: listing a thousand Services' rules would cost more than rewriting them."""
    family, table = TABLE.split()
    chains, sets = set(), set()
    for what, names in (("chains", chains), ("sets", sets)):
        doc = json.loads(run_nft(["--json", "--terse", "list", what, family]) or "{}")
        for obj in doc.get("nftables", []):
            item = obj.get(what[:-1])
            if item is not None and item.get("table") == table:
                names.add(item["name"])
    return chains, sets


# ---- the proxier -----------------------------------------------------------------------------------------------

class NftablesProxier:
    """Keeps the `ip kube-proxy` table equal to the desired ServicePorts, one `nft -f` transaction per sync."""

    def __init__(self, node_ips: list[str], cluster_cidr: str = "10.244.0.0/16",
                 run: object = run_nft, lister: object = list_table_objects) -> None:
        self.node_ips = node_ips
        self.cluster_cidr = cluster_cidr
        self._run = run
        self._list = lister
        self.fragments: dict[object, Fragment] = {}
        self.views: dict[VSKey, VirtualServer] = {}
        self.stale: dict[str, float] = {}  # flushed chains waiting to be deleted -> when they went stale
        self.flushed = False  # base chains re-created once per process
        self.failures = 0
        self.last_transaction = ""
        self.last_chains: list[str] = []  # the service and endpoint chains the last transaction wrote or flushed

    def sync(self, ports: dict[object, list[ServicePort]], changed: set[object] | None) -> int:
        """A full sync (`changed` None) or a partial one over the Services in `changed`; returns the number of
        lines of the transaction. Raises NftError when `nft` refuses it (nothing changed then)."""
        self._delete_stale()
        full = changed is None
        keys = set(ports) | set(self.fragments) if full else set(changed)  # type: ignore[arg-type]
        new = {key: render_service(ports[key], self.cluster_cidr) for key in keys if key in ports}
        lines: list[str] = []
        if full:
            lines.extend(setup_lines(self.node_ips, not self.flushed))
        active_chains: set[str] = set()
        for key in sorted(keys, key=str):
            frag = new.get(key)
            old = self.fragments.get(key)
            if frag is not None:
                lines.extend(_service_lines(frag))
                active_chains.update(frag.chains)
            lines.extend(self._element_lines(old, frag, full))
        now = time.monotonic()
        if full:
            existing_chains, existing_sets = self._list()  # type: ignore[operator]
            gone_chains = {c for c in existing_chains if is_service_chain(c)} | set(self.stale)
            active_sets = {s for f in new.values() for s in f.sets}
            gone_sets = {s for s in existing_sets if s.startswith("affinity-")} - active_sets
        else:
            gone_chains = {c for key in keys if (old := self.fragments.get(key)) for c in old.chains}
            gone_sets = {s for key in keys if (old := self.fragments.get(key)) for s in old.sets}
            gone_sets -= {s for f in new.values() for s in f.sets}
        gone_chains -= active_chains
        for chain in sorted(gone_chains):
            lines.append(f"flush chain {TABLE} {chain}")
        for name in sorted(gone_sets):
            lines.append(f"delete set {TABLE} {name}")
        if lines:
            self.last_transaction = "\n".join(lines) + "\n"
            self._run(["-f", "-"], self.last_transaction)  # type: ignore[operator]
            self.last_chains = sorted(active_chains | gone_chains)
        # committed: remember what the kernel now holds
        self.flushed = True
        for chain in active_chains:
            self.stale.pop(chain, None)
        for chain in gone_chains:
            self.stale.setdefault(chain, now)
        for key in keys:
            old = self.fragments.pop(key, None)
            if old is not None:
                for vs_key in old.views:
                    self.views.pop(vs_key, None)
            frag = new.get(key)
            if frag is not None:
                self.fragments[key] = frag
                self.views.update(frag.views)
        return len(lines)

    def _element_lines(self, old: Fragment | None, new: Fragment | None, full: bool) -> Iterator[str]:
        """Element changes of one Service (kube-proxy's nftElementStorage): after a full sync's flush, all of
        them; otherwise additions, deletions and delete-then-add for a changed value."""
        before = {} if full or old is None else old.elements
        after = {} if new is None else new.elements
        for (container, key), el in after.items():
            had = before.get((container, key))
            if had == el:
                continue
            if had is not None:
                yield _element_line("delete", container, key, None)
            yield _element_line("add", container, key, el)
        for (container, key) in before.keys() - after.keys():
            yield _element_line("delete", container, key, None)

    def stale_due(self) -> float | None:
        """Seconds until stale chains may be deleted (None: there are none)."""
        if not self.stale:
            return None
        return max(0.0, min(self.stale.values()) + STALE_CHAIN_DELAY - time.monotonic())

    def _delete_stale(self) -> None:
        """Delete the chains that have been stale for over a second, in a transaction of their own."""
        cutoff = time.monotonic() - STALE_CHAIN_DELAY
        due = sorted(c for c, t in self.stale.items() if t <= cutoff)
        if not due:
            return
        for chain in due:
            del self.stale[chain]
        try:
            self._run(["-f", "-"], "".join(f"delete chain {TABLE} {c}\n" for c in due))  # type: ignore[operator]
        except NftError:
            # still there: the next full sync lists them again
            log.exception("cannot delete %d stale chains; will retry", len(due))
            self.failures += 1


def cleanup() -> None:
    """Delete the kube-proxy table (kube-proxy's CleanupLeftovers), if there is one."""
    try:
        run_nft(["delete", "table", *TABLE.split()])
    except NftError as exc:
        if "No such file or directory" not in str(exc):
            raise
