"""Small helpers over plain Kubernetes JSON dicts, shared by the controllers.

Pure functions only: label selectors, owner references, pod conditions, timestamps, the
pod-template hash and named-port resolution, with upstream's semantics.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import orjson

# rand.SafeEncodeString's alphabet (k8s.io/apimachinery/pkg/util/rand): no vowels, no 0/1/3 look-alikes.
_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"

POD_TEMPLATE_HASH = "pod-template-hash"


# ----------------------------------------------------------------------------- time
def json_copy(obj: Any) -> Any:
    """A deep copy of JSON data (what informers hold): an orjson round trip is several times faster than
    copy.deepcopy, which was a visible share of the controllers' CPU per synced Service."""
    try:
        return orjson.loads(orjson.dumps(obj))
    except (TypeError, orjson.JSONEncodeError):  # not plain JSON (or an integer beyond 64 bits)
        return copy.deepcopy(obj)


def now() -> datetime:
    return datetime.now(UTC)


def fmt_time(t: datetime | None = None) -> str:
    """RFC 3339 with second precision, as metav1.Time serialises."""
    return (t or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_micro(t: datetime | None = None) -> str:
    """RFC 3339 with microseconds, as metav1.MicroTime serialises (events' eventTime)."""
    return (t or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


# ----------------------------------------------------------------------------- hashing
def fnv32a(data: bytes) -> int:
    """FNV-1a, 32 bit (Go's hash/fnv New32a)."""
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    """rand.SafeEncodeString: each byte maps to one character of a vowel-free alphabet."""
    return "".join(_SAFE_ALPHANUMS[b % len(_SAFE_ALPHANUMS)] for b in s.encode())


def compute_hash(template: dict, collision_count: int | None = None) -> str:
    """The `pod-template-hash` of a pod template (controller.ComputeHash's shape).

    Upstream feeds FNV-32a with a spew dump of the Go struct, which only Go can reproduce byte for
    byte. labkit feeds it the template's canonical JSON (sorted keys, no spaces) instead, then adds
    the collision count the same way (its decimal bytes) and encodes the decimal Sum32 with
    SafeEncodeString, so hashes look like upstream's (`7b54d48599`) and are stable for a template.
    """
    data = json.dumps(template or {}, sort_keys=True, separators=(",", ":")).encode()
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    if collision_count:
        for b in str(collision_count).encode():
            h ^= b
            h = (h * 0x01000193) & 0xFFFFFFFF
    return safe_encode(str(h))


def template_without_hash(template: dict) -> dict:
    """A deep copy of a pod template with the pod-template-hash label removed (EqualIgnoreHash)."""
    t = json_copy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels and POD_TEMPLATE_HASH in labels:
        del labels[POD_TEMPLATE_HASH]
        if not labels:
            del t["metadata"]["labels"]
    return t


def canonical(obj: Any) -> str:
    """Sorted-key compact JSON, for comparing objects and as a sort key.

    orjson rather than json: the endpoints controllers call this for every Service sync, where json.dumps
    showed up as a tenth of their CPU. Same text for the ASCII content compared here.
    """
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()


# ----------------------------------------------------------------------------- selectors
def _match_expression(labels: dict[str, str], expr: dict) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def selector_matches(selector: dict | None, labels: dict[str, str] | None) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions) against labels.

    An empty selector matches everything; a missing (None) one matches nothing, as upstream.
    """
    if selector is None:
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    return all(_match_expression(labels, e) for e in selector.get("matchExpressions") or [])


def map_selector_matches(selector: dict[str, str] | None, labels: dict[str, str] | None) -> bool:
    """A Service's plain map selector (an empty map selects nothing in the endpoints controllers)."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


# ----------------------------------------------------------------------------- metadata
def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def name_of(obj: dict) -> str:
    return meta(obj).get("name", "")


def ns_of(obj: dict) -> str:
    return meta(obj).get("namespace", "")


def uid_of(obj: dict) -> str:
    return meta(obj).get("uid", "")


def key_of(obj: dict) -> tuple[str, str]:
    return (ns_of(obj), name_of(obj))


def controller_ref(obj: dict) -> dict | None:
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_ref(owner: dict, block: bool = True) -> dict:
    """metav1.NewControllerRef: the owner as controller, blocking foreground deletion."""
    return {
        "apiVersion": owner.get("apiVersion", ""),
        "kind": owner.get("kind", ""),
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": block,
    }


def is_owned_by(obj: dict, owner: dict) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == uid_of(owner)


def is_terminating(obj: dict) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def rv_int(obj: dict | None) -> int:
    try:
        return int(meta(obj or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


# ----------------------------------------------------------------------------- pods
def pod_condition(pod: dict, ctype: str) -> dict | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def is_pod_ready(pod: dict) -> bool:
    c = pod_condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def is_pod_available(pod: dict, min_ready_seconds: int, at: datetime | None = None) -> bool:
    """podutil.IsPodAvailable: ready, and ready for at least minReadySeconds."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    c = pod_condition(pod, "Ready") or {}
    t = parse_time(c.get("lastTransitionTime"))
    if t is None:
        return False
    return (t.timestamp() + min_ready_seconds) <= (at or now()).timestamp()


def pod_phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def is_pod_terminal(pod: dict) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def is_pod_active(pod: dict) -> bool:
    """controller.IsPodActive: not terminal and not being deleted."""
    return not is_pod_terminal(pod) and not is_terminating(pod)


def pod_ip(pod: dict) -> str:
    st = pod.get("status") or {}
    if st.get("podIP"):
        return st["podIP"]
    ips = st.get("podIPs") or []
    return ips[0].get("ip", "") if ips else ""


def should_pod_be_in_endpoints(pod: dict, include_terminating: bool) -> bool:
    """endpointsliceutil.ShouldPodBeInEndpoints."""
    if is_pod_terminal(pod):
        return False
    if not pod_ip(pod):
        return False
    return include_terminating or not is_terminating(pod)


def should_set_hostname(pod: dict, svc: dict) -> bool:
    """endpointsliceutil.ShouldSetHostname: hostname set and subdomain == service name, same namespace."""
    spec = pod.get("spec") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == name_of(svc) and ns_of(pod) == ns_of(svc)


def find_port(pod: dict, service_port: dict) -> int | None:
    """podutil.FindPort: resolve a Service port's targetPort against the pod's container ports.

    An int (or numeric string) targetPort is used as is; a name is looked up in the containers'
    ports with the same protocol; a missing targetPort means the Service port. None when not found.
    """
    target = service_port.get("targetPort")
    if target is None or target == "" or target == 0:
        return int(service_port.get("port") or 0)
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    proto = service_port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and (p.get("protocol") or "TCP") == proto:
                return int(p.get("containerPort") or 0)
    return None


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    s = str(value)
    if s.endswith("%"):
        pct = int(s[:-1])
        scaled = pct * total
        return -(-scaled // 100) if round_up else scaled // 100
    return int(s)
