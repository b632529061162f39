"""The per-pod files kubelet writes and bind-mounts into every container: /etc/hosts, /etc/hostname,
/etc/resolv.conf.

Sources (read, not copied):
- kubernetes pkg/kubelet/network/dns/dns.go (GetPodDNS): ClusterFirst = cluster DNS as the only nameserver,
  search `<ns>.svc.<domain> svc.<domain> <domain>` + the node's search list (duplicates omitted),
  options `ndots:5`; Default = the node's resolv.conf; None = empty base; `spec.dnsConfig` is then appended
  (nameservers/searches de-duplicated, options merged by name, a later value winning). Limits: 3
  nameservers, 32 search domains / 2048 chars (ExpandedDNSConfig, GA), domains > 253 chars dropped.
- containerd pkg/cri (parseDNSOptions) writes the file in the order `search`, `nameserver`, `options` —
  kind runs containerd, so that is what `cat /etc/resolv.conf` shows in a kind pod.
- kubernetes pkg/kubelet/kubelet_pods.go (managedHostsFileContent, hostsEntriesFromHostAliases,
  truncatePodHostnameIfNeeded, GeneratePodHostNameAndDomain).
- kubernetes pkg/kubelet/util/util.go (GetNodenameForKernel): with `setHostnameAsFQDN: true` and a host domain
  (spec.subdomain set), the kernel hostname, and so /etc/hostname, is the FQDN; /etc/hosts keeps the short name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
MAX_DOMAIN_LEN = 253
HOSTNAME_MAX_LEN = 63
FQDN_MAX_LEN = 64  # the kernel's nodename field: 64 characters and the terminating NUL


class SandboxConfigError(ValueError):
    """A pod whose sandbox cannot be configured (kubelet's generatePodSandboxConfig error)."""


@dataclass(frozen=True)
class DNSConfig:
    """A resolver configuration: what goes into resolv.conf."""

    servers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def render(self) -> str:
        """resolv.conf text as containerd writes it (search, nameserver, options)."""
        text = ""
        if self.searches:
            text += f"search {' '.join(self.searches)}\n"
        if self.servers:
            text += "".join(f"nameserver {s}\n" for s in self.servers)
        if self.options:
            text += f"options {' '.join(self.options)}\n"
        return text


def parse_resolv_conf(text: str) -> DNSConfig:
    """kubelet's parseResolvConf: nameservers accumulate, the last search/options line wins."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.split("\n"):
        trimmed = line.strip()
        if trimmed.startswith("#"):
            continue
        fields = trimmed.split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            servers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:]]
        elif fields[0] == "options":
            options = fields[1:]
    return DNSConfig(servers, searches, options)


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(existing: Sequence[str], extra: Sequence[dict[str, Any]]) -> list[str]:
    # kubelet builds a Go map (random order); we keep first-seen order so the file is deterministic.
    merged: dict[str, str] = {}
    for op in existing:
        name, _, value = op.partition(":")
        merged[name] = value
    for op in extra:
        merged[op.get("name", "")] = op.get("value") or ""
    return [f"{k}:{v}" if v else k for k, v in merged.items()]


def _fit_searches(searches: list[str]) -> list[str]:
    searches = [s for s in searches[:MAX_SEARCH_PATHS] if len(s) <= MAX_DOMAIN_LEN]
    while searches and len(" ".join(searches)) > MAX_SEARCH_CHARS:
        searches.pop()
    return searches


def pod_dns_config(pod: dict[str, Any], *, cluster_dns: Sequence[str] = ("10.96.0.10",),
                   cluster_domain: str = "cluster.local", node_resolv_conf: str = "") -> DNSConfig:
    """The DNS configuration kubelet gives `pod` (GetPodDNS)."""
    spec = pod.get("spec", {})
    namespace = pod.get("metadata", {}).get("namespace") or "default"
    host = parse_resolv_conf(node_resolv_conf)
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    if policy == "None":
        config = DNSConfig()
    elif policy in ("ClusterFirst", "ClusterFirstWithHostNet") and cluster_dns:
        cluster_search = [f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
        config = DNSConfig(list(cluster_dns), _unique(cluster_search + host.searches), ["ndots:5"])
    else:
        config = host
    extra = spec.get("dnsConfig")
    if extra:
        config = DNSConfig(_unique(config.servers + list(extra.get("nameservers") or [])),
                           _unique(config.searches + list(extra.get("searches") or [])),
                           _merge_options(config.options, extra.get("options") or []))
    return DNSConfig(config.servers[:MAX_NAMESERVERS], _fit_searches(list(config.searches)), config.options)


def resolv_conf(pod: dict[str, Any], **kwargs: Any) -> str:
    """/etc/resolv.conf of `pod` (see pod_dns_config for the keyword arguments)."""
    return pod_dns_config(pod, **kwargs).render()


def pod_hostname_and_domain(pod: dict[str, Any], cluster_domain: str = "cluster.local") -> tuple[str, str]:
    """(hostname, host domain): spec.hostname or the pod name, cut to 63 characters without a trailing
    '-' or '.'; the domain is `<subdomain>.<ns>.svc.<cluster domain>` when spec.subdomain is set."""
    spec = pod.get("spec", {})
    meta = pod.get("metadata", {})
    hostname = spec.get("hostname") or meta.get("name", "")
    if len(hostname) > HOSTNAME_MAX_LEN:
        hostname = hostname[:HOSTNAME_MAX_LEN].rstrip("-.")
    domain = ""
    if spec.get("subdomain"):
        domain = f"{spec['subdomain']}.{meta.get('namespace') or 'default'}.svc.{cluster_domain}"
    return hostname, domain


def hosts_file(pod: dict[str, Any], pod_ips: Sequence[str], cluster_domain: str = "cluster.local") -> str:
    """/etc/hosts of a pod that is not on the host network (managedHostsFileContent)."""
    hostname, domain = pod_hostname_and_domain(pod, cluster_domain)
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    for ip in pod_ips:
        lines.append(f"{ip}\t{hostname}.{domain}\t{hostname}" if domain else f"{ip}\t{hostname}")
    text = "\n".join(lines) + "\n"
    aliases = pod.get("spec", {}).get("hostAliases") or []
    if aliases:
        text += "\n# Entries added by HostAliases.\n"
        text += "".join(f"{a.get('ip', '')}\t{chr(9).join(a.get('hostnames') or [])}\n" for a in aliases)
    return text


def kernel_hostname(pod: dict[str, Any], cluster_domain: str = "cluster.local") -> str:
    """The hostname the pod's UTS namespace gets (GetNodenameForKernel): the short hostname, or the FQDN with
    `setHostnameAsFQDN: true` when the pod has a host domain; SandboxConfigError if that FQDN is too long."""
    hostname, domain = pod_hostname_and_domain(pod, cluster_domain)
    if not (domain and pod.get("spec", {}).get("setHostnameAsFQDN") is True):
        return hostname
    fqdn = f"{hostname}.{domain}"
    if len(fqdn) > FQDN_MAX_LEN:
        raise SandboxConfigError(f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is "
                                 f"too long ({FQDN_MAX_LEN} characters is the max, {len(fqdn)} characters "
                                 "requested)")
    return fqdn


def hostname_file(pod: dict[str, Any], cluster_domain: str = "cluster.local") -> str:
    """/etc/hostname: the kernel hostname and a newline (what containerd writes from the sandbox config)."""
    return kernel_hostname(pod, cluster_domain) + "\n"
