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
from labkit.node.workloads.proctitle import set_process_title


def run(spec: dict[str, Any], started: Callable[[], None] = lambda: None) -> int:
    """Run the workload `spec`. A workload that execs a program reports its start by the exec itself (its
    failure raises); a workload in Python calls `started` before it runs."""
    kind = spec["kind"]
    if kind == "exec":
        argv = spec["argv"]
        os.execvpe(argv[0], argv, {**os.environ, **(spec.get("env") or {})})  # never returns
    started()
    title = process_title(spec)
    if title:
        set_process_title(title, dict(os.environ))
    if kind == "nginx":
        return nginx.main(spec)
    if kind == "agnhost":
        return agnhost.main(spec)
    if kind == "webhost":
        return webhost.main(spec)
    raise ValueError(f"unknown workload kind {kind!r}")


def process_title(spec: dict[str, Any]) -> list[str]:
    """The command line the image's process shows (`ps` in the container): its ENTRYPOINT and arguments."""
    if spec.get("title"):
        return list(spec["title"])
    if spec["kind"] == "agnhost":
        return ["/agnhost", *(spec.get("argv") or ["pause"])]
    if spec["kind"] == "nginx":
        return ["nginx: master process nginx -g daemon off;"]  # nginx's own setproctitle
    return []
