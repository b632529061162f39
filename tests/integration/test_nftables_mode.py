"""kube-proxy's nftables mode on the embedded cluster: `labkit nft` shows kube-proxy's table for a Service as a
kind node would, a killed agent's rules keep serving and its successor reconciles them, `labkit down` leaves
nothing, and the host's own ruleset never changes."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from labkit.agent.cli import ipvs_main, nft_main
from labkit.agent.nftables import hash_and_truncate
from labkit.backends import embedded
from labkit.node.names import Names
from tests.integration.test_agent import client_pod, http_get, pod_sockets, ready_pods, wait_for
from tests.integration.test_proxy_modes import served, web_service

pytestmark = pytest.mark.integration


def labkit_nft(cluster: Any, *args: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert nft_main(list(args), cluster.home) == 0
    return out.getvalue()


def host_ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout


def test_labkit_nft_shows_one_service_as_kube_proxy_writes_it(nft_cluster: Any, namespace_nft: str) -> None:
    mc, ns = nft_cluster, namespace_nft
    vip, pods = web_service(mc, ns, 2)
    table = labkit_nft(mc)
    assert table.startswith("table ip kube-proxy {\n\tcomment \"rules for kube-proxy\"\n")
    chain = "service-" + hash_and_truncate(f"{ns}/web/tcp/")  # `kubectl expose` leaves the port unnamed
    assert f"{vip} . tcp . 80 : goto {chain}" in table
    block = table.split(f"\tchain {chain} {{\n", 1)[1].split("\n\t}", 1)[0].splitlines()
    assert block[0].strip() == f"ip daddr {vip} tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
    assert block[1].strip().startswith("numgen random mod 2 vmap { 0 : goto endpoint-")
    for ip in pods.values():
        endpoint = "endpoint-" + hash_and_truncate(f"{ns}/web/tcp/__{ip}/80")
        assert f"\tchain {endpoint} {{\n\t\tip saddr {ip} jump mark-for-masquerade\n" \
               f"\t\tmeta l4proto tcp dnat to {ip}:80\n\t}}" in table
    # one chain, as `nft list chain` prints it; and the IPVS table is empty, as ipvsadm's is in this mode
    assert labkit_nft(mc, "list", "chain", "ip", "kube-proxy", chain).count("numgen random mod 2") == 1
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert ipvs_main([], mc.home) == 0
    assert out.getvalue().splitlines()[3:] == []


def test_killed_agent_keeps_serving_and_its_successor_reconciles(nft_cluster: Any, namespace_nft: str) -> None:
    mc, ns = nft_cluster, namespace_nft
    vip, pods = web_service(mc, ns, 1)
    sockets = pod_sockets(mc, ns, client_pod(mc, ns))
    pid_file = mc.home / "run" / "ipvs-agent.pid"
    try:
        before = labkit_nft(mc)
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        # the kernel's rules outlive the agent: the Service answers while it is down and restarting
        assert http_get(sockets, vip, 80, "/hostname").endswith(next(iter(pods)).encode())
        wait_for(lambda: int(pid_file.read_text()) != pid, 20, "a new agent")
        mc.kubectl("scale", "deploy", "web", "-n", ns, "--replicas=2")
        pods = wait_for(lambda: (p := ready_pods(mc, ns, "app=web")) and len(p) == 2 and p, 60, "2 ready pods")
        wait_for(lambda: served(mc, "TCP", vip, 80) == set(pods.values()), 30, "the new agent following the API")
        got = {http_get(sockets, vip, 80, "/hostname").partition(b"\r\n\r\n")[2].decode() for _ in range(30)}
        assert got == set(pods)
    finally:
        sockets.close()
    after = labkit_nft(mc)
    # reconciled, not duplicated: each base chain and each element once
    assert after.count("chain nat-prerouting {") == before.count("chain nat-prerouting {") == 1
    assert after.count(f"{vip} . tcp . 80 :") == 1


def test_labkit_down_leaves_nothing_and_the_host_ruleset_never_changes(tmp_path: Path) -> None:
    host_before = host_ruleset()
    home = tmp_path / "home"
    embedded.up(home, timeout=60, proxy_mode="nftables")
    names = Names.for_home(home)
    node = Names.netns_path(names.node_netns)
    try:
        wait_for(lambda: "10.96.0.1 . tcp . 443" in subprocess.run(
            ["nsenter", f"--net={node}", "nft", "list", "table", "ip", "kube-proxy"],
            capture_output=True, text=True).stdout, 30, "the kubernetes Service in the node's table")
        assert host_ruleset() == host_before
        assert embedded.status(home)["proxyMode"] == "nftables"
    finally:
        embedded.down(home)
    assert not node.exists()  # the table went with the node's namespace
    assert host_ruleset() == host_before
    assert not [n for n in os.listdir("/run/netns") if n.startswith(names.prefix + "-")]


def test_up_in_another_mode_than_the_running_cluster_is_refused(nft_cluster: Any) -> None:
    from labkit import errors

    with pytest.raises(errors.ClusterError, match="runs in nftables mode"):
        embedded.up(nft_cluster.home, proxy_mode="ipvs")
    assert embedded.up(nft_cluster.home)[1] is False  # no mode asked: the running one
