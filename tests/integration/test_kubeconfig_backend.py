"""The kubeconfig backend against a cluster that already exists: the session's embedded cluster, driven by the real
kubectl. A learner gets namespaces of their own; `stop` deletes those and nothing else."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import cli, errors
from labkit.backends import images
from labkit.backends.base import get_backend
from labkit.backends.kubeconfig import KubeconfigBackend
from labkit.dns.dig import resolve
from tests.conftest import Cluster, kubectl_binary

pytestmark = pytest.mark.integration


@pytest.fixture
def kubectl_bin() -> str:
    binary = kubectl_binary("1.32")
    if binary is None:
        pytest.skip("kubectl 1.32 is not installed beside kubectl")
    return str(binary)


@pytest.fixture
def learner(cluster: Cluster, tmp_path: Path, kubectl_bin: str) -> Iterator[KubeconfigBackend]:
    backend = KubeconfigBackend(tmp_path / "alice-home", kubeconfig=str(cluster.kubeconfig), learner="alice",
                                kubectl_bin=kubectl_bin, timeout=60)
    try:
        yield backend
    finally:
        backend.stop()


def namespaces(cluster: Cluster) -> set[str]:
    out = cluster.kubectl("get", "namespaces", "-o", "json").stdout
    return {item["metadata"]["name"] for item in json.loads(out)["items"]}


def test_a_learner_gets_namespaces_of_their_own_and_down_deletes_only_those(
        cluster: Cluster, learner: KubeconfigBackend, kubectl_bin: str) -> None:
    cluster.kubectl("create", "namespace", "alice-not-from-labkit")  # the prefix alone does not make it ours
    try:
        assert learner.start(timeout=60)
        assert not learner.start(timeout=60)
        assert "alice-labkit" in namespaces(cluster)
        lab_ns = learner.namespace("lab1")
        assert lab_ns == "alice-lab1" and learner.namespace("alice-lab1") == "alice-lab1"
        kubectl = [kubectl_bin, *learner.kubectl_args()]
        subprocess.run([*kubectl, "create", "namespace", lab_ns], check=True, capture_output=True)

        info = learner.describe()
        assert info.backend == "kubeconfig" and info.nodes == ("labkit-control-plane",)
        assert info.kubeconfig == learner.kubeconfig and info.server.startswith("https://127.0.0.1:")
        assert dict(info.details)["learner"] == "alice"
        assert learner.running()

        # From inside: the embedded node runs no privileged pod, so the query leaves from the unprivileged probe.
        transport = learner.dns_transport(None, lab_ns)
        assert transport.label == "pod alice-labkit/labkit-probe"
        assert transport.resolv_conf().startswith(f"search {lab_ns}.svc.cluster.local ")
        assert resolve("kubernetes.default.svc.cluster.local.", transport=transport).addresses == ["10.96.0.1"]

        assert learner.stop()
        gone = subprocess.run([*kubectl, "get", "namespace", "alice-lab1", "alice-labkit", "-o",
                               "jsonpath={.items[*].status.phase}"], capture_output=True, text=True)
        assert "Active" not in gone.stdout  # Terminating, or already gone
        assert "alice-not-from-labkit" in namespaces(cluster) and "default" in namespaces(cluster)
        assert not learner.stop()
        with pytest.raises(errors.ClusterNotRunning):
            learner.connect(timeout=5)
    finally:
        cluster.kubectl("delete", "namespace", "alice-not-from-labkit", "--wait=false")


def test_node_access_says_why_it_is_unavailable(learner: KubeconfigBackend, kubectl_bin: str) -> None:
    learner.start(timeout=60)
    ns = learner.namespace("lab2")
    kubectl = [kubectl_bin, *learner.kubectl_args(), "-n", ns]
    for argv in (["create", "namespace", ns], ["run", "client", "--image=busybox:1.36", "--", "sleep", "3600"],
                 ["wait", "--for=condition=Ready", "pod/client", "--timeout=60s"]):
        subprocess.run([*kubectl, *argv], check=True, capture_output=True)
    assert learner.proxy_mode == "ipvs"  # kube-system/kube-proxy's config.conf, as kubeadm writes it
    assert dict(learner.describe().details)["proxy"] == "kube-proxy in ipvs mode (kube-system/kube-proxy ConfigMap)"
    with pytest.raises(errors.Unavailable) as caught:
        learner.ipvs_table()
    assert str(caught.value).startswith("looking inside node labkit-control-plane needs a privileged pod with the "
                                        "host's network: ")
    assert str(caught.value).endswith("(kube-proxy runs in ipvs mode here)")
    assert "does not run privileged containers" in str(caught.value)
    with pytest.raises(errors.Unavailable, match="needs a privileged pod"):
        learner.dns_transport("client", ns)
    with pytest.raises(errors.Unavailable, match="a cluster that exists keeps its mode"):
        learner.start(proxy_mode="nftables", timeout=60)


def cli_up(cluster: Cluster, tmp_path: Path, kubectl_bin: str, monkeypatch: pytest.MonkeyPatch, learner: str) -> str:
    """`labkit up --backend kubeconfig --learner LEARNER` with only that kubectl on PATH; the learner's home."""
    home = str(tmp_path / f"{learner}-home")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(kubectl_bin)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert cli.main(["--home", home, "up", "--backend", "kubeconfig", "--kubeconfig", str(cluster.kubeconfig),
                     "--learner", learner]) == 0
    return home


def test_cli_curl_from_inside_a_cluster_that_exists(cluster: Cluster, tmp_path: Path, kubectl_bin: str,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`labkit curl` on a learner's home: the requests leave from the probe pod (this cluster refuses privileged
    helpers, so no connection table says where each went: agnhost's /hostname names the pod)."""
    home = cli_up(cluster, tmp_path, kubectl_bin, monkeypatch, "carol")
    try:
        ns = "carol-web"
        kubectl = [kubectl_bin, "--kubeconfig", f"{home}/existing/kubeconfig", "-n", ns]
        for argv in (["create", "namespace", ns],
                     ["create", "deployment", "web", "--replicas=2", f"--image={images.AGNHOST}", "--", "/agnhost",
                      "netexec", "--http-port=8080"],
                     ["expose", "deployment", "web", "--port=80", "--target-port=8080"],
                     ["rollout", "status", "deployment/web", "--timeout=60s"]):
            subprocess.run([*kubectl, *argv], check=True, capture_output=True)
        pods = json.loads(subprocess.run([*kubectl, "get", "pods", "-o", "json"], check=True, capture_output=True,
                                         text=True).stdout)["items"]
        names = {p["metadata"]["name"] for p in pods}
        capsys.readouterr()

        assert cli.main(["--home", home, "curl", "http://web/hostname", "-n", ns, "--count", "4", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        vip = subprocess.run([*kubectl, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"], check=True,
                             capture_output=True, text=True).stdout
        assert doc["address"] == f"{vip}:80" and doc["errors"] == 0
        assert doc["counts"] == dict.fromkeys(sorted(names), 2)  # round robin, each answer named by its pod
        probe = json.loads(subprocess.run([*kubectl[:-2], "-n", "carol-labkit", "get", "pod", "labkit-probe", "-o",
                                           "json"], check=True, capture_output=True, text=True).stdout)
        assert all(r["local"].split(":")[0] == probe["status"]["podIP"] for r in doc["requests"])
    finally:
        assert cli.main(["--home", home, "down"]) == 0


def test_cli_up_status_down(cluster: Cluster, tmp_path: Path, kubectl_bin: str,
                            capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    home = cli_up(cluster, tmp_path, kubectl_bin, monkeypatch, "bob")
    out = capsys.readouterr().out
    assert out.startswith("labkit: kubeconfig cluster ") and f"export KUBECONFIG={home}/existing/kubeconfig" in out
    assert cli.main(["--home", home, "status"]) == 0
    status = capsys.readouterr().out
    assert "backend:    kubeconfig" in status and "learner:    bob" in status and "bob-labkit" in status
    assert isinstance(get_backend("kubeconfig", home=home), KubeconfigBackend)
    assert cli.main(["--home", home, "down"]) == 0
    assert "the learner's namespaces deleted" in capsys.readouterr().out
    assert cli.main(["--home", home, "up", "--backend", "kubeconfig", "--kubeconfig", str(tmp_path / "none")]) == 1
    assert "no kubeconfig at" in capsys.readouterr().err
