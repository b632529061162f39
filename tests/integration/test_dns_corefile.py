"""The Corefile on the embedded cluster, the way the Kubernetes documentation's pages use it: the `coredns`
ConfigMap edited with kubectl and honoured within seconds, `kubectl logs` showing the log plugin's lines, a CoreDNS
pod of one's own from a ConfigMap (as the e2e DNS tests run one), and what a pod sees for names that exist
nowhere (the outside world's resolver: NXDOMAIN with the root's SOA, recursion available, not authoritative).

Every edit of the shared cluster's ConfigMap is undone at the end of its test (and waited for).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit.backends.bootstrap import COREFILE
from labkit.dns.corefile import config_hash
from tests.integration import test_dns
from tests.integration.test_dns import KUBE_DNS, apply, parse_dig, pod_dig, ready_pod_ips, wait_for

pytestmark = pytest.mark.integration

KIND_HASH = config_hash("/etc/coredns/Corefile", COREFILE)
dns_ready = test_dns.dns_ready  # the fixture: kube-dns answers through its VIP


def coredns_logs(cluster: Any, since: float | None = None) -> list[str]:
    """`kubectl logs -n kube-system -l k8s-app=kube-dns`: every coredns pod's lines."""
    args = ["logs", "-n", "kube-system", "-l", "k8s-app=kube-dns", "--tail=-1"]
    return cluster.kubectl(*args).stdout.splitlines()


def corefile(cluster: Any) -> str:
    return cluster.kubectl("get", "configmap", "coredns", "-n", "kube-system",
                           "-o", "jsonpath={.data.Corefile}").stdout


def edit_corefile(cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: str, lines: str) -> None:
    """`kubectl -n kube-system edit configmap coredns`, with an editor that adds `lines` after the line `after`."""
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys\n"
        "path = sys.argv[-1]\n"
        "text = open(path).read()\n"
        f"after, lines = {after!r}, {lines!r}\n"
        "indent = next(l[: len(l) - len(l.lstrip())] for l in text.splitlines() if l.strip() == after.strip())\n"
        "new = '\\n'.join(indent + l for l in lines.splitlines())\n"
        "out = []\n"
        "for l in text.splitlines():\n"
        "    out.append(l)\n"
        "    if l.strip() == after.strip():\n"
        "        out.append(new)\n"
        "open(path, 'w').write('\\n'.join(out) + '\\n')\n")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    cluster.kubectl("-n", "kube-system", "edit", "configmap", "coredns")


def running_hashes(cluster: Any) -> set[str]:
    """The configuration hash each coredns pod logged last."""
    out = set()
    pods = json.loads(cluster.kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns",
                                      "-o", "json").stdout)["items"]
    for p in pods:
        lines = cluster.kubectl("logs", "-n", "kube-system", p["metadata"]["name"]).stdout.splitlines()
        hashes = [line.rsplit(" ", 1)[1] for line in lines if "Running configuration SHA512 = " in line]
        out.add(hashes[-1] if hashes else "")
    return out


@pytest.fixture
def restore_corefile(cluster: Any) -> Iterator[None]:
    """Put kind's Corefile back after the test, and wait until every coredns pod runs it again."""
    yield
    patch = json.dumps({"data": {"Corefile": COREFILE}})
    cluster.kubectl("patch", "configmap", "coredns", "-n", "kube-system", "--type", "merge", "-p", patch)
    wait_for(lambda: running_hashes(cluster) == {KIND_HASH}, "coredns back on kind's Corefile", timeout=60)


@pytest.fixture(scope="module")
def client_pod(cluster: Any, dns_ready: None) -> Iterator[tuple[str, str]]:
    """A dnsutils pod in `default`, as the DNS debugging page makes one."""
    ns = "default"
    name = f"dnsutils-{os.getpid()}"
    cluster.kubectl("run", name, "-n", ns, "--image=registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3",
                    "--restart=Never", "--", "sleep", "infinity")
    ready_pod_ips(cluster, ns, f"run={name}", 1)
    yield ns, name
    cluster.kubectl("delete", "pod", name, "-n", ns, "--wait=false", check=False)


def pod_exec(cluster: Any, pod: tuple[str, str], *argv: str) -> Any:
    return cluster.kubectl("exec", "-n", pod[0], pod[1], "--", *argv, check=False)


# ------------------------------------------------------------------------------------------------ kubeadm's


def test_coredns_runs_kind_corefile_from_its_configmap(cluster: Any) -> None:
    ready_pod_ips(cluster, "kube-system", "k8s-app=kube-dns", 2)
    assert corefile(cluster) == COREFILE
    deploy = json.loads(cluster.kubectl("get", "deployment", "coredns", "-n", "kube-system", "-o", "json").stdout)
    spec = deploy["spec"]["template"]["spec"]
    assert spec["containers"][0]["args"] == ["-conf", "/etc/coredns/Corefile"]
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}]
    assert spec["volumes"][0]["configMap"]["name"] == "coredns"
    # CoreDNS's start-up lines, with the hash real kind clusters log for this Corefile
    lines = coredns_logs(cluster)
    assert lines.count(".:53") == 2 and lines.count("CoreDNS-1.11.3") == 2
    assert lines.count(f"[INFO] plugin/reload: Running configuration SHA512 = {KIND_HASH}") == 2
    assert all(re.fullmatch(r"linux/amd64, go1\.\d+\.\d+, [0-9a-f]+", line)
               for line in lines if line.startswith("linux/"))
    pod = cluster.kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns",
                          "-o", "jsonpath={.items[0].metadata.name}").stdout
    shown = cluster.kubectl("exec", "-n", "kube-system", pod, "--", "cat", "/etc/coredns/Corefile").stdout
    assert shown == COREFILE


# ------------------------------------------------------------------------------------------------ editing it


def test_log_rewrite_and_hosts_added_with_kubectl_edit(cluster: Any, client_pod: tuple[str, str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, restore_corefile: None
                                                      ) -> None:
    before = pod_exec(cluster, client_pod, "nslookup", "foo.example")
    assert "NXDOMAIN" in before.stdout  # exists nowhere yet
    edit_corefile(cluster, tmp_path, monkeypatch, "errors",
                  "log\nrewrite name foo.example www.example.net\nhosts {\n   10.0.0.1 myhost.example\n"
                  "   fallthrough\n}")

    def answers() -> bool:
        out = pod_exec(cluster, client_pod, "dig", "+short", "+tries=1", "+timeout=1", "foo.example").stdout.split()
        return out == ["203.0.113.10"]

    # "within seconds" (the volume follows the ConfigMap, reload checks every 2 s): bench_dns.py prints how soon
    wait_for(answers, "the rewrite to answer", timeout=30, interval=0.2)
    # Each of the two coredns pods reloads on its own ticker: wait for both before asking through the VIP again.
    edited = config_hash("/etc/coredns/Corefile", corefile(cluster))
    wait_for(lambda: running_hashes(cluster) == {edited}, "both coredns pods to reload", timeout=30, interval=0.2)
    out = pod_exec(cluster, client_pod, "dig", "+tries=2", f"@{KUBE_DNS}", "myhost.example")
    d = parse_dig(out.stdout)
    assert d.rcode == "NOERROR" and [a["rdata"] for a in d.answer] == ["10.0.0.1"] and "aa" in d.flags
    # The DNS debugging page's way to see the search list: the log plugin's lines in kubectl logs.
    marker = f"probe-{os.getpid()}"
    pod_exec(cluster, client_pod, "nslookup", marker)

    def logged() -> list[str]:
        return [line for line in coredns_logs(cluster) if marker in line]

    lines = wait_for(lambda: len(logged()) >= 4 and logged(), "log lines for the search list", timeout=15)
    names = {re.search(r'"A IN (\S+) ', line).group(1) for line in lines if '"A IN' in line}  # type: ignore[union-attr]
    assert {f"{marker}.default.svc.cluster.local.", f"{marker}.svc.cluster.local.",
            f"{marker}.cluster.local.", f"{marker}."} <= names
    line = next(line for line in lines if f'"A IN {marker}.default.svc.cluster.local. udp' in line)
    assert re.fullmatch(r'\[INFO\] 10\.244\.\d+\.\d+:\d+ - \d+ "A IN \S+ udp \d+ false 512" NXDOMAIN qr,aa,rd \d+ '
                        r'\d+\.\d+s', line), line
    line = next(line for line in lines if f'"A IN {marker}. udp' in line)
    assert " NXDOMAIN qr,rd,ra " in line  # forwarded to the outside world's resolver


def test_a_bad_edit_is_logged_and_the_old_corefile_keeps_serving(cluster: Any, client_pod: tuple[str, str],
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                restore_corefile: None) -> None:
    edit_corefile(cluster, tmp_path, monkeypatch, "errors", "nonsense\netcd")
    want = ("[ERROR] plugin/reload: Corefile changed but reload failed: starting with listener file descriptors: "
            "/etc/coredns/Corefile:3 - Error during parsing: Unknown directive 'nonsense'")
    wait_for(lambda: coredns_logs(cluster).count(want) == 2, "both pods to log the failed reload", timeout=30)
    assert running_hashes(cluster) == {KIND_HASH}
    out = pod_exec(cluster, client_pod, "nslookup", "kubernetes.default")
    assert "Address: 10.96.0.1" in out.stdout


# ------------------------------------------------------------------------------------------------ the outside world


def test_names_that_exist_nowhere_as_on_kind(cluster: Any, client_pod: tuple[str, str]) -> None:
    """The Debug Services page: before the Service exists, the name is unknown everywhere."""
    out = pod_exec(cluster, client_pod, "nslookup", "kube-dns")
    assert "** server can't find kube-dns: NXDOMAIN" in out.stdout and "REFUSED" not in out.stdout
    out = pod_exec(cluster, client_pod, "wget", "-O-", "-T", "2", "-t", "1", "hostnames")
    assert "Name or service not known" in out.stderr and "Temporary failure" not in out.stderr
    out = pod_exec(cluster, client_pod, "dig", "+tries=2", "nosuchname-" + str(os.getpid()) + ".")
    d = parse_dig(out.stdout)
    assert d.rcode == "NXDOMAIN" and "ra" in d.flags and "aa" not in d.flags
    assert [(a["name"], a["type"], a["rdata"].split()[:2]) for a in d.authority] == [
        (".", "SOA", ["a.root-servers.net.", "nstld.verisign-grs.com."])]
    # a real site: a non-authoritative answer (the first time; the cache then answers with AA, as CoreDNS's does)
    out = pod_exec(cluster, client_pod, "nslookup", "web2.example.net")
    assert "Non-authoritative answer:" in out.stdout and "Address: 203.0.113.11" in out.stdout


# ------------------------------------------------------------------------------------------------ one's own CoreDNS


def test_a_coredns_pod_of_ones_own_from_a_configmap(cluster: Any, namespace: str,
                                                    client_pod: tuple[str, str]) -> None:
    """What the e2e DNS tests do (dns_common.go createDNSServer): a CoreDNS pod serving a ConfigMap's Corefile."""
    apply(cluster, f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: e2e-coredns-configmap, namespace: {namespace}}}
data:
  Corefile: |
    .:53 {{
        hosts {{
            1.1.1.1 abc.acme.local
            2.2.2.2 def.acme.local
            3.3.3.3 widget.local
        }}
        log
    }}
---
apiVersion: v1
kind: Pod
metadata: {{name: e2e-dns-configmap-dns-server, namespace: {namespace}, labels: {{app: own-dns}}}}
spec:
  dnsPolicy: Default
  containers:
  - name: dns
    image: registry.k8s.io/coredns/coredns:v1.11.1
    args: ["-conf", "/etc/coredns/Corefile"]
    volumeMounts: [{{name: coredns-config, mountPath: /etc/coredns, readOnly: true}}]
  volumes:
  - name: coredns-config
    configMap: {{name: e2e-coredns-configmap}}
""")
    ip = next(iter(ready_pod_ips(cluster, namespace, "app=own-dns", 1).values()))
    # Running is not listening yet (no readiness probe): poll, as the e2e test's checkDNSRecordFrom does.
    d = wait_for(lambda: pod_dig(cluster, client_pod, f"@{ip}", "abc.acme.local"), "the pod's CoreDNS to answer",
                 timeout=30, interval=0.5)
    assert [a["rdata"] for a in d.answer] == ["1.1.1.1"]
    logs = cluster.kubectl("logs", "-n", namespace, "e2e-dns-configmap-dns-server").stdout.splitlines()
    assert logs[0] == ".:53" and any('"A IN abc.acme.local. udp' in line for line in logs)
