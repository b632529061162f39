"""Builders for the Kubernetes objects the DNS index reads (plain JSON dicts, as the API serialises them).

Used by the DNS tests, the local benchmark and anyone who wants to feed a ClusterIndex without a cluster.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service(
    name: str,
    namespace: str = "default",
    *,
    cluster_ips: list[str] | None = None,
    type: str = "ClusterIP",
    external_name: str | None = None,
    ports: list[dict[str, Any]] | None = None,
) -> Obj:
    """A Service. cluster_ips=["None"] makes it headless; ports like {"name": "http", "port": 80}."""
    spec: Obj = {"type": type}
    if cluster_ips is not None:
        spec["clusterIP"] = cluster_ips[0]
        spec["clusterIPs"] = list(cluster_ips)
    if external_name is not None:
        spec["externalName"] = external_name
    if ports:
        spec["ports"] = [{"protocol": "TCP", **p} for p in ports]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def endpoint(ip: str | list[str], *, ready: bool | None = True, hostname: str | None = None) -> Obj:
    """One EndpointSlice endpoint; ready=None leaves the condition out (unknown readiness)."""
    ep: Obj = {"addresses": [ip] if isinstance(ip, str) else list(ip), "conditions": {}}
    if ready is not None:
        ep["conditions"]["ready"] = ready
    if hostname:
        ep["hostname"] = hostname
    return ep


def endpointslice(
    name: str,
    service: str | None,
    namespace: str = "default",
    *,
    endpoints: list[Obj] | None = None,
    ports: list[dict[str, Any]] | None = None,
    address_type: str = "IPv4",
) -> Obj:
    """An EndpointSlice labelled for `service` (None: no service-name label)."""
    meta: Obj = {"name": name, "namespace": namespace}
    if service is not None:
        meta["labels"] = {"kubernetes.io/service-name": service}
    obj: Obj = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": address_type,
        "endpoints": endpoints or [],
    }
    if ports is not None:
        obj["ports"] = [{"protocol": "TCP", **p} for p in ports]
    return obj


def pod(name: str, namespace: str, ip: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}]},
    }


def article_objects() -> list[Obj]:
    """The seed article's objects, in separate namespaces so they can coexist:

    - default/nginx: ClusterIP 10.102.97.154, one pod 192.168.76.141;
    - headless/nginx: headless over two pods 192.168.76.141/142;
    - sts/nginx: headless with StatefulSet pods nginx-0 (192.168.136.206) and nginx-1 (192.168.76.144);
    - manual/nginx: selectorless headless with a hand-written address 202.232.2.180 (mirrored slice);
    - ext/nginx: ExternalName www.iij.ad.jp.
    """
    return [
        namespace("default"),
        namespace("headless"),
        namespace("sts"),
        namespace("manual"),
        namespace("ext"),
        service("nginx", "default", cluster_ips=["10.102.97.154"], ports=[{"port": 80}]),
        endpointslice(
            "nginx-abcde", "nginx", "default", endpoints=[endpoint("192.168.76.141")], ports=[{"name": "", "port": 80}]
        ),
        service("nginx", "headless", cluster_ips=["None"]),
        endpointslice(
            "nginx-xyz12",
            "nginx",
            "headless",
            endpoints=[endpoint("192.168.76.141"), endpoint("192.168.76.142")],
            ports=[],
        ),
        service("nginx", "sts", cluster_ips=["None"]),
        endpointslice(
            "nginx-s1",
            "nginx",
            "sts",
            endpoints=[
                endpoint("192.168.136.206", hostname="nginx-0"),
                endpoint("192.168.76.144", hostname="nginx-1"),
            ],
        ),
        service("nginx", "manual", cluster_ips=["None"]),
        endpointslice("nginx-m1", "nginx", "manual", endpoints=[endpoint("202.232.2.180")]),
        service("nginx", "ext", type="ExternalName", external_name="www.iij.ad.jp"),
    ]
