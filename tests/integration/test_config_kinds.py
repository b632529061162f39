"""ConfigMap, Secret and ServiceAccount with real kubectl, following the commands of the Kubernetes pages
("Configure a Pod to Use a ConfigMap", "Managing Secrets using kubectl", "Configure Service Accounts for Pods")."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.integration

# kubectl 1.27 sends `create` bodies as JSON, 1.32 and 1.33 as protobuf.
VERSIONS = ("1.27", "1.32", "1.33")


@pytest.mark.parametrize("version", VERSIONS)
def test_create_configmap_and_secret_from_literals(cluster: Cluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    out = k(*n, "create", "configmap", "special-config", "--from-literal=special.how=very",
            "--from-literal=special.type=charm", version=version).stdout
    assert out.strip() == "configmap/special-config created"
    out = k(*n, "create", "secret", "generic", "db-user-pass", "--from-literal=username=admin",
            "--from-literal=password=S!B\\*d$zDsb=", version=version).stdout
    assert out.strip() == "secret/db-user-pass created"

    rows = [line.split() for line in k(*n, "get", "configmaps", version=version).stdout.splitlines()]
    assert rows[0] == ["NAME", "DATA", "AGE"]
    assert ["special-config", "2"] in [r[:2] for r in rows[1:]]  # beside kube-root-ca.crt, once published
    rows = [line.split() for line in k(*n, "get", "secrets", version=version).stdout.splitlines()]
    assert rows[0] == ["NAME", "TYPE", "DATA", "AGE"]
    assert rows[1][:3] == ["db-user-pass", "Opaque", "2"]

    encoded = k(*n, "get", "secret", "db-user-pass", "-o", "jsonpath={.data.password}", version=version).stdout
    assert base64.b64decode(encoded).decode() == "S!B\\*d$zDsb="
    described = k(*n, "describe", "secret", "db-user-pass", version=version).stdout
    assert "password:  12 bytes" in described and "username:  5 bytes" in described
    cm = yaml.safe_load(k(*n, "get", "cm", "special-config", "-o", "yaml", version=version).stdout)
    assert cm["data"] == {"special.how": "very", "special.type": "charm"}


def test_docker_registry_and_tls_secrets_get_their_types(cluster: Cluster, namespace: str, tmp_path) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    k(*n, "create", "secret", "docker-registry", "regcred", "--docker-server=registry.example",
      "--docker-username=u", "--docker-password=p")
    secret = json.loads(k(*n, "get", "secret", "regcred", "-o", "json").stdout)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert config["auths"]["registry.example"]["username"] == "u"
    bad = k(*n, "create", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Y2VydA=="}}))
    assert bad.returncode == 1
    assert 'The Secret "tls" is invalid: data[tls.key]: Required value' in bad.stderr


def test_secret_string_data_and_bad_base64(cluster: Cluster, namespace: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    manifest = """\
apiVersion: v1
kind: Secret
metadata:
  name: mysecret
type: Opaque
data:
  username: YWRtaW4=
stringData:
  config.yaml: |
    apiUrl: "https://my.api.com/api/v1"
"""
    assert k(*n, "apply", "-f", "-", input=manifest).stdout.strip() == "secret/mysecret created"
    secret = json.loads(k(*n, "get", "secret", "mysecret", "-o", "json").stdout)
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["config.yaml"]) == b'apiUrl: "https://my.api.com/api/v1"\n'
    assert secret["data"]["username"] == "YWRtaW4="
    bad = k(*n, "apply", "-f", "-", check=False, input=manifest.replace("YWRtaW4=", "YWRtaW4").replace(
        "mysecret", "other"))
    assert bad.returncode == 1
    assert bad.stderr.strip().endswith('Secret in version "v1" cannot be handled as a Secret: illegal base64 data '
                                       "at input byte 4")


def test_each_namespace_gets_default_service_account_and_root_ca(cluster: Cluster, namespace: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    rows = wait_for(lambda: [r.split() for r in k(*n, "get", "sa").stdout.splitlines()][1:], "the default sa")
    assert [r[:2] for r in rows] == [["default", "0"]]
    ca = wait_for(lambda: k(*n, "get", "cm", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}").stdout,
                  "kube-root-ca.crt")
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())
    assert ca == base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]).decode()

    assert k(*n, "create", "serviceaccount", "build-robot").stdout.strip() == "serviceaccount/build-robot created"
    assert "Mountable secrets:   <none>" in k(*n, "describe", "sa", "build-robot").stdout
    k(*n, "delete", "sa", "default")
    wait_for(lambda: k(*n, "get", "sa", "default", check=False).returncode == 0, "default sa to come back")


def test_discovery_explain_and_gc_of_owned_configmap(cluster: Cluster, namespace: str) -> None:
    k = cluster.kubectl
    rows = {line.split()[0]: line.split() for line in k("api-resources").stdout.splitlines()[1:]}
    assert rows["configmaps"][1:] == ["cm", "v1", "true", "ConfigMap"]
    assert rows["secrets"][1:] == ["v1", "true", "Secret"]
    assert rows["serviceaccounts"][1:] == ["sa", "v1", "true", "ServiceAccount"]
    explained = k("explain", "configmap.immutable").stdout
    assert "FIELD: immutable <boolean>" in explained

    n = ("-n", namespace)
    k(*n, "create", "deploy", "owner", "--image=nginx:1.19")
    uid = k(*n, "get", "deploy", "owner", "-o", "jsonpath={.metadata.uid}").stdout
    k(*n, "create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "owned", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "owner",
                                              "uid": uid}]}, "data": {"k": "v"}}))
    k(*n, "delete", "deploy", "owner")
    wait_for(lambda: k(*n, "get", "cm", "owned", check=False).returncode == 1, "the owned ConfigMap to go")


def test_system_namespaces_may_not_be_deleted(cluster: Cluster) -> None:
    proc = cluster.kubectl("delete", "namespace", "kube-public", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ('Error from server (Forbidden): namespaces "kube-public" is forbidden: this '
                                   "namespace may not be deleted")


@pytest.mark.parametrize("version", ["1.27", "1.32", "1.33"])
def test_explain_shows_int_or_string_and_enum_values(cluster: Cluster, version: str) -> None:
    k = cluster.kubectl
    assert "FIELD: targetPort <IntOrString>" in k("explain", "service.spec.ports.targetPort", version=version).stdout
    explained = k("explain", "svc.spec.sessionAffinity", version=version).stdout
    if version != "1.27":  # kubectl 1.27's template has no ENUM section
        assert "ENUM:\n    ClientIP\n    None\n" in explained
    assert 'Possible enum values:\n     - `"ClientIP"` is the Client IP based.' in explained
