"""`kubectl auth can-i` and `kubectl auth whoami`, for the kubeconfig's user and for the token pods get."""

from __future__ import annotations

import pytest

from tests.conftest import Cluster, kubectl_binary

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("version", ["1.28", "1.32", "1.33"])
def test_kubeconfig_user_may_do_anything(cluster: Cluster, version: str) -> None:
    k = cluster.kubectl
    assert k("auth", "can-i", "create", "pods", version=version).stdout.strip() == "yes"
    assert k("auth", "can-i", "delete", "services", "-n", "kube-system", version=version).stdout.strip() == "yes"
    assert k("auth", "can-i", "*", "*", "--all-namespaces", version=version).stdout.strip() == "yes"
    who = [line.split(None, 1) for line in k("auth", "whoami", version=version).stdout.splitlines()]
    assert who == [["ATTRIBUTE", "VALUE"], ["Username", "kubernetes-admin"],
                   ["Groups", "[kubeadm:cluster-admins system:authenticated]"]]


def test_pod_token_may_read_but_not_write(cluster: Cluster, namespace: str) -> None:
    k = cluster.kubectl
    n = ("-n", namespace)
    k(*n, "run", "toolbox", "--image=busybox", "--", "sleep", "infinity")
    k(*n, "wait", "--for=condition=ready", "pod/toolbox", "--timeout=60s")
    inside = str(kubectl_binary("1.32"))  # the node runs host programs in the pod: kubectl uses the pod's token
    assert k(*n, "exec", "toolbox", "--", inside, "auth", "can-i", "list", "pods").stdout.strip() == "yes"
    denied = k(*n, "exec", "toolbox", "--", inside, "auth", "can-i", "create", "pods", check=False)
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")
    who = k(*n, "exec", "toolbox", "--", inside, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert who.stdout == "system:serviceaccount:kube-system:default"
