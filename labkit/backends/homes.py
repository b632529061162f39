"""Which backend a LABKIT_HOME holds: one cluster per home, so `labkit down`, `status`, `kubeconfig` and the tools
find it again without being told the backend.

    <home>/kind/cluster.json         a kind cluster (labkit.backends.kind)
    <home>/existing/cluster.json     a cluster that already existed (labkit.backends.kubeconfig)
    anything else                    the embedded cluster (labkit.backends.embedded)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from labkit import errors
from labkit.backends.base import Backend, get_backend

MARKERS = {"kind": ("kind", "cluster.json"), "kubeconfig": ("existing", "cluster.json")}


def backend_at(home: Path) -> str:
    for backend, parts in MARKERS.items():
        if Path(home).joinpath(*parts).exists():
            return backend
    return "embedded"


def claim(home: Path, backend: str) -> None:
    """Refuse to start `backend` at a home that holds another backend's cluster."""
    held = backend_at(home)
    if held == "embedded" and backend != "embedded":
        from labkit.backends import embedded

        if embedded.supervisor_pid(embedded.Paths(Path(home))) is None:
            return
    elif held == backend:
        return
    raise errors.ClusterError(f"{home} holds a {held} cluster; `labkit down` it first, or use another --home")


def backend_for(home: Path, name: str | None = None, args: argparse.Namespace | None = None) -> Backend:
    """The backend `name` (default: the one `home` holds) at `home`, with the options `labkit up` was given."""
    chosen = name or backend_at(home)
    options: dict[str, object] = {}
    if args is not None and chosen == "kind":
        options = {"cluster_name": args.name, "image": args.image, "nodes": args.nodes, "proxy": args.proxy,
                   "kind_bin": args.kind_bin, "kubectl_bin": args.kubectl_bin}
    elif args is not None and chosen == "kubeconfig":
        options = {"kubeconfig": args.kubeconfig, "context": args.context, "learner": args.learner}
    return get_backend(chosen, home=home, **options)
