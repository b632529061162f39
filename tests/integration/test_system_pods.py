"""`kubectl get pods -n kube-system` as on kind, and the documented way to answer "Is kube-proxy running?"."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.conftest import Cluster, wait_for

pytestmark = pytest.mark.integration

SYSTEM_PODS = [r"coredns-[a-z0-9]+-[a-z0-9]{5}", r"coredns-[a-z0-9]+-[a-z0-9]{5}", "etcd-labkit-control-plane",
               "kube-apiserver-labkit-control-plane", "kube-controller-manager-labkit-control-plane",
               r"kube-proxy-[a-z0-9]{5}", "kube-scheduler-labkit-control-plane"]


def _pods(cluster: Cluster) -> list[list[str]]:
    return [line.split() for line in cluster.kubectl("get", "pods", "-n", "kube-system").stdout.splitlines()[1:]]


def test_kube_system_lists_kube_proxy_and_the_control_plane(cluster: Cluster) -> None:
    # Running comes before Ready (coredns answers its readiness probe a moment later)
    rows = wait_for(lambda: (r := _pods(cluster)) and all(row[2] == "Running" and row[1] == "1/1" for row in r) and r,
                    "every kube-system pod Running and ready")
    names = sorted(row[0] for row in rows)
    assert len(names) == len(SYSTEM_PODS)
    assert all(re.fullmatch(p, n) for p, n in zip(SYSTEM_PODS, names, strict=True)), names


def test_kube_proxy_logs_say_which_proxier_it_uses(cluster: Cluster) -> None:
    k = cluster.kubectl
    name = k("get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-proxy", "-o", "name").stdout.strip()
    mode = yaml.safe_load(k("get", "configmap", "kube-proxy", "-n", "kube-system", "-o",
                            "jsonpath={.data.config\\.conf}").stdout)["mode"]
    proxier = {"ipvs": "ipvs", "nftables": "nftables"}[mode]
    assert f"Using {proxier} Proxier" in k("logs", "-n", "kube-system", name).stdout
    assert k("get", "ds", "kube-proxy", "-n", "kube-system", "-o", "jsonpath={.status.numberReady}").stdout == "1"


def test_mirror_pod_logs_and_recreation(cluster: Cluster) -> None:
    k = cluster.kubectl
    logs = k("logs", "-n", "kube-system", "kube-controller-manager-labkit-control-plane").stdout
    assert "controller manager running" in logs
    for component in ("kube-apiserver", "etcd"):  # etcd's store lives in the API server's process
        logs = k("logs", "-n", "kube-system", f"{component}-labkit-control-plane").stdout
        assert "Serving securely on 172.18.0.2:6443" in logs
    described = k("describe", "pod", "-n", "kube-system", "kube-apiserver-labkit-control-plane").stdout
    assert "Controlled By:  Node/labkit-control-plane" in described
    assert "kubernetes.io/config.mirror:" in described
    k("delete", "pod", "-n", "kube-system", "kube-scheduler-labkit-control-plane")
    wait_for(lambda: k("get", "pod", "-n", "kube-system", "kube-scheduler-labkit-control-plane", "-o",
                       "jsonpath={.status.phase}", check=False).stdout == "Running", "the mirror pod to come back")
