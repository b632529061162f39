"""What kube-apiserver creates by itself at start: the system namespaces and the `kubernetes` Service.

Upstream these are the API server's "system namespaces" and "bootstrap" controllers; the
Service's Endpoints and EndpointSlice name the API server's in-cluster address, the node's
172.18.0.2:6443 (the endpoint reconciler's job). Written straight through the registry, before
the server answers its first request, so a cluster that answers always has them.
"""

from __future__ import annotations

from labkit import errors, kinds
from labkit.apiserver.registry import Registry

NODE_IP = "172.18.0.2"
APISERVER_PORT = 6443
KUBERNETES_SERVICE_IP = "10.96.0.1"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MANAGER = "kube-apiserver"


def kubernetes_service() -> list[dict]:
    """Service `default/kubernetes` and the endpoints the API server's reconciler keeps for it."""
    labels = {"component": "apiserver", "provider": "kubernetes"}
    port = {"name": "https", "port": 443, "protocol": "TCP", "targetPort": APISERVER_PORT}
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
         "spec": {"type": "ClusterIP", "clusterIP": KUBERNETES_SERVICE_IP, "clusterIPs": [KUBERNETES_SERVICE_IP],
                  "ports": [port], "sessionAffinity": "None"}},
        {"apiVersion": "v1", "kind": "Endpoints",
         "metadata": {"name": "kubernetes", "namespace": "default",
                      "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
         "subsets": [{"addresses": [{"ip": NODE_IP}],
                      "ports": [{"name": "https", "port": APISERVER_PORT, "protocol": "TCP"}]}]},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "kubernetes", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "kubernetes"}},
         "addressType": "IPv4",
         "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
         "ports": [{"name": "https", "port": APISERVER_PORT, "protocol": "TCP"}]},
    ]


def ensure_system_objects(registry: Registry) -> None:
    """Create the system namespaces and the `kubernetes` Service unless they exist."""
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in SYSTEM_NAMESPACES]
    for obj in objects + kubernetes_service():
        kind = kinds.for_object(obj)
        if registry.store.get((kind.group, kind.plural), obj["metadata"].get("namespace", ""),
                              obj["metadata"]["name"]) is not None:
            continue
        try:
            registry.create(kind, obj["metadata"].get("namespace"), obj, manager=MANAGER)
        except errors.AlreadyExists:
            continue
