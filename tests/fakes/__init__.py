"""Fake `kind`, `docker` and `kubectl` on a PATH of their own (see tools.py for what they answer and why)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import tools


@dataclass
class FakeTools:
    bin: Path
    state_dir: Path

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        path = self.state_dir / "calls.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        calls = [json.loads(line) for line in lines]
        return [c for c in calls if tool is None or c["tool"] == tool]

    def argvs(self, tool: str | None = None) -> list[list[str]]:
        """Each call as [tool, *argv], flags included."""
        return [[c["tool"], *c["argv"]] for c in self.calls(tool)]

    def forget_calls(self) -> None:
        (self.state_dir / "calls.jsonl").unlink(missing_ok=True)

    def state(self) -> dict[str, Any]:
        path = self.state_dir / "state.json"
        return json.loads(path.read_text()) if path.exists() else {"clusters": {}, "images": {}}

    def add_image(self, *images: str) -> None:
        """`docker pull` them: Docker has them locally."""
        state = self.state()
        for image in images:
            state["images"][image] = tools.image_id(image)
        (self.state_dir / "state.json").write_text(json.dumps(state))

    def _edit_cluster(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        state = self.state()
        return state, state["clusters"][name]

    def _save(self, state: dict[str, Any]) -> None:
        (self.state_dir / "state.json").write_text(json.dumps(state))

    def add_pod(self, cluster: str, namespace: str, name: str, node: str, ip: str) -> None:
        """A running pod on `node` with address `ip` (what `kubectl run` and the scheduler would make)."""
        state, c = self._edit_cluster(cluster)
        c["objects"][f"Pod/{namespace}/{name}"] = {"apiVersion": "v1", "kind": "Pod", "podIP": ip,
                                                   "metadata": {"name": name, "namespace": namespace},
                                                   "spec": {"nodeName": node, "containers": [{"name": "c"}]}}
        self._save(state)

    def add_service(self, cluster: str, fqdn: str, vip: str, port: int, backends: list[tuple[str, str]]) -> None:
        """A Service: its DNS name, and behind vip:port web pods (name, IP) answering with their name."""
        state, c = self._edit_cluster(cluster)
        c.setdefault("dns", {})[fqdn] = [vip]
        c.setdefault("web", {})[f"{vip}:{port}"] = [list(b) for b in backends]
        self._save(state)

    def run(self, tool: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / tool), *args], input=input, capture_output=True, text=True)


def install(directory: Path, names: tuple[str, ...] = ("kind", "docker", "kubectl")) -> FakeTools:
    """Write the fakes as executables into directory/bin, with the state in directory/state."""
    bin_dir, state_dir = directory / "bin", directory / "state"
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        script = bin_dir / name
        # tools.py alone (not this package, which imports pytest): the fakes start in a few tens of milliseconds.
        script.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                          f"from tools import main\nmain({name!r})\n")
        script.chmod(0o755)
    return FakeTools(bin_dir, state_dir)


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    """The three fakes first on PATH (nothing else of PATH is needed by them), state in tmp_path."""
    fakes = install(tmp_path / "fakes")
    monkeypatch.setenv("PATH", f"{fakes.bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TOOLS_STATE", str(fakes.state_dir))
    monkeypatch.delenv("FAKE_DOCKER_DOWN", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return fakes
