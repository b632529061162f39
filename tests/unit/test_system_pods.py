"""The kube-system pods that stand for the supervisor's processes (kube-proxy, the control plane)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from labkit.backends import kube_proxy
from labkit.node import system_pods


def _mirror(component: str) -> dict:
    return next(p for p in system_pods.mirror_pods("labkit-control-plane", "node-uid")
                if p["metadata"]["labels"]["component"] == component)


def test_mirror_pods_are_named_and_owned_as_kubelet_does() -> None:
    pods = system_pods.mirror_pods("labkit-control-plane", "node-uid")
    assert sorted(p["metadata"]["name"] for p in pods) == [
        "etcd-labkit-control-plane", "kube-apiserver-labkit-control-plane",
        "kube-controller-manager-labkit-control-plane", "kube-scheduler-labkit-control-plane"]
    for pod in pods:
        md = pod["metadata"]
        assert md["annotations"][system_pods.MIRROR_ANNOTATION] == md["annotations"]["kubernetes.io/config.hash"]
        assert md["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": "labkit-control-plane",
                                          "uid": "node-uid", "controller": True}]
        assert pod["spec"]["hostNetwork"] and pod["spec"]["nodeName"] == "labkit-control-plane"


def test_which_process_each_system_pod_stands_for(tmp_path: Path) -> None:
    proxy = kube_proxy.daemon_set()["spec"]["template"]
    proxy_pod = {"metadata": {"namespace": "kube-system", **proxy["metadata"]}, "spec": proxy["spec"]}
    assert system_pods.component_of(proxy_pod) == "ipvs-agent"
    assert system_pods.component_of(_mirror("kube-scheduler")) == "controller-manager"
    assert system_pods.component_of(_mirror("etcd")) == "apiserver"
    ordinary = {"metadata": {"namespace": "default"}, "spec": {"containers": [{"image": KUBE_PROXY}]}}
    assert system_pods.component_of(ordinary) is None
    assert system_pods.log_file(tmp_path, proxy_pod) == tmp_path / "logs" / "ipvs-agent.log"
    assert system_pods.log_file(tmp_path, ordinary) is None


KUBE_PROXY = system_pods.KUBE_PROXY_IMAGE


def test_status_follows_the_supervised_process(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    status_file = tmp_path / "run" / "status.json"
    status_file.write_text(json.dumps({"controller-manager": {"pid": os.getpid(), "running": True, "restarts": 2}}))
    pod = _mirror("kube-controller-manager")
    st = system_pods.status(tmp_path, pod, "2025-01-01T00:00:00Z")
    assert st["phase"] == "Running" and st["podIP"] == system_pods.NODE_IP
    (cs,) = st["containerStatuses"]
    assert (cs["ready"], cs["restartCount"], list(cs["state"])) == (True, 2, ["running"])
    status_file.write_text(json.dumps({"controller-manager": {"pid": None, "running": False, "restarts": 3}}))
    st = system_pods.status(tmp_path, pod, "2025-01-01T00:00:00Z")
    assert [c["status"] for c in st["conditions"] if c["type"] == "Ready"] == ["False"]


def test_kube_proxy_config_map_carries_the_mode() -> None:
    for mode in ("ipvs", "nftables"):
        conf = yaml.safe_load(kube_proxy.config_map(mode)["data"]["config.conf"])
        assert conf["kind"] == "KubeProxyConfiguration" and conf["mode"] == mode
        assert conf["iptables"]["minSyncPeriod"] == "1s" and conf["conntrack"]["maxPerCore"] == 0
