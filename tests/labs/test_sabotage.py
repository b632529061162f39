"""A lab that still passes with the load balancer frozen or the cluster DNS gone teaches nothing: break each in a
private cluster after the lab's first cell (the cluster was usable when the lab started) and check that the lab
fails where it looks at what was broken, with a message that says what it saw."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from labkit import notebooks
from labkit.backends import embedded

pytestmark = pytest.mark.integration
LABS = {p.stem: p for p in notebooks.sources()}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("sabotage") / "home"
    paths, _ = embedded.up(home, timeout=60)
    try:
        embedded.wait_usable(paths, timeout=120)
        yield home
    finally:
        embedded.down(home)


def _run(lab: str, home: Path, break_it: Callable[[], None]) -> notebooks.Failure:
    def after_cell(n: int) -> None:
        if n == 1:
            break_it()

    # Short waits: a broken cluster never meets the condition, and the test need not wait a minute to see it.
    env = {"LABKIT_HOME": str(home), "LABKIT_BACKEND": "embedded", "LABKIT_WAIT_TIMEOUT": "4"}
    result = notebooks.run(LABS[lab], timeout=120, env=env, after_cell=after_cell)
    assert result.failure is not None, f"lab {lab} passed with the cluster broken: it does not check what it shows"
    return result.failure


def _kubectl(home: Path, *args: str) -> None:
    subprocess.run(["kubectl", "--kubeconfig", str(home / "kubeconfig"), *args], check=True, capture_output=True)


@pytest.fixture
def frozen_load_balancer(home: Path) -> Iterator[Callable[[], None]]:
    pid = int((home / "run" / "ipvs-agent.pid").read_text())
    yield lambda: os.kill(pid, signal.SIGSTOP)
    os.kill(pid, signal.SIGCONT)
    embedded.wait_usable(embedded.Paths(home), timeout=60)


@pytest.fixture
def dns_down(home: Path) -> Iterator[Callable[[], None]]:
    def scale_down() -> None:
        _kubectl(home, "-n", "kube-system", "scale", "deployment", "coredns", "--replicas=0")
        # CoreDNS serves on for its `health { lameduck 5s }` after SIGTERM, and kube-proxy keeps using serving
        # terminating endpoints when there are no others: DNS is gone once the pods are.
        _kubectl(home, "-n", "kube-system", "wait", "--for=delete", "pod", "-l", "k8s-app=kube-dns",
                 "--timeout=60s")

    yield scale_down
    _kubectl(home, "-n", "kube-system", "scale", "deployment", "coredns", "--replicas=2")
    embedded.wait_usable(embedded.Paths(home), timeout=60)


@pytest.mark.parametrize("lab", ["01-clusterip", "08-load-balancer-in-depth"])
def test_load_balancer_labs_fail_when_it_is_frozen(lab: str, home: Path,
                                                   frozen_load_balancer: Callable[[], None]) -> None:
    failure = _run(lab, home, frozen_load_balancer)
    assert "lab.ipvs(" in failure.source or "lab.requests(" in failure.source, failure
    assert "IPVS agent does not answer" in failure.evalue or "timed out" in failure.evalue, failure


@pytest.mark.parametrize("lab", ["02-cluster-dns", "03-headless"])
def test_dns_labs_fail_without_the_cluster_dns(lab: str, home: Path, dns_down: Callable[[], None]) -> None:
    failure = _run(lab, home, dns_down)
    assert "lab.dig(" in failure.source or "lab.resolve(" in failure.source or "dns=" in failure.source, failure
    assert "10.96.0.10" in failure.evalue or "timed out" in failure.evalue, failure
