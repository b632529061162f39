"""The enum fields of the served kinds that the labs and the Services/DNS pages meet, with upstream's value docs.

kube-apiserver's OpenAPI marks a `+enum` string field with `enum: [...]` and appends "Possible enum values" to its
description: each value, then its constant's doc comment without the constant's name (pkg/apis/core/v1 types.go;
an uncommented constant gets no text). `kubectl explain` prints both. The Python client's models, which
labkit's OpenAPI is generated from, drop them; this table puts them back.
"""

from __future__ import annotations

Values = tuple[tuple[str, str], ...]

_PROTOCOL: Values = (("SCTP", "is the SCTP protocol."), ("TCP", "is the TCP protocol."),
                     ("UDP", "is the UDP protocol."))
_TRAFFIC_CLUSTER = "routes traffic to all endpoints."

ENUMS: dict[tuple[str, str], Values] = {
    ("V1ServiceSpec", "type"): (
        ("ClusterIP", "means a service will only be accessible inside the cluster, via the cluster IP."),
        ("ExternalName", "means a service consists of only a reference to an external name that kubedns or "
                         "equivalent will return as a CNAME record, with no exposing or proxying of any pods "
                         "involved."),
        ("LoadBalancer", "means a service will be exposed via an external load balancer (if the cloud provider "
                         "supports it), in addition to 'NodePort' type."),
        ("NodePort", "means a service will be exposed on one port of every node, in addition to 'ClusterIP' type."),
    ),
    ("V1ServiceSpec", "sessionAffinity"): (("ClientIP", "is the Client IP based."),
                                           ("None", "- no session affinity.")),
    ("V1ServiceSpec", "externalTrafficPolicy"): (
        ("Cluster", _TRAFFIC_CLUSTER),
        ("Local", "preserves the source IP of the traffic by routing only to endpoints on the same node as the "
                  "traffic was received on (dropping the traffic if there are no local endpoints)."),
    ),
    ("V1ServiceSpec", "internalTrafficPolicy"): (
        ("Cluster", _TRAFFIC_CLUSTER),
        ("Local", "routes traffic only to endpoints on the same node as the client pod (dropping the traffic if "
                  "there are no local endpoints)."),
    ),
    ("V1ServiceSpec", "ipFamilyPolicy"): (
        ("PreferDualStack", "indicates that this service prefers dual-stack when the cluster is configured for "
                            "dual-stack. If the cluster is not configured for dual-stack the service will be "
                            "assigned a single IPFamily. If the IPFamily is not set in service.spec.ipFamilies then "
                            "the service will be assigned the default IPFamily configured on the cluster"),
        ("RequireDualStack", "indicates that this service requires dual-stack. Using "
                             "IPFamilyPolicyRequireDualStack on a single stack cluster will result in validation "
                             "errors. The IPFamilies (and their order) assigned to this service is based on "
                             "service.spec.ipFamilies. If service.spec.ipFamilies was not provided then it will be "
                             "assigned according to how they are configured on the cluster. If "
                             "service.spec.ipFamilies has only one entry then the alternative IPFamily will be "
                             "added by apiserver"),
        ("SingleStack", "indicates that this service is required to have a single IPFamily. The IPFamily assigned "
                        "is based on the default IPFamily used by the cluster or as identified by "
                        "service.spec.ipFamilies field"),
    ),
    ("V1ServicePort", "protocol"): _PROTOCOL,
    ("V1ContainerPort", "protocol"): _PROTOCOL,
    ("DiscoveryV1EndpointPort", "protocol"): _PROTOCOL,
    ("CoreV1EndpointPort", "protocol"): _PROTOCOL,
    ("V1PodSpec", "restartPolicy"): (("Always", ""), ("Never", ""), ("OnFailure", "")),
    ("V1PodSpec", "dnsPolicy"): (
        ("ClusterFirst", "indicates that the pod should use cluster DNS first unless hostNetwork is true, if it is "
                         "available, then fall back on the default (as determined by kubelet) DNS settings."),
        ("ClusterFirstWithHostNet", "indicates that the pod should use cluster DNS first, if it is available, then "
                                    "fall back on the default (as determined by kubelet) DNS settings."),
        ("Default", "indicates that the pod should use the default (as determined by kubelet) DNS settings."),
        ("None", "indicates that the pod should use empty DNS settings. DNS parameters such as nameservers and "
                 "search paths should be defined via DNSConfig."),
    ),
    ("V1Container", "imagePullPolicy"): (
        ("Always", "means that kubelet always attempts to pull the latest image. Container will fail If the pull "
                   "fails."),
        ("IfNotPresent", "means that kubelet pulls if the image isn't present on disk. Container will fail if the "
                         "image isn't present and the pull fails."),
        ("Never", "means that kubelet never pulls an image, but only uses a local image. Container will fail if the "
                  "image isn't present"),
    ),
}


def describe(values: Values) -> str:
    """The "Possible enum values" paragraph upstream appends to a field's description."""
    lines = [f' - `"{value}"`' + (f" {doc}" if doc else "") for value, doc in values]
    return "\n\nPossible enum values:\n" + "\n".join(lines)
