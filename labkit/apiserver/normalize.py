"""Go-faithful JSON: what an object looks like after kube-apiserver decoded it into Go structs and encoded it back.

The real API server never stores the client's JSON. It decodes every write into the typed Go struct and encodes
the struct again, so what `kubectl get -o yaml` shows follows Go's `encoding/json` rules, not the request:

- a field tagged `omitempty` disappears when it holds its zero value: `""`, `0`, `false`, an empty or `null`
  list or map (a Service created with `metadata.labels: {}` or `spec.selector: {}` comes back without them);
- a pointer field (`replicas`, `ipFamilyPolicy`, `ready`) keeps a present zero (`replicas: 0`) and vanishes when
  `null` (omitempty) — or is written as `null` when its tag has no omitempty;
- a non-pointer struct is always written, `omitempty` or not (Go never treats a struct as empty):
  `status: {loadBalancer: {}}`, `resources: {}`, `strategy: {}`; a non-pointer `metav1.Time` that is zero is
  written as `null` (`creationTimestamp: null` inside pod templates, `lastProbeTime: null` in pod conditions),
  an `IntOrString` as `0`, a `Quantity` as `"0"`;
- a field without omitempty is always written: a missing scalar as its zero (`ready: false`), a missing list or
  map as `null` (an EndpointSlice without endpoints has `endpoints: null`), an empty one as `[]` / `{}`;
- `metav1.Time` is re-encoded as RFC 3339 seconds in UTC, `MicroTime` with six fractional digits;
- a field the Go struct does not have is dropped (with fieldValidation Ignore or Warn; Strict rejected it earlier).

The field table (JSON name, type, omitempty, pointer) is `protobuf.MESSAGES`, written from the struct tags of
upstream `types.go`; this module compiles it once into per-message plans and walks objects by them.
A value of the wrong JSON type is left as it is: rejecting it is validation's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from labkit.apiserver import protobuf
from labkit.kinds import ResourceKind

# How a field's value is handled.
_SCALAR, _MESSAGE, _TIME, _MICROTIME, _KEEP = range(5)
_SINGLE, _LIST, _MAP = range(3)
_SPECIAL_HANDLER = {"meta.Time": _TIME, "meta.MicroTime": _MICROTIME, "intstr.IntOrString": _KEEP,
                    "resource.Quantity": _KEEP, "runtime.RawExtension": _KEEP, "meta.FieldsV1": _KEEP}
# The JSON Go writes for a zero non-pointer value of a special type (they are structs, so never omitted).
_SPECIAL_ZERO: dict[str, Any] = {"meta.Time": None, "meta.MicroTime": None, "intstr.IntOrString": 0,
                                 "resource.Quantity": "0", "runtime.RawExtension": None, "meta.FieldsV1": None}
_SCALAR_ZERO: dict[str, Any] = {"s": "", "y": "", "b": False, "i": 0, "l": 0, "d": 0.0, "f": 0.0}


@dataclass(slots=True)
class _Field:
    name: str
    handler: int
    shape: int
    omitempty: bool
    pointer: bool
    message: str = ""  # the message name for _MESSAGE / special handlers
    zero: Any = None  # scalar zero value


@dataclass(slots=True)
class _Plan:
    """One message: its fields by JSON name, and those Go writes even when the object lacks them."""

    fields: dict[str, _Field] = field(default_factory=dict)
    always: list[_Field] = field(default_factory=list)


_PLANS: dict[str, _Plan] = {}


def _compile(message: str) -> _Plan:
    plan = _PLANS.get(message)
    if plan is not None:
        return plan
    plan = _PLANS[message] = _Plan()
    for f in protobuf.MESSAGES[message].values():
        if f.name == "*":  # an embedded struct: JSON inlines its fields into this one
            inner = _compile(f.kind)
            plan.fields.update(inner.fields)
            plan.always.extend(inner.always)
            continue
        shape = _MAP if f.is_map else _LIST if f.repeated else _SINGLE
        if f.kind in protobuf.MESSAGES:
            handler = _MESSAGE
        elif f.kind in _SPECIAL_HANDLER:
            handler = _SPECIAL_HANDLER[f.kind]
        else:
            handler = _SCALAR
        cf = _Field(f.name, handler, shape, f.omitempty, f.pointer, f.kind, _SCALAR_ZERO.get(f.kind))
        plan.fields[f.name] = cf
        if _always_written(cf):
            plan.always.append(cf)
    return plan


def _always_written(f: _Field) -> bool:
    """Whether Go writes the field for an object that does not have it."""
    if f.shape != _SINGLE:
        return not f.omitempty  # a nil list or map: `null`
    if f.pointer:
        return not f.omitempty  # a nil pointer: `null`
    if f.handler == _SCALAR:
        return not f.omitempty
    return True  # a non-pointer struct (message, Time, IntOrString, Quantity) is never empty to Go


def _missing_value(f: _Field) -> Any:
    """The JSON Go writes for an absent field that `_always_written` says it writes."""
    if f.shape != _SINGLE or f.pointer:
        return None
    if f.handler == _SCALAR:
        return f.zero
    if f.handler == _MESSAGE:
        return _walk(_compile(f.message), {}, None, "")
    return _SPECIAL_ZERO[f.message]


def _time(value: Any, micro: bool) -> Any:
    """Re-encode an RFC 3339 string the way metav1.Time / MicroTime marshal it; leave anything else."""
    if not isinstance(value, str):
        return value
    if not micro and len(value) == 20 and value[19] == "Z":  # already canonical: the common case
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        return value
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _one(f: _Field, value: Any, dropped: list[str] | None, path: str) -> Any:
    """The normalised value of one element (of a single field, a list item or a map value)."""
    h = f.handler
    if h == _MESSAGE:
        if value is None:
            value = {}  # null decodes into the zero struct
        return _walk(_compile(f.message), value, dropped, path) if isinstance(value, dict) else value
    if h in (_TIME, _MICROTIME):
        return _time(value, h == _MICROTIME)
    return value


def _walk(plan: _Plan, obj: dict, dropped: list[str] | None, path: str) -> dict:
    fields = plan.fields
    out: dict = {}
    for key, value in obj.items():
        f = fields.get(key)
        child = (f"{path}.{key}" if path else key) if dropped is not None else ""
        if f is None:
            if dropped is not None:
                dropped.append(child)
            continue
        shape = f.shape
        if shape == _SINGLE:
            if value is None:
                if f.pointer:
                    if not f.omitempty:
                        out[key] = None
                elif f.handler != _SCALAR or not f.omitempty:
                    out[key] = _missing_value(f)
                continue
            if f.handler == _SCALAR:
                # omitempty drops "", 0 and false; a pointer keeps a zero it was given.
                if f.omitempty and not f.pointer and (value == "" or value == 0):
                    continue
                out[key] = value
            else:
                out[key] = _one(f, value, dropped, child)
        elif shape == _LIST:
            if not value:  # null or []: nothing with omitempty, else Go's nil (null) or empty ([]) slice
                if not f.omitempty:
                    out[key] = value if isinstance(value, list) else None
                continue
            if f.handler == _SCALAR or not isinstance(value, list):
                out[key] = value
            else:
                out[key] = [_one(f, item, dropped, f"{child}[{i}]" if dropped is not None else "")
                            for i, item in enumerate(value)]
        else:  # _MAP
            if not value:
                if not f.omitempty:
                    out[key] = value if isinstance(value, dict) else None
                continue
            if f.handler == _SCALAR or not isinstance(value, dict):
                out[key] = value
            else:
                out[key] = {k: _one(f, v, dropped, f"{child}.{k}" if dropped is not None else "")
                            for k, v in value.items()}
    for f in plan.always:
        if f.name not in out:
            out[f.name] = _missing_value(f)
    return out


def _root(kind: ResourceKind) -> _Plan | None:
    message = protobuf.KINDS.get((kind.api_version, kind.kind))
    return _compile(message) if message else None


def normalize(kind: ResourceKind, obj: dict, dropped: list[str] | None = None) -> dict:
    """`obj` as the real API server would encode it after decoding it into the Go type of `kind`.

    Returns a new dict (nested dicts and lists of the input may be shared by the result); `obj` is not changed.
    When `dropped` is given, the paths of the unknown fields removed are appended to it, named like
    fieldValidation's messages (`spec.foo`, `spec.template.spec.containers[0].imagee`).
    A kind without a schema is returned unchanged.
    """
    plan = _root(kind)
    if plan is None:
        return obj
    # apiVersion and kind (TypeMeta, inlined) are not in the message table.
    type_meta = {k: obj[k] for k in ("apiVersion", "kind") if obj.get(k)}
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    return {**type_meta, **_walk(plan, body, dropped, "")}
