"""The cluster DNS on the embedded cluster: the seed article's queries and each rule family of dns-rules.md.

Every query goes out from inside the cluster network: `labkit dig --json` (dig_main with the embedded transports:
the node's namespace, or a pod's with --from) and the real `dig` / labkit's Python query run in a toolbox pod via
`kubectl exec`. All of them go to kube-dns 10.96.0.10, i.e. through the IPVS agent to the coredns pods.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import socket
import struct
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from labkit.dns.dig import KubectlExecTransport, dig, dig_main, make_query
from labkit.dns.transports import node_transport, socket_in_netns
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

KUBE_DNS = "10.96.0.10"
ZONE = "cluster.local"
T = TypeVar("T")


# ------------------------------------------------------------------------------------------------- helpers


def ldig(cluster: Any, *argv: str) -> dict[str, Any]:
    """`labkit dig ARGS --json` (dig_main, as the CLI calls it), parsed."""
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = dig_main([*argv, "--json"], home=cluster.home)
    assert rc == 0, f"labkit dig {' '.join(argv)} exited {rc}"
    return json.loads(buf.getvalue())


@dataclass
class DigText:
    """What the real dig printed."""

    rcode: str
    flags: list[str]
    answer: list[dict[str, Any]] = field(default_factory=list)
    authority: list[dict[str, Any]] = field(default_factory=list)
    additional: list[dict[str, Any]] = field(default_factory=list)


def parse_dig(text: str) -> DigText:
    status = re.search(r"status: (\w+)", text)
    flags = re.search(r";; flags: ([a-z ]*);", text)
    assert status and flags, text
    out = DigText(status.group(1), flags.group(1).split())
    section: list[dict[str, Any]] | None = None
    for line in text.splitlines():
        if line.startswith(";; ") and line.endswith(" SECTION:"):
            section = {"ANSWER": out.answer, "AUTHORITY": out.authority, "ADDITIONAL": out.additional}.get(
                line[3:].split()[0])
            continue
        if not line.strip() or line.startswith(";"):
            section = None if not line.strip() else section
            continue
        if section is not None:
            name, ttl, klass, rtype, *rdata = line.split()
            section.append({"name": name, "ttl": int(ttl), "class": klass, "type": rtype, "rdata": " ".join(rdata)})
    return out


def pod_dig(cluster: Any, tb: tuple[str, str], *args: str) -> DigText:
    """The real dig (Debian's bind9-dnsutils) run inside the toolbox pod with kubectl exec."""
    ns, pod = tb
    proc = cluster.kubectl("exec", "-n", ns, pod, "--", "dig", "+nocookie", "+tries=2", "+timeout=2", *args)
    return parse_dig(proc.stdout)


def pod_python(cluster: Any, tb: tuple[str, str]) -> KubectlExecTransport:
    """A Python exchange (KubectlExecTransport's stdlib-only script) run inside the toolbox pod with kubectl exec."""
    ns, pod = tb
    return KubectlExecTransport(pod, ns, kubectl=["kubectl", f"--kubeconfig={cluster.kubeconfig}"])


def rrs(section: list[dict[str, Any]], rtype: str | None = None) -> list[tuple[str, int, str, str]]:
    """(name, ttl, type, rdata) sorted, for comparing sections as multisets (loadbalance shuffles)."""
    return sorted((r["name"], r["ttl"], r["type"], r["rdata"]) for r in section if rtype in (None, r["type"]))


def apply(cluster: Any, manifest: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=manifest)


def ready_pod_ips(cluster: Any, ns: str, selector: str, n: int) -> dict[str, str]:
    """{pod name: IP} once `n` pods matching `selector` are Ready."""

    def check() -> dict[str, str] | None:
        pods = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-l", selector, "-o", "json").stdout)["items"]
        ready = {
            p["metadata"]["name"]: p["status"].get("podIP")
            for p in pods
            if p["status"].get("podIP") and any(
                c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        }
        return ready if len(ready) == n else None

    return wait_for(check, f"{n} ready pods {selector} in {ns}")


def cluster_ip(cluster: Any, ns: str, svc: str) -> str:
    return cluster.kubectl("get", "svc", "-n", ns, svc, "-o", "jsonpath={.spec.clusterIP}").stdout.strip()


def fqdn(*labels: str) -> str:
    return ".".join(labels) + f".svc.{ZONE}."


NGINX_DEPLOY = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: nginx, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: nginx}}}}
  template:
    metadata: {{labels: {{app: nginx}}}}
    spec:
      containers:
      - {{name: nginx, image: nginx, ports: [{{containerPort: 80, name: http}}]}}
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  {extra}
  selector: {{app: nginx}}
  ports: [{{name: http, port: 80, targetPort: 80, protocol: TCP}}]
"""


# ------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dns_ready(cluster: Any) -> None:
    """kube-dns answers through the VIP from the node's namespace (coredns pods Ready, IPVS agent serving)."""
    t = node_transport(cluster.home)

    def answers() -> bool:
        r = dig(f"kubernetes.default.svc.{ZONE}.", server=KUBE_DNS, transport=t, timeout=1)
        return r.rcode == "NOERROR" and r.addresses == ["10.96.0.1"]

    wait_for(answers, "kube-dns 10.96.0.10 to answer from the node", timeout=90, interval=0.25)


@pytest.fixture(scope="module")
def toolbox(cluster: Any, dns_ready: None) -> Iterator[tuple[str, str]]:
    """A busybox pod (sleep 3600) in a namespace of its own: (namespace, pod)."""
    ns = f"dns-toolbox-{os.getpid()}"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("run", "toolbox", "-n", ns, "--image=busybox", "--restart=Never", "--", "sleep", "3600")
    ready_pod_ips(cluster, ns, "run=toolbox", 1)
    yield ns, "toolbox"
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ------------------------------------------------------------------------------------------------- the article


def test_clusterip_service_is_an_a_record_of_its_cluster_ip(cluster: Any, namespace: str,
                                                            toolbox: tuple[str, str]) -> None:
    apply(cluster, NGINX_DEPLOY.format(ns=namespace, replicas=2) + "---" + SERVICE.format(
        name="nginx", ns=namespace, extra="type: ClusterIP"))
    ip = cluster_ip(cluster, namespace, "nginx")
    name = fqdn("nginx", namespace)
    expected = [(name, 30, "A", ip)]

    r = ldig(cluster, name, "--server", KUBE_DNS)
    assert r["rcode"] == "NOERROR" and "aa" in r["flags"] and "ra" not in r["flags"]
    assert rrs(r["answer"]) == expected
    assert rrs(ldig(cluster, name, "--tcp")["answer"]) == expected  # default server: the node's 10.96.0.10
    assert rrs(ldig(cluster, name, "--from", toolbox[1], "-n", toolbox[0])["answer"]) == expected

    d = pod_dig(cluster, toolbox, f"@{KUBE_DNS}", name)
    assert d.rcode == "NOERROR" and "aa" in d.flags
    assert rrs(d.answer) == expected
    assert rrs(pod_dig(cluster, toolbox, f"@{KUBE_DNS}", "+tcp", name).answer) == expected
    # The pod's resolv.conf (nameserver 10.96.0.10, search <ns>.svc.cluster.local ..., ndots:5): short names work.
    short = pod_dig(cluster, toolbox, "+search", f"nginx.{namespace}")
    assert [r["rdata"] for r in short.answer] == [ip]

    py = dig(name, server=KUBE_DNS, transport=pod_python(cluster, toolbox))
    assert rrs(py.answer) == expected
    py_tcp = dig(name, server=KUBE_DNS, tcp=True, transport=pod_python(cluster, toolbox))
    assert rrs(py_tcp.answer) == expected


def test_headless_service_answers_every_ready_pod(cluster: Any, namespace: str, toolbox: tuple[str, str]) -> None:
    apply(cluster, NGINX_DEPLOY.format(ns=namespace, replicas=2) + "---" + SERVICE.format(
        name="nginx", ns=namespace, extra="clusterIP: None"))
    ips = sorted(ready_pod_ips(cluster, namespace, "app=nginx", 2).values())
    name = fqdn("nginx", namespace)
    expected = sorted((name, 30, "A", ip) for ip in ips)

    assert rrs(wait_for(lambda: (r := ldig(cluster, name))["answer"] and len(r["answer"]) == 2 and r,
                        "two headless A records")["answer"]) == expected
    assert rrs(pod_dig(cluster, toolbox, f"@{KUBE_DNS}", name).answer) == expected
    assert rrs(dig(name, server=KUBE_DNS, transport=pod_python(cluster, toolbox)).answer) == expected


def test_statefulset_pod_has_its_own_name(cluster: Any, namespace: str, toolbox: tuple[str, str]) -> None:
    apply(cluster, SERVICE.format(name="nginx", ns=namespace, extra="clusterIP: None") + f"""---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: nginx, namespace: {namespace}}}
spec:
  serviceName: nginx
  replicas: 2
  selector: {{matchLabels: {{app: nginx}}}}
  template:
    metadata: {{labels: {{app: nginx}}}}
    spec:
      containers:
      - {{name: nginx, image: nginx, ports: [{{containerPort: 80, name: http}}]}}
""")
    pods = ready_pod_ips(cluster, namespace, "app=nginx", 2)
    for i in (0, 1):
        name = fqdn(f"nginx-{i}", "nginx", namespace)
        expected = [(name, 30, "A", pods[f"nginx-{i}"])]
        assert rrs(wait_for(lambda n=name: ldig(cluster, n)["answer"], f"A of {name}")) == expected
        assert rrs(pod_dig(cluster, toolbox, f"@{KUBE_DNS}", name).answer) == expected
    both = fqdn("nginx", namespace)
    assert rrs(ldig(cluster, both)["answer"]) == sorted((both, 30, "A", ip) for ip in pods.values())
    # The pod's own hostname record, from inside that pod.
    r = ldig(cluster, fqdn("nginx-1", "nginx", namespace), "--from", "nginx-1", "-n", namespace)
    assert [a["rdata"] for a in r["answer"]] == [pods["nginx-1"]]


def test_selectorless_service_answers_the_manual_endpoints(cluster: Any, namespace: str,
                                                           toolbox: tuple[str, str]) -> None:
    apply(cluster, f"""
apiVersion: v1
kind: Service
metadata: {{name: nginx, namespace: {namespace}}}
spec:
  clusterIP: None
  ports: [{{port: 80, targetPort: 80}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: nginx, namespace: {namespace}}}
subsets:
- addresses: [{{ip: 203.0.113.10}}]
  ports: [{{port: 80}}]
""")
    name = fqdn("nginx", namespace)
    expected = [(name, 30, "A", "203.0.113.10")]
    assert rrs(wait_for(lambda: ldig(cluster, name)["answer"], "the mirrored manual endpoint")) == expected
    assert rrs(pod_dig(cluster, toolbox, f"@{KUBE_DNS}", name).answer) == expected


def test_externalname_is_a_cname_then_the_outside_worlds_a(cluster: Any, namespace: str,
                                                           toolbox: tuple[str, str]) -> None:
    apply(cluster, f"""
apiVersion: v1
kind: Service
metadata: {{name: nginx, namespace: {namespace}}}
spec: {{type: ExternalName, externalName: www.example.net}}
""")
    name = fqdn("nginx", namespace)
    r = wait_for(lambda: ldig(cluster, name)["answer"], "the ExternalName CNAME")
    assert r[0] == {"name": name, "ttl": 30, "class": "IN", "type": "CNAME", "rdata": "www.example.net."}
    assert [(a["name"], a["type"], a["rdata"]) for a in r[1:]] == [("www.example.net.", "A", "203.0.113.10")]
    d = pod_dig(cluster, toolbox, f"@{KUBE_DNS}", name)
    assert [(a["type"], a["rdata"]) for a in d.answer] == [("CNAME", "www.example.net."), ("A", "203.0.113.10")]
    # The outside world's names resolve from a pod too (forward . /etc/resolv.conf of the dnsPolicy Default pods).
    assert [a["rdata"] for a in pod_dig(cluster, toolbox, "www.example.net.").answer] == ["203.0.113.10"]


# ------------------------------------------------------------------------------------------------- rule families


@pytest.fixture
def web(cluster: Any, namespace: str) -> dict[str, Any]:
    """nginx Deployment (2) + ClusterIP Service `nginx` with a named port `http`."""
    apply(cluster, NGINX_DEPLOY.format(ns=namespace, replicas=2) + "---" + SERVICE.format(
        name="nginx", ns=namespace, extra="type: ClusterIP"))
    pods = ready_pod_ips(cluster, namespace, "app=nginx", 2)
    return {"ns": namespace, "ip": cluster_ip(cluster, namespace, "nginx"), "pods": pods}


def test_srv_named_port(cluster: Any, web: dict[str, Any], toolbox: tuple[str, str]) -> None:
    svc = fqdn("nginx", web["ns"])
    name = f"_http._tcp.{svc}"
    r = ldig(cluster, name, "SRV")
    assert rrs(r["answer"]) == [(name, 30, "SRV", f"0 100 80 {svc}")]
    assert rrs(r["additional"], "A") == [(svc, 30, "A", web["ip"])]
    d = pod_dig(cluster, toolbox, f"@{KUBE_DNS}", name, "SRV")
    assert rrs(d.answer) == [(name, 30, "SRV", f"0 100 80 {svc}")]
    assert ldig(cluster, f"_nope._tcp.{svc}", "SRV")["rcode"] == "NXDOMAIN"


def test_ptr_of_a_cluster_ip(cluster: Any, web: dict[str, Any], toolbox: tuple[str, str]) -> None:
    rev = ".".join(reversed(web["ip"].split("."))) + ".in-addr.arpa."
    r = ldig(cluster, rev, "PTR")
    assert rrs(r["answer"]) == [(rev, 30, "PTR", fqdn("nginx", web["ns"]))]
    d = pod_dig(cluster, toolbox, f"@{KUBE_DNS}", "-x", web["ip"])
    assert rrs(d.answer) == [(rev, 30, "PTR", fqdn("nginx", web["ns"]))]


def test_nxdomain_versus_nodata(cluster: Any, web: dict[str, Any], toolbox: tuple[str, str]) -> None:
    ns = web["ns"]
    missing = ldig(cluster, fqdn("missing", ns))
    assert missing["rcode"] == "NXDOMAIN" and not missing["answer"]
    assert [a["type"] for a in missing["authority"]] == ["SOA"]
    nodata = ldig(cluster, fqdn("nginx", ns), "AAAA")  # an IPv4-only service: the name exists
    assert nodata["rcode"] == "NOERROR" and not nodata["answer"] and "aa" in nodata["flags"]
    assert [a["type"] for a in nodata["authority"]] == ["SOA"]
    assert ldig(cluster, fqdn("nginx", "no-such-namespace"))["rcode"] == "NXDOMAIN"
    assert pod_dig(cluster, toolbox, f"@{KUBE_DNS}", fqdn("missing", ns)).rcode == "NXDOMAIN"
    d = pod_dig(cluster, toolbox, f"@{KUBE_DNS}", fqdn("nginx", ns), "AAAA")
    assert d.rcode == "NOERROR" and not d.answer and [a["type"] for a in d.authority] == ["SOA"]


def test_pod_a_record(cluster: Any, web: dict[str, Any], toolbox: tuple[str, str]) -> None:
    ip = sorted(web["pods"].values())[0]
    name = f"{ip.replace('.', '-')}.{web['ns']}.pod.{ZONE}."
    assert rrs(ldig(cluster, name)["answer"]) == [(name, 30, "A", ip)]
    assert rrs(pod_dig(cluster, toolbox, f"@{KUBE_DNS}", name).answer) == [(name, 30, "A", ip)]
    # pods insecure: the namespace must exist.
    assert ldig(cluster, f"{ip.replace('.', '-')}.no-such-namespace.pod.{ZONE}.")["rcode"] == "NXDOMAIN"


def test_dns_version_and_soa_at_the_apex(cluster: Any, dns_ready: None, toolbox: tuple[str, str]) -> None:
    # The kubernetes plugin gives the TXT 28800 s; kind's `cache 30` caps every TTL it passes at 30 s, even for
    # cluster.local, whose replies it does not store (plugin/cache ResponseWriter.WriteMsg).
    txt = ldig(cluster, f"dns-version.{ZONE}.", "TXT")
    assert rrs(txt["answer"]) == [(f"dns-version.{ZONE}.", 30, "TXT", '"1.1.0"')]
    soa = ldig(cluster, f"{ZONE}.", "SOA")
    assert len(soa["answer"]) == 1
    mname, rname, _serial, *timers = soa["answer"][0]["rdata"].split()
    assert (mname, rname, timers) == (f"ns.dns.{ZONE}.", f"hostmaster.{ZONE}.", ["7200", "1800", "86400", "30"])
    assert soa["answer"][0]["ttl"] == 30
    d = pod_dig(cluster, toolbox, f"@{KUBE_DNS}", f"dns-version.{ZONE}.", "TXT")
    assert rrs(d.answer) == [(f"dns-version.{ZONE}.", 30, "TXT", '"1.1.0"')]
    d = pod_dig(cluster, toolbox, f"@{KUBE_DNS}", "+tcp", f"{ZONE}.", "SOA")
    assert [a["type"] for a in d.answer] == ["SOA"]


# ------------------------------------------------------------------------------------------------- changes


def _coredns_ips(cluster: Any) -> list[str]:
    return sorted(ready_pod_ips(cluster, "kube-system", "k8s-app=kube-dns", 2).values())


def _shows(cluster: Any, write: Callable[[], None], name: str, rdtype: str, want: Callable[[Any], bool]) -> None:
    """After `write()` (the API acknowledged it), both coredns pods and the VIP come to answer `want`.
    How soon: bench/bench_dns.py prints it (target 100 ms)."""
    t = node_transport(cluster.home)
    servers = [*_coredns_ips(cluster), KUBE_DNS]
    write()
    for s in servers:
        wait_for(lambda s=s: want(dig(name, rdtype, server=s, transport=t, timeout=1)), f"{name} {rdtype} on {s}")


def test_changes_show_in_answers(cluster: Any, namespace: str, dns_ready: None) -> None:
    client_mod, api = cluster.api_client()
    core = client_mod.CoreV1Api(api)
    disc = client_mod.DiscoveryV1Api(api)
    ns = namespace
    name = fqdn("chg", ns)
    core.create_namespaced_service(ns, {"metadata": {"name": "chg"}, "spec": {
        "clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
    slice_body = {
        "metadata": {"name": "chg-manual", "labels": {"kubernetes.io/service-name": "chg",
                                                       "endpointslice.kubernetes.io/managed-by": "test.labkit"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": [{"addresses": [f"203.0.113.{i}"], "conditions": {"ready": True}} for i in (101, 102)],
    }
    _shows(cluster, lambda: disc.create_namespaced_endpoint_slice(ns, slice_body), name, "A",
           lambda r: sorted(r.addresses) == ["203.0.113.101", "203.0.113.102"])
    slice_body["endpoints"].append({"addresses": ["203.0.113.103"], "conditions": {"ready": True}})
    _shows(cluster, lambda: disc.replace_namespaced_endpoint_slice("chg-manual", ns, slice_body), name, "A",
           lambda r: len(r.addresses) == 3)
    slice_body["endpoints"][0]["conditions"]["ready"] = False  # readiness
    _shows(cluster, lambda: disc.replace_namespaced_endpoint_slice("chg-manual", ns, slice_body), name, "A",
           lambda r: sorted(r.addresses) == ["203.0.113.102", "203.0.113.103"])
    _shows(cluster, lambda: core.delete_namespaced_service("chg", ns), name, "A", lambda r: r.rcode == "NXDOMAIN")
    # The whole chain through the controllers: scale a Deployment behind a headless Service (the pod starts and
    # passes readiness, its slice changes, DNS follows).
    apply(cluster, NGINX_DEPLOY.format(ns=ns, replicas=1) + "---" + SERVICE.format(
        name="nginx", ns=ns, extra="clusterIP: None"))
    ready_pod_ips(cluster, ns, "app=nginx", 1)
    svc = fqdn("nginx", ns)
    wait_for(lambda: len(ldig(cluster, svc)["answer"]) == 1, "one headless record")
    cluster.kubectl("scale", "-n", ns, "deployment/nginx", "--replicas=2")
    wait_for(lambda: len(dig(svc, transport=node_transport(cluster.home), server=KUBE_DNS, timeout=1).addresses)
             == 2, "two headless records after the scale", timeout=60)


# ------------------------------------------------------------------------------------------------- robustness


def _hostile_packets(rng: random.Random) -> list[bytes]:
    good = make_query(f"kubernetes.default.svc.{ZONE}.", "A").to_wire()
    pkts = [
        b"", b"\x00", good[:11], good[:12], good[:-3],
        good[:2] + b"\x81\x00" + good[4:],  # QR set: dropped
        good[:2] + b"\x28\x00" + good[4:],  # opcode UPDATE
        good[:4] + b"\x00\x02" + good[6:],  # QDCOUNT 2
        good[:4] + b"\x00\x00" + good[6:],  # QDCOUNT 0
        good[:4] + b"\xff\xff\xff\xff\xff\xff\xff\xff",  # huge counts, nothing behind them
        good[:12] + b"\xc0\x0c" + b"\x00\x01\x00\x01",  # compression pointer to itself
        good[:12] + b"\xc0\x0e\xc0\x0c\x00\x01\x00\x01",  # pointer loop
        good[:12] + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3f" + b"d" * 63
        + b"\x00\x00\x01\x00\x01",  # a 256-octet name
        good[:12] + b"\x01a" * 130 + b"\x00\x00\x01\x00\x01",  # too many labels
        good[:12] + b"\x80abc\x00\x00\x01\x00\x01",  # reserved label type
        good[:-2] + b"\x00\x03",  # class CH
        make_query(f"{ZONE}.", "AXFR").to_wire(), make_query(f"{ZONE}.", "ANY").to_wire(),
        good + b"\x00" * 500,  # trailing garbage
        good[:10] + b"\x00\x02" + good[12:] + b"\x00\x00\x29\x10\x00\x01\x00\x00\x00\x00\x00" * 2,  # two OPTs
        good[:10] + b"\x00\x01" + good[12:] + b"\x00\x00\x29\x10\x00\x00\x05\x00\x00\x00\x04\x00\x0a\x00\xff",
    ]
    for _ in range(300):
        n = rng.choice((rng.randrange(0, 12), rng.randrange(12, 64), rng.randrange(64, 1500)))
        pkts.append(bytes(rng.getrandbits(8) for _ in range(n)))
    for _ in range(300):  # mutations of a valid query
        b = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        pkts.append(bytes(b))
    return pkts


def _coredns_restarts(cluster: Any) -> dict[str, int]:
    pods = json.loads(cluster.kubectl("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-dns",
                                      "-o", "json").stdout)["items"]
    return {p["metadata"]["name"]: sum(cs["restartCount"] for cs in p["status"].get("containerStatuses", []))
            for p in pods}


def test_malformed_and_hostile_packets_never_stop_the_server(cluster: Any, dns_ready: None) -> None:
    restarts = _coredns_restarts(cluster)
    rng = random.Random(20240601)
    netns = node_transport(cluster.home).netns_path
    pkts = _hostile_packets(rng)
    udp = socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect((KUBE_DNS, 53))
    udp.setblocking(False)
    for p in pkts:
        try:
            udp.send(p)
        except (BlockingIOError, ConnectionRefusedError):
            pass
        while True:  # read whatever came back so far
            try:
                udp.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                break
    udp.close()
    # TCP: garbage, lying length prefixes, half messages, connections left open.
    open_conns = []
    for p in pkts[:60]:
        s = socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect((KUBE_DNS, 53))
        choice = rng.randrange(4)
        if choice == 0:
            s.sendall(struct.pack("!H", len(p)) + p)
        elif choice == 1:
            s.sendall(struct.pack("!H", 65535) + p)  # promises more than it sends
        elif choice == 2:
            s.sendall(p)  # no length prefix
        else:
            s.sendall(b"\x00")
        if rng.random() < 0.3:
            open_conns.append(s)
        else:
            s.close()
    t = node_transport(cluster.home)
    for server in [*_coredns_ips(cluster), KUBE_DNS]:
        for tcp in (False, True):
            r = dig(f"kubernetes.default.svc.{ZONE}.", server=server, tcp=tcp, transport=t, timeout=2)
            assert r.addresses == ["10.96.0.1"], (server, tcp)
    # Specific answers the accept function gives (dns-rules.md §6.1).
    q = make_query(f"kubernetes.default.svc.{ZONE}.", "A", edns=False).to_wire()
    two = q[:4] + b"\x00\x02" + q[6:]
    assert t.exchange(two, KUBE_DNS, 53, False, 2)[3] & 0x0F == 1  # FORMERR
    update = q[:2] + b"\x29\x00" + q[4:]
    assert t.exchange(update, KUBE_DNS, 53, False, 2)[3] & 0x0F == 4  # NOTIMP
    assert ldig(cluster, f"{ZONE}.", "AXFR", "--tcp")["rcode"] == "REFUSED"
    for s in open_conns:
        s.close()
    assert _coredns_restarts(cluster) == restarts, "a coredns container restarted"


# ------------------------------------------------------------------------------------------------- side ports


def _http_get(netns: str, host: str, port: int, path: str) -> tuple[int, str]:
    """A plain HTTP/1.0 GET from the node's namespace."""
    s = socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM)
    with s:
        s.settimeout(3)
        s.connect((host, port))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def test_ready_health_and_metrics_ports(cluster: Any, dns_ready: None) -> None:
    netns = node_transport(cluster.home).netns_path
    for ip in _coredns_ips(cluster):
        assert _http_get(netns, ip, 8181, "/ready") == (200, "OK")
        assert _http_get(netns, ip, 8080, "/health") == (200, "OK")
    # kube-dns's metrics port, through the IPVS agent like Prometheus would scrape it.
    status, body = _http_get(netns, KUBE_DNS, 9153, "/metrics")
    assert status == 200
    # labels sorted by name, as Prometheus's Go client writes them
    assert re.search(r'^coredns_dns_requests_total\{family="1",proto="udp",server="dns://:53",type="A",view="",'
                     r'zone="."\} \d+$', body, re.M), body[:2000]
    assert "coredns_dns_request_duration_seconds_bucket" in body and "coredns_panics_total 0" in body
