"""Label and field selectors, parsed and matched as the API server does.

Label selectors accept every operator of k8s.io/apimachinery/pkg/labels:
`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a` (exists), `!a` (does not exist).
Field selectors accept `=`, `==` and `!=` on the fields each kind supports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from labkit.errors import BadRequest


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "=":
            return present and value == self.values[0]
        if self.operator == "!=":
            return not present or value != self.values[0]
        if self.operator == "in":
            return present and value in self.values
        if self.operator == "notin":
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        return not present  # "!"


_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\)|(==|=|!=)\s*([A-Za-z0-9_.-]*))?\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in (p.strip() for p in parts) if p]


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a label selector string; raise BadRequest on a malformed one."""
    if not text:
        return []
    reqs = []
    for part in _split_top_level(text):
        m = _SET_RE.match(part)
        if not m:
            raise BadRequest(f"unable to parse requirement: {part!r}")
        negate, key, set_op, set_values, op, value = m.groups()
        if negate:
            if set_op or op:
                raise BadRequest(f"unable to parse requirement: {part!r}")
            reqs.append(Requirement(key, "!"))
        elif set_op:
            values = tuple(v.strip() for v in set_values.split(",") if v.strip())
            reqs.append(Requirement(key, set_op, values))
        elif op:
            reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
        else:
            reqs.append(Requirement(key, "exists"))
    return reqs


def selector_from_match(selector: dict | None) -> list[Requirement]:
    """A `metav1.LabelSelector` (matchLabels + matchExpressions) as requirements."""
    if not selector:
        return []
    reqs = [Requirement(k, "=", (v,)) for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}[expr["operator"]]
        reqs.append(Requirement(expr["key"], op, tuple(expr.get("values") or ())))
    return reqs


def labels_match(reqs: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


# Field selectors ---------------------------------------------------------------------------------

def _get(path: str) -> Callable[[dict], str]:
    keys = path.split(".")

    def read(obj: dict) -> str:
        cur: object = obj
        for k in keys:
            if not isinstance(cur, dict):
                return ""
            cur = cur.get(k)
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)

    return read


_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
# The fields each kind registers with the API server (pkg/registry/*/strategy.go ToSelectableFields).
SELECTABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "pods": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
             "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"),
    "events": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
               "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
               "reason", "reportingComponent", "source", "type"),
    "nodes": ("spec.unschedulable",),
    "namespaces": ("status.phase",),
    "replicasets": ("status.replicas",),
    "services": ("spec.clusterIP", "spec.type"),
    "secrets": ("type",),
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    equal: bool
    value: str
    read: Callable[[dict], str]

    def matches(self, obj: dict) -> bool:
        return (self.read(obj) == self.value) == self.equal


def parse_field_selector(text: str | None, plural: str) -> list[FieldRequirement]:
    if not text:
        return []
    allowed = set(_COMMON_FIELDS) | set(SELECTABLE_FIELDS.get(plural, ()))
    reqs = []
    for part in _split_top_level(text):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = m.groups()
        if field not in allowed:
            raise BadRequest(f"field label not supported: {field}")
        reader = _get("source.component") if (plural == "events" and field == "source") else _get(field)
        reqs.append(FieldRequirement(field, op != "!=", value, reader))
    return reqs


def fields_match(reqs: list[FieldRequirement], obj: dict) -> bool:
    return all(r.matches(obj) for r in reqs)
