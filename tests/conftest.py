"""Fixtures shared by the test suite: embedded clusters and real kubectl binaries."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from labkit.backends import embedded

T = TypeVar("T")
KUBECTL_VERSIONS = tuple(f"1.{minor}" for minor in range(27, 34))


def kubectl_dir() -> Path | None:
    real = shutil.which("kubectl")
    return Path(os.path.realpath(real)).parent if real else None


def kubectl_binary(version: str) -> Path | None:
    folder = kubectl_dir()
    if folder is None:
        return None
    path = folder / f"kubectl.{version}"
    return path if path.exists() else None


@dataclass
class Cluster:
    """A running embedded cluster in a private LABKIT_HOME."""

    home: Path
    kubeconfig: Path
    cache_dir: Path

    def kubectl(self, *args: str, version: str = "1.32", input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        binary = kubectl_binary(version)
        if binary is None:
            pytest.skip(f"kubectl {version} is not installed beside kubectl")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        proc = subprocess.run([str(binary), f"--cache-dir={self.cache_dir / version}", *args], input=input,
                              capture_output=True, text=True, env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
        return proc

    def api_client(self):  # the official client, configured from our kubeconfig
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        return client, api_client


def _start(home: Path, proxy_mode: str | None = None) -> Cluster:
    paths, _ = embedded.up(home, timeout=60, proxy_mode=proxy_mode)
    return Cluster(home=home, kubeconfig=paths.kubeconfig, cache_dir=home.parent / f"{home.name}-kubectl-cache")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One embedded cluster for the whole session; tests use namespaces of their own."""
    home = tmp_path_factory.mktemp("labkit") / "home"
    handle = _start(home)
    try:
        yield handle
    finally:
        embedded.down(home)


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of this test's own, for tests that restart or kill its processes."""
    home = tmp_path / "home"
    handle = _start(home)
    try:
        yield handle
    finally:
        embedded.down(home)


@pytest.fixture(scope="session")
def nft_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One embedded cluster whose kube-proxy runs in nftables mode, for the whole session."""
    home = tmp_path_factory.mktemp("labkit-nft") / "home"
    handle = _start(home, proxy_mode="nftables")
    try:
        yield handle
    finally:
        embedded.down(home)


_counter = iter(range(1, 1_000_000))


def make_test_namespace(cluster: Cluster, request: pytest.FixtureRequest, prefix: str = "t") -> Iterator[str]:
    """Create a namespace named after the test, yield its name, delete it (without waiting) afterwards."""
    name = f"{prefix}{next(_counter)}-{request.node.name.lower()[:30]}".replace("_", "-").replace("[", "-")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name.strip("-]")).strip("-")[:50].rstrip("-")
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this test's own in the session cluster."""
    yield from make_test_namespace(cluster, request)


def wait_for(fn: Callable[[], T], what: str, timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll `fn` until it returns something truthy (an exception counts as "not yet"); fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as exc:  # not there yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture
def namespace_nft(nft_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this test's own in the session's nftables-mode cluster."""
    yield from make_test_namespace(nft_cluster, request, prefix="n")
