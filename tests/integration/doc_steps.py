"""Helpers for tests that follow the Kubernetes documentation's pages step by step on the embedded cluster.

Every request to a cluster address runs inside the cluster (`kubectl exec` into a pod, or labkit's node
namespace through `labkit curl`/`labkit dig`), never from the host's namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.backends import embedded
from tests.conftest import Cluster, kubectl_binary, wait_for

NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nsenter", "unshare", "nft")),
    reason="needs root and ip/nsenter/unshare/nft")


@contextlib.contextmanager
def cluster_of_its_own(home: Path) -> Iterator[Cluster]:
    """A usable embedded cluster (node Ready, cluster DNS answering) for one page: the pages work in the
    `default` namespace and some edit cluster-wide objects (the coredns ConfigMap)."""
    paths, _ = embedded.up(home, timeout=60)
    try:
        embedded.wait_usable(paths, timeout=60)
        yield Cluster(home=home, kubeconfig=paths.kubeconfig, cache_dir=home.parent / f"{home.name}-kubectl-cache")
    finally:
        embedded.down(home)


class Page:
    """One documentation page followed on one cluster: kubectl as a reader types it, plus what the page's
    steps need (waiting for pods, running commands in a pod or on the node)."""

    def __init__(self, cluster: Any, namespace: str = "default") -> None:
        self.cluster = cluster
        self.ns = namespace
        self.state: dict[str, Any] = {}

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, check=check, input=input, timeout=timeout)

    def out(self, *args: str, input: str | None = None) -> str:
        """stdout of a kubectl command that must succeed."""
        return self.kubectl(*args, input=input).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.out(*args, "-o", "json"))

    def apply(self, manifest: str) -> str:
        return self.out("apply", "-f", "-", input=manifest)

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return self.json("get", "pods", "-l", selector)["items"]

    def wait_pods_ready(self, selector: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        """The `count` pods of `selector`, once all are Ready (and no other is left terminating)."""
        def ready() -> list[dict[str, Any]] | None:
            pods = [p for p in self.pods(selector) if not p["metadata"].get("deletionTimestamp")]
            ok = len(pods) == count and all(
                any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
                for p in pods)
            return pods if ok and len(self.pods(selector)) == count else None

        return wait_for(ready, f"{count} ready pods of {selector}", timeout)

    def wait_pod_ready(self, name: str, timeout: float = 60) -> dict[str, Any]:
        self.kubectl("wait", "--for=condition=Ready", f"pod/{name}", f"--timeout={int(timeout)}s",
                     timeout=timeout + 15)
        return self.json("get", "pod", name)

    def exec(self, pod: str, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`kubectl exec POD -- COMMAND` (a command a reader types inside the pod)."""
        return self.kubectl("exec", pod, "--", *command, check=check)

    def sh(self, pod: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.exec(pod, "sh", "-c", script, check=check)

    def interactive(self, args: list[str], typed: str = "", timeout: float = 120) -> tuple[int, str]:
        """`kubectl ARGS` on a terminal of its own (`kubectl run -it`, `exec -it`): type `typed` into the shell
        once it shows a prompt, return (exit status, everything the terminal showed).

        As kubectl says ("If you don't see a command prompt, try pressing enter"): the shell's first prompt may
        have come before kubectl attached, so press enter and wait for the prompt it brings. Typed before the
        shell takes the terminal, the input would be echoed by the terminal ahead of the prompt instead."""
        import pty
        import select

        binary = kubectl_binary("1.32")
        if binary is None:
            pytest.skip("kubectl 1.32 is not installed beside kubectl")
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig), "TERM": "xterm"}
        pid, fd = pty.fork()
        if pid == 0:  # the child: kubectl on the terminal
            os.execve(str(binary), [str(binary), f"--cache-dir={self.cluster.cache_dir / '1.32'}", *args], env)
        shown = b""
        sent, entered = not typed, False
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.5)
                if not ready:
                    continue
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: kubectl has exited and the terminal closed
                    break
                if not chunk:
                    break
                shown += chunk
                hint = shown.find(b"try pressing enter")
                if sent or hint < 0:
                    continue
                if not entered:
                    os.write(fd, b"\n")
                    entered = True
                elif shown[hint:].endswith((b"# ", b"$ ")):  # the prompt, after the enter
                    os.write(fd, typed.encode())
                    sent = True
            else:
                os.kill(pid, 9)
                raise AssertionError(f"kubectl {' '.join(args)} still runs after {timeout}s: {shown!r}")
        finally:
            os.close(fd)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), shown.decode(errors="replace").replace("\r\n", "\n")

    def labkit(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`labkit …` against this cluster: what a reader runs "on a node" (the node's namespace)."""
        proc = subprocess.run([sys.executable, "-m", "labkit", "--home", str(self.cluster.home), *args],
                              capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"labkit {' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
        return proc

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.json("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]


def table(text: str) -> list[dict[str, str]]:
    """kubectl's table output as rows keyed by column header. Headers may hold a space ("NOMINATED NODE") and
    cells may be empty, so columns are cut where the header's names start (kubectl pads with 3 spaces)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    spans = [(m.start(), m.group()) for m in re.finditer(r"\S+(?: \S+)*", header)]
    starts = [start for start, _ in spans]
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip([name for _, name in spans], cells, strict=True)))
    return rows
