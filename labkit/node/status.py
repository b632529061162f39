"""Pure pieces of the kubelet: container environment, back-off, and pod status as kubelet reports it.

Sources (read, not copied), kubernetes v1.32:
- pkg/kubelet/envvars/envvars.go (FromServices): `<SVC>_SERVICE_HOST`, `<SVC>_SERVICE_PORT`,
  `<SVC>_SERVICE_PORT_<PORTNAME>` and the docker-links style `<SVC>_PORT`, `<SVC>_PORT_<port>_<PROTO>`,
  `..._PROTO`, `..._PORT`, `..._ADDR`; names upper-cased with '-' → '_'; only Services with a cluster IP.
- pkg/kubelet/kubelet_pods.go (getServiceEnvVarMap, makeEnvironmentVariables, podFieldSelectorRuntimeValue,
  getPhase): the `kubernetes` Service of `default` is always injected, the pod namespace's Services only with
  enableServiceLinks (default true); explicit env wins; `$(VAR)` expansion (third_party/forked/golang/expansion).
- pkg/kubelet/status/generate.go (GeneratePodReadyCondition, GenerateContainersReadyCondition,
  GeneratePodInitializedCondition), pkg/kubelet/kuberuntime/kuberuntime_container.go (messages).
- k8s.io/client-go/util/flowcontrol/backoff.go: per-key back-off, doubling, reset after 2×max idle.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from labkit.node.images import ImageRef

NODE_IP = "172.18.0.2"
KUBERNETES_SERVICE_HOST = "10.96.0.1"
KUBERNETES_SERVICE_PORT = "443"


def fmt_time(t: float | None = None) -> str:
    """RFC 3339, second precision (metav1.Time)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def parse_time(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return float(time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone)
    except ValueError:
        return None


def go_duration(seconds: float) -> str:
    """time.Duration.String() for whole seconds: 10s, 1m20s, 5m0s."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s}s"
    h, m = divmod(m, 60)
    return f"{h}h{m}m{s}s"


def pod_ref(pod: dict[str, Any]) -> str:
    """format.Pod: `name_namespace(uid)`."""
    md = pod["metadata"]
    return f"{md['name']}_{md.get('namespace') or 'default'}({md.get('uid', '')})"


# ------------------------------------------------------------------------------------------- back-off
@dataclass
class Backoff:
    """flowcontrol.Backoff: per-key durations starting at `initial`, doubling up to `maximum`; an entry not
    touched for 2×maximum starts over."""

    initial: float = 10.0
    maximum: float = 300.0
    entries: dict[Any, tuple[float, float]] = field(default_factory=dict)  # key -> (duration, last update)

    def _expired(self, now: float, last: float) -> bool:
        return now - last > 2 * self.maximum

    def get(self, key: Any) -> float:
        return self.entries.get(key, (0.0, 0.0))[0]

    def next(self, key: Any, now: float) -> float:
        entry = self.entries.get(key)
        fresh = entry is None or self._expired(now, entry[1])
        duration = self.initial if fresh or entry is None else min(entry[0] * 2, self.maximum)
        self.entries[key] = (duration, now)
        return duration

    def in_backoff_since(self, key: Any, event_time: float, now: float) -> bool:
        """Whether `now` is still within the current back-off counted from `event_time` (e.g. a crash)."""
        entry = self.entries.get(key)
        if entry is None or self._expired(now, entry[1]):
            return False
        return now - event_time < entry[0]

    def in_backoff_since_update(self, key: Any, now: float) -> bool:
        entry = self.entries.get(key)
        if entry is None or self._expired(now, entry[1]):
            return False
        return now - entry[1] < entry[0]

    def reset(self, key: Any) -> None:
        self.entries.pop(key, None)


# -------------------------------------------------------------------------------------- environment
def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _has_cluster_ip(svc: dict[str, Any]) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def service_env(services: Iterable[dict[str, Any]]) -> dict[str, str]:
    """envvars.FromServices: the variables a container gets for these Services."""
    env: dict[str, str] = {}
    for svc in services:
        if not _has_cluster_ip(svc):
            continue
        spec = svc["spec"]
        ports = spec.get("ports") or []
        if not ports:
            continue
        name = _env_name(svc["metadata"]["name"])
        ip = spec["clusterIP"]
        env[f"{name}_SERVICE_HOST"] = ip
        env[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                env[f"{name}_SERVICE_PORT_{_env_name(p['name'])}"] = str(p["port"])
        first = ports[0]
        env[f"{name}_PORT"] = f"{(first.get('protocol') or 'TCP').lower()}://{ip}:{first['port']}"
        for p in ports:
            proto = p.get("protocol") or "TCP"
            prefix = f"{name}_PORT_{p['port']}_{proto.upper()}"
            env[prefix] = f"{proto.lower()}://{ip}:{p['port']}"
            env[f"{prefix}_PROTO"] = proto.lower()
            env[f"{prefix}_PORT"] = str(p["port"])
            env[f"{prefix}_ADDR"] = ip
    return env


def service_env_map(pod: dict[str, Any], services: Iterable[dict[str, Any]]) -> dict[str, str]:
    """getServiceEnvVarMap: the `kubernetes` Service of `default` always, the pod namespace's Services when
    enableServiceLinks is not false (a namespace's own Service of the same name wins)."""
    namespace = pod["metadata"].get("namespace") or "default"
    links = (pod.get("spec") or {}).get("enableServiceLinks")
    links = True if links is None else bool(links)
    chosen: dict[str, dict[str, Any]] = {}
    for svc in services:
        md = svc["metadata"]
        ns = md.get("namespace") or "default"
        if ns == "default" and md["name"] == "kubernetes":
            chosen.setdefault(md["name"], svc)
        if links and ns == namespace:
            chosen[md["name"]] = svc
    return service_env(sorted(chosen.values(), key=lambda s: s["metadata"]["name"]))


_FIELD_INDEX = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_ref_value(pod: dict[str, Any], path: str, host_ip: str = NODE_IP, pod_ip: str = "") -> str:
    """podFieldSelectorRuntimeValue + the fields the API server resolves."""
    md, spec = pod["metadata"], pod.get("spec") or {}
    m = _FIELD_INDEX.match(path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace") or "default",
        "metadata.uid": md.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": host_ip, "status.hostIPs": host_ip, "status.podIP": pod_ip, "status.podIPs": pod_ip,
    }
    if path in simple:
        return simple[path]
    if path == "metadata.labels":
        return "\n".join(f'{k}="{v}"' for k, v in sorted((md.get("labels") or {}).items()))
    if path == "metadata.annotations":
        return "\n".join(f'{k}="{v}"' for k, v in sorted((md.get("annotations") or {}).items()))
    return ""


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables are replaced, `$$` escapes, unknown ones stay."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "$" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2:end]
                    out.append(env[name] if name in env else value[i:end + 1])
                    i = end + 1
                    continue
        out.append(value[i])
        i += 1
    return "".join(out)


def container_env(pod: dict[str, Any], container: dict[str, Any], services: Iterable[dict[str, Any]],
                  pod_ip: str, host_ip: str = NODE_IP) -> dict[str, str]:
    """makeEnvironmentVariables: service links first, then the container's env (expanded, in order)."""
    env = service_env_map(pod, services)
    env.setdefault("KUBERNETES_SERVICE_HOST", KUBERNETES_SERVICE_HOST)
    env.setdefault("KUBERNETES_SERVICE_PORT", KUBERNETES_SERVICE_PORT)
    own: dict[str, str] = {}
    for var in container.get("env") or []:
        name = var.get("name", "")
        src = var.get("valueFrom")
        if src and src.get("fieldRef"):
            value = field_ref_value(pod, src["fieldRef"].get("fieldPath", ""), host_ip, pod_ip)
        elif src:
            value = ""  # configMap/secret/resource refs: not served by the embedded cluster
        else:
            value = expand(var.get("value") or "", {**env, **own})
        own[name] = value
    env.update(own)
    return env


def container_command(container: dict[str, Any], env: dict[str, str]) -> tuple[list[str], list[str]]:
    """command and args with `$(VAR)` expanded (ExpandContainerCommandAndArgs)."""
    return ([expand(a, env) for a in container.get("command") or []],
            [expand(a, env) for a in container.get("args") or []])


# --------------------------------------------------------------------------------------- identities
def runtime_image(image: str) -> str:
    """The image as containerd reports it: `docker.io/library/nginx:1.19`."""
    ref = ImageRef.parse(image)
    repo = ref.repository
    if ref.registry == "docker.io" and "/" not in repo:
        repo = "library/" + repo
    return f"{ref.registry}/{repo}:{ref.tag}"


def image_id(image: str) -> str:
    ref = runtime_image(image).rsplit(":", 1)[0]
    return f"{ref}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def container_id(uid: str, name: str, restart_count: int) -> str:
    digest = hashlib.sha256(f"{uid}/{name}/{restart_count}".encode()).hexdigest()
    return f"containerd://{digest}"


# ---------------------------------------------------------------------------------------- pod status
def qos_class(pod: dict[str, Any]) -> str:
    """GetPodQOS, simplified to cpu/memory: BestEffort, Guaranteed (limits == requests for both), Burstable."""
    containers = (pod.get("spec") or {}).get("containers") or []
    any_set, guaranteed = False, True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = dict(res.get("requests") or {}), res.get("limits") or {}
        for k, v in lim.items():
            req.setdefault(k, v)  # requests default to limits
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or str(lim[r]) != str(req.get(r)):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


_CPU_SUFFIX = {"m": 1, "": 1000, "k": 10**6, "M": 10**9, "G": 10**12}


def cpu_millis(quantity: Any) -> int:
    """A CPU quantity ("100m", "0.5", "2") in millicores, rounded up like Quantity.MilliValue; 0 if unreadable."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(m|k|M|G)?\s*", str(quantity))
    if not m:
        return 0
    whole, _, frac = m.group(1).partition(".")
    scale = _CPU_SUFFIX[m.group(2) or ""]
    numerator = int(whole or "0") * 10 ** len(frac) + int(frac or "0")
    return -(-numerator * scale // 10 ** len(frac))  # ceiling division


# kind's control plane runs as pods too, and kube-apiserver's 250m request is the largest of them: labkit's own
# processes (API server, controllers, node and IPVS agents) stand at that weight, at nice 0.
CONTROL_PLANE_MILLICPU = 250


def cpu_nice(pod: dict[str, Any]) -> int:
    """The nice value labkit gives a pod's processes, standing in for kubelet's pod cgroup `cpu.shares`.

    kubelet gives a pod the sum of its containers' CPU requests as shares (1,024 per CPU, requests defaulting to
    limits), and the minimum, 2, to a pod that requests none (BestEffort, or a Burstable pod without a CPU
    request). A process at nice n weighs about 1.25**-n as much as one at nice 0, where labkit's own processes
    run with the weight of kube-apiserver's request (CONTROL_PLANE_MILLICPU). So CoreDNS's 100m runs at nice 4,
    a pod requesting nothing at nice 19, and a pod requesting 250m or more at nice 0: under contention, as on a
    kind node, the control plane and the cluster DNS go before the learners' pods.
    """
    millis = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        cpu = (res.get("requests") or {}).get("cpu", (res.get("limits") or {}).get("cpu"))
        if cpu is not None:
            millis += cpu_millis(cpu)
    shares = max(2, millis * 1024 // 1000)
    reference = CONTROL_PLANE_MILLICPU * 1024 // 1000
    return max(0, min(19, round(math.log(reference / shares, 1.25))))


def pod_phase(restart_policy: str, statuses: list[dict[str, Any]]) -> str:
    """getPhase for pods without init containers."""
    running = waiting = stopped = succeeded = 0
    for st in statuses:
        state, last = st.get("state") or {}, st.get("lastState") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif "waiting" in state:
            if "terminated" in last:
                stopped += 1
            else:
                waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(old: dict[str, dict[str, Any]], ctype: str, status: bool, reason: str = "", message: str = "",
               now: str = "") -> dict[str, Any]:
    value = "True" if status else "False"
    prev = old.get(ctype)
    transition = prev["lastTransitionTime"] if prev and prev.get("status") == value and \
        prev.get("lastTransitionTime") else now
    cond: dict[str, Any] = {"type": ctype, "status": value, "lastProbeTime": None, "lastTransitionTime": transition}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def pod_conditions(pod: dict[str, Any], statuses: list[dict[str, Any]], phase: str, sandbox_ready: bool,
                   now: str) -> list[dict[str, Any]]:
    """PodReadyToStartContainers, Initialized, Ready, ContainersReady, and the scheduler's PodScheduled."""
    old_list = (pod.get("status") or {}).get("conditions") or []
    old = {c.get("type", ""): c for c in old_list}
    unready = [st["name"] for st in statuses if not st.get("ready")]
    if phase == "Succeeded":
        ready, reason, message = False, "PodCompleted", ""
    elif unready:
        ready, reason = False, "ContainersNotReady"
        message = f"containers with unready status: [{' '.join(unready)}]"
    else:
        ready, reason, message = True, "", ""
    conds = [
        _condition(old, "PodReadyToStartContainers", sandbox_ready, now=now),
        _condition(old, "Initialized", True, now=now),
        _condition(old, "Ready", ready, reason, message, now),
        _condition(old, "ContainersReady", ready, reason, message, now),
    ]
    if "PodScheduled" in old:
        conds.append(old["PodScheduled"])
    # Conditions other components own (readiness gates, DisruptionTarget, ...) are kept.
    mine = {"PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"}
    conds += [c for c in old_list if c.get("type") not in mine]
    return conds


def normalized(obj: Any) -> Any:
    """`obj` without null values (what the API server's round trip drops), for change detection."""
    if isinstance(obj, dict):
        return {k: normalized(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [normalized(v) for v in obj]
    return obj
