"""What `Lab.nft()` returns: kube-proxy's nftables rules as `nft list table ip kube-proxy` prints them, whole or
only what one Service made, beside the IPVS virtual servers that the same desired state gives in IPVS mode."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from labkit.lab.results import IpvsTable, _sort_key

_NUMGEN = re.compile(r"numgen random mod (\d+) vmap")
_DNAT = re.compile(r"dnat to (\S+)$")


@dataclass
class NftRules:
    """kube-proxy's rules: `chains` (name → rules), `elements` (set or map → its elements), `text` (as nft prints
    them) and, for one Service, `ipvs`: the virtual servers IPVS mode would program for it."""

    text: str
    chains: dict[str, list[str]] = field(default_factory=dict)
    elements: dict[str, list[str]] = field(default_factory=dict)
    ipvs: IpvsTable | None = None

    @classmethod
    def parse(cls, listing: str) -> NftRules:
        """Read `nft list table ip kube-proxy`'s output."""
        chains: dict[str, list[str]] = {}
        elements: dict[str, list[str]] = {}
        kind, name, collecting, buf = "", "", False, ""
        for line in listing.splitlines():
            stripped = line.strip()
            if line.startswith("\t") and not line.startswith("\t\t") and stripped.endswith("{"):
                kind, name = stripped.split()[:2]
                if kind == "chain":
                    chains[name] = []
                continue
            if collecting or stripped.startswith("elements = {"):
                buf += " " + stripped.removeprefix("elements = {")
                collecting = not stripped.endswith("}")
                if not collecting:
                    elements[name] = [e.strip() for e in buf.rstrip("} ").split(",") if e.strip()]
                    buf = ""
                continue
            if kind == "chain" and line.startswith("\t\t") and not stripped.startswith(("type ", "comment ")):
                chains[name].append(stripped)
        return cls(listing, chains, elements)

    def only(self, namespace: str, service: str, cluster_ips: list[str]) -> NftRules:
        """The chains, sets and elements of one Service (kube-proxy names them `…-ns/svc/proto/port…`)."""
        mark = f"-{namespace}/{service}/"
        chains = {n: r for n, r in self.chains.items() if mark in n}
        elements: dict[str, list[str]] = {}
        for container, items in self.elements.items():
            ours = [e for e in items if mark in e or f'"{namespace}/{service}' in e
                    or (container == "cluster-ips" and e in cluster_ips)]
            if ours:
                elements[container] = ours
        lines = ["table ip kube-proxy {"]
        for container, items in elements.items():
            lines += [f"\t{'set' if container == 'cluster-ips' else 'map'} {container} {{",
                      f"\t\telements = {{ {', '.join(items)} }}", "\t}"]
        for n, rules in chains.items():
            lines += [f"\tchain {n} {{", *(f"\t\t{r}" for r in rules), "\t}"]
        lines.append("}")
        return NftRules("\n".join(lines) + "\n", chains, elements)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        nft = f"<pre>{html.escape(self.text)}</pre>"
        if self.ipvs is None:
            return nft
        return ("<table><tr><th style='text-align:left'>nftables mode: <code>nft list table ip kube-proxy</code>"
                "</th><th style='text-align:left'>IPVS mode: <code>ipvsadm -L -n</code></th></tr>"
                f"<tr><td style='vertical-align:top'>{nft}</td>"
                f"<td style='vertical-align:top'><pre>{html.escape(str(self.ipvs))}</pre></td></tr></table>")

    def service_chains(self) -> list[str]:
        return [n for n in self.chains if n.startswith("service-")]

    def endpoint_chains(self) -> list[str]:
        return [n for n in self.chains if n.startswith("endpoint-")]

    def dnat_targets(self) -> list[str]:
        """Where the endpoint chains send connections (`ip:port`), sorted like ipvsadm sorts real servers."""
        out = [m.group(1) for n in self.endpoint_chains() for r in self.chains[n] if (m := _DNAT.search(r))]
        return sorted(out, key=_sort_key)

    def spread(self, chain: str | None = None) -> int:
        """N in the service chain's `numgen random mod N`: over how many endpoints new connections are drawn
        (0 when there is no such rule: no endpoints)."""
        names = [chain] if chain else self.service_chains()
        for n in names:
            for rule in self.chains.get(n, []):
                if m := _NUMGEN.search(rule):
                    return int(m.group(1))
        return 0
