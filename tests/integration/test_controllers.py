"""The controller manager against the real embedded API server: the article's kubectl flows.

The tests play kubelet where the node agent would: they give pods an IP, phase Running and the Ready
condition through pods/status.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from labkit import errors
from labkit.client import Client

pytestmark = pytest.mark.integration


async def wait_for(cond: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll an async condition until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await cond()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")


async def wait_ready(client: Client, ns: str, selector: str, timeout: float = 20.0) -> list[str]:
    """Wait until the node agent has every pod matching `selector` Running and Ready; their IPs."""

    async def ready_ips() -> list[str] | None:
        pods, _ = await client.list("pods", namespace=ns, label_selector=selector)
        ips = []
        for p in pods:
            status = p.get("status") or {}
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
            if not (ready and status.get("podIP")):
                return None
            ips.append(status["podIP"])
        return sorted(ips) or None

    return await wait_for(ready_ips, timeout)


@pytest.fixture
async def client(cluster) -> Any:
    c = Client.from_kubeconfig(cluster.kubeconfig)
    yield c
    await c.close()


async def test_article_deployment_expose_scale_delete(cluster, namespace: str, client: Client) -> None:
    ns = namespace
    cluster.kubectl("-n", ns, "create", "deploy", "nginx", "--image=nginx:1.19")
    cluster.kubectl("-n", ns, "expose", "deploy", "nginx", "--port=80", "--target-port=80")

    async def one_pod() -> list[dict]:
        pods, _ = await client.list("pods", namespace=ns, label_selector="app=nginx")
        return pods if len(pods) == 1 else []

    (pod,) = await wait_for(one_pod)
    rs_name = pod["metadata"]["ownerReferences"][0]["name"]
    assert pod["metadata"]["name"].startswith(rs_name + "-") and len(pod["metadata"]["name"]) == len(rs_name) + 6
    assert rs_name.startswith("nginx-")
    (ip,) = await wait_ready(client, ns, "app=nginx")

    async def ep_ips() -> list[str]:
        try:
            e = await client.get("endpoints", "nginx", namespace=ns)
        except errors.NotFound:
            return []
        return sorted(a["ip"] for s in e.get("subsets") or [] for a in s.get("addresses") or [])

    assert await wait_for(ep_ips) == [ip]
    out = cluster.kubectl("-n", ns, "get", "ep", "nginx").stdout
    assert f"{ip}:80" in out

    async def slice_ips() -> list[str]:
        items, _ = await client.list("endpointslices", namespace=ns, label_selector="kubernetes.io/service-name=nginx")
        return sorted(e["addresses"][0] for s in items for e in s.get("endpoints") or []
                      if (e.get("conditions") or {}).get("ready"))

    assert await wait_for(slice_ips) == [ip]

    async def deploy_done() -> bool:
        d = await client.get("deployments", "nginx", namespace=ns)
        conds = {c["type"]: c for c in (d.get("status") or {}).get("conditions") or []}
        return (d.get("status") or {}).get("availableReplicas") == 1 and \
            conds.get("Progressing", {}).get("reason") == "NewReplicaSetAvailable"

    await wait_for(deploy_done)
    d = await client.get("deployments", "nginx", namespace=ns)
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    prog = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
    assert prog["message"] == f'ReplicaSet "{rs_name}" has successfully progressed.'
    rollout = cluster.kubectl("-n", ns, "rollout", "status", "deploy/nginx", "--timeout=10s").stdout
    assert "successfully rolled out" in rollout

    cluster.kubectl("-n", ns, "scale", "deploy", "nginx", "--replicas=2")

    async def two_pods() -> list[dict]:
        pods, _ = await client.list("pods", namespace=ns, label_selector="app=nginx")
        return pods if len(pods) == 2 else []

    await wait_for(two_pods)
    ips = await wait_ready(client, ns, "app=nginx")
    assert await wait_for(lambda: _eq(ep_ips, sorted(ips))) 

    events, _ = await client.list("events", namespace=ns)
    msgs = {(e["reason"], e["message"]) for e in events}
    assert ("ScalingReplicaSet", f"Scaled up replica set {rs_name} from 0 to 1") in msgs
    assert ("ScalingReplicaSet", f"Scaled up replica set {rs_name} from 1 to 2") in msgs
    assert ("SuccessfulCreate", f"Created pod: {pod['metadata']['name']}") in msgs

    cluster.kubectl("-n", ns, "delete", "deploy", "nginx")

    async def all_gone() -> bool:
        rss, _ = await client.list("replicasets", namespace=ns)
        pods, _ = await client.list("pods", namespace=ns, label_selector="app=nginx")
        return not rss and not [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    await wait_for(all_gone)


async def _eq(fn: Callable[[], Any], want: Any) -> bool:
    return (await fn()) == want


async def test_statefulset_with_headless_service(cluster, namespace: str, client: Client) -> None:
    ns = namespace
    manifest = """
apiVersion: v1
kind: Service
metadata: {labels: {app: nginx}, name: nginx}
spec: {clusterIP: None, selector: {app: nginx}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: nginx}
spec:
  serviceName: "nginx"
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: "nginx:1.19"}]
"""
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=manifest)

    async def pod0() -> dict | None:
        try:
            return await client.get("pods", "nginx-0", namespace=ns)
        except errors.NotFound:
            return None

    p0 = await wait_for(pod0)
    assert p0["spec"]["hostname"] == "nginx-0" and p0["spec"]["subdomain"] == "nginx"
    assert p0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "nginx-0"
    # OrderedReady: nginx-1 waits for nginx-0 to be Running and Ready
    with pytest.raises(errors.NotFound):
        await client.get("pods", "nginx-1", namespace=ns)
    await wait_ready(client, ns, "app=nginx")

    async def pod1() -> dict | None:
        try:
            return await client.get("pods", "nginx-1", namespace=ns)
        except errors.NotFound:
            return None

    await wait_for(pod1)
    ips = await wait_ready(client, ns, "app=nginx")

    async def hostnames() -> list:
        try:
            e = await client.get("endpoints", "nginx", namespace=ns)
        except errors.NotFound:
            return []
        addrs = [a for s in e.get("subsets") or [] for a in s.get("addresses") or []]
        return sorted((a.get("hostname"), a["ip"]) for a in addrs) if len(addrs) == 2 else []

    got = await wait_for(hostnames)
    assert [h for h, _ in got] == ["nginx-0", "nginx-1"] and sorted(ip for _, ip in got) == sorted(ips)

    async def sts_ready() -> bool:
        s = await client.get("statefulsets", "nginx", namespace=ns)
        return (s.get("status") or {}).get("readyReplicas") == 2

    await wait_for(sts_ready)
    # a deleted pod comes back with the same name
    old_uid = (await client.get("pods", "nginx-0", namespace=ns))["metadata"]["uid"]
    await client.delete("pods", "nginx-0", namespace=ns, grace_period_seconds=0)

    async def back() -> bool:
        p = await pod0()
        return p is not None and p["metadata"]["uid"] != old_uid

    await wait_for(back)


async def test_selectorless_service_is_mirrored(cluster, namespace: str, client: Client) -> None:
    ns = namespace
    manifest = """
apiVersion: v1
kind: Service
metadata: {labels: {app: nginx}, name: nginx}
spec: {clusterIP: None}
---
apiVersion: v1
kind: Endpoints
metadata: {labels: {app: nginx}, name: nginx}
subsets:
- addresses: [{ip: 203.0.113.80}]
"""
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=manifest)

    async def mirrored() -> list[dict]:
        items, _ = await client.list("endpointslices", namespace=ns, label_selector="kubernetes.io/service-name=nginx")
        return items

    (sl,) = await wait_for(mirrored)
    assert sl["metadata"]["name"].startswith("nginx-")
    assert sl["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslicemirroring-controller.k8s.io"
    assert [(e["addresses"], e["conditions"]["ready"]) for e in sl["endpoints"]] == [(["203.0.113.80"], True)]
    # the user's Endpoints are left as written
    e = await client.get("endpoints", "nginx", namespace=ns)
    assert e["subsets"] == [{"addresses": [{"ip": "203.0.113.80"}]}]


async def test_cluster_ip_conflict_is_422(cluster, namespace: str) -> None:
    proc = cluster.kubectl("-n", namespace, "create", "service", "clusterip", "dup", "--tcp=80:80",
                           "--clusterip=10.96.0.10", check=False)
    assert proc.returncode != 0
    assert "failed to allocate IP 10.96.0.10: provided IP is already allocated" in proc.stderr
    assert json.dumps is not None
