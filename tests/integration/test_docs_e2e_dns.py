"""Kubernetes' e2e DNS conformance probes (test/e2e/network/dns.go, dns_common.go) on the embedded cluster.

As upstream does: a pod with three containers sharing an `emptyDir` at /results — `webserver` (agnhost
test-webserver on :80), `querier` (agnhost) and `jessie-querier` (jessie-dnsutils), the two queriers running a
shell loop of `dig +notcp`/`dig +tcp … +search` and `getent hosts` that writes an `OK` file per name that
answers — and the results read back through the API server's pods/proxy
(`/api/v1/namespaces/NS/pods/POD/proxy/results/FILE`). The `$$` in the script is kubelet's escape for `$`.
The pod-A-record probe (`<a-b-c-d>.<ns>.pod.<zone>`) is left out, as upstream removed it (PR #104614).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.integration.doc_steps import NEEDS_ROOT, Page

pytestmark = [pytest.mark.integration, NEEDS_ROOT]

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"
JESSIE = "registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7"
POD_HOSTNAME = "dns-querier-1"
SERVICE_NAME = "dns-test-service"
DOMAIN = "cluster.local"


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer + "."


def probe_command(names: list[str], host_entries: list[str], ptr_ip: str, prefix: str) -> tuple[str, list[str]]:
    """createProbeCommand: the shell loop and the result files it writes."""
    files: list[str] = []
    cmd = "for i in `seq 1 600`; do "
    for name in names:
        lookup = f"{name} SRV" if name.startswith("_") else f"{name} A"
        for proto, flag in (("udp", "+notcp"), ("tcp", "+tcp")):
            file = f"{prefix}_{proto}@{name}"
            files.append(file)
            cmd += (f'check="$$(dig {flag} +noall +answer +search {lookup})" && test -n "$$check" && '
                    f"echo OK > /results/{file};")
    for name in host_entries:
        file = f"{prefix}_hosts@{name}"
        files.append(file)
        cmd += f'test -n "$$(getent hosts {name})" && echo OK > /results/{file};'
    if ptr_ip:
        for proto, flag in (("udp", "+notcp"), ("tcp", "+tcp")):
            file = f"{ptr_ip}_{proto}@PTR"
            files.append(file)
            cmd += (f'check="$$(dig {flag} +noall +answer +search {reverse_name(ptr_ip)} PTR)" && '
                    f'test -n "$$check" && echo OK > /results/{file};')
    return cmd + "sleep 1; done", files


def targeted_probe_command(name: str, lookup: str, prefix: str) -> tuple[str, str]:
    """createTargetedProbeCommand: `dig +short` of one record type, rewritten into a file every second."""
    file = f"{prefix}_udp@{name}"
    return f"for i in `seq 1 30`; do dig +short {name} {lookup} > /results/{file}; sleep 1; done", file


def dns_pod(name: str, agnhost_cmd: str, jessie_cmd: str, hostname: str, subdomain: str,
            labels: dict[str, str] | None = None) -> dict[str, Any]:
    """createDNSPod."""
    results = [{"name": "results", "mountPath": "/results"}]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "volumes": [{"name": "results", "emptyDir": {}}],
            "containers": [
                {"name": "webserver", "image": AGNHOST, "args": ["test-webserver"],
                 "ports": [{"name": "http", "containerPort": 80}], "volumeMounts": results},
                {"name": "querier", "image": AGNHOST, "command": ["sh", "-c", agnhost_cmd], "volumeMounts": results},
                {"name": "jessie-querier", "image": JESSIE, "command": ["sh", "-c", jessie_cmd],
                 "volumeMounts": results},
            ],
            "hostname": hostname, "subdomain": subdomain,
        },
    }


def service(name: str, selector: dict[str, str], headless: bool = False, external: str = "") -> dict[str, Any]:
    """e2eservice.CreateServiceSpec: port 80 named http."""
    spec: dict[str, Any] = {"selector": selector, "ports": [{"port": 80, "name": "http", "protocol": "TCP"}]}
    if headless:
        spec["clusterIP"] = "None"
    if external:
        spec = {"type": "ExternalName", "externalName": external}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def page(cluster: Any, namespace: str) -> Page:
    page = Page(cluster, namespace)
    page.kubectl = lambda *a, **kw: cluster.kubectl("-n", namespace, *a, **kw)  # type: ignore[method-assign]
    return page


def read_result(page: Page, pod: str, file: str) -> str | None:
    """A result file as the webserver container serves it, read through the API server's pods/proxy."""
    done = page.kubectl("get", "--raw", f"/api/v1/namespaces/{page.ns}/pods/{pod}/proxy/results/{file}",
                        check=False)
    return done.stdout if done.returncode == 0 else None


def validate_dns_results(page: Page, pod: dict[str, Any], files: list[str], expected: str | None = None) -> None:
    """validateDNSResults / validateTargetedProbeOutput: every file readable (and holding `expected`)."""
    name = pod["metadata"]["name"]
    page.apply(json.dumps(pod))
    page.wait_pod_ready(name, timeout=120)

    def failed() -> list[str]:
        bad = []
        for file in files:
            content = read_result(page, name, file)
            if content is None or (expected is not None and content.strip() != expected):
                bad.append(file)
        return bad

    try:
        wait_for(lambda: not failed(), f"the probes' results {files}", 120, interval=2)
    finally:
        page.kubectl("delete", "pod", name, "--grace-period=0", "--force", check=False)


def both_probes(names: list[str], hosts: list[str], ptr_ip: str = "") -> tuple[str, str, list[str]]:
    agnhost_cmd, agnhost_files = probe_command(names, hosts, ptr_ip, "agnhost")
    jessie_cmd, jessie_files = probe_command(names, hosts, ptr_ip, "jessie")
    return agnhost_cmd, jessie_cmd, agnhost_files + jessie_files


def test_the_probe_script_is_upstreams() -> None:
    cmd, files = probe_command(["kubernetes.default.svc.cluster.local"], [], "", "agnhost")
    assert cmd == ('for i in `seq 1 600`; do check="$$(dig +notcp +noall +answer +search kubernetes.default.svc.'
                   'cluster.local A)" && test -n "$$check" && echo OK > /results/agnhost_udp@kubernetes.default.svc.'
                   'cluster.local;check="$$(dig +tcp +noall +answer +search kubernetes.default.svc.cluster.local A)" '
                   '&& test -n "$$check" && echo OK > /results/agnhost_tcp@kubernetes.default.svc.cluster.local;'
                   'sleep 1; done')
    assert files == ["agnhost_udp@kubernetes.default.svc.cluster.local",
                     "agnhost_tcp@kubernetes.default.svc.cluster.local"]
    assert reverse_name("10.96.0.20") == "20.0.96.10.in-addr.arpa."


def test_dns_for_the_cluster(page: Page) -> None:
    a, j, files = both_probes([f"kubernetes.default.svc.{DOMAIN}"], [])
    validate_dns_results(page, dns_pod("dns-test-cluster", a, j, POD_HOSTNAME, SERVICE_NAME), files)


def test_partial_qualified_names_for_the_cluster(page: Page) -> None:
    hosts = [f"{POD_HOSTNAME}.{SERVICE_NAME}.{page.ns}.svc.{DOMAIN}", POD_HOSTNAME]
    a, j, files = both_probes(["kubernetes.default", "kubernetes.default.svc"], hosts)
    validate_dns_results(page, dns_pod("dns-test-pqdn", a, j, POD_HOSTNAME, SERVICE_NAME), files)


def test_etc_hosts_entries_for_the_cluster(page: Page) -> None:
    hosts = [f"{POD_HOSTNAME}.{SERVICE_NAME}.{page.ns}.svc.{DOMAIN}", POD_HOSTNAME]
    a, j, files = both_probes([], hosts)
    validate_dns_results(page, dns_pod("dns-test-hosts", a, j, POD_HOSTNAME, SERVICE_NAME), files)


def test_dns_for_services(page: Page) -> None:
    selector = {"dns-test": "true"}
    page.apply(json.dumps(service(SERVICE_NAME, selector, headless=True)))
    page.apply(json.dumps(service("test-service-2", selector)))
    ip = page.json("get", "svc", "test-service-2")["spec"]["clusterIP"]
    names = [f"{SERVICE_NAME}.{page.ns}.svc.{DOMAIN}", f"_http._tcp.{SERVICE_NAME}.{page.ns}.svc.{DOMAIN}",
             f"_http._tcp.test-service-2.{page.ns}.svc.{DOMAIN}"]
    a, j, files = both_probes(names, [], ip)
    validate_dns_results(page, dns_pod("dns-test-services", a, j, POD_HOSTNAME, SERVICE_NAME, selector), files)


def test_partial_qualified_names_for_services(page: Page) -> None:
    selector = {"dns-test": "true"}
    page.apply(json.dumps(service(SERVICE_NAME, selector, headless=True)))
    page.apply(json.dumps(service("test-service-2", selector)))
    ip = page.json("get", "svc", "test-service-2")["spec"]["clusterIP"]
    names = [SERVICE_NAME, f"{SERVICE_NAME}.{page.ns}", f"{SERVICE_NAME}.{page.ns}.svc",
             f"_http._tcp.{SERVICE_NAME}.{page.ns}.svc", f"_http._tcp.test-service-2.{page.ns}.svc"]
    a, j, files = both_probes(names, [], ip)
    validate_dns_results(page, dns_pod("dns-test-pqdn-svc", a, j, POD_HOSTNAME, SERVICE_NAME, selector), files)


def test_dns_for_pods_hostname_and_subdomain(page: Page) -> None:
    selector = {"dns-test-hostname-attribute": "true"}
    page.apply(json.dumps(service("dns-test-service-2", selector, headless=True)))
    fqdn = f"dns-querier-2.dns-test-service-2.{page.ns}.svc.{DOMAIN}"
    subdomain = f"dns-test-service-2.{page.ns}.svc.{DOMAIN}"
    a, j, files = both_probes([fqdn, subdomain], [fqdn, "dns-querier-2"])
    validate_dns_results(page, dns_pod("dns-test-hostname", a, j, "dns-querier-2", "dns-test-service-2", selector),
                         files)


def test_dns_for_external_name_services(page: Page) -> None:
    page.apply(json.dumps(service("dns-test-service-3", {}, external="foo.example.com")))
    name = f"dns-test-service-3.{page.ns}.svc.{DOMAIN}"
    a, a_file = targeted_probe_command(name, "CNAME", "agnhost")
    j, j_file = targeted_probe_command(name, "CNAME", "jessie")
    validate_dns_results(page, dns_pod("dns-test-external", a, j, POD_HOSTNAME, SERVICE_NAME), [a_file, j_file],
                         expected="foo.example.com.")
