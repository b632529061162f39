"""`Lab.nft()`'s reading of `nft list table ip kube-proxy` (the listing kube-proxy's reference shows, nft 1.0.6)."""

from __future__ import annotations

from labkit.lab.nftables import NftRules

LISTING = """\
table ip kube-proxy {
\tcomment "rules for kube-proxy"
\tset cluster-ips {
\t\ttype ipv4_addr
\t\tcomment "Active ClusterIPs"
\t\telements = { 10.96.100.10, 10.96.0.1 }
\t}

\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\tcomment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
\t\telements = { 10.96.100.10 . tcp . 80 : goto service-SUSTUHLJ-default/web/tcp/http,
\t\t\t     10.96.0.1 . tcp . 443 : goto service-2QRHZV4L-default/kubernetes/tcp/https }
\t}

\tchain nat-prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tjump services
\t}

\tchain reject-chain {
\t\tcomment "helper for @no-endpoint-services / @no-endpoint-nodeports"
\t\treject
\t}

\tchain endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080 {
\t\tip saddr 10.244.1.5 jump mark-for-masquerade
\t\tmeta l4proto tcp dnat to 10.244.1.5:8080
\t}

\tchain endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080 {
\t\tip saddr 10.244.2.7 jump mark-for-masquerade
\t\tmeta l4proto tcp dnat to 10.244.2.7:8080
\t}

\tchain service-SUSTUHLJ-default/web/tcp/http {
\t\tip daddr 10.96.100.10 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
\t\tnumgen random mod 2 vmap { 0 : goto endpoint-HGNPOIJ5-default/web/tcp/http__10.244.1.5/8080, 1 : goto \
endpoint-BZGFZVVG-default/web/tcp/http__10.244.2.7/8080 }
\t}
}
"""


def test_parse_and_keep_one_service() -> None:
    rules = NftRules.parse(LISTING)
    assert rules.chains["nat-prerouting"] == ["jump services"]
    assert rules.chains["reject-chain"] == ["reject"]
    assert rules.elements["cluster-ips"] == ["10.96.100.10", "10.96.0.1"]
    assert len(rules.elements["service-ips"]) == 2
    web = rules.only("default", "web", ["10.96.100.10"])
    assert web.service_chains() == ["service-SUSTUHLJ-default/web/tcp/http"]
    assert web.spread() == 2 and web.dnat_targets() == ["10.244.1.5:8080", "10.244.2.7:8080"]
    assert web.elements == {"cluster-ips": ["10.96.100.10"],
                            "service-ips": ["10.96.100.10 . tcp . 80 : goto service-SUSTUHLJ-default/web/tcp/http"]}
    assert "kubernetes" not in web.text and web.text.startswith("table ip kube-proxy {\n")
    assert NftRules.parse(web.text).chains == web.chains  # its text reads back the same
