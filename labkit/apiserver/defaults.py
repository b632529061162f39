"""Defaulting: what the API server fills in before validating and storing an object.

`apply_defaults(kind, obj)` mutates `obj` so that `kubectl get -o yaml` shows what it
shows on a real 1.32 cluster. Three upstream layers are folded together here:

- the `SetDefaults_*` functions: pkg/apis/core/v1/defaults.go, pkg/apis/apps/v1/defaults.go,
  pkg/apis/discovery/v1/defaults.go;
- the registry strategies' PrepareForCreate/Update (Service clusterIP/clusterIPs
  normalisation, Namespace finalizers, Pod status) and the Service REST's IP-family
  initialisation (pkg/registry/core/service/ipallocator/... `initIPFamilyFields`);
- the admission plugins a kind cluster runs on pods: ServiceAccount (`serviceAccountName:
  default`), Priority (`priority: 0`, `preemptionPolicy`) and DefaultTolerationSeconds.

Plus Go's zero values that the JSON encoder always writes (`resources: {}`,
`status: {loadBalancer: {}}`, `creationTimestamp: null` in pod templates).

Allocation of ClusterIPs and NodePorts is not done here (controllers/ipalloc does it).
"""

from __future__ import annotations

import random
from typing import Any

from labkit.kinds import ResourceKind

DEFAULT_CLIENT_IP_AFFINITY_SECONDS = 10800


def _obj(parent: dict, key: str) -> dict:
    """parent[key] as a dict, created (or replaced if it is not a dict) when missing."""
    v = parent.get(key)
    if not isinstance(v, dict):
        v = {}
        parent[key] = v
    return v


def _dicts(v: Any) -> list[dict]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


# ---------------------------------------------------------------------------
# Pods
# ---------------------------------------------------------------------------


def _image_pull_policy(image: str) -> str:
    """Always for `:latest` or an untagged image, else IfNotPresent (digests count as tagged)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    _default_handler(probe)


def _default_handler(handler: Any) -> None:
    if not isinstance(handler, dict):
        return
    http = handler.get("httpGet")
    if isinstance(http, dict):
        if not http.get("path"):
            http["path"] = "/"
        if not http.get("scheme"):
            http["scheme"] = "HTTP"
    grpc = handler.get("grpc")
    if isinstance(grpc, dict) and grpc.get("service") is None:
        grpc["service"] = ""


def _default_container(c: dict, host_network: bool) -> None:
    image = c.get("image")
    if not c.get("imagePullPolicy"):
        # An unparsable (empty) image gets IfNotPresent, as upstream ignores the parse error.
        c["imagePullPolicy"] = _image_pull_policy(image) if isinstance(image, str) and image else "IfNotPresent"
    if not c.get("terminationMessagePath"):
        c["terminationMessagePath"] = "/dev/termination-log"
    if not c.get("terminationMessagePolicy"):
        c["terminationMessagePolicy"] = "File"
    resources = _obj(c, "resources")
    # SetDefaults_Pod: requests default to limits.
    limits = resources.get("limits")
    if isinstance(limits, dict) and limits:
        requests = _obj(resources, "requests")
        for k, v in limits.items():
            requests.setdefault(k, v)
    for port in _dicts(c.get("ports")):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if host_network and not port.get("hostPort") and port.get("containerPort"):
            port["hostPort"] = port["containerPort"]
    for env in _dicts(c.get("env")):
        field_ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env.get("valueFrom"), dict) else None
        if isinstance(field_ref, dict) and not field_ref.get("apiVersion"):
            field_ref["apiVersion"] = "v1"
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(key))
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        _default_handler(lifecycle.get("postStart"))
        _default_handler(lifecycle.get("preStop"))


def _default_volume(vol: dict) -> None:
    sources = [k for k in vol if k != "name"]
    if not sources:
        vol["emptyDir"] = {}
    for key in ("configMap", "secret", "projected", "downwardAPI"):
        src = vol.get(key)
        if isinstance(src, dict) and src.get("defaultMode") is None:
            src["defaultMode"] = 420
    # SetDefaults_ObjectFieldSelector for the downward API's items (a volume's, or a projected source's).
    downward = [vol.get("downwardAPI")]
    projected = vol.get("projected")
    if isinstance(projected, dict):
        downward += [s.get("downwardAPI") for s in _dicts(projected.get("sources"))]
    for src in downward:
        for item in _dicts(src.get("items")) if isinstance(src, dict) else []:
            field_ref = item.get("fieldRef")
            if isinstance(field_ref, dict) and not field_ref.get("apiVersion"):
                field_ref["apiVersion"] = "v1"
    hp = vol.get("hostPath")
    if isinstance(hp, dict) and hp.get("type") is None:
        hp["type"] = ""


def default_pod_spec(spec: dict) -> None:
    """SetDefaults_PodSpec + the container/volume/probe defaults (no admission)."""
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    host_network = bool(spec.get("hostNetwork"))
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in _dicts(spec.get(key)):
            _default_container(c, host_network)
    for vol in _dicts(spec.get("volumes")):
        _default_volume(vol)


def default_pod_template(template: Any) -> None:
    """A PodTemplateSpec inside a workload: pod spec defaults and Go's `creationTimestamp: null`."""
    if not isinstance(template, dict):
        return
    meta = _obj(template, "metadata")
    meta.setdefault("creationTimestamp", None)
    default_pod_spec(_obj(template, "spec"))


_NOT_READY_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
)


def _qos_class(spec: dict) -> str:
    """qos.GetPodQOS for cpu/memory requests and limits."""
    requests: dict[str, list] = {}
    limits: dict[str, list] = {}
    any_set = False
    all_guaranteed = True
    for c in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        req = {k: v for k, v in (res.get("requests") or {}).items() if k in ("cpu", "memory")}
        lim = {k: v for k, v in (res.get("limits") or {}).items() if k in ("cpu", "memory")}
        any_set = any_set or bool(req) or bool(lim)
        if set(lim) != {"cpu", "memory"} or any(req.get(k, lim[k]) != lim[k] for k in lim):
            all_guaranteed = False
        for k, v in req.items():
            requests.setdefault(k, []).append(v)
        for k, v in lim.items():
            limits.setdefault(k, []).append(v)
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if all_guaranteed else "Burstable"


SERVICE_ACCOUNT_VOLUME = "kube-api-access"
SERVICE_ACCOUNT_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's SimpleNameGenerator


def _mount_service_account_token(spec: dict) -> None:
    """ServiceAccount admission's mountServiceAccountToken: every container (and init container) without a
    mount at the token path gets the `kube-api-access-XXXXX` projected volume, read-only (token, ca.crt from
    the kube-root-ca.crt ConfigMap, the namespace from the downward API)."""
    volumes = _dicts(spec.get("volumes"))
    name = next((v.get("name") for v in volumes if str(v.get("name", "")).startswith(SERVICE_ACCOUNT_VOLUME + "-")),
                None)
    has_volume = name is not None
    name = name or f"{SERVICE_ACCOUNT_VOLUME}-{''.join(random.choices(_NAME_ALPHABET, k=5))}"
    needed = False
    for key in ("initContainers", "containers"):
        for c in _dicts(spec.get(key)):
            mounts = c.get("volumeMounts") if isinstance(c.get("volumeMounts"), list) else []
            if any(isinstance(m, dict) and m.get("mountPath") == SERVICE_ACCOUNT_MOUNT_PATH for m in mounts):
                continue
            c["volumeMounts"] = [*mounts, {"name": name, "readOnly": True, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}]
            needed = True
    if needed and not has_volume:
        spec["volumes"] = [*(spec.get("volumes") or []), {"name": name, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1",
                                                                           "fieldPath": "metadata.namespace"}}]}}]}}]


def _default_pod(obj: dict, old: dict | None = None) -> None:
    spec = _obj(obj, "spec")
    default_pod_spec(spec)
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    # Admission: ServiceAccount (which leaves kubelet's mirror pods alone), Priority, DefaultTolerationSeconds.
    mirror = "kubernetes.io/config.mirror" in (_obj(obj, "metadata").get("annotations") or {})
    if not spec.get("serviceAccountName") and not mirror:
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    if not spec.get("serviceAccount") and spec.get("serviceAccountName"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    if old is None and not mirror and spec.get("automountServiceAccountToken") is not False:
        _mount_service_account_token(spec)
    if spec.get("priority") is None:
        spec["priority"] = 0
    if not spec.get("preemptionPolicy"):
        spec["preemptionPolicy"] = "PreemptLowerPriority"
    tolerations = spec.get("tolerations")
    if not isinstance(tolerations, list):
        tolerations = []
    for wanted in _NOT_READY_TOLERATIONS:
        has = any(isinstance(t, dict) and t.get("key") == wanted["key"]
                  and t.get("effect") in (None, "", "NoExecute") for t in tolerations)
        if not has:
            tolerations.append(dict(wanted))
    spec["tolerations"] = tolerations
    # Strategy PrepareForCreate: a new pod starts Pending with its QoS class.
    status = _obj(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"
    if not status.get("qosClass"):
        status["qosClass"] = _qos_class(spec)


# ---------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------


def _same(a: dict, b: dict, key: str) -> bool:
    return a.get(key) == b.get(key)


def _service_update(spec: dict, old_spec: dict) -> None:
    """Registry strategy on update: NormalizeClusterIPs, patchAllocatedValues, dropTypeDependentFields."""
    # NormalizeClusterIPs (update branch).
    if old_spec.get("clusterIPs") and not spec.get("clusterIPs") and _same(spec, old_spec, "clusterIP"):
        spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if spec.get("clusterIP", "") != old_spec.get("clusterIP", ""):
        if old_spec.get("clusterIP") and not spec.get("clusterIP") and _same(spec, old_spec, "clusterIPs"):
            spec.pop("clusterIPs", None)
        if _same(spec, old_spec, "clusterIPs") and isinstance(spec.get("clusterIPs"), list) \
                and len(spec["clusterIPs"]) == 1 and spec.get("clusterIP"):
            spec["clusterIPs"] = [spec["clusterIP"]]
    new_type, old_type = spec.get("type") or "ClusterIP", old_spec.get("type") or "ClusterIP"
    # patchAllocatedValues: keep what was allocated when the client left it out.
    if new_type != "ExternalName" and old_type != "ExternalName":
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not spec.get("clusterIPs") and old_spec.get("clusterIPs"):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if new_type in ("NodePort", "LoadBalancer") and old_type in ("NodePort", "LoadBalancer"):
        old_ports = _dicts(old_spec.get("ports"))
        new_ports = _dicts(spec.get("ports"))
        used = {p.get("nodePort") for p in old_ports} & {p.get("nodePort") for p in new_ports}
        by_name = {p.get("name", ""): p.get("nodePort") for p in old_ports}
        for p in new_ports:
            if not p.get("nodePort"):
                old_val = by_name.get(p.get("name", ""))
                if old_val and old_val not in used:
                    p["nodePort"] = old_val
    # dropTypeDependentFields: clear what the new type does not use and the client did not touch.
    if new_type == "ExternalName" and old_type != "ExternalName":
        if _same(spec, old_spec, "clusterIP") and _same(spec, old_spec, "clusterIPs"):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if _same(spec, old_spec, "ipFamilies") and _same(spec, old_spec, "ipFamilyPolicy"):
            spec.pop("ipFamilies", None)
            spec.pop("ipFamilyPolicy", None)
    if new_type not in ("NodePort", "LoadBalancer") and old_type in ("NodePort", "LoadBalancer"):
        old_nps = [p.get("nodePort") for p in _dicts(old_spec.get("ports"))]
        new_nps = [p.get("nodePort") for p in _dicts(spec.get("ports"))]
        if old_nps == new_nps:
            for p in _dicts(spec.get("ports")):
                p.pop("nodePort", None)
        if spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy") \
                and not (new_type == "ClusterIP" and spec.get("externalIPs")):
            spec.pop("externalTrafficPolicy", None)
        if spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
            spec.pop("healthCheckNodePort", None)
    if new_type != "LoadBalancer" and old_type == "LoadBalancer" \
            and spec.get("allocateLoadBalancerNodePorts") == old_spec.get("allocateLoadBalancerNodePorts"):
        spec.pop("allocateLoadBalancerNodePorts", None)


def _default_service(obj: dict, old: dict | None) -> None:
    spec = _obj(obj, "spec")
    if old is not None:
        _service_update(spec, old.get("spec") if isinstance(old.get("spec"), dict) else {})
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        sac = spec.get("sessionAffinityConfig")
        client_ip = sac.get("clientIP") if isinstance(sac, dict) else None
        if not isinstance(client_ip, dict) or client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_AFFINITY_SECONDS}}
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    stype = spec["type"]
    for port in _dicts(spec.get("ports")):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, "") and "port" in port:
            port["targetPort"] = port["port"]
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if "service.beta.kubernetes.io/external-traffic" not in annotations:
        externally = stype in ("NodePort", "LoadBalancer") or (stype == "ClusterIP" and bool(spec.get("externalIPs")))
        if externally and not spec.get("externalTrafficPolicy"):
            spec["externalTrafficPolicy"] = "Cluster"
        if spec.get("internalTrafficPolicy") is None and stype in ("NodePort", "LoadBalancer", "ClusterIP"):
            spec["internalTrafficPolicy"] = "Cluster"
    if stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    # NormalizeClusterIPs (create): a client that set only the singular field.
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    if stype != "ExternalName":
        # initIPFamilyFields on this single-stack IPv4 cluster.
        headless_selectorless = spec.get("clusterIP") == "None" and not spec.get("selector")
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = ["IPv4"]
        if spec.get("ipFamilyPolicy") is None:
            spec["ipFamilyPolicy"] = "RequireDualStack" if headless_selectorless else "SingleStack"
    status = _obj(obj, "status")
    if not isinstance(status.get("loadBalancer"), dict):
        status["loadBalancer"] = {}


# ---------------------------------------------------------------------------
# apps
# ---------------------------------------------------------------------------


def _default_deployment(obj: dict) -> None:
    spec = _obj(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = _obj(spec, "strategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        ru = _obj(strategy, "rollingUpdate")
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = "25%"
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    default_pod_template(spec.get("template"))
    _obj(obj, "status")


def _default_replica_set(obj: dict) -> None:
    spec = _obj(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    default_pod_template(spec.get("template"))
    status = _obj(obj, "status")
    status.setdefault("replicas", 0)


def _default_stateful_set(obj: dict) -> None:
    spec = _obj(obj, "spec")
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    us = _obj(spec, "updateStrategy")
    if not us.get("type"):
        us["type"] = "RollingUpdate"
        if us.get("rollingUpdate") is None:
            us["rollingUpdate"] = {}
    ru = us.get("rollingUpdate")
    if us["type"] == "RollingUpdate" and isinstance(ru, dict) and ru.get("partition") is None:
        ru["partition"] = 0
    policy = _obj(spec, "persistentVolumeClaimRetentionPolicy")
    if not policy.get("whenDeleted"):
        policy["whenDeleted"] = "Retain"
    if not policy.get("whenScaled"):
        policy["whenScaled"] = "Retain"
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(spec.get("template"))
    for pvc in _dicts(spec.get("volumeClaimTemplates")):
        pvc.setdefault("apiVersion", "v1")
        pvc.setdefault("kind", "PersistentVolumeClaim")
        _obj(pvc, "metadata").setdefault("creationTimestamp", None)
        pvc_spec = _obj(pvc, "spec")
        if not pvc_spec.get("volumeMode"):
            pvc_spec["volumeMode"] = "Filesystem"
        _obj(pvc, "status").setdefault("phase", "Pending")
    status = _obj(obj, "status")
    status.setdefault("replicas", 0)
    status.setdefault("availableReplicas", 0)


def _default_daemon_set(obj: dict) -> None:
    spec = _obj(obj, "spec")
    us = _obj(spec, "updateStrategy")
    if not us.get("type"):
        us["type"] = "RollingUpdate"
    if us["type"] == "RollingUpdate":
        ru = _obj(us, "rollingUpdate")
        if ru.get("maxUnavailable") is None:
            ru["maxUnavailable"] = 1
        if ru.get("maxSurge") is None:
            ru["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    default_pod_template(spec.get("template"))
    _obj(obj, "status")


def _default_job_spec(spec: dict) -> None:
    """SetDefaults_Job's spec part (a CronJob's jobTemplate only gets its pod template defaulted)."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None and spec.get("backoffLimitPerIndex") is None:
        spec["backoffLimit"] = 6
    if not spec.get("completionMode"):
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if not spec.get("podReplacementPolicy") and spec.get("podFailurePolicy") is None:
        spec["podReplacementPolicy"] = "TerminatingOrFailed"


def _default_job(obj: dict) -> None:
    spec = _obj(obj, "spec")
    _default_job_spec(spec)
    default_pod_template(spec.get("template"))
    _obj(obj, "status")


def _default_cron_job(obj: dict) -> None:
    spec = _obj(obj, "spec")
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    job_template = _obj(spec, "jobTemplate")
    _obj(job_template, "metadata").setdefault("creationTimestamp", None)
    default_pod_template(_obj(job_template, "spec").get("template"))
    _obj(obj, "status")


# ---------------------------------------------------------------------------
# the rest
# ---------------------------------------------------------------------------


def _default_namespace(obj: dict) -> None:
    meta = _obj(obj, "metadata")
    name = meta.get("name")
    if isinstance(name, str) and name:
        _obj(meta, "labels")["kubernetes.io/metadata.name"] = name
    spec = _obj(obj, "spec")
    finalizers = spec.get("finalizers")
    if not isinstance(finalizers, list):
        finalizers = []
    if "kubernetes" not in finalizers:
        finalizers.append("kubernetes")
    spec["finalizers"] = finalizers
    status = _obj(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Active"


def _default_endpoints(obj: dict) -> None:
    for subset in _dicts(obj.get("subsets")):
        for port in _dicts(subset.get("ports")):
            if not port.get("protocol"):
                port["protocol"] = "TCP"


def _default_endpoint_slice(obj: dict) -> None:
    for port in _dicts(obj.get("ports")):
        if port.get("name") is None:
            port["name"] = ""
        if port.get("protocol") is None:
            port["protocol"] = "TCP"


def _default_event(obj: dict) -> None:
    # Non-omitempty fields of core/v1 Event, written by Go even when empty.
    obj.setdefault("eventTime", None)
    obj.setdefault("reportingComponent", "")
    obj.setdefault("reportingInstance", "")
    _obj(obj, "involvedObject")
    _obj(obj, "source")


def _default_node(obj: dict) -> None:
    status = _obj(obj, "status")
    if isinstance(status.get("capacity"), dict) and not isinstance(status.get("allocatable"), dict):
        status["allocatable"] = dict(status["capacity"])


def apply_defaults(kind: ResourceKind, obj: dict, old: dict | None = None) -> None:
    """Fill in `obj`'s defaults in place; `old` is the stored object when this is an update."""
    k = (kind.group, kind.kind)
    if k == ("", "Service"):
        _default_service(obj, old)
    elif k == ("", "Pod"):
        _default_pod(obj, old)
    elif k == ("apps", "Deployment"):
        _default_deployment(obj)
    elif k == ("apps", "ReplicaSet"):
        _default_replica_set(obj)
    elif k == ("apps", "StatefulSet"):
        _default_stateful_set(obj)
    elif k == ("apps", "DaemonSet"):
        _default_daemon_set(obj)
    elif k == ("batch", "Job"):
        _default_job(obj)
    elif k == ("batch", "CronJob"):
        _default_cron_job(obj)
    elif k == ("", "Namespace"):
        _default_namespace(obj)
    elif k == ("", "Endpoints"):
        _default_endpoints(obj)
    elif k == ("discovery.k8s.io", "EndpointSlice"):
        _default_endpoint_slice(obj)
    elif k == ("", "Event"):
        _default_event(obj)
    elif k == ("", "Node"):
        _default_node(obj)
    elif k == ("rbac.authorization.k8s.io", "ClusterRoleBinding"):
        from labkit.apiserver.rbac import default_cluster_role_binding

        default_cluster_role_binding(obj)
    elif k == ("", "Secret") and not obj.get("type"):
        obj["type"] = "Opaque"  # SetDefaults_Secret
