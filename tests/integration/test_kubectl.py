"""Real kubectl 1.27–1.33 against the embedded API server: the article's commands."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time

import pytest

from tests.conftest import KUBECTL_VERSIONS, Cluster

pytestmark = pytest.mark.integration

HEADLESS_AND_STATEFULSET = """\
apiVersion: v1
kind: Service
metadata:
  labels:
    app: nginx
  name: nginx
spec:
  clusterIP: None
  selector:
    app: nginx
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: nginx
spec:
  serviceName: "nginx"
  replicas: 2
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.19
"""

SELECTORLESS = """\
apiVersion: v1
kind: Service
metadata:
  labels:
    app: nginx
  name: external-db
spec:
  clusterIP: None
---
apiVersion: v1
kind: Endpoints
metadata:
  labels:
    app: nginx
  name: external-db
subsets:
- addresses:
  - ip: 203.0.113.20
"""

EXTERNAL_NAME = """\
apiVersion: v1
kind: Service
metadata:
  labels:
    app: nginx
  name: www
spec:
  type: ExternalName
  externalName: www.example.net
"""


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
def test_article_flow(cluster: Cluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    out = k(*n, "create", "deploy", "nginx", "--image=nginx:1.19", version=version).stdout
    assert out.strip() == "deployment.apps/nginx created"
    out = k(*n, "expose", "deploy", "nginx", "--port=80", "--target-port=80", version=version).stdout
    assert out.strip() == "service/nginx exposed"

    out = k(*n, "get", "svc", "nginx", version=version).stdout.splitlines()
    assert out[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    name, typ, cluster_ip, external_ip, ports, _age = out[1].split()
    assert (name, typ, external_ip, ports) == ("nginx", "ClusterIP", "<none>", "80/TCP")
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network("10.96.0.0/16")

    assert k(*n, "scale", "deploy", "nginx", "--replicas=2", version=version).stdout.strip() == \
        "deployment.apps/nginx scaled"
    assert k(*n, "get", "deploy", "nginx", "-o", "jsonpath={.spec.replicas}", version=version).stdout == "2"

    doc = json.loads(k(*n, "get", "svc", "-o", "json", version=version).stdout)
    assert [s["metadata"]["name"] for s in doc["items"]] == ["nginx"]
    assert k(*n, "delete", "svc", "nginx", version=version).stdout.strip() == 'service "nginx" deleted'
    gone = k(*n, "get", "svc", "nginx", version=version, check=False)
    assert gone.returncode == 1
    assert gone.stderr.strip() == 'Error from server (NotFound): services "nginx" not found'


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
def test_apply_article_manifests(cluster: Cluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    out = k(*n, "apply", "-f", "-", input=HEADLESS_AND_STATEFULSET, version=version).stdout.splitlines()
    assert out == ["service/nginx created", "statefulset.apps/nginx created"]
    out = k(*n, "apply", "-f", "-", input=SELECTORLESS, version=version).stdout.splitlines()
    assert out == ["service/external-db created", "endpoints/external-db created"]
    assert k(*n, "apply", "-f", "-", input=EXTERNAL_NAME, version=version).stdout.strip() == "service/www created"

    # The same manifests again: nothing to do.
    out = k(*n, "apply", "-f", "-", input=HEADLESS_AND_STATEFULSET, version=version).stdout.splitlines()
    assert out == ["service/nginx unchanged", "statefulset.apps/nginx unchanged"]
    assert k(*n, "apply", "-f", "-", input=EXTERNAL_NAME, version=version).stdout.strip() == "service/www unchanged"

    # A change is patched in.
    changed = EXTERNAL_NAME.replace("www.example.net", "db.example.net")
    assert k(*n, "apply", "-f", "-", input=changed, version=version).stdout.strip() == "service/www configured"
    assert k(*n, "get", "svc", "www", "-o", "jsonpath={.spec.externalName}", version=version).stdout == \
        "db.example.net"

    rows = k(*n, "get", "svc", version=version).stdout.splitlines()
    table = {r.split()[0]: r.split() for r in rows[1:]}
    assert table["www"][1:5] == ["ExternalName", "<none>", "db.example.net", "<none>"]
    assert table["nginx"][1:5] == ["ClusterIP", "None", "<none>", "<none>"]
    ep = k(*n, "get", "ep", "external-db", version=version).stdout.splitlines()
    assert ep[1].split()[:2] == ["external-db", "203.0.113.20"]


@pytest.mark.parametrize("version", KUBECTL_VERSIONS)
def test_server_side_apply(cluster: Cluster, namespace: str, version: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    out = k(*n, "apply", "--server-side", "-f", "-", input=EXTERNAL_NAME, version=version).stdout
    assert out.strip() == "service/www serverside-applied"
    changed = EXTERNAL_NAME.replace("www.example.net", "db.example.net")
    out = k(*n, "apply", "--server-side", "-f", "-", input=changed, version=version).stdout
    assert out.strip() == "service/www serverside-applied"
    svc = json.loads(k(*n, "get", "svc", "www", "-o", "json", "--show-managed-fields", version=version).stdout)
    assert svc["spec"]["externalName"] == "db.example.net"
    managers = {(m["manager"], m["operation"]) for m in svc["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers


def test_get_yaml_and_short_names(cluster: Cluster, namespace: str) -> None:
    k = cluster.kubectl
    k("-n", namespace, "create", "deploy", "web", "--image=nginx:1.19")
    k("-n", namespace, "expose", "deploy", "web", "--port=80")
    out = k("-n", namespace, "get", "svc", "web", "-o", "yaml").stdout
    assert "kind: Service" in out and "clusterIP: 10.96." in out and "targetPort: 80" in out
    for short in ("svc", "deploy", "ep", "po", "rs", "sts", "ev"):
        assert k("-n", namespace, "get", short, check=False).returncode == 0, short
    assert k("get", "ns", namespace, "-o", "name").stdout.strip() == f"namespace/{namespace}"


def test_watch_prints_rows_as_objects_change(cluster: Cluster, namespace: str) -> None:
    binary_args = ["-n", namespace, "get", "svc", "-w"]
    from tests.conftest import kubectl_binary

    binary = kubectl_binary("1.32")
    if binary is None:
        pytest.skip("kubectl 1.32 is not installed")
    env = {"KUBECONFIG": str(cluster.kubeconfig), "PATH": "/usr/bin:/bin", "HOME": str(cluster.home)}
    watcher = subprocess.Popen([str(binary), f"--cache-dir={cluster.cache_dir / 'w'}", *binary_args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines: list[str] = []
        assert watcher.stdout is not None

        def read_until(predicate, timeout: float = 10.0) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                line = watcher.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if predicate(line):
                    return
            raise AssertionError(f"watch output so far: {lines}")

        cluster.kubectl("-n", namespace, "create", "service", "clusterip", "w1", "--tcp=80:8080")
        read_until(lambda line: line.startswith("w1 "))
        cluster.kubectl("-n", namespace, "label", "service", "w1", "tier=web")
        read_until(lambda line: line.startswith("w1 ") and len([x for x in lines if x.startswith("w1 ")]) >= 2)
        cluster.kubectl("-n", namespace, "delete", "service", "w1")
        read_until(lambda line: line.startswith("w1 ") and len([x for x in lines if x.startswith("w1 ")]) >= 3)
        assert lines[0].split()[:3] == ["NAME", "TYPE", "CLUSTER-IP"]
        assert watcher.poll() is None, "the watch must stay open"
    finally:
        watcher.kill()
        watcher.wait()


@pytest.mark.parametrize(("manifest", "expected"), [
    ("apiVersion: v1\nkind: Service\nmetadata:\n  name: Bad_Name\nspec:\n  ports:\n  - port: 80\n",
     'The Service "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a DNS-1035 label must consist '
     "of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an "
     "alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
     "'[a-z]([-a-z0-9]*[a-z0-9])?')"),
    ("apiVersion: v1\nkind: Service\nmetadata:\n  name: noports\nspec:\n  selector:\n    app: x\n",
     'The Service "noports" is invalid: spec.ports: Required value'),
    ("apiVersion: v1\nkind: Service\nmetadata:\n  name: far\nspec:\n  clusterIP: 10.0.0.5\n  ports:\n  - port: 80\n",
     'The Service "far" is invalid: spec.clusterIPs: Invalid value: []string{"10.0.0.5"}: failed to allocate IP '
     "10.0.0.5: the provided IP (10.0.0.5) is not in the valid range. The range of valid IPs is 10.96.0.0/16"),
])
def test_bad_input_messages(cluster: Cluster, namespace: str, manifest: str, expected: str) -> None:
    proc = cluster.kubectl("-n", namespace, "create", "-f", "-", input=manifest, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == expected


def test_unknown_field_under_strict_validation(cluster: Cluster, namespace: str) -> None:
    manifest = "apiVersion: v1\nkind: Service\nmetadata:\n  name: typo\nspec:\n  portz: []\n  ports:\n  - port: 80\n"
    proc = cluster.kubectl("-n", namespace, "apply", "-f", "-", input=manifest, check=False)
    assert proc.returncode == 1
    assert 'strict decoding error: unknown field "spec.portz"' in proc.stderr
