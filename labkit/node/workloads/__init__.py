"""Built-in workloads: what a container of a known image runs inside its pod (see labkit.node.images).

`run(spec)` is called in a freshly forked child of the zygote that has already joined the pod's
namespaces; `spec["kind"]` picks the workload. Everything is imported up front so forked children share
the code pages with the zygote.
"""

from __future__ import annotations

import os
from typing import Any

from labkit.node.workloads import agnhost, nginx, toolbox, webhost


def run(spec: dict[str, Any]) -> int:
    kind = spec["kind"]
    if kind == "nginx":
        return nginx.main(spec)
    if kind == "agnhost":
        return agnhost.main(spec)
    if kind == "toolbox":
        return toolbox.main(spec)
    if kind == "webhost":
        return webhost.main(spec)
    if kind == "exec":
        argv = spec["argv"]
        os.execvp(argv[0], argv)  # never returns
    raise ValueError(f"unknown workload kind {kind!r}")
