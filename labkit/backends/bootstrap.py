"""The objects kubeadm adds to a fresh kind cluster, created through the API at `labkit up`.

The system namespaces and the `kubernetes` Service are the API server's own business
(`labkit.apiserver.bootstrap`), as in a real cluster. Idempotent: objects that exist are
left as they are, so a restarted cluster converges without duplicating anything.
"""

from __future__ import annotations

import asyncio

from labkit import errors
from labkit.backends import kube_proxy
from labkit.client import Client

NODE_NAME = "labkit-control-plane"
NODE_IP = "172.18.0.2"
POD_CIDR = "10.244.0.0/24"
KUBE_DNS_IP = "10.96.0.10"
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.11.3"
CLUSTER_DOMAIN = "cluster.local"

COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""


def node() -> dict:
    """The node as kubelet registers it; Ready stays False until the node agent reports."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE_NAME, "labels": {
            "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
            "node-role.kubernetes.io/control-plane": "",
            "node.kubernetes.io/exclude-from-external-load-balancers": ""}},
        "spec": {"podCIDR": POD_CIDR, "podCIDRs": [POD_CIDR], "providerID": f"kind://docker/labkit/{NODE_NAME}"},
    }


def node_status(ready: bool, reason: str, message: str, now: str) -> dict:
    return {
        "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE_NAME}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False", "reason": reason,
                        "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "v1.32.5-labkit",
                     "kubeProxyVersion": "", "containerRuntimeVersion": "labkit://0.1.0",
                     "osImage": "labkit embedded node", "kernelVersion": "", "machineID": "", "systemUUID": "",
                     "bootID": ""},
        "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "8Gi", "pods": "110"},
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
    }


def kube_dns() -> list[dict]:
    """The `coredns` ConfigMap (kind's Corefile), Service `kube-system/kube-dns` and the `coredns` Deployment,
    as kubeadm installs them (cmd/kubeadm/app/phases/addons/dns/manifests.go)."""
    labels = {"k8s-app": "kube-dns"}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
              "data": {"Corefile": COREFILE}}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"},
                     "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
        "spec": {"selector": labels, "clusterIP": KUBE_DNS_IP, "clusterIPs": [KUBE_DNS_IP], "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]},
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
        "spec": {
            "replicas": 2, "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "dnsPolicy": "Default", "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "coredns",
                    "containers": [{
                        "name": "coredns", "image": COREDNS_IMAGE, "args": ["-conf", "/etc/coredns/Corefile"],
                        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": True}],
                        "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                                  {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                                  {"containerPort": 9153, "name": "metrics", "protocol": "TCP"},
                                  {"containerPort": 8080, "name": "liveness-probe", "protocol": "TCP"},
                                  {"containerPort": 8181, "name": "readiness-probe", "protocol": "TCP"}],
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}},
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"},
                                           "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                                           "failureThreshold": 3},
                        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                                          "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1,
                                          "failureThreshold": 5},
                        "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
                    }],
                    "volumes": [{"name": "config-volume", "configMap": {
                        "name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}],
                },
            },
        },
    }
    return [config, service, deployment]


async def ensure_objects(client: Client, proxy_mode: str = "ipvs") -> None:
    """Create every object kubeadm would that does not exist yet (kube-proxy's ConfigMap in `proxy_mode`)."""

    async def ensure(obj: dict) -> None:
        try:
            await client.create(obj)
        except errors.AlreadyExists:
            pass

    coredns_sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns",
                                                                            "namespace": "kube-system"}}
    config, *dns_objects = kube_dns()
    await asyncio.gather(ensure(coredns_sa), ensure(config))  # before the pods that mount the Corefile
    await asyncio.gather(*(ensure(obj) for obj in [node(), *dns_objects, *kube_proxy.objects(proxy_mode)]))
