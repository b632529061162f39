"""docker/manifests/ pass the embedded API server's validation, as kubectl sends them (`apply --dry-run=server`),
in the form the kind and kubeconfig backends apply them; and the RBAC kinds they need print as kubectl prints
them on kind."""

from __future__ import annotations

import pytest
import yaml

from labkit.backends import incluster, kind
from tests.conftest import KUBECTL_VERSIONS, Cluster

pytestmark = pytest.mark.integration


def manifests(namespace: str) -> dict[str, str]:
    return {"labkit-agent.yaml": kind.agent_manifest("labkit"),
            "node-helper.yaml": incluster.helper_manifest("labkit-control-plane", namespace, kind.DOCKER_DIR),
            "node-helper.yaml (probe)": incluster.helper_manifest(None, namespace, kind.DOCKER_DIR)}


@pytest.mark.parametrize("version", KUBECTL_VERSIONS[::3])  # 1.27, 1.30, 1.33
def test_manifests_pass_server_side_validation(cluster: Cluster, namespace: str, version: str) -> None:
    for name, text in manifests(namespace).items():
        proc = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text, version=version, check=False)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        applied = [line.removesuffix(" created (server dry run)") for line in proc.stdout.splitlines()]
        expected = [f"{d['kind'].lower()}{'.' + d['apiVersion'].rpartition('/')[0] if '/' in d['apiVersion'] else ''}"
                    f"/{d['metadata']['name']}" for d in yaml.safe_load_all(text)]
        assert applied == expected, name
    # Nothing was stored.
    assert cluster.kubectl("get", "clusterrolebinding", "labkit-agent", check=False).returncode != 0


def test_rbac_objects_are_stored_and_printed_as_on_kind(cluster: Cluster) -> None:
    try:
        cluster.kubectl("apply", "-f", "-", input=_rbac_only())
        table = cluster.kubectl("get", "clusterrole,clusterrolebinding", "labkit-agent", "-o", "wide").stdout
        lines = [line.split() for line in table.splitlines() if line.strip()]
        assert lines[0] == ["NAME", "CREATED", "AT"]
        assert lines[1][0] == "clusterrole.rbac.authorization.k8s.io/labkit-agent"
        assert lines[2] == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
        assert lines[3][0] == "clusterrolebinding.rbac.authorization.k8s.io/labkit-agent"
        assert lines[3][1] == "ClusterRole/labkit-agent" and lines[3][-1] == "kube-system/labkit-agent"
        changed = cluster.kubectl("patch", "clusterrolebinding", "labkit-agent", "--type=merge", "-p",
                                  '{"roleRef":{"name":"cluster-admin"}}', check=False)
        assert changed.returncode == 1 and "cannot change roleRef" in changed.stderr
    finally:
        cluster.kubectl("delete", "clusterrole,clusterrolebinding", "labkit-agent", "--ignore-not-found")


def _rbac_only() -> str:
    docs = [d for d in yaml.safe_load_all(kind.agent_manifest("labkit")) if d["kind"].startswith("ClusterRole")]
    return yaml.safe_dump_all(docs)
