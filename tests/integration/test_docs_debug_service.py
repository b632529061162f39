"""The Kubernetes documentation's "Debug Services" page (kubernetes/website
content/en/docs/tasks/debug/debug-application/debug-service.md), followed command by command on a cluster of
its own, in the `default` namespace as the page does, asserting what a kind cluster shows.

The tests run in file order and build on each other, as the page's steps do. Commands the page runs "on a
Node" (ipvsadm, curl to the ClusterIP) use labkit's tools in the node's namespace (`labkit ipvs`, `labkit curl`).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator

import pytest

from tests.conftest import wait_for
from tests.integration.doc_steps import NEEDS_ROOT, Page, cluster_of_its_own, table

pytestmark = [pytest.mark.integration, NEEDS_ROOT]

# <deployment>-<pod-template-hash>-<suffix>, both drawn from apimachinery's rand.SafeEncodeString alphabet.
SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
POD_NAME = re.compile(rf"^hostnames-{SAFE}{{1,10}}-{SAFE}{{5}}$")
NO_RECURSION = ";; Got recursion not available from 10.96.0.10"
BUSYBOX = "gcr.io/google-containers/busybox"


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:
    with cluster_of_its_own(tmp_path_factory.mktemp("debug-service") / "home") as cluster:
        yield Page(cluster)


def hostnames(page: Page) -> dict[str, str]:
    """Pod IP → pod name of the `hostnames` pods."""
    return {p["status"]["podIP"]: p["metadata"]["name"] for p in page.pods("app=hostnames")}


def nslookup(server: str, name: str, address: str) -> str:
    """What bind9's nslookup prints for one A record (the toolbox images run the node's nslookup)."""
    return f"Server:\t\t{server}\nAddress:\t{server}#53\n\nName:\t{name}\nAddress: {address}\n\n"


def without_ra_notes(out: str) -> str:
    """nslookup's output without its notes on answers that lack RA. CoreDNS's `kubernetes` plugin answers
    with RA clear (a cache hit has it set), so on kind bind9's nslookup prints such a note per uncached query."""
    lines = out.splitlines(keepends=True)
    assert all(line == NO_RECURSION + "\n" for line in lines if line.startswith(";;")), out
    return "".join(line for line in lines if not line.startswith(";;"))


# ------------------------------------------------------------------------------------ Running commands in a Pod
def test_running_commands_in_an_interactive_busybox_pod(page: Page) -> None:
    code, shown = page.interactive(["run", "-it", "--rm", "--restart=Never", "busybox", f"--image={BUSYBOX}", "sh"],
                                   "echo inside $(hostname)\nexit\n")
    assert code == 0, shown
    assert shown.startswith("If you don't see a command prompt, try pressing enter.\n")
    assert "\ninside busybox\n" in shown  # the echo's output (the terminal also echoes what was typed)
    assert shown.endswith('pod "busybox" deleted\n')


def test_a_pod_to_run_commands_in(page: Page) -> None:
    # "If you already have a running Pod that you prefer to use, you can run a command in it."
    page.out("run", "client", f"--image={BUSYBOX}", "--restart=Never", "--command", "--", "sleep", "1d")
    page.wait_pod_ready("client")
    assert page.exec("client", "echo", "hello").stdout == "hello\n"


# ----------------------------------------------------------------------------------------------------- Setup
def test_setup_create_and_scale_the_deployment(page: Page) -> None:
    assert page.out("create", "deployment", "hostnames", "--image=registry.k8s.io/serve_hostname") == \
        "deployment.apps/hostnames created\n"
    assert page.out("scale", "deployment", "hostnames", "--replicas=3") == "deployment.apps/hostnames scaled\n"
    dep = page.json("get", "deployment", "hostnames")
    assert dep["metadata"]["labels"] == {"app": "hostnames"}
    assert dep["spec"]["selector"] == {"matchLabels": {"app": "hostnames"}}
    # kubectl names the container after the image, `_` made `-` plus a random suffix (sanitizeAndUniquify).
    assert re.match(r"^serve-hostname-[a-z0-9]{5}$", dep["spec"]["template"]["spec"]["containers"][0]["name"])


def test_setup_pods_are_running(page: Page) -> None:
    page.wait_pods_ready("app=hostnames", 3)
    rows = table(page.out("get", "pods", "-l", "app=hostnames"))
    assert [r["NAME"] for r in rows] == sorted(r["NAME"] for r in rows) and len(rows) == 3
    for row in rows:
        assert POD_NAME.match(row["NAME"]), row
        assert (row["READY"], row["STATUS"], row["RESTARTS"]) == ("1/1", "Running", "0")


def test_setup_pod_ips_with_a_go_template(page: Page) -> None:
    out = page.out("get", "pods", "-l", "app=hostnames", "-o", 'go-template={{range .items}}{{.status.podIP}}'
                   '{{"\\n"}}{{end}}')
    ips = out.splitlines()
    assert len(ips) == 3 and out.endswith("\n")
    assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("10.244.0.0/24") for ip in ips)
    page.state["pod_ips"] = ips


def test_setup_pods_serve_their_hostname_on_9376(page: Page) -> None:
    ips = page.state["pod_ips"]
    names = hostnames(page)
    out = page.sh("client", "for ep in " + " ".join(f"{ip}:9376" for ip in ips) + "; do\n    wget -qO- $ep\n"
                  "done").stdout
    # serve_hostname answers without a newline, so the three names follow each other.
    assert out == "".join(names[ip] for ip in ips)


# ----------------------------------------------------------------------------------- Does the Service exist?
def test_a_service_that_does_not_exist_does_not_resolve(page: Page) -> None:
    done = page.sh("client", "wget -O- hostnames", check=False)
    assert done.returncode == 4  # GNU wget: network failure
    assert "Resolving hostnames (hostnames)... failed: Name or service not known.\n" in done.stderr
    assert "wget: unable to resolve host address 'hostnames'\n" in done.stderr


def test_get_svc_says_not_found(page: Page) -> None:
    done = page.kubectl("get", "svc", "hostnames", check=False)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == 'Error from server (NotFound): services "hostnames" not found\n'


def test_expose_the_deployment(page: Page) -> None:
    assert page.out("expose", "deployment", "hostnames", "--port=80", "--target-port=9376") == \
        "service/hostnames exposed\n"
    rows = table(page.out("get", "svc", "hostnames"))
    assert len(rows) == 1
    row = rows[0]
    assert (row["NAME"], row["TYPE"], row["EXTERNAL-IP"], row["PORT(S)"]) == ("hostnames", "ClusterIP", "<none>",
                                                                              "80/TCP")
    assert ipaddress.ip_address(row["CLUSTER-IP"]) in ipaddress.ip_network("10.96.0.0/16")
    page.state["cluster_ip"] = row["CLUSTER-IP"]


# ------------------------------------------------------------------------------ Does the Service work by DNS?
def test_nslookup_by_name_namespace_and_fqdn_from_a_pod(page: Page) -> None:
    ip = page.state["cluster_ip"]
    fqdn = "hostnames.default.svc.cluster.local"
    for name in ("hostnames", "hostnames.default", fqdn):
        out = page.exec("client", "nslookup", name).stdout
        assert without_ra_notes(out) == nslookup("10.96.0.10", fqdn, ip), name


def test_nslookup_from_a_node(page: Page) -> None:
    # nslookup hostnames.default.svc.cluster.local 10.96.0.10, on a node: labkit dig in the node's namespace.
    out = page.labkit("dig", "hostnames.default.svc.cluster.local", "--short").stdout
    assert out == page.state["cluster_ip"] + "\n"


def test_resolv_conf_in_a_pod(page: Page) -> None:
    assert page.exec("client", "cat", "/etc/resolv.conf").stdout == (
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n"
        "options ndots:5\n")


def test_does_any_service_work_by_dns(page: Page) -> None:
    out = page.exec("client", "nslookup", "kubernetes.default").stdout
    assert without_ra_notes(out) == nslookup("10.96.0.10", "kubernetes.default.svc.cluster.local", "10.96.0.1")


# ------------------------------------------------------------------------------- Does the Service work by IP?
def test_the_service_works_by_ip(page: Page) -> None:
    names = set(hostnames(page).values())
    out = page.sh("client", f"for i in $(seq 1 3); do \n    wget -qO- {page.state['cluster_ip']}:80\ndone").stdout
    answered = re.findall("|".join(map(re.escape, sorted(names))), out)
    assert "".join(answered) == out and len(answered) == 3
    assert set(answered) == names  # rr: three connections, one per backend


# ---------------------------------------------------------------------------- Is the Service defined correctly?
def test_the_service_read_back_as_json(page: Page) -> None:
    svc = page.json("get", "service", "hostnames")
    assert (svc["kind"], svc["apiVersion"]) == ("Service", "v1")
    assert svc["metadata"]["name"] == "hostnames" and svc["metadata"]["namespace"] == "default"
    assert svc["metadata"]["labels"] == {"app": "hostnames"}
    spec = svc["spec"]
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 9376}]
    assert spec["selector"] == {"app": "hostnames"}
    assert spec["clusterIP"] == page.state["cluster_ip"] and spec["clusterIPs"] == [spec["clusterIP"]]
    assert (spec["type"], spec["sessionAffinity"], spec["internalTrafficPolicy"]) == ("ClusterIP", "None", "Cluster")
    assert (spec["ipFamilies"], spec["ipFamilyPolicy"]) == (["IPv4"], "SingleStack")
    assert svc["status"] == {"loadBalancer": {}}


# ------------------------------------------------------------------------- Does the Service have any Endpoints?
def test_the_service_has_endpoints(page: Page) -> None:
    rows = table(page.out("get", "pods", "-l", "app=hostnames"))
    assert [(r["READY"], r["STATUS"], r["RESTARTS"]) for r in rows] == [("1/1", "Running", "0")] * 3
    done = page.kubectl("get", "endpoints", "hostnames")
    rows = table(done.stdout)
    assert [r["NAME"] for r in rows] == ["hostnames"]
    assert sorted(rows[0]["ENDPOINTS"].split(",")) == sorted(f"{ip}:9376" for ip in page.state["pod_ips"])


def test_are_the_pods_working(page: Page) -> None:
    names = hostnames(page)
    eps = json.loads(page.out("get", "endpoints", "hostnames", "-o", "json"))["subsets"][0]["addresses"]
    ips = [a["ip"] for a in eps]
    out = page.sh("client", "for ep in " + " ".join(f"{ip}:9376" for ip in ips) + "; do\n    wget -qO- $ep\n"
                  "done").stdout
    assert out == "".join(names[ip] for ip in ips)


# ---------------------------------------------------------------------------------- Is the kube-proxy working?
def test_is_kube_proxy_running(page: Page) -> None:
    rows = table(page.out("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-proxy"))
    assert len(rows) == 1 and re.match(r"^kube-proxy-[0-9a-z]{5}$", rows[0]["NAME"])
    assert (rows[0]["READY"], rows[0]["STATUS"]) == ("1/1", "Running")
    logs = page.out("logs", "-n", "kube-system", rows[0]["NAME"])
    assert '"Using ipvs Proxier"' in logs


def test_ipvs_mode_virtual_server_and_real_servers(page: Page) -> None:
    # ipvsadm -ln, on a node.
    out = page.labkit("ipvs").stdout
    vip = page.state["cluster_ip"]
    block = re.search(rf"^TCP  {re.escape(vip)}:80 rr\n((?:  -> .*\n)+)", out, re.M)
    assert block, out
    reals = [line.split() for line in block.group(1).splitlines()]
    assert sorted(r[1] for r in reals) == sorted(f"{ip}:9376" for ip in page.state["pod_ips"])
    # Forward and weight as kube-proxy sets them; the connection counters count the page's earlier requests.
    assert all(r[2:4] == ["Masq", "1"] and r[4].isdigit() and r[5].isdigit() for r in reals)


def test_is_kube_proxy_proxying(page: Page) -> None:
    # curl 10.0.1.175:80, on a node.
    out = page.labkit("curl", f"http://{page.state['cluster_ip']}:80", "--json").stdout
    counts = json.loads(out)["counts"]
    assert list(counts.values()) == [1] and set(counts) <= set(hostnames(page).values())


def test_a_pod_reaches_itself_through_the_service_ip(page: Page) -> None:
    # The hairpin edge case: a backend of the Service connects to the Service's own IP and may land on itself.
    me = next(iter(hostnames(page).values()))
    out = page.sh(me, f"for i in 1 2 3; do wget -qO- {page.state['cluster_ip']}:80; echo; done").stdout
    assert me in out.split()


def test_clean_up(page: Page) -> None:
    assert page.out("delete", "service", "hostnames") == 'service "hostnames" deleted\n'
    assert page.out("delete", "deployment", "hostnames") == 'deployment.apps "hostnames" deleted\n'
    wait_for(lambda: not page.pods("app=hostnames"), "the hostnames pods to go", 60)
