"""Fixtures shared by the test suite: embedded clusters and real kubectl binaries."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from labkit import errors
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


async def eventually(probe: Callable[[], T | Awaitable[T]], what: str, timeout: float = 30.0,
                     interval: float = 0.01) -> T:
    """wait_for inside an event loop: poll `probe` (a function or a coroutine function) until it returns something
    truthy, letting the loop run in between; fail naming `what`. The bound is a deadline, not a number of tries:
    under load each try takes longer."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


@pytest.fixture
def namespace_nft(nft_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this test's own in the session's nftables-mode cluster."""
    yield from make_test_namespace(nft_cluster, request, prefix="n")


# ------------------------------------------------------------------------------------------------ --backend

BACKENDS = ("embedded", "kind", "kubeconfig")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("labkit", "the cluster the lab suite (tests/labs) and tests/kind run on")
    group.addoption("--backend", choices=BACKENDS, default="embedded",
                    help="embedded (default), kind (a kind cluster, made for the session) or kubeconfig "
                         "(namespaces of the suite's own on the cluster --kubeconfig names)")
    # pytest-kind-ng, when installed, already defines these (its names, its meanings): reuse them.
    for flag, kwargs in (("--keep-cluster", {"action": "store_true",
                                             "help": "keep the kind cluster after the session (reused next time)"}),
                         ("--cluster-name", {"default": None, "help": "the kind cluster's name"}),
                         ("--kind-image", {"default": None, "help": "a kindest/node image instead of the pinned one"}),
                         ("--kind-bin", {"default": None, "help": "the kind executable (default: kind on PATH)"}),
                         ("--kind-kubectl-bin", {"default": None, "help": "kubectl for kind (default: on PATH)"}),
                         ("--kubeconfig", {"default": None, "help": "--backend kubeconfig: the cluster's kubeconfig"})):
        try:
            group.addoption(flag, **kwargs)
        except ValueError:  # already added by pytest-kind-ng
            pass


def docker_unavailable() -> str | None:
    """Why no kind cluster can be made here, or None when `docker info` succeeds and kind is on PATH."""
    if shutil.which("docker") is None:
        return "docker is not on PATH"
    probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`docker info` fails here: {(probe.stderr.strip().splitlines() or ['?'])[-1]}"
    if shutil.which("kind") is None:
        return "kind is not on PATH"
    return None


@dataclass
class LabCluster:
    """The cluster a session's labs run on: what `labkit.Lab.up()` finds through LABKIT_HOME and LABKIT_BACKEND."""

    backend: Any  # labkit.backends.base.Backend
    home: Path

    @property
    def env(self) -> dict[str, str]:
        return {"LABKIT_HOME": str(self.home), "LABKIT_BACKEND": self.backend.name}


def _kind_backend(config: pytest.Config, home: Path, suffix: str = "", **options: Any) -> Any:
    from labkit.backends.kind import KindBackend

    reason = docker_unavailable()
    if reason:
        pytest.skip(f"no kind cluster here: {reason}")
    return KindBackend(home, cluster_name=(config.getoption("cluster_name") or "labkit-tests") + suffix,
                       image=config.getoption("kind_image"), kind_bin=config.getoption("kind_bin"),
                       kubectl_bin=config.getoption("kind_kubectl_bin"), **options)


def _kept_home(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A home that outlives the session when --keep-cluster asks (the next session reuses its cluster)."""
    if config.getoption("keep_cluster"):
        return tmp_path_factory.getbasetemp().parent / f"labkit-{name}"
    return tmp_path_factory.mktemp(name) / "home"


class LabClusters:
    """The session's lab clusters of the backend `--backend` names, one per proxy mode, made when first asked."""

    def __init__(self, config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.config, self.tmp_path_factory = config, tmp_path_factory
        self.backend = config.getoption("backend")
        self.made: dict[str, LabCluster] = {}

    def get(self, mode: str = "ipvs") -> LabCluster:
        if mode not in self.made:
            self.made[mode] = self._start(mode)
        return self.made[mode]

    def _start(self, mode: str) -> LabCluster:
        if self.backend == "embedded":
            home = self.tmp_path_factory.mktemp(f"labs-{mode}") / "home"
            backend: Any = embedded.EmbeddedBackend(home)
        elif self.backend == "kind":
            home = _kept_home(self.config, self.tmp_path_factory, f"kind-{mode}")
            # two nodes: pods spread over them, and one table on every node
            backend = _kind_backend(self.config, home, f"-{mode}" if mode != "ipvs" else "", nodes=2)
        else:
            from labkit.backends.kubeconfig import KubeconfigBackend

            home = self.tmp_path_factory.mktemp("kubeconfig") / "home"
            backend = KubeconfigBackend(home, kubeconfig=self.config.getoption("kubeconfig"), learner="labkit-tests")
        try:
            backend.start(proxy_mode=mode, timeout=900 if self.backend == "kind" else 180)
        except errors.Unavailable as exc:  # a cluster that exists keeps its mode
            backend.stop()
            pytest.skip(str(exc))
        return LabCluster(backend, home)

    def stop(self) -> None:
        keep = self.backend == "kind" and self.config.getoption("keep_cluster")
        for cluster in self.made.values():
            if not keep:
                cluster.backend.stop()


@pytest.fixture(scope="session")
def lab_clusters(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabClusters]:
    """The lab suite's clusters (tests/labs): `clusters.get(mode)`."""
    clusters = LabClusters(request.config, tmp_path_factory)
    try:
        yield clusters
    finally:
        clusters.stop()


def _kind_session(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory, mode: str, suffix: str,
                  timeout: float, **options: Any) -> Iterator[LabCluster]:
    """A kind cluster for the session (kept with --keep-cluster), in the home LabClusters would use for it."""
    home = _kept_home(config, tmp_path_factory, f"kind-{mode}")
    backend = _kind_backend(config, home, suffix, nodes=2, **options)
    backend.start(timeout=timeout)
    try:
        yield LabCluster(backend, home)
    finally:
        if not config.getoption("keep_cluster"):
            backend.stop()


@pytest.fixture(scope="session")
def kind_cluster_labkit_agent(request: pytest.FixtureRequest,
                              tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    """A second kind cluster, without kube-proxy: the labkit agent as a DaemonSet on two nodes (tests/kind)."""
    yield from _kind_session(request.config, tmp_path_factory, "agent", "-agent", 1800, proxy="labkit")


@pytest.fixture(scope="session")
def kind_lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    """A two-node kind cluster with kube-proxy in IPVS mode: the session's lab cluster under `--backend kind`,
    else one of tests/kind's own (made wherever `docker info` succeeds, skipped elsewhere with the reason)."""
    if request.config.getoption("backend") == "kind":
        yield request.getfixturevalue("lab_clusters").get("ipvs")
        return
    yield from _kind_session(request.config, tmp_path_factory, "ipvs", "", 900)
