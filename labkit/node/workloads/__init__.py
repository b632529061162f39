"""Built-in workloads: what a container of a known image runs inside its pod (see labkit.node.images).

`run(spec)` is called in a freshly forked child of the zygote that has already joined the pod's
namespaces; `spec["kind"]` picks the workload. Everything is imported up front so forked children share
the code pages with the zygote.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from labkit.node.workloads import agnhost, nginx, webhost


def run(spec: dict[str, Any], started: Callable[[], None] = lambda: None) -> int:
    """Run the workload `spec`. A workload that execs a program reports its start by the exec itself (its
    failure raises); a workload in Python calls `started` before it runs."""
    kind = spec["kind"]
    if kind == "exec":
        argv = spec["argv"]
        os.execvpe(argv[0], argv, {**os.environ, **(spec.get("env") or {})})  # never returns
    started()
    if kind == "nginx":
        return nginx.main(spec)
    if kind == "agnhost":
        return agnhost.main(spec)
    if kind == "webhost":
        return webhost.main(spec)
    raise ValueError(f"unknown workload kind {kind!r}")
