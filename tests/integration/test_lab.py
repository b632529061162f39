"""labkit.Lab on a real embedded cluster: inside a running event loop, idempotent, errors that say what they saw."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from labkit import Lab
from labkit.agent.ipvsadm import render_list
from labkit.backends.embedded import EmbeddedBackend, supervisor_pid
from labkit.lab import KubectlError, WaitTimeout


@pytest.fixture
def lab(cluster: Any, namespace: str) -> Any:
    lab = Lab.connect(EmbeddedBackend(cluster.home))
    lab.namespace = namespace
    return lab


def test_up_is_idempotent_and_works_inside_a_running_loop(cluster: Any, namespace: str) -> None:
    pid = supervisor_pid(EmbeddedBackend(cluster.home).paths)

    async def in_a_kernel() -> Lab:  # a Jupyter kernel runs its cells while its event loop runs
        first = Lab.up(EmbeddedBackend(cluster.home))
        again = Lab.up(EmbeddedBackend(cluster.home))
        assert first is again
        first.namespace = namespace
        first.kubectl("create service clusterip web --tcp=80:80")
        assert first.get("svc")["NAME"].tolist() == ["web"]
        first.wait_for(dns="web", count=1)
        return first

    lab = asyncio.run(in_a_kernel())
    assert supervisor_pid(lab.backend.paths) == pid  # the same cluster: no second one was started
    ip = lab.resource("svc", "web")["spec"]["clusterIP"]
    assert lab.dig(f"web.{namespace}.svc.cluster.local").addresses == [ip] == lab.resolve("web").addresses


def test_kubectl_errors_carry_kubectls_message(lab: Any) -> None:
    with pytest.raises(KubectlError, match='services "nope" not found'):
        lab.kubectl("get svc nope")


def test_wait_for_timeout_says_what_it_last_saw(lab: Any) -> None:
    lab.kubectl("create service clusterip lonely --tcp=80:80")
    with pytest.raises(WaitTimeout, match=r"Service lonely to have 1 ready endpoints; last seen: 0 ready"):
        lab.wait_for(endpoints="lonely", count=1, timeout=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        lab.wait_for(endpoints="a", dns="b")


def test_ipvs_prints_as_ipvsadm_and_follows_endpoints(lab: Any) -> None:
    lab.kubectl("create deployment web --image=registry.k8s.io/e2e-test-images/agnhost:2.53 --replicas=2 "
                "-- /agnhost netexec --http-port=8080")
    lab.kubectl("expose deployment web --port=80 --target-port=8080")
    lab.wait_for(ipvs="web", count=2)
    table = lab.ipvs("web")
    assert str(table) == render_list(table.to_model())
    ips = lab.endpoints("web").addresses()
    ip = lab.resource("svc", "web")["spec"]["clusterIP"]
    assert table.real_servers(f"{ip}:80") == [f"{a}:8080" for a in ips]
    answers = lab.requests("http://web/hostname", count=4)
    assert sorted(answers.counts().to_dict().values()) == [2, 2]
    assert lab.diagram("web").svg().lstrip().startswith("<?xml")


def test_repr_shows_the_cluster_it_talks_to_and_its_state(lab: Any, tmp_path: Any) -> None:
    """The labs' first cell (`lab = Lab.up(); lab`) prints this: which cluster, and how it is doing, read live."""
    info = lab.backend.describe()
    kube_dns = lab.resource("service", "kube-dns", "kube-system")["spec"]["clusterIP"]
    dns_ready = lab.endpoints("kube-dns", namespace="kube-system").addresses(ready=True)
    text = repr(lab)
    assert f"API server   {info.server} (Kubernetes v1." in text
    assert f"kubeconfig   {lab.backend.kubeconfig}" in text and f"namespace    {lab.namespace}" in text
    assert "nodes        labkit-control-plane Ready" in text
    assert f"cluster DNS  kube-dns {kube_dns}, {len(dns_ready)} ready endpoint(s)" in text and dns_ready
    assert f"<td style='text-align:left'>{info.server} (Kubernetes v1." in lab._repr_html_()

    gone = Lab(EmbeddedBackend(tmp_path / "no-cluster"))
    try:
        assert "not reachable" in repr(gone), repr(gone)
    finally:
        gone.close()
