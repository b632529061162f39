"""Which backend a LABKIT_HOME holds: one cluster per home, so `labkit down`, `status`, `kubeconfig` and the tools
find it again without being told the backend.

    <home>/kind/cluster.json         a kind cluster (labkit.backends.kind)
    <home>/existing/cluster.json     a cluster that already existed (labkit.backends.existing, `--backend kubeconfig`)
    anything else                    the embedded cluster (labkit.backends.embedded)
"""

from __future__ import annotations

from pathlib import Path

from labkit import errors

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
