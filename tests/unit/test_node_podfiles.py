"""Per-pod files as kubelet (+ containerd) writes them: resolv.conf, /etc/hosts, hostname."""

import pytest

from labkit.node.podfiles import (
    SandboxConfigError,
    hostname_file,
    hosts_file,
    kernel_hostname,
    pod_hostname_and_domain,
    resolv_conf,
)

NODE_RESOLV = "# node\nnameserver 203.0.113.53\nsearch example.net.\noptions edns0\n"


def pod(name="web-0", ns="default", **spec):
    return {"metadata": {"name": name, "namespace": ns, "uid": "u1"}, "spec": spec}


def test_cluster_first_is_what_a_kind_pod_shows():
    assert resolv_conf(pod()) == ("search default.svc.cluster.local svc.cluster.local cluster.local\n"
                                  "nameserver 10.96.0.10\noptions ndots:5\n")


def test_cluster_first_appends_node_search_and_drops_duplicates():
    text = resolv_conf(pod(ns="prod"), node_resolv_conf=NODE_RESOLV + "search cluster.local example.net\n")
    assert text.splitlines()[0] == "search prod.svc.cluster.local svc.cluster.local cluster.local example.net"


def test_default_policy_uses_the_node_resolver():
    assert resolv_conf(pod(dnsPolicy="Default"), node_resolv_conf=NODE_RESOLV) == (
        "search example.net\nnameserver 203.0.113.53\noptions edns0\n")


def test_host_network_cluster_first_falls_back_to_default():
    text = resolv_conf(pod(dnsPolicy="ClusterFirst", hostNetwork=True), node_resolv_conf=NODE_RESOLV)
    assert "10.96.0.10" not in text and "203.0.113.53" in text


def test_none_policy_with_dns_config():
    p = pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.2.3.4", "1.2.3.4"], "searches": ["a.b"],
                                         "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    assert resolv_conf(p) == "search a.b\nnameserver 1.2.3.4\noptions ndots:2 edns0\n"


def test_dns_config_options_override_by_name():
    p = pod(dnsConfig={"options": [{"name": "ndots", "value": "1"}], "nameservers": ["9.9.9.9"]})
    text = resolv_conf(p)
    assert "options ndots:1\n" in text and "nameserver 10.96.0.10\nnameserver 9.9.9.9\n" in text


def test_nameservers_are_limited_to_three():
    p = pod(dnsConfig={"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3"]})
    assert resolv_conf(p).count("nameserver") == 3


def test_hosts_file_plain():
    assert hosts_file(pod(name="nginx-1"), ["10.244.0.5"]) == (
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
        "10.244.0.5\tnginx-1\n")


def test_hosts_file_with_hostname_subdomain_and_aliases():
    p = pod(name="web-0", ns="shop", hostname="web-0", subdomain="nginx",
            hostAliases=[{"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]}])
    text = hosts_file(p, ["10.244.0.7"])
    assert "10.244.0.7\tweb-0.nginx.shop.svc.cluster.local\tweb-0\n" in text
    assert text.endswith("\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n")


def test_hostname_prefers_spec_hostname_and_truncates():
    assert pod_hostname_and_domain(pod(name="x", hostname="custom")) == ("custom", "")
    long = "a" * 62 + "-b"
    assert pod_hostname_and_domain(pod(name=long))[0] == "a" * 62
    assert hostname_file(pod(name="p")) == "p\n"


def test_set_hostname_as_fqdn_makes_the_kernel_hostname_the_fqdn():
    p = pod(name="busybox-1", ns="my-namespace", hostname="busybox-1", subdomain="busybox-subdomain",
            setHostnameAsFQDN=True)
    fqdn = "busybox-1.busybox-subdomain.my-namespace.svc.cluster.local"
    assert kernel_hostname(p) == fqdn and hostname_file(p) == fqdn + "\n"
    # /etc/hosts keeps the short name beside the FQDN.
    assert f"10.244.0.9\t{fqdn}\tbusybox-1\n" in hosts_file(p, ["10.244.0.9"])
    # Without a subdomain there is no host domain: the short name stays (kubelet's rule).
    assert kernel_hostname(pod(name="solo", setHostnameAsFQDN=True)) == "solo"
    assert kernel_hostname(pod(name="busybox-1", subdomain="s", setHostnameAsFQDN=False)) == "busybox-1"


def test_an_fqdn_longer_than_64_characters_is_kubelets_error():
    p = pod(name="a" * 30, ns="my-namespace", subdomain="busybox-subdomain", setHostnameAsFQDN=True)
    fqdn = "a" * 30 + ".busybox-subdomain.my-namespace.svc.cluster.local"
    with pytest.raises(SandboxConfigError) as err:
        kernel_hostname(p)
    assert str(err.value) == (f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too "
                              f"long (64 characters is the max, {len(fqdn)} characters requested)")
    exact = pod(name="a" * 15, ns="my-namespace", subdomain="busybox-subdomain", setHostnameAsFQDN=True)
    assert len(kernel_hostname(exact)) == 64
