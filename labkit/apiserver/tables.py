"""Server-side `Table` printing (meta.k8s.io/v1) for `kubectl get`.

kubectl asks the API server for a Table (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`) and prints
the cells exactly as sent; without one it can only print NAME and AGE. This module builds those Tables
the way kube-apiserver does, for the kinds labkit serves.

Facts (column names, order, priorities, cell formats, status-reason rules) follow kubernetes/kubernetes
`pkg/printers/internalversion/printers.go` (AddHandlers and the print* functions, v1.32), the apiserver's
`TableConvertor` (it always prints with `Wide: true`, so priority-1 cells are always present), the
default table convertor of `k8s.io/apiserver/pkg/registry/rest/table.go` (for kinds without printers),
and `k8s.io/apimachinery/pkg/util/duration.HumanDuration` for AGE-like cells. The code is labkit's own.

Objects are plain JSON dicts as the API serialises them. Upstream prints the *internal* (converted and
defaulted) object; where a stored object may lack a field that conversion or defaulting would have
filled in (a Service's `type`, a port's `protocol`, `replicas`, a new pod's phase) we apply that default.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["INCLUDE_OBJECT_VALUES", "column_definitions", "human_duration", "row_cells", "to_table"]

NONE = "<none>"
UNKNOWN = "<unknown>"
UNSET = "<unset>"

# Values of the `includeObject` query parameter (metav1.IncludeObjectPolicy).
INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")

# ---------------------------------------------------------------------------------------------------------
# Column descriptions: the API documentation strings upstream takes from the types' SwaggerDoc().
# ---------------------------------------------------------------------------------------------------------

_D_NAME = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_D_CREATED = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. "
    "It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
_D_CONTAINERS = "Names of each container in the template."
_D_IMAGES = "Images referenced by each container in the template."
_D_READY_PODS = "Number of the pod with ready state"


def _col(name: str, typ: str, description: str, *, fmt: str = "", priority: int = 0) -> dict[str, Any]:
    """One TableColumnDefinition; every field is serialised, as upstream does (no omitempty)."""
    return {"name": name, "type": typ, "format": fmt, "description": description, "priority": priority}


def _name_col(priority: int = 0) -> dict[str, Any]:
    return _col("Name", "string", _D_NAME, fmt="name", priority=priority)


def _age_col() -> dict[str, Any]:
    return _col("Age", "string", _D_CREATED)


_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "namespaces": [
        _name_col(),
        _col("Status", "string", "The status of the namespace"),
        _age_col(),
    ],
    "nodes": [
        _name_col(),
        _col("Status", "string", "The status of the node"),
        _col("Roles", "string", "The roles of the node"),
        _age_col(),
        _col("Version", "string", "Kubelet Version reported by the node."),
        _col("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if "
             "available. More info: https://kubernetes.io/docs/concepts/nodes/node/#addresses", priority=1),
        _col("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if "
             "available. More info: https://kubernetes.io/docs/concepts/nodes/node/#addresses", priority=1),
        _col("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 "
             "(wheezy)).", priority=1),
        _col("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. "
             "3.16.0-0.bpo.4-amd64).", priority=1),
        _col("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote "
             "API (e.g. containerd://1.4.2).", priority=1),
    ],
    "pods": [
        _name_col(),
        _col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        _col("Status", "string", "The aggregate status of the containers in this pod."),
        _col("Restarts", "string", "The number of times the containers in this pod have been restarted and when "
             "the last container in this pod has restarted."),
        _age_col(),
        _col("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if "
             "not yet allocated.", priority=1),
        _col("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a "
             "candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the "
             "kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be "
             "used to express a desire for the pod to be scheduled on a specific node. "
             "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename", priority=1),
        _col("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the "
             "node, but it cannot be scheduled right away as preemption victims receive their graceful "
             "termination periods. This field does not guarantee that the pod will be scheduled on this node. "
             "Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler "
             "may also decide to give the resources on this node to a higher priority pod that is created after "
             "preemption. As a result, this field may be different than PodSpec.nodeName when the pod is "
             "scheduled.", priority=1),
        _col("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. "
             "A pod is ready when all its containers are ready AND all conditions specified in the readiness gates "
             "have status equal to \"True\" More info: "
             "https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates", priority=1),
    ],
    "services": [
        _name_col(),
        _col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options "
             "are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal "
             "IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is "
             "not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP "
             "is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather "
             "than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes "
             "to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external "
             "load-balancer (if supported in the current cloud) which routes to the same endpoints as the "
             "clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other "
             "fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/"
             "services-networking/service/#publishing-services-service-types"),
        _col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly. "
             "If an address is specified manually, is in-range (as per system configuration), and is not in use, "
             "it will be allocated to the service; otherwise creation of the service will fail. Valid values are "
             "\"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless "
             "service\" (no virtual IP), which is useful when direct endpoint connections are preferred and "
             "proxying is not required. More info: https://kubernetes.io/docs/concepts/services-networking/"
             "service/#virtual-ips-and-service-proxies"),
        _col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will "
             "also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is "
             "responsible for ensuring that traffic arrives at a node with this IP.  A common example is external "
             "load-balancers that are not part of the Kubernetes system."),
        _col("Port(s)", "string", "The list of ports that are exposed by this service. More info: "
             "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"),
        _age_col(),
        _col("Selector", "string", "Route service traffic to pods with label keys and values matching this "
             "selector. If empty or not present, the service is assumed to have an external process managing its "
             "endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and "
             "LoadBalancer. Ignored if type is ExternalName. More info: "
             "https://kubernetes.io/docs/concepts/services-networking/service/", priority=1),
    ],
    "endpoints": [
        _name_col(),
        _col("Endpoints", "string", "The set of all endpoints is the union of all subsets. Addresses are placed "
             "into subsets according to the IPs they share. A single address with multiple ports, some of which "
             "are ready and some of which are not (because they come from different containers) will result in "
             "the address being displayed in different subsets for the different ports. No address will appear in "
             "both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise "
             "a service."),
        _age_col(),
    ],
    "events": [
        _col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
        _col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
        _col("Reason", "string", "This should be a short, machine understandable string that gives the reason "
             "for the transition into the object's current status."),
        _col("Object", "string", "The object that this event is about."),
        _col("Subobject", "string", "If referring to a piece of an object instead of an entire object, this "
             "string should contain a valid JSON/Go field access statement, such as "
             "desiredState.manifest.containers[2]. For example, if the object reference is to a container within "
             "a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name "
             "of the container that triggered the event) or if no container name is specified "
             "\"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some "
             "well-defined way of referencing a part of an object.", priority=1),
        _col("Source", "string", "The component reporting this event. Should be a short machine understandable "
             "string.", priority=1),
        _col("Message", "string", "A human-readable description of the status of this operation."),
        _col("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is "
             "in TypeMeta.)", priority=1),
        _col("Count", "string", "The number of times this event has occurred.", priority=1),
        _name_col(priority=1),
    ],
    "deployments": [
        _name_col(),
        _col("Ready", "string", _D_READY_PODS),
        _col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have "
             "the desired template spec."),
        _col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) "
             "targeted by this deployment."),
        _age_col(),
        _col("Containers", "string", _D_CONTAINERS, priority=1),
        _col("Images", "string", _D_IMAGES, priority=1),
        _col("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this "
             "will be the ones affected by this deployment.", priority=1),
    ],
    "replicasets": [
        _name_col(),
        _col("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish "
             "between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/"
             "concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"),
        _col("Current", "integer", "Replicas is the most recently oberved number of replicas. More info: "
             "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/"
             "#what-is-a-replicationcontroller"),
        _col("Ready", "integer", "The number of ready replicas for this replica set."),
        _age_col(),
        _col("Containers", "string", _D_CONTAINERS, priority=1),
        _col("Images", "string", _D_IMAGES, priority=1),
        _col("Selector", "string", "Selector is a label query over pods that should match the replica count. If "
             "the selector is empty, it is defaulted to the labels present on the pod template. Label keys and "
             "values that must match in order to be controlled by this replica set. More info: "
             "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
             priority=1),
    ],
    "statefulsets": [
        _name_col(),
        _col("Ready", "string", _D_READY_PODS),
        _age_col(),
        _col("Containers", "string", _D_CONTAINERS, priority=1),
        _col("Images", "string", _D_IMAGES, priority=1),
    ],
    "endpointslices": [
        _name_col(),
        _col("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice. "
             "All addresses in this slice must be the same type. This field is immutable after creation. The "
             "following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: "
             "Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name."),
        _col("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice. "
             "Each port must have a unique name. When ports is empty, it indicates that there are no defined "
             "ports. When a port is defined with a nil port value, it indicates \"all ports\". Each slice may "
             "include a maximum of 100 ports."),
        _col("Endpoints", "string", "endpoints is a list of unique endpoints in this slice. Each slice may include "
             "a maximum of 1000 endpoints."),
        _age_col(),
    ],
}



def _doc(model: str, field: str) -> str:
    """A field's API documentation (the SwaggerDoc() upstream's column descriptions quote), from the client models."""
    from labkit.apiserver.schema import field_schema  # the models take a moment to import: only when asked

    f = field_schema(model).get(field)
    return f.description if f is not None else ""


def _workload_wide_columns(selector_model: str) -> list[dict[str, Any]]:
    return [_col("Containers", "string", _D_CONTAINERS, priority=1), _col("Images", "string", _D_IMAGES, priority=1),
            _col("Selector", "string", _doc(selector_model, "selector"), priority=1)]


# rbacv1beta1.ClusterRoleBinding's SwaggerDoc()["roleRef"] (the client models leave model-typed fields undocumented).
_D_ROLE_REF = ("RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, "
               "the Authorizer must return an error.")

# Column sets whose descriptions come from the client models: built on first use.
_LAZY_COLUMNS: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "configmaps": lambda: [_name_col(), _col("Data", "string", _doc("V1ConfigMap", "data")), _age_col()],
    "secrets": lambda: [_name_col(), _col("Type", "string", _doc("V1Secret", "type")),
                        _col("Data", "string", _doc("V1Secret", "data")), _age_col()],
    "serviceaccounts": lambda: [_name_col(), _col("Secrets", "string", _doc("V1ServiceAccount", "secrets")),
                                _age_col()],
    "clusterrolebindings": lambda: [
        _name_col(), _col("Role", "string", _D_ROLE_REF), _age_col(),
        _col("Users", "string", "Users in the clusterRoleBinding", priority=1),
        _col("Groups", "string", "Groups in the clusterRoleBinding", priority=1),
        _col("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding", priority=1),
    ],
    "daemonsets": lambda: [
        _name_col(),
        _col("Desired", "integer", _doc("V1DaemonSetStatus", "desiredNumberScheduled")),
        _col("Current", "integer", _doc("V1DaemonSetStatus", "currentNumberScheduled")),
        _col("Ready", "integer", _doc("V1DaemonSetStatus", "numberReady")),
        _col("Up-to-date", "integer", _doc("V1DaemonSetStatus", "updatedNumberScheduled")),
        _col("Available", "integer", _doc("V1DaemonSetStatus", "numberAvailable")),
        _col("Node Selector", "string", _doc("V1PodSpec", "nodeSelector")),
        _age_col(),
        *_workload_wide_columns("V1DaemonSetSpec"),
    ],
    "jobs": lambda: [
        _name_col(),
        _col("Status", "string", "Status of the job."),
        _col("Completions", "string", _doc("V1JobStatus", "succeeded")),
        _col("Duration", "string", "Time required to complete the job."),
        _age_col(),
        *_workload_wide_columns("V1JobSpec"),
    ],
    "cronjobs": lambda: [
        _name_col(),
        _col("Schedule", "string", _doc("V1CronJobSpec", "schedule")),
        _col("Timezone", "string", _doc("V1CronJobSpec", "timeZone")),
        _col("Suspend", "boolean", _doc("V1CronJobSpec", "suspend")),
        _col("Active", "integer", _doc("V1CronJobStatus", "active")),
        _col("Last Schedule", "string", _doc("V1CronJobStatus", "lastScheduleTime")),
        _age_col(),
        *_workload_wide_columns("V1JobSpec"),
    ],
}

# What the apiserver's default table convertor prints for a kind without printers.
_DEFAULT_COLUMNS: list[dict[str, Any]] = [_name_col(), _col("Created At", "date", _D_CREATED)]


# ---------------------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """A duration as kubectl's AGE shows it: ~2-3 significant figures ("19s", "3m14s", "5h2m", "2d3h", "3y7d").

    Mirrors apimachinery's duration.HumanDuration, including its tolerance of up to 2 s of clock skew
    (slightly negative durations print "0s", more negative ones "<invalid>").
    """
    whole_seconds = int(seconds)  # truncates toward zero, like Go's int(d.Seconds())
    if whole_seconds < -1:
        return "<invalid>"
    if whole_seconds < 0:
        return "0s"
    if whole_seconds < 60 * 2:
        return f"{whole_seconds}s"
    minutes = whole_seconds // 60
    if minutes < 10:
        s = whole_seconds % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = whole_seconds // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp (Time or MicroTime) as an aware datetime; None when absent or unparsable."""
    if not value or not isinstance(value, str):
        return None
    return _parse_time_text(value)


@functools.lru_cache(maxsize=4096)
def _parse_time_text(value: str) -> datetime | None:
    # Remembered: a list's objects were mostly created within a few seconds of each other, so a Table of
    # 1,000 of them parses a handful of distinct timestamps (datetimes are immutable, so sharing is safe).
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _since(value: Any, now: datetime) -> str:
    """translateTimestampSince: the age of a timestamp, "<unknown>" when it is unset."""
    when = _parse_time(value)
    if when is None:
        return UNKNOWN
    return human_duration((now - when).total_seconds())


# ---------------------------------------------------------------------------------------------------------
# Labels and selectors
# ---------------------------------------------------------------------------------------------------------


def _format_labels(labels: dict[str, str] | None) -> str:
    """labels.FormatLabels: "k1=v1,k2=v2" sorted by key, "<none>" when empty."""
    text = ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))
    return text or NONE


def _selector_string(selector: dict[str, Any] | None) -> str:
    """A metav1.LabelSelector as labels.Selector.String() prints it ("" for nil or empty).

    Requirements from matchLabels and matchExpressions are sorted by key; values are sorted.
    """
    if not selector:
        return ""
    reqs: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        reqs.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key = expr.get("key", "")
        op = expr.get("operator", "")
        values = ",".join(sorted(expr.get("values") or []))
        if op == "In":
            reqs.append((key, f"{key} in ({values})"))
        elif op == "NotIn":
            reqs.append((key, f"{key} notin ({values})"))
        elif op == "Exists":
            reqs.append((key, key))
        elif op == "DoesNotExist":
            reqs.append((key, f"!{key}"))
        else:
            return "<invalid>"
    reqs.sort(key=lambda r: r[0])
    return ",".join(text for _, text in reqs)


def _format_label_selector(selector: dict[str, Any] | None) -> str:
    """metav1.FormatLabelSelector: the selector string, "<none>" when it selects by nothing."""
    text = _selector_string(selector)
    return text or NONE


def _container_cells(spec: dict[str, Any] | None) -> tuple[str, str]:
    """layoutContainerCells: comma-joined container names and images of a pod spec."""
    containers = (spec or {}).get("containers") or []
    return (",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers))


def _template_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}


# ---------------------------------------------------------------------------------------------------------
# Row printers, one per kind. Each returns the wide cells (the apiserver always prints wide).
# ---------------------------------------------------------------------------------------------------------


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("spec") or {}


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


def _print_namespace(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta = _meta(obj)
    return [meta.get("name", ""), _status(obj).get("phase", ""), _since(meta.get("creationTimestamp"), now)]


_LABEL_NODE_ROLE_PREFIX = "node-role.kubernetes.io/"
_LABEL_NODE_ROLE = "kubernetes.io/role"


def _node_roles(labels: dict[str, str]) -> list[str]:
    roles: set[str] = set()
    for key, value in labels.items():
        if key.startswith(_LABEL_NODE_ROLE_PREFIX):
            role = key[len(_LABEL_NODE_ROLE_PREFIX):]
            if role:
                roles.add(role)
        elif key == _LABEL_NODE_ROLE and value:
            roles.add(value)
    return sorted(roles)


def _node_address(status: dict[str, Any], kind: str) -> str:
    for address in status.get("addresses") or []:
        if address.get("type") == kind:
            return address.get("address", "")
    return NONE


def _print_node(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    states: list[str] = []
    ready = conditions.get("Ready")
    if ready is not None:  # upstream only looks at the Ready condition
        states.append("Ready" if ready.get("status") == "True" else "NotReady")
    if not states:
        states.append("Unknown")
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    roles = ",".join(_node_roles(meta.get("labels") or {})) or NONE
    info = status.get("nodeInfo") or {}
    return [
        meta.get("name", ""),
        ",".join(states),
        roles,
        _since(meta.get("creationTimestamp"), now),
        info.get("kubeletVersion", ""),
        _node_address(status, "InternalIP"),
        _node_address(status, "ExternalIP"),
        info.get("osImage") or UNKNOWN,
        info.get("kernelVersion") or UNKNOWN,
        info.get("containerRuntimeVersion") or UNKNOWN,
    ]


def _is_restartable_init_container(container: dict[str, Any] | None) -> bool:
    """A sidecar: an init container with restartPolicy Always."""
    return container is not None and container.get("restartPolicy") == "Always"


def _condition_true(conditions: list[dict[str, Any]], cond_type: str) -> bool:
    """True when the first condition of this type has status True (isPodInitializedConditionTrue)."""
    for condition in conditions:
        if condition.get("type") == cond_type:
            return condition.get("status") == "True"
    return False


def _has_pod_ready_condition(conditions: list[dict[str, Any]]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _terminated_at(container_status: dict[str, Any]) -> datetime | None:
    """When the container's previous run ended (lastState.terminated.finishedAt), if it did."""
    terminated = (container_status.get("lastState") or {}).get("terminated")
    if terminated is None:
        return None
    return _parse_time(terminated.get("finishedAt"))


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if a < b else a


def _pod_summary(pod: dict[str, Any], now: datetime) -> tuple[str, str, str]:
    """The READY, STATUS and RESTARTS cells of a pod, with printPod's status-reason rules."""
    meta, spec, status = _meta(pod), _spec(pod), _status(pod)
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    init_specs: list[dict[str, Any]] = spec.get("initContainers") or []
    init_by_name = {c.get("name"): c for c in init_specs}

    restarts = 0
    sidecar_restarts = 0
    total = len(spec.get("containers") or []) + sum(1 for c in init_specs if _is_restartable_init_container(c))
    ready = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    # The apiserver sets phase Pending on create; a stored pod without a phase is one that never got it.
    phase = status.get("phase") or "Pending"
    reason = status.get("reason") or phase
    for condition in conditions:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    initializing = False
    for index, cs in enumerate(status.get("initContainerStatuses") or []):
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        sidecar = _is_restartable_init_container(init_by_name.get(cs.get("name")))
        restarts += int(cs.get("restartCount") or 0)
        last_restart = _latest(last_restart, _terminated_at(cs))
        if sidecar:
            sidecar_restarts += int(cs.get("restartCount") or 0)
            last_sidecar_restart = _latest(last_sidecar_restart, _terminated_at(cs))
        if terminated is not None and int(terminated.get("exitCode") or 0) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated is not None:  # initialization failed
            if not terminated.get("reason"):
                if terminated.get("signal"):
                    reason = f"Init:Signal:{terminated['signal']}"
                else:
                    reason = f"Init:ExitCode:{int(terminated.get('exitCode') or 0)}"
            else:
                reason = "Init:" + terminated["reason"]
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(conditions, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        # Walk the containers last to first, so the first container's state decides the reason.
        for cs in reversed(status.get("containerStatuses") or []):
            state = cs.get("state") or {}
            terminated, waiting = state.get("terminated"), state.get("waiting")
            restarts += int(cs.get("restartCount") or 0)
            last_restart = _latest(last_restart, _terminated_at(cs))
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated is not None:
                if terminated.get("signal"):
                    reason = f"Signal:{terminated['signal']}"
                else:
                    reason = f"ExitCode:{int(terminated.get('exitCode') or 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # A pod whose containers completed but one of which still runs is not "Completed".
        if reason == "Completed" and has_running:
            reason = "Running" if _has_pod_ready_condition(conditions) else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_cell = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    return f"{ready}/{total}", reason, restarts_cell


def _pod_ip(status: dict[str, Any]) -> str:
    # v1 -> internal conversion makes podIP authoritative over podIPs[0]
    ip = status.get("podIP") or ""
    if not ip:
        ips = status.get("podIPs") or []
        ip = ips[0].get("ip", "") if ips else ""
    return ip


def _print_pod(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    ready, reason, restarts = _pod_summary(obj, now)
    gates = spec.get("readinessGates") or []
    readiness = NONE
    if gates:
        conditions = status.get("conditions") or []
        true_count = 0
        for gate in gates:
            for condition in conditions:
                if condition.get("type") == gate.get("conditionType"):
                    true_count += condition.get("status") == "True"
                    break
        readiness = f"{true_count}/{len(gates)}"
    return [
        meta.get("name", ""),
        ready,
        reason,
        restarts,
        _since(meta.get("creationTimestamp"), now),
        _pod_ip(status) or NONE,
        spec.get("nodeName") or NONE,
        status.get("nominatedNodeName") or NONE,
        readiness,
    ]


_LOAD_BALANCER_WIDTH = 16


def _load_balancer_ips(status: dict[str, Any], wide: bool) -> str:
    found = set()
    for ingress in (status.get("loadBalancer") or {}).get("ingress") or []:
        if ingress.get("ip"):
            found.add(ingress["ip"])
        elif ingress.get("hostname"):
            found.add(ingress["hostname"])
    text = ",".join(sorted(found))
    if not wide and len(text) > _LOAD_BALANCER_WIDTH:
        text = text[: _LOAD_BALANCER_WIDTH - 3] + "..."
    return text


def _service_external_ip(svc: dict[str, Any], svc_type: str) -> str:
    spec = _spec(svc)
    external_ips: list[str] = spec.get("externalIPs") or []
    if svc_type in ("ClusterIP", "NodePort"):
        return ",".join(external_ips) if external_ips else NONE
    if svc_type == "LoadBalancer":
        lb = _load_balancer_ips(_status(svc), wide=True)  # the apiserver prints wide
        if external_ips:
            return ",".join(([*lb.split(",")] if lb else []) + external_ips)
        return lb or "<pending>"
    if svc_type == "ExternalName":
        return spec.get("externalName", "")
    return UNKNOWN


def _service_ports(ports: list[dict[str, Any]]) -> str:
    """makePortString: "80/TCP", "80:30080/TCP" for a node port, comma-joined."""
    pieces = []
    for port in ports:
        protocol = port.get("protocol") or "TCP"  # defaulted on create
        if int(port.get("nodePort") or 0) > 0:
            pieces.append(f"{port.get('port', 0)}:{port['nodePort']}/{protocol}")
        else:
            pieces.append(f"{port.get('port', 0)}/{protocol}")
    return ",".join(pieces)


def _print_service(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta, spec = _meta(obj), _spec(obj)
    svc_type = spec.get("type") or "ClusterIP"  # defaulted on create
    # v1 -> internal conversion makes clusterIP authoritative over clusterIPs[0]
    cluster_ip = spec.get("clusterIP") or next(iter(spec.get("clusterIPs") or []), "") or NONE
    return [
        meta.get("name", ""),
        svc_type,
        cluster_ip,
        _service_external_ip(obj, svc_type),
        _service_ports(spec.get("ports") or []) or NONE,
        _since(meta.get("creationTimestamp"), now),
        _format_labels(spec.get("selector")),
    ]


def _join_host_port(host: str, port: Any) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _format_endpoints(endpoints: dict[str, Any]) -> str:
    """formatEndpoints: up to 3 "ip:port" (bare "ip" for portless subsets), then " + N more..."."""
    subsets = endpoints.get("subsets") or []
    if not subsets:
        return NONE
    shown: list[str] = []
    limit = 3
    more = False
    count = 0
    for subset in subsets:
        addresses = subset.get("addresses") or []  # only ready addresses are printed
        ports = subset.get("ports") or []
        if not ports:  # headless services may have no ports
            count += len(addresses)
            for address in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(address.get("ip", ""))
            continue
        for port in ports:
            count += len(addresses)
            for address in addresses:
                if len(shown) == limit:
                    more = True
                    break
                shown.append(_join_host_port(address.get("ip", ""), port.get("port", 0)))
    text = ",".join(shown)
    if more:
        return f"{text} + {count - limit} more..."
    return text


def _print_endpoints(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta = _meta(obj)
    return [meta.get("name", ""), _format_endpoints(obj), _since(meta.get("creationTimestamp"), now)]


def _list_with_more(shown: list[str], more: bool, count: int, limit: int) -> str:
    text = ",".join(shown)
    if more:
        return f"{text} + {count - limit} more..."
    return text or UNSET


def _format_slice_ports(ports: list[dict[str, Any]]) -> str:
    shown: list[str] = []
    limit, more, count = 3, False, 0
    for port in ports:
        if len(shown) < limit:
            if port.get("port") is not None:
                shown.append(str(port["port"]))
            elif port.get("name") is not None:
                shown.append(port["name"])
            else:
                shown.append("*")
        elif len(shown) == limit:
            more = True
        count += 1
    return _list_with_more(shown, more, count, limit)


def _format_slice_endpoints(endpoints: list[dict[str, Any]]) -> str:
    shown: list[str] = []
    limit, more, count = 3, False, 0
    for endpoint in endpoints:
        for address in endpoint.get("addresses") or []:  # ready or not, all are printed
            if len(shown) < limit:
                shown.append(address)
            elif len(shown) == limit:
                more = True
            count += 1
    return _list_with_more(shown, more, count, limit)


def _print_endpointslice(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta = _meta(obj)
    return [
        meta.get("name", ""),
        obj.get("addressType", ""),
        _format_slice_ports(obj.get("ports") or []),
        _format_slice_endpoints(obj.get("endpoints") or []),
        _since(meta.get("creationTimestamp"), now),
    ]


def _event_source(obj: dict[str, Any]) -> str:
    """formatEventSource: "component, host", falling back to reportingController / reportingInstance."""
    source = obj.get("source") or {}
    component = source.get("component") or obj.get("reportingController") or ""
    instance = source.get("host") or obj.get("reportingInstance") or ""
    return f"{component}, {instance}" if instance else component


def _print_event(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta = _meta(obj)
    first_seen = _since(obj.get("firstTimestamp"), now)
    if _parse_time(obj.get("firstTimestamp")) is None:
        first_seen = _since(obj.get("eventTime"), now)
    last_seen = _since(obj.get("lastTimestamp"), now)
    if _parse_time(obj.get("lastTimestamp")) is None:
        last_seen = first_seen
    count = int(obj.get("count") or 0)
    series = obj.get("series")
    if series is not None:
        last_seen = _since(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1  # singleton events of the events.k8s.io API carry no count
    involved = obj.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [
        last_seen,
        obj.get("type", ""),
        obj.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        _event_source(obj),
        (obj.get("message") or "").strip(),
        first_seen,
        count,
        meta.get("name", ""),
    ]


def _replicas(spec: dict[str, Any]) -> int:
    value = spec.get("replicas")
    return 1 if value is None else int(value)  # defaulted to 1 on create


def _print_deployment(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    names, images = _container_cells(_template_spec(obj))
    return [
        meta.get("name", ""),
        f"{int(status.get('readyReplicas') or 0)}/{_replicas(spec)}",
        int(status.get("updatedReplicas") or 0),
        int(status.get("availableReplicas") or 0),
        _since(meta.get("creationTimestamp"), now),
        names,
        images,
        _selector_string(spec.get("selector")),
    ]


def _print_replicaset(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    names, images = _container_cells(_template_spec(obj))
    return [
        meta.get("name", ""),
        _replicas(spec),
        int(status.get("replicas") or 0),
        int(status.get("readyReplicas") or 0),
        _since(meta.get("creationTimestamp"), now),
        names,
        images,
        _format_label_selector(spec.get("selector")),
    ]


def _print_statefulset(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    names, images = _container_cells(_template_spec(obj))
    return [
        meta.get("name", ""),
        f"{int(status.get('readyReplicas') or 0)}/{_replicas(spec)}",
        _since(meta.get("creationTimestamp"), now),
        names,
        images,
    ]


def _print_configmap(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta = _meta(obj)
    return [meta.get("name", ""), len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
            _since(meta.get("creationTimestamp"), now)]


def _print_secret(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta = _meta(obj)
    return [meta.get("name", ""), obj.get("type") or "Opaque", len(obj.get("data") or {}),
            _since(meta.get("creationTimestamp"), now)]


def _print_serviceaccount(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta = _meta(obj)
    return [meta.get("name", ""), len(obj.get("secrets") or []), _since(meta.get("creationTimestamp"), now)]


def _print_clusterrolebinding(obj: dict[str, Any], now: datetime) -> list[Any]:
    """printRoleBinding: the role as Kind/name; users, groups and service accounts (namespace/name) when wide."""
    meta, ref = _meta(obj), obj.get("roleRef") or {}
    subjects = [s for s in obj.get("subjects") or [] if isinstance(s, dict)]

    def names(kind: str) -> str:
        return ", ".join(f"{s.get('namespace', '')}/{s.get('name', '')}" if kind == "ServiceAccount"
                         else s.get("name", "") for s in subjects if s.get("kind") == kind)

    return [meta.get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}",
            _since(meta.get("creationTimestamp"), now), names("User"), names("Group"), names("ServiceAccount")]


def _print_daemonset(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    tspec = _template_spec(obj)
    names, images = _container_cells(tspec)
    return [
        meta.get("name", ""),
        *(int(status.get(f) or 0) for f in ("desiredNumberScheduled", "currentNumberScheduled", "numberReady",
                                            "updatedNumberScheduled", "numberAvailable")),
        _format_labels(tspec.get("nodeSelector")),
        _since(meta.get("creationTimestamp"), now),
        names,
        images,
        _format_label_selector(spec.get("selector")),
    ]


def _has_condition(status: dict[str, Any], ctype: str) -> bool:
    """hasJobCondition: a condition of that type with status True."""
    return any(c.get("type") == ctype and c.get("status") == "True" for c in status.get("conditions") or [])


def _job_status(obj: dict[str, Any]) -> str:
    status = _status(obj)
    if _has_condition(status, "Complete"):
        return "Complete"
    if _has_condition(status, "Failed"):
        return "Failed"
    if _meta(obj).get("deletionTimestamp"):
        return "Terminating"
    for ctype in ("Suspended", "FailureTarget"):
        if _has_condition(status, ctype):
            return ctype
    return "Running"


def _print_job(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    succeeded = int(status.get("succeeded") or 0)
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{spec['completions']}"
    elif int(spec.get("parallelism") or 0) > 1:
        completions = f"{succeeded}/1 of {spec['parallelism']}"
    else:
        completions = f"{succeeded}/1"
    started, finished = _parse_time(status.get("startTime")), _parse_time(status.get("completionTime"))
    duration = ""
    if started is not None:
        duration = human_duration(((finished or now) - started).total_seconds())
    names, images = _container_cells(_template_spec(obj))
    return [meta.get("name", ""), _job_status(obj), completions, duration, _since(meta.get("creationTimestamp"), now),
            names, images, _format_label_selector(spec.get("selector"))]


def _print_cronjob(obj: dict[str, Any], now: datetime) -> list[Any]:
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    names, images = _container_cells((job_spec.get("template") or {}).get("spec"))
    suspend = spec.get("suspend")
    last = status.get("lastScheduleTime")
    return [
        meta.get("name", ""),
        spec.get("schedule", ""),
        spec.get("timeZone") or NONE,
        UNSET if suspend is None else ("True" if suspend else "False"),
        len(status.get("active") or []),
        _since(last, now) if last else NONE,
        _since(meta.get("creationTimestamp"), now),
        names,
        images,
        _format_label_selector(job_spec.get("selector")),
    ]


def _print_default(obj: dict[str, Any], now: datetime) -> list[Any]:
    """The default table convertor: name and the creation time as RFC 3339 in UTC."""
    meta = _meta(obj)
    created = _parse_time(meta.get("creationTimestamp"))
    when = (created or datetime(1, 1, 1, tzinfo=UTC)).astimezone(UTC)
    return [meta.get("name", ""), when.strftime("%Y-%m-%dT%H:%M:%SZ")]


_PRINTERS: dict[str, Callable[[dict[str, Any], datetime], list[Any]]] = {
    "namespaces": _print_namespace,
    "nodes": _print_node,
    "pods": _print_pod,
    "services": _print_service,
    "endpoints": _print_endpoints,
    "events": _print_event,
    "deployments": _print_deployment,
    "replicasets": _print_replicaset,
    "statefulsets": _print_statefulset,
    "endpointslices": _print_endpointslice,
    "configmaps": _print_configmap,
    "secrets": _print_secret,
    "serviceaccounts": _print_serviceaccount,
    "clusterrolebindings": _print_clusterrolebinding,
    "daemonsets": _print_daemonset,
    "jobs": _print_job,
    "cronjobs": _print_cronjob,
}

# Row conditions printPod attaches to finished pods (kubectl uses them to tell completed rows apart).
_POD_PHASE_CONDITIONS = {
    "Succeeded": [{"type": "Completed", "status": "True", "reason": "Succeeded",
                   "message": "The pod has completed successfully."}],
    "Failed": [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}],
}


# ---------------------------------------------------------------------------------------------------------
# Public interface
# ---------------------------------------------------------------------------------------------------------


def column_definitions(plural: str) -> list[dict[str, Any]]:
    """The Table columns for a resource (by plural), in upstream's order, including priority-1 (wide) ones.

    A resource without a printer gets the apiserver's default columns: Name and "Created At".
    """
    columns = _COLUMNS.get(plural)
    if columns is None:
        columns = _lazy_columns(plural) if plural in _LAZY_COLUMNS else _DEFAULT_COLUMNS
    return copy.deepcopy(columns)


@functools.cache
def _lazy_columns(plural: str) -> list[dict[str, Any]]:
    return _LAZY_COLUMNS[plural]()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return _utc_now()
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def row_cells(plural: str, obj: dict[str, Any], now: datetime) -> list[Any]:
    """The cells of one object's row, one per column of `column_definitions(plural)` (strings and ints)."""
    return _PRINTERS.get(plural, _print_default)(obj, _aware(now))


def _copy_metadata(objects: list[dict[str, Any]]) -> list[Any]:
    """Private copies of the objects' metadata, for the rows' PartialObjectMetadata.

    One orjson round trip for the whole list: a copy of 1,000 objects' metadata (managedFields and all) was most
    of the time of listing them as a Table. The json module takes what orjson refuses (integers beyond 64 bits).
    """
    metas = [_meta(obj) for obj in objects]
    try:
        return orjson.loads(orjson.dumps(metas, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:
        return json.loads(json.dumps(metas))


def to_table(
    plural: str,
    objects: list[dict[str, Any]],
    *,
    resource_version: str | None = None,
    include_object: str = "Metadata",
    with_columns: bool = True,
    now: datetime | None = None,
    copy_metadata: bool = True,
) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `objects` (a list, a single get or one watch event's object).

    `include_object` is the request's `includeObject`: "None" (row.object null), "Metadata" (default; a
    PartialObjectMetadata with the object's full metadata) or "Object" (the object itself, which
    `kubectl get --sort-by` needs). `with_columns=False` sends `columnDefinitions: null`, as the apiserver
    does for watch events after the first. `copy_metadata=False` makes each PartialObjectMetadata refer to its
    object's own metadata instead of a copy, like "Object" does: for a caller that serialises the Table at once
    and never changes it (the server), it saves most of the time of a long list. Raises ValueError, carrying the
    apiserver's BadRequest message, for an unknown `include_object`.
    """
    if include_object in ("", None):
        include_object = "Metadata"
    if include_object not in INCLUDE_OBJECT_VALUES:
        # The apiserver answers 400 BadRequest with this message.
        raise ValueError(f'unrecognized includeObject value: "{include_object}"')
    moment = _aware(now)
    printer = _PRINTERS.get(plural, _print_default)
    metas: list[Any] | None = None
    if include_object == "Metadata":
        metas = _copy_metadata(objects) if copy_metadata else [_meta(obj) for obj in objects]
    rows: list[dict[str, Any]] = []
    for index, obj in enumerate(objects):
        row: dict[str, Any] = {"cells": printer(obj, moment)}
        if plural == "pods":
            conditions = _POD_PHASE_CONDITIONS.get(_status(obj).get("phase", ""))
            if conditions:
                row["conditions"] = [dict(c) for c in conditions]  # flat dicts of strings: a deep copy
        if metas is not None:
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metas[index]}
        else:
            row["object"] = obj if include_object == "Object" else None
        rows.append(row)
    metadata: dict[str, Any] = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(plural) if with_columns else None,
        "rows": rows,
    }
