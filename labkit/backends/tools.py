"""The executables the kind and kubeconfig backends drive (docker, kind, kubectl): finding them, running them.

They come from PATH or from a path the user gave; labkit never downloads one behind the user's back. A tool that
fails becomes a `ClusterError` carrying its own last words (kind's "ERROR: ...", kubectl's "error: ...").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labkit import errors

EMBEDDED_HINT = "the embedded backend (`labkit up`, the default) needs neither Docker nor kind"


def find_tool(name: str, explicit: str | os.PathLike[str] | None = None, *, backend: str) -> Path:
    """The executable `name`: `explicit` when given (it must exist), else the first on PATH."""
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise errors.BackendUnavailable(f"{backend} backend: {path} is not an executable {name}")
        return path.absolute()
    found = shutil.which(name)
    if found is None:
        hint = f"; {EMBEDDED_HINT}" if backend == "kind" else ""
        raise errors.BackendUnavailable(f"{backend} backend: `{name}` is not on PATH{hint}")
    return Path(found)


def last_words(text: str) -> str:
    """A failed tool's message: its last non-empty lines that say something (kind ends with "Command Output")."""
    lines = [line.strip() for line in text.strip().splitlines()
             if line.strip() and not line.startswith("command terminated with exit code")]  # kubectl exec's
    if not lines:
        return "no output"
    message = lines[-1]
    if message.startswith("Command Output:") and len(lines) > 1:
        message = f"{lines[-2]} {message}"
    return message


def command_name(argv: Sequence[str]) -> str:
    """`kind create`, `kubectl get`: the tool and its first two words, flags left out."""
    words = [a for a in argv[1:] if not a.startswith("-")][:2]
    return " ".join([Path(argv[0]).name, *words])


def run(argv: Sequence[str | os.PathLike[str]], *, input: str | None = None, env: dict[str, str] | None = None,
        timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a tool, capturing its output; with `check`, a failure raises ClusterError with the tool's message."""
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **env} if env else None)
    except subprocess.TimeoutExpired as exc:
        raise errors.ClusterError(f"`{command_name(argv)} …` did not finish within {timeout:.0f}s") from exc
    if check and proc.returncode != 0:
        raise errors.ClusterError(f"{command_name(argv)}: {last_words(proc.stderr or proc.stdout)}")
    return proc


@dataclass
class Kubectl:
    """kubectl against one kubeconfig (and context)."""

    path: Path
    kubeconfig: Path
    context: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, *args: str) -> list[str]:
        context = [f"--context={self.context}"] if self.context else []
        return [str(self.path), f"--kubeconfig={self.kubeconfig}", *context, *args]

    def __call__(self, *args: str, input: str | None = None, timeout: float | None = None,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*args), input=input, timeout=timeout, check=check, env=self.env or None)


def list_pods(kubectl: Kubectl, namespace: str) -> list[dict]:
    """Every pod `kubectl` may list: all namespaces, or where that is refused (a learner on a shared cluster), the
    pods of `namespace`."""
    for scope in (["--all-namespaces"], ["-n", namespace]):
        proc = kubectl("get", "pods", *scope, "-o", "json", check=False, timeout=60)
        if proc.returncode == 0:
            return json.loads(proc.stdout).get("items") or []
    raise errors.ClusterError(f"the pods cannot be listed: {last_words(proc.stderr)}")
