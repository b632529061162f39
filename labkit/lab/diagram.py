"""`Lab.diagram(service)`: a Service drawn as what it configures, from the live objects, as an offline SVG.

    DNS name ──A──▶ cluster IP ──▶ virtual server ──▶ real servers ──▶ pods      (ClusterIP, NodePort)
    DNS name ──A──▶ pods                                                       (headless)
    DNS name ──CNAME──▶ external name                                          (ExternalName)

Drawn by graphviz's `dot` (a Debian package that `./run` installs); the text form lists the same edges.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

from labkit import errors

if TYPE_CHECKING:
    from labkit.lab.core import Lab

CLUSTER_DOMAIN = "cluster.local"


class Diagram:
    """Graphviz source, shown as SVG in a notebook and as its edges in text."""

    def __init__(self, title: str, nodes: dict[str, tuple[str, str]], edges: list[tuple[str, str, str]]) -> None:
        self.title = title
        self.nodes = nodes  # id -> (label, style)
        self.edges = edges  # (from, to, label)

    @property
    def dot(self) -> str:
        styles = {"dns": 'shape=note style=filled fillcolor="#fff2cc"',
                  "ip": 'shape=box style="rounded,filled" fillcolor="#dae8fc"',
                  "vs": 'shape=box style=filled fillcolor="#d5e8d4"',
                  "rs": 'shape=box style=filled fillcolor="#e1f5e1"',
                  "rs0": 'shape=box style="filled,dashed" fillcolor="#eeeeee"',
                  "pod": 'shape=component style=filled fillcolor="#f8cecc"',
                  "pod-notready": 'shape=component style="filled,dashed" fillcolor="#eeeeee"',
                  "ext": 'shape=box style="rounded,dashed"'}
        lines = ["digraph service {", "  rankdir=LR;", '  node [fontname="Helvetica" fontsize=10];',
                 '  edge [fontname="Helvetica" fontsize=9];',
                 f'  label="{_esc(self.title)}"; labelloc=t; fontname="Helvetica";']
        for node_id, (label, style) in self.nodes.items():
            lines.append(f'  "{_esc(node_id)}" [label="{_esc(label)}" {styles.get(style, "")}];')
        for a, b, label in self.edges:
            lines.append(f'  "{_esc(a)}" -> "{_esc(b)}" [label="{_esc(label)}"];')
        lines.append("}")
        return "\n".join(lines)

    def svg(self) -> str:
        if shutil.which("dot") is None:
            raise errors.Unavailable("graphviz's `dot` is not installed (Debian: apt-get install graphviz; "
                                     "`./run setup` does it)")
        return subprocess.run(["dot", "-Tsvg"], input=self.dot, capture_output=True, text=True, check=True).stdout

    def _repr_svg_(self) -> str | None:
        try:
            return self.svg()
        except (errors.Unavailable, subprocess.CalledProcessError):
            return None  # the notebook shows the text form instead

    def __str__(self) -> str:
        lines = [self.title]
        for a, b, label in self.edges:
            lines.append(f"  {self.nodes[a][0].splitlines()[0]} --{label}--> {self.nodes[b][0].replace(chr(10), ' ')}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def service_diagram(lab: Lab, service: str, namespace: str) -> Diagram:
    svc = lab.resource("service", service, namespace)
    spec = svc.get("spec") or {}
    fqdn = f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}"
    nodes: dict[str, tuple[str, str]] = {"dns": (fqdn, "dns")}
    edges: list[tuple[str, str, str]] = []
    kind = spec.get("type", "ClusterIP")
    title = f"Service {namespace}/{service} ({kind}{', headless' if spec.get('clusterIP') == 'None' else ''})"
    if kind == "ExternalName":
        nodes["ext"] = (spec.get("externalName", "?"), "ext")
        edges.append(("dns", "ext", "CNAME"))
        return Diagram(title, nodes, edges)
    endpoints = lab.endpoints(service, namespace=namespace)
    slices = endpoints[endpoints["object"].str.startswith("EndpointSlice/")]
    pods: dict[str, str] = {}  # address -> node id
    for row in slices.itertuples(index=False):
        node_id = f"pod:{row.address}"
        if node_id in nodes:
            continue
        state = "ready" if row.ready else ("terminating" if row.terminating else "not ready")
        nodes[node_id] = (f"{row.pod or '(no pod)'}\n{row.address}\n{state}", "pod" if row.ready else "pod-notready")
        pods[row.address] = node_id
    if spec.get("clusterIP") in (None, "", "None"):
        for node_id in pods.values():
            if nodes[node_id][1] == "pod":  # DNS lists ready endpoints only
                edges.append(("dns", node_id, "A"))
        return Diagram(title, nodes, edges)
    for ip in spec.get("clusterIPs") or [spec["clusterIP"]]:
        nodes[f"ip:{ip}"] = (f"cluster IP\n{ip}", "ip")
        edges.append(("dns", f"ip:{ip}", "A"))
    table = lab.ipvs(service, namespace=namespace)
    for vs in table.to_model():
        vs_id = f"vs:{vs.protocol}:{vs.address}:{vs.port}"
        flags = f" persistent {vs.timeout}" if vs.persistent else ""
        nodes[vs_id] = (f"virtual server\n{vs.protocol} {vs.address}:{vs.port}\n{vs.scheduler}{flags}", "vs")
        source = f"ip:{vs.address}" if f"ip:{vs.address}" in nodes else None
        if source is None:  # a NodePort or external address: the node's own
            source = f"addr:{vs.address}"
            nodes.setdefault(source, (f"node address\n{vs.address}", "ip"))
        edges.append((source, vs_id, f"{vs.protocol}/{vs.port}"))
        for rs in vs.destinations:
            rs_id = f"rs:{rs.address}:{rs.port}:{vs_id}"
            nodes[rs_id] = (f"real server\n{rs.address}:{rs.port}\nweight {rs.weight}", "rs" if rs.weight else "rs0")
            edges.append((vs_id, rs_id, ""))
            if rs.address in pods:
                edges.append((rs_id, pods[rs.address], ""))
    return Diagram(title, nodes, edges)
