"""The kind backend on a real kind cluster: made wherever `docker info` succeeds and kind is on PATH, skipped
elsewhere with the reason (the development machines have no Docker engine). `pytest --backend kind` also runs
the lab suite on the same cluster; `--keep-cluster` keeps it for the next session.
"""

from __future__ import annotations

import json

import pytest

from labkit import Lab
from labkit.backends import images, kind
from tests.conftest import LabCluster

pytestmark = pytest.mark.kind

AGNHOST = images.AGNHOST


def test_the_cluster_is_the_one_labkit_asked_for(kind_lab: LabCluster) -> None:
    info = kind_lab.backend.describe()
    assert info.proxy_mode == "ipvs" and len(info.nodes) == 2
    assert info.nodes[0].endswith("-control-plane") and info.nodes[1].endswith("-worker")
    tables = kind.ipvs_tables(kind.load_info(kind_lab.home))
    first, second = tables.values()
    assert first == second  # kube-proxy programs the same virtual servers on every node
    kubernetes = next(vs for vs in first if (vs.address, vs.port) == ("10.96.0.1", 443))
    assert [d.port for d in kubernetes.destinations] == [6443]
    assert {(vs.protocol, vs.port) for vs in first if vs.address == "10.96.0.10"} >= {("UDP", 53), ("TCP", 53)}


def test_a_clusterip_service_seen_through_the_lab(kind_lab: LabCluster) -> None:
    lab = Lab.up(kind_lab.backend)
    ns = lab.fresh_namespace("kind-live")
    try:
        lab.kubectl(f"create deployment web --image={AGNHOST} --replicas=3 -- /agnhost netexec --http-port=8080")
        lab.kubectl("expose deployment web --port=80 --target-port=8080")
        lab.wait_for(rollout="deployment/web")
        vip = lab.resource("svc", "web")["spec"]["clusterIP"]
        pod_ips = sorted(p["status"]["podIP"] for p in lab.pods("app=web"))
        lab.wait_for(lambda: sorted(a.split(":")[0] for a in lab.ipvs("web").real_servers()) == pod_ips,
                     what="IPVS to list the three pods")
        assert lab.dig("web").addresses == [vip]
        replies = lab.requests("http://web/hostname", count=12)
        assert not replies.errors() and len(replies.counts()) > 1  # fresh connections spread over the pods
        lab.kubectl("run client --image=busybox:1.36 --restart=Never -- sleep 3600")
        lab.wait_for(lambda: lab.resource("pod", "client")["status"].get("phase") == "Running", what="client")
        client_ip = lab.resource("pod", "client")["status"]["podIP"]
        with lab.open_connection("http://web/clientip", from_pod="client") as conn:
            reply = conn.request("/clientip", close=True)
        assert reply.local is not None and reply.local[0] == client_ip
        assert reply.body.split(":")[0] == client_ip  # IPVS NAT keeps the client's address
        assert reply.destination is not None and reply.destination[0] in pod_ips
    finally:
        lab.delete_namespace(ns)


def test_the_labkit_agent_runs_as_a_daemonset_and_programs_kernel_ipvs(
        kind_cluster_labkit_agent: LabCluster) -> None:
    backend = kind_cluster_labkit_agent.backend
    info = backend.describe()
    assert dict(info.details)["proxy"] == "the labkit agent (kernel IPVS)"
    out = backend.info().kubectl_runner()("-n", "kube-system", "get", "daemonset", "labkit-agent", "-o",
                                               "json").stdout
    status = json.loads(out)["status"]
    assert status["numberReady"] == status["desiredNumberScheduled"] == 2
    table = backend.ipvs_table()
    assert any((vs.address, vs.port) == ("10.96.0.1", 443) and vs.destinations for vs in table)
    assert any((vs.address, vs.port, vs.protocol) == ("10.96.0.10", 53, "UDP") and vs.destinations for vs in table)
