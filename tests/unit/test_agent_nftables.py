"""nftables mode's rendering and transactions against kube-proxy's own expectations (pkg/proxy/nftables/
proxier_test.go, as /work/shared/reference/nftables.md quotes them), with `nft` replaced by a recorder."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.agent.desired import service_ports
from labkit.agent.nftables import NftablesProxier, NftError, hash_and_truncate, render_service

NODE = "node1"


def svc(name: str, ns: str, ip: str, port: int = 80, port_name: str = "p80", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": [{"name": port_name, "port": port, "protocol": "TCP",
                                                  **({"nodePort": spec.pop("node_port")} if "node_port" in spec
                                                     else {})}], **spec}}


def slice_(name: str, ns: str, port: int, *ips: str, port_name: str = "p80") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": f"{name}-x", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]}


class Recorder:
    """Stands for the `nft` binary: records each transaction; `fail` makes the next one fail."""

    def __init__(self) -> None:
        self.transactions: list[str] = []
        self.fail = False

    def __call__(self, args: list[str], stdin: str | None = None) -> str:
        if self.fail:
            self.fail = False
            raise NftError("nft -f -: Error: Could not process rule")
        self.transactions.append(stdin or "")
        return ""


def proxier() -> tuple[NftablesProxier, Recorder]:
    rec = Recorder()
    return NftablesProxier(["192.168.0.2"], "10.0.0.0/8", run=rec, lister=lambda: (set(), set())), rec


def startup_ports() -> dict[Any, Any]:
    """TestSyncProxyRulesStartup's Services: svc1 with 2 endpoints, svc2 with 1, svc3 with none."""
    return {("ns1", "svc1"): service_ports(svc("svc1", "ns1", "172.30.0.41"),
                                           [slice_("svc1", "ns1", 80, "10.0.1.1", "10.0.1.2")], NODE),
            ("ns2", "svc2"): service_ports(svc("svc2", "ns2", "172.30.0.42", 8080, "p8080"),
                                           [slice_("svc2", "ns2", 8080, "10.0.2.1", port_name="p8080")], NODE),
            ("ns3", "svc3"): service_ports(svc("svc3", "ns3", "172.30.0.43"), [], NODE)}


def lines_of(tx: str, prefix: str) -> list[str]:
    return [line for line in tx.splitlines() if line.startswith(prefix)]


def test_chain_names_hash_as_kube_proxy() -> None:
    assert hash_and_truncate("ns1/svc1/tcp/p80") == "ULMVA6XW-ns1/svc1/tcp/p80"
    assert hash_and_truncate("ns1/svc1/tcp/p80__10.180.0.1/80") == "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    long = hash_and_truncate("x" * 300)
    assert len(long) == 240 and long.endswith("...")


def test_full_sync_writes_kube_proxys_expected_rules_and_elements() -> None:
    p, rec = proxier()
    p.sync(startup_ports(), None)
    tx = rec.transactions[0]
    t = "ip kube-proxy"
    svc1, svc2 = "service-ULMVA6XW-ns1/svc1/tcp/p80", "service-MHHHYRWA-ns2/svc2/tcp/p8080"
    ep1, ep2 = "endpoint-5TPGNJF2-ns1/svc1/tcp/p80__10.0.1.1/80", "endpoint-ZCZBVNAZ-ns1/svc1/tcp/p80__10.0.1.2/80"
    ep3 = "endpoint-7RVP4LUQ-ns2/svc2/tcp/p8080__10.0.2.1/8080"
    for line in [
        f"add element {t} cluster-ips {{ 172.30.0.41 }}",
        f"add element {t} cluster-ips {{ 172.30.0.43 }}",
        f"add element {t} service-ips {{ 172.30.0.41 . tcp . 80 : goto {svc1} }}",
        f"add element {t} service-ips {{ 172.30.0.42 . tcp . 8080 : goto {svc2} }}",
        f"add element {t} no-endpoint-services {{ 172.30.0.43 . tcp . 80 comment \"ns3/svc3:p80\" "
        ": goto reject-chain }",
        f"add rule {t} {svc1} ip daddr 172.30.0.41 tcp dport 80 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
        f"add rule {t} {svc1} numgen random mod 2 vmap {{ 0 : goto {ep1} , 1 : goto {ep2} }}",
        f"add rule {t} {ep1} ip saddr 10.0.1.1 jump mark-for-masquerade",
        f"add rule {t} {ep1} meta l4proto tcp dnat to 10.0.1.1:80",
        f"add rule {t} {svc2} numgen random mod 1 vmap {{ 0 : goto {ep3} }}",
        f"add rule {t} {ep3} meta l4proto tcp dnat to 10.0.2.1:8080",
        f"add element {t} nodeport-ips {{ 192.168.0.2 }}",
        f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips",
        f"add rule {t} cluster-ips-check ip daddr @cluster-ips reject comment "
        "\"Reject traffic to invalid ports of ClusterIPs\"",
    ]:
        assert line in tx.splitlines(), line
    assert not any("svc3" in line for line in lines_of(tx, "add chain"))  # no endpoints: no nat chains
    # the first sync of a process re-creates every base chain (add then delete), then sets them up
    assert lines_of(tx, "delete chain") == [f"delete chain {t} {c}" for c in (
        "filter-prerouting", "filter-input", "filter-forward", "filter-output", "filter-output-post-dnat",
        "nat-prerouting", "nat-output", "nat-postrouting")]
    p.sync(startup_ports(), None)
    assert not lines_of(rec.transactions[1], "delete chain")


def test_one_services_change_rewrites_only_its_own_chains() -> None:
    p, rec = proxier()
    ports = startup_ports()
    p.sync(ports, None)
    ports[("ns1", "svc1")] = service_ports(svc("svc1", "ns1", "172.30.0.41"),
                                           [slice_("svc1", "ns1", 80, "10.0.1.1", "10.0.1.3")], NODE)
    p.sync(ports, {("ns1", "svc1")})
    tx = rec.transactions[-1]
    touched = {line.split()[4] for line in tx.splitlines() if " chain " in line or line.startswith("add rule")}
    assert touched and all("ns1/svc1/" in name for name in touched)
    assert not lines_of(tx, "add element") and not lines_of(tx, "delete element")  # same ClusterIP, same verdict
    gone = "endpoint-ZCZBVNAZ-ns1/svc1/tcp/p80__10.0.1.2/80"
    assert f"flush chain ip kube-proxy {gone}" in tx.splitlines()  # stale: flushed now, deleted a second later
    assert gone in p.stale and p.stale_due() is not None
    p.stale[gone] -= 2.0
    p.sync(ports, set())
    assert rec.transactions[-1] == f"delete chain ip kube-proxy {gone}\n"
    assert not p.stale
    # nothing changed: no transaction at all
    count = len(rec.transactions)
    p.sync(ports, set())
    assert len(rec.transactions) == count


def test_losing_every_endpoint_moves_the_service_to_no_endpoint_services() -> None:
    p, rec = proxier()
    ports = startup_ports()
    p.sync(ports, None)
    ports[("ns2", "svc2")] = service_ports(svc("svc2", "ns2", "172.30.0.42", 8080, "p8080"), [], NODE)
    p.sync(ports, {("ns2", "svc2")})
    tx = rec.transactions[-1].splitlines()
    assert "delete element ip kube-proxy service-ips { 172.30.0.42 . tcp . 8080 }" in tx
    assert ("add element ip kube-proxy no-endpoint-services { 172.30.0.42 . tcp . 8080 comment \"ns2/svc2:p8080\" "
            ": goto reject-chain }") in tx
    assert p.views[("TCP", "172.30.0.42", 8080)].destinations == []


def test_failed_transaction_changes_nothing_remembered() -> None:
    p, rec = proxier()
    ports = startup_ports()
    p.sync(ports, None)
    before = dict(p.fragments)
    del ports[("ns1", "svc1")]
    rec.fail = True
    with pytest.raises(NftError):
        p.sync(ports, {("ns1", "svc1")})
    assert p.fragments == before and ("TCP", "172.30.0.41", 80) in p.views


def test_affinity_nodeport_and_local_policy() -> None:
    s = svc("web", "default", "10.96.0.20", node_port=30080, type="NodePort", sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    frag = render_service(service_ports(s, [slice_("web", "default", 8080, "10.244.0.5")], NODE), "10.244.0.0/16")
    chains = frag.chains
    svc_chain = next(c for c in chains if c.startswith("service-"))
    ext_chain = next(c for c in chains if c.startswith("external-"))
    ep_chain = next(c for c in chains if c.startswith("endpoint-"))
    aff = "affinity-" + ep_chain.removeprefix("endpoint-")
    assert svc_chain == "service-" + hash_and_truncate("default/web/tcp/p80") and frag.sets == {aff: 60}
    assert chains[svc_chain][1] == f"ip saddr @{aff} goto {ep_chain}"
    assert chains[ep_chain][1] == f"update @{aff} {{ ip saddr }}"
    assert chains[ext_chain] == ["jump mark-for-masquerade", f"goto {svc_chain}"]
    assert frag.elements[("service-nodeports", "tcp . 30080")].value == f"goto {ext_chain}"
    s["spec"]["externalTrafficPolicy"] = "Local"  # the only endpoint is on another node
    other = slice_("web", "default", 8080, "10.244.0.5")
    other["endpoints"][0]["nodeName"] = "elsewhere"
    frag = render_service(service_ports(s, [other], NODE), "10.244.0.0/16")
    ext_chain = next(c for c in frag.chains if c.startswith("external-"))
    assert frag.chains[ext_chain][0].endswith("comment \"short-circuit pod traffic\"")
    assert frag.elements[("no-endpoint-nodeports", "tcp . 30080")].value == "drop"  # Local, none local: drop
