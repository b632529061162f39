"""`pods/exec` and `pods/log`: served by the API server from the node's state on this host.

The embedded node keeps each pod's namespaces and container logs under the
cluster's state directory; the node agent (issue "Embedded cluster 3/5")
provides them. Until it runs, these routes answer with a clear error.
"""

from __future__ import annotations

from pathlib import Path

from labkit.apiserver.server import ApiServer


def install(server: ApiServer, home: Path) -> None:
    """Attach exec/log handlers when the node package provides them."""
    try:
        from labkit.node import podio as node_podio  # type: ignore[attr-defined]
    except ImportError:
        return
    node_podio.install(server, home)
