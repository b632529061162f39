"""The Kubernetes documentation's tutorial "Connecting Applications with Services" (kubernetes/website
content/en/docs/tutorials/services/connect-applications-service.md and its examples under
content/en/examples/service/networking/), followed command by command on a cluster of its own, in the
`default` namespace, asserting what a kind cluster shows.

Commands the page runs "on a node" use labkit's tools in the node's namespace (`labkit curl`); where the page
curls over HTTPS from a node (labkit curl speaks HTTP only), the test curls from a pod instead.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.doc_pages import CURLPOD, DEFAULT_CONF, NGINX_SECURE_APP, RUN_MY_NGINX
from tests.integration.doc_steps import NEEDS_ROOT, Page, cluster_of_its_own, table

pytestmark = [pytest.mark.integration, NEEDS_ROOT]

@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    with cluster_of_its_own(tmp_path_factory.mktemp("connect-apps") / "home") as cluster:
        page = Page(cluster)
        page.state["dir"] = tmp_path_factory.mktemp("connect-apps-files")
        yield page


def service_env(page: Page, pod: str) -> list[str]:
    """`kubectl exec POD -- printenv | grep SERVICE` (grep runs on the reader's machine)."""
    return sorted(line for line in page.exec(pod, "printenv").stdout.splitlines() if "SERVICE" in line)


# -------------------------------------------------------------------------------- Exposing pods to the cluster
def test_run_my_nginx(page: Page) -> None:
    assert page.apply(RUN_MY_NGINX) == "deployment.apps/my-nginx created\n"
    pods = page.wait_pods_ready("run=my-nginx", 2)
    rows = table(page.out("get", "pods", "-l", "run=my-nginx", "-o", "wide"))
    assert sorted(r["NAME"] for r in rows) == sorted(p["metadata"]["name"] for p in pods)
    for row in rows:
        assert (row["READY"], row["STATUS"], row["RESTARTS"], row["NODE"]) == ("1/1", "Running", "0",
                                                                               "labkit-control-plane")
        assert ipaddress.ip_address(row["IP"]) in ipaddress.ip_network("10.244.0.0/24")
    page.state["ips"] = sorted(r["IP"] for r in rows)


def test_pod_ips_as_custom_columns(page: Page) -> None:
    out = page.out("get", "pods", "-l", "run=my-nginx", "-o", "custom-columns=POD_IP:.status.podIPs")
    lines = out.splitlines()
    assert lines[0] == "POD_IP"
    assert sorted(lines[1:]) == [f"[map[ip:{ip}]]" for ip in page.state["ips"]]


def test_curl_both_pods_from_a_node(page: Page) -> None:
    for ip in page.state["ips"]:
        reply = json.loads(page.labkit("curl", f"http://{ip}/", "--json").stdout)["requests"][0]
        assert reply["status"] == 200 and "<title>Welcome to nginx!</title>" in reply["body"]


# ----------------------------------------------------------------------------------------- Creating a Service
def test_expose_the_deployment(page: Page) -> None:
    assert page.out("expose", "deployment/my-nginx") == "service/my-nginx exposed\n"
    row = table(page.out("get", "svc", "my-nginx"))[0]
    assert (row["NAME"], row["TYPE"], row["EXTERNAL-IP"], row["PORT(S)"]) == ("my-nginx", "ClusterIP", "<none>",
                                                                              "80/TCP")
    page.state["cluster_ip"] = row["CLUSTER-IP"]


def test_describe_the_service(page: Page) -> None:
    page.wait_pods_ready("run=my-nginx", 2)
    out = page.out("describe", "svc", "my-nginx")
    ip = page.state["cluster_ip"]
    fields = dict(re.findall(r"^([A-Za-z ]+):\s+(.*)$", out, re.M))
    assert fields["Name"] == "my-nginx" and fields["Namespace"] == "default"
    # The page shows `run=my-nginx`, but `kubectl expose` copies the Deployment's own labels and run-my-nginx.yaml
    # gives it none (apps/v1 does not default them from the template): kind shows <none>.
    assert fields["Labels"] == "<none>" and fields["Annotations"] == "<none>"
    assert fields["Selector"] == "run=my-nginx" and fields["Type"] == "ClusterIP"
    assert (fields["IP Family Policy"], fields["IP Families"]) == ("SingleStack", "IPv4")
    assert fields["IP"] == ip and fields["IPs"] == ip
    assert fields["Port"] == "<unset>  80/TCP" and fields["TargetPort"] == "80/TCP"
    assert sorted(fields["Endpoints"].split(",")) == [f"{i}:80" for i in page.state["ips"]]
    assert fields["Session Affinity"] == "None" and fields["Events"] == "<none>"


def test_endpointslices_of_the_service(page: Page) -> None:
    rows = table(page.out("get", "endpointslices", "-l", "kubernetes.io/service-name=my-nginx"))
    assert len(rows) == 1
    row = rows[0]
    assert re.match(r"^my-nginx-[0-9a-z]{5}$", row["NAME"])
    assert (row["ADDRESSTYPE"], row["PORTS"]) == ("IPv4", "80")
    assert sorted(row["ENDPOINTS"].split(",")) == page.state["ips"]


# ---------------------------------------------------------------------------------------- Accessing the Service
def test_environment_variables_of_pods_older_than_the_service(page: Page) -> None:
    pod = page.pods("run=my-nginx")[0]["metadata"]["name"]
    assert service_env(page, pod) == ["KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443",
                                      "KUBERNETES_SERVICE_PORT_HTTPS=443"]


def test_environment_variables_of_pods_made_after_the_service(page: Page) -> None:
    old = {p["metadata"]["name"] for p in page.pods("run=my-nginx")}
    assert page.out("scale", "deployment", "my-nginx", "--replicas=0") == "deployment.apps/my-nginx scaled\n"
    assert page.out("scale", "deployment", "my-nginx", "--replicas=2") == "deployment.apps/my-nginx scaled\n"
    pods = page.wait_pods_ready("run=my-nginx", 2, timeout=90)
    names = {p["metadata"]["name"] for p in pods}
    assert not names & old  # "the pods have different names, since they are killed and recreated"
    assert service_env(page, sorted(names)[0]) == [
        "KUBERNETES_SERVICE_HOST=10.96.0.1", "KUBERNETES_SERVICE_PORT=443", "KUBERNETES_SERVICE_PORT_HTTPS=443",
        f"MY_NGINX_SERVICE_HOST={page.state['cluster_ip']}", "MY_NGINX_SERVICE_PORT=80"]


def test_the_dns_addon_service(page: Page) -> None:
    row = table(page.out("get", "services", "kube-dns", "--namespace=kube-system"))[0]
    assert (row["NAME"], row["TYPE"], row["CLUSTER-IP"], row["EXTERNAL-IP"]) == ("kube-dns", "ClusterIP",
                                                                                 "10.96.0.10", "<none>")
    assert row["PORT(S)"] == "53/UDP,53/TCP,9153/TCP"  # kubeadm's kube-dns also serves CoreDNS's metrics


def test_nslookup_from_an_interactive_busybox(page: Page) -> None:
    # kubectl run -i --tty --image busybox:1.37 dns-test --restart=Never --rm; then `nslookup my-nginx`.
    code, shown = page.interactive(["run", "-i", "--tty", "--image", "busybox:1.37", "dns-test", "--restart=Never",
                                    "--rm"], "nslookup my-nginx\nexit\n")
    assert code == 0, shown
    assert f"Name:\tmy-nginx.default.svc.cluster.local\nAddress: {page.state['cluster_ip']}\n" in shown
    assert shown.endswith('pod "dns-test" deleted\n')


# ---------------------------------------------------------------------------------------- Securing the Service
def test_keys_and_the_tls_secret(page: Page) -> None:
    folder: Path = page.state["dir"]
    key, crt = folder / "nginx.key", folder / "nginx.crt"
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-days", "365", "-newkey", "rsa:2048", "-keyout", str(key),
                    "-out", str(crt), "-subj", "/CN=my-nginx/O=my-nginx"], check=True, capture_output=True)
    assert page.out("create", "secret", "tls", "nginxsecret", "--key", str(key), "--cert", str(crt)) == \
        "secret/nginxsecret created\n"
    rows = {r["NAME"]: r for r in table(page.out("get", "secrets"))}
    assert (rows["nginxsecret"]["TYPE"], rows["nginxsecret"]["DATA"]) == ("kubernetes.io/tls", "2")


def test_the_nginx_configmap(page: Page) -> None:
    folder: Path = page.state["dir"]
    (folder / "default.conf").write_text(DEFAULT_CONF)
    assert page.out("create", "configmap", "nginxconfigmap", f"--from-file={folder / 'default.conf'}") == \
        "configmap/nginxconfigmap created\n"
    rows = {r["NAME"]: r["DATA"] for r in table(page.out("get", "configmaps"))}
    assert rows == {"kube-root-ca.crt": "1", "nginxconfigmap": "1"}
    out = page.out("describe", "configmap", "nginxconfigmap")
    # (The blank lines after the value vary with kubectl's version; the object is what matters.)
    assert out.startswith("Name:         nginxconfigmap\nNamespace:    default\nLabels:       <none>\n"
                          "Annotations:  <none>\n\nData\n====\ndefault.conf:\n----\n" + DEFAULT_CONF)
    assert out.endswith("\nBinaryData\n====\n\nEvents:  <none>\n")


def test_the_secret_from_base64_yaml(page: Page) -> None:
    folder: Path = page.state["dir"]
    data = {name: base64.b64encode((folder / f"nginx.{ext}").read_bytes()).decode()
            for name, ext in (("tls.crt", "crt"), ("tls.key", "key"))}
    manifest = ('apiVersion: "v1"\nkind: "Secret"\nmetadata:\n  name: "nginxsecret"\n  namespace: "default"\n'
                'type: kubernetes.io/tls\ndata:\n' + "".join(f'  {k}: "{v}"\n' for k, v in data.items()))
    done = page.kubectl("apply", "-f", "-", input=manifest)
    # The secret exists already (made by `kubectl create` above): apply patches it and says so.
    assert done.stdout == "secret/nginxsecret configured\n"
    assert "is missing the kubectl.kubernetes.io/last-applied-configuration annotation" in done.stderr
    rows = {r["NAME"]: r for r in table(page.out("get", "secrets"))}
    assert (rows["nginxsecret"]["TYPE"], rows["nginxsecret"]["DATA"]) == ("kubernetes.io/tls", "2")


def test_replace_with_the_secure_app(page: Page) -> None:
    assert page.out("delete", "deployments,svc", "my-nginx") == ('deployment.apps "my-nginx" deleted\n'
                                                                 'service "my-nginx" deleted\n')
    assert page.out("create", "-f", "-", input=NGINX_SECURE_APP) == ("service/my-nginx created\n"
                                                                     "deployment.apps/my-nginx created\n")
    wait_for(lambda: len(page.pods("run=my-nginx")) == 1, "the old pods to go", 60)
    pod = page.wait_pods_ready("run=my-nginx", 1, timeout=90)[0]
    page.state["secure_pod"] = pod["metadata"]["name"]
    out = page.out("get", "pods", "-l", "run=my-nginx", "-o", "custom-columns=POD_IP:.status.podIPs")
    assert out == f"POD_IP\n[map[ip:{pod['status']['podIP']}]]\n"
    page.state["secure_ip"] = pod["status"]["podIP"]


def test_the_secret_and_configmap_are_mounted(page: Page) -> None:
    pod = page.state["secure_pod"]
    assert page.exec(pod, "cat", "/etc/nginx/conf.d/default.conf").stdout == DEFAULT_CONF
    assert page.exec(pod, "ls", "/etc/nginx/ssl").stdout == "tls.crt\ntls.key\n"


def test_curl_the_secure_pod_and_service(page: Page) -> None:
    assert page.apply(CURLPOD) == "deployment.apps/curl-deployment created\n"
    curl = page.wait_pods_ready("app=curlpod", 1)[0]["metadata"]["name"]
    # node $ curl -k https://<pod IP>  (from the curl pod: labkit curl speaks HTTP only)
    assert "<h1>Welcome to nginx!</h1>" in page.exec(curl, "curl", "-sk", f"https://{page.state['secure_ip']}").stdout
    out = page.exec(curl, "curl", "-s", "https://my-nginx", "--cacert", "/etc/nginx/ssl/tls.crt").stdout
    assert "<title>Welcome to nginx!</title>" in out


# ---------------------------------------------------------------------------------------- Exposing the Service
def test_node_ports_of_the_secure_service(page: Page) -> None:
    out = page.out("get", "svc", "my-nginx", "-o", "yaml")
    ports = {p["name"]: p for p in json.loads(page.out("get", "svc", "my-nginx", "-o", "json"))["spec"]["ports"]}
    assert set(ports) == {"http", "https"}
    assert (ports["http"]["port"], ports["http"]["targetPort"]) == (8080, 80)
    assert (ports["https"]["port"], ports["https"]["targetPort"]) == (443, 443)
    for p in ports.values():
        assert 30000 <= p["nodePort"] <= 32767 and f"nodePort: {p['nodePort']}" in out
    page.state["node_ports"] = {k: v["nodePort"] for k, v in ports.items()}
    # kind's node has no ExternalIP: `kubectl get nodes -o yaml | grep ExternalIP -C 1` finds nothing.
    assert "ExternalIP" not in page.out("get", "nodes", "-o", "yaml")


def test_curl_the_node_port(page: Page) -> None:
    curl = page.pods("app=curlpod")[0]["metadata"]["name"]
    out = page.exec(curl, "curl", "-sk", f"https://172.18.0.2:{page.state['node_ports']['https']}").stdout
    assert "<h1>Welcome to nginx!</h1>" in out


def test_change_the_service_to_a_load_balancer(page: Page) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBE_EDITOR", "sed -i -e 's/^  type: NodePort$/  type: LoadBalancer/'")
        assert page.out("edit", "svc", "my-nginx") == "service/my-nginx edited\n"
    row = table(page.out("get", "svc", "my-nginx"))[0]
    ports = page.state["node_ports"]
    assert (row["TYPE"], row["EXTERNAL-IP"]) == ("LoadBalancer", "<pending>")  # kind has no cloud load balancer
    assert row["PORT(S)"] == f"8080:{ports['http']}/TCP,443:{ports['https']}/TCP"
    assert "LoadBalancer Ingress" not in page.out("describe", "service", "my-nginx")
