"""The Kubernetes documentation's "Debugging DNS Resolution" page (kubernetes/website
content/en/docs/tasks/administer-cluster/dns-debugging-resolution.md, its pod admin/dns/dnsutils.yaml),
followed command by command on a cluster of its own (the page edits the cluster-wide `coredns` ConfigMap),
asserting what a kind cluster shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.conftest import wait_for
from tests.integration.doc_steps import NEEDS_ROOT, Page, cluster_of_its_own, table

pytestmark = [pytest.mark.integration, NEEDS_ROOT]

DNSUTILS = """apiVersion: v1
kind: Pod
metadata:
  name: dnsutils
  namespace: default
spec:
  containers:
  - name: dnsutils
    image: registry.k8s.io/e2e-test-images/agnhost:2.39
    imagePullPolicy: IfNotPresent
  restartPolicy: Always
"""

SAFE = "[bcdfghjklmnpqrstvwxz2456789]"  # apimachinery's rand.SafeEncodeString alphabet
NO_RECURSION = ";; Got recursion not available from 10.96.0.10\n"
# A query line of CoreDNS's `log` plugin (its default format, `{common}`).
QUERY_LINE = re.compile(r'^\[INFO\] (?P<client>10\.244\.0\.\d+):\d+ - \d+ "(?P<type>\w+) IN (?P<name>\S+) '
                        r'(?P<proto>udp|tcp) \d+ (?:true|false) \d+" (?P<rcode>[A-Z]+) (?P<flags>[a-z,]+) \d+ '
                        r'\d+(?:\.\d+)?s$', re.M)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    with cluster_of_its_own(tmp_path_factory.mktemp("dns-debugging") / "home") as cluster:
        yield Page(cluster)


def nslookup(page: Page, name: str) -> str:
    """`kubectl exec -i -t dnsutils -- nslookup NAME` (without -t: the test has no terminal), less bind9's notes
    on answers without RA (CoreDNS's `kubernetes` plugin answers with RA clear; cache hits carry it)."""
    out = page.exec("dnsutils", "nslookup", name, check=False).stdout
    return "".join(line for line in out.splitlines(keepends=True) if line != NO_RECURSION)


def coredns_logs(page: Page) -> str:
    return page.out("logs", "--namespace=kube-system", "-l", "k8s-app=kube-dns")


# ------------------------------------------------------------------ Create a simple Pod to use as a test environment
def test_create_the_dnsutils_pod(page: Page) -> None:
    assert page.apply(DNSUTILS) == "pod/dnsutils created\n"
    page.wait_pod_ready("dnsutils")
    row = table(page.out("get", "pods", "dnsutils"))[0]
    assert (row["NAME"], row["READY"], row["STATUS"], row["RESTARTS"]) == ("dnsutils", "1/1", "Running", "0")


def test_nslookup_kubernetes_default_works(page: Page) -> None:
    # kubectl exec -i -t dnsutils -- nslookup kubernetes.default, on a terminal as the reader types it.
    code, shown = page.interactive(["exec", "-i", "-t", "dnsutils", "--", "nslookup", "kubernetes.default"])
    assert code == 0 and "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1\n" in shown, shown
    assert nslookup(page, "kubernetes.default") == (
        "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10#53\n\n"
        "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1\n\n")


def test_check_the_local_dns_configuration(page: Page) -> None:
    assert page.exec("dnsutils", "cat", "/etc/resolv.conf").stdout == (
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n"
        "options ndots:5\n")


# ----------------------------------------------------------------------------------- Check if the DNS pod is running
def test_the_dns_pods_are_running(page: Page) -> None:
    rows = table(page.out("get", "pods", "--namespace=kube-system", "-l", "k8s-app=kube-dns"))
    assert len(rows) == 2  # kubeadm's coredns Deployment runs two replicas
    for row in rows:
        assert re.match(rf"^coredns-{SAFE}{{1,10}}-{SAFE}{{5}}$", row["NAME"]), row
        assert (row["READY"], row["STATUS"], row["RESTARTS"]) == ("1/1", "Running", "0")


def test_check_for_errors_in_the_dns_pods(page: Page) -> None:
    logs = coredns_logs(page)
    assert re.search(r"^\.:53\n\[INFO\] plugin/reload: Running configuration SHA512 = [0-9a-f]{128}\n"
                     r"CoreDNS-\d+\.\d+\.\d+\nlinux/amd64, go\S+, [0-9a-f]+$", logs, re.M), logs
    assert "[ERROR]" not in logs and "[FATAL]" not in logs


# ------------------------------------------------------------------------------------------ Is DNS service up?
def test_the_dns_service_is_up(page: Page) -> None:
    rows = {r["NAME"]: r for r in table(page.out("get", "svc", "--namespace=kube-system"))}
    row = rows["kube-dns"]
    assert (row["TYPE"], row["CLUSTER-IP"], row["EXTERNAL-IP"], row["PORT(S)"]) == (
        "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP,9153/TCP")


def test_dns_endpoints_are_exposed(page: Page) -> None:
    pods = page.json("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns")["items"]
    ips = sorted(p["status"]["podIP"] for p in pods)
    row = table(page.out("get", "endpoints", "kube-dns", "--namespace=kube-system"))[0]
    # Two pods × (dns, dns-tcp, metrics): kubectl shows three and counts the rest.
    shown, more = row["ENDPOINTS"].split(" + ")
    assert more == "3 more..."
    assert all(re.match(r"^10\.244\.0\.\d+:53$", ep) and ep.split(":")[0] in ips for ep in shown.split(","))
    subsets = page.json("get", "endpoints", "kube-dns", "-n", "kube-system")["subsets"]
    assert sorted(a["ip"] for a in subsets[0]["addresses"]) == ips
    assert sorted((p["name"], p["port"], p["protocol"]) for p in subsets[0]["ports"]) == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]


# ------------------------------------------------------------------------- Are DNS queries being received/processed?
def test_add_the_log_plugin_and_see_the_queries(page: Page) -> None:
    with pytest.MonkeyPatch.context() as mp:
        # Add `log` as the first plugin of the `.:53` server block, as the page shows.
        mp.setenv("KUBE_EDITOR", r"sed -i -e 's/^\(\s*\)\.:53 {$/&\n\1    log/'")
        assert page.out("-n", "kube-system", "edit", "configmap", "coredns") == "configmap/coredns edited\n"
    corefile = page.json("get", "configmap", "coredns", "-n", "kube-system")["data"]["Corefile"]
    assert re.search(r"^\.:53 \{\n\s+log\n\s+errors\n", corefile, re.M), corefile
    wait_for(lambda: "[INFO] Reloading complete" in coredns_logs(page), "both coredns pods to reload", 60)
    ip = page.json("get", "pod", "dnsutils")["status"]["podIP"]

    def logged() -> list[re.Match[str]]:
        nslookup(page, "kubernetes.default")
        return [m for m in QUERY_LINE.finditer(coredns_logs(page))
                if m["client"] == ip and m["name"] == "kubernetes.default.svc.cluster.local." and m["type"] == "A"]

    line = wait_for(logged, "nslookup's query in the coredns logs", 30)[0]
    assert line["rcode"] == "NOERROR" and line["flags"] in ("qr,aa,rd", "qr,aa,rd,ra")


# --------------------------------------------------------------------- Are you in the right namespace for the service?
def test_names_are_limited_to_the_pods_namespace(page: Page) -> None:
    page.out("create", "namespace", "other")
    page.out("create", "service", "clusterip", "db", "--tcp=5432:5432", "-n", "other")
    ip = page.json("get", "svc", "db", "-n", "other")["spec"]["clusterIP"]
    assert nslookup(page, "db.other") == ("Server:\t\t10.96.0.10\nAddress:\t10.96.0.10#53\n\n"
                                          f"Name:\tdb.other.svc.cluster.local\nAddress: {ip}\n\n")
    done = page.exec("dnsutils", "nslookup", "db", check=False)
    assert done.returncode == 1
    assert "** server can't find db: NXDOMAIN\n" in done.stdout
