"""The field schema of every served kind, read from the official `kubernetes` client's models.

Each generated model class carries `openapi_types` (attribute → type string such as
`V1ObjectMeta`, `List[V1Container]` / `list[V1Container]`, `Dict[str, str]` /
`dict(str, str)`, `object`, `int`, `str`, `datetime`, `bool`) and `attribute_map`
(attribute → JSON name). From those this module builds, lazily and once per model:

- `unknown_fields(kind, obj)`: the paths the API server's strict decoding rejects, named as
  sigs.k8s.io/json names them (`spec.foo`, `spec.template.spec.containers[0].imagee`), in
  document order;
- `strict_error_message(kind, fields)`: the BadRequest text of
  k8s.io/apiserver/pkg/endpoints/handlers `transformDecodeError` around
  k8s.io/apimachinery/pkg/runtime `strictDecodingError`;
- `field_schema(model)` / `kind_model(kind)`: the same tree for `openapi.py`.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from dataclasses import dataclass

from labkit.kinds import ResourceKind


@dataclass(frozen=True)
class FieldType:
    """One field's type: `prim` (str/int/bool/float/bytes/datetime), `any`, `intstr`, `model`, `list` or `map`."""

    kind: str
    name: str = ""  # the primitive's name or the model's class name
    item: FieldType | None = None  # element type of `list` / `map`


@dataclass(frozen=True)
class Field:
    json_name: str
    type: FieldType
    required: bool
    description: str


_PRIMS = {"str", "int", "bool", "float", "bytes", "datetime", "date"}
_LIST_RE = re.compile(r"^(?:List|list)\[(.*)\]$")
_MAP_RE = re.compile(r"^(?:Dict\[|dict\()str, (.*)[\])]$")

# IntOrString fields for clients whose models do not say so in their annotations.
_INT_OR_STRING_NAMES = {"targetPort", "port", "maxSurge", "maxUnavailable", "minAvailable"}


def parse_type(type_str: str) -> FieldType:
    """Parse a client model type string into a FieldType."""
    t = type_str.strip()
    if m := _LIST_RE.match(t):
        return FieldType("list", item=parse_type(m.group(1)))
    if m := _MAP_RE.match(t):
        return FieldType("map", item=parse_type(m.group(1)))
    if t in _PRIMS:
        return FieldType("prim", t)
    if t == "object":
        return FieldType("any")
    return FieldType("model", t)


def model_class(name: str) -> type | None:
    # Imported on first use: the client's models take ~0.4 s to import, which `labkit up` should not wait for.
    import kubernetes.client.models as models

    cls = getattr(models, name, None)
    return cls if isinstance(cls, type) and hasattr(cls, "openapi_types") else None


def _is_int_or_string(cls: type, attr: str, json_name: str) -> bool:
    fields = getattr(cls, "model_fields", None)
    if isinstance(fields, dict) and attr in fields:
        args = {getattr(a, "__origin__", a) for a in typing.get_args(fields[attr].annotation)}
        return int in args and str in args
    return json_name in _INT_OR_STRING_NAMES


def _attr_description(cls: type, attr: str) -> str:
    fields = getattr(cls, "model_fields", None)
    if isinstance(fields, dict) and attr in fields:
        return fields[attr].description or ""
    prop = getattr(cls, attr, None)
    doc = inspect.getdoc(prop.fget) if isinstance(prop, property) and prop.fget else ""
    # Older generated clients: "Gets the x of this V1Y. <noqa marker>\n\n<description> <noqa marker>\n\n:return: ..."
    parts = [p.replace("# noqa" + ": E501", "").strip() for p in (doc or "").split("\n\n")]
    return parts[1] if len(parts) > 2 and not parts[1].startswith(":") else ""


def _attr_required(cls: type, attr: str) -> bool:
    fields = getattr(cls, "model_fields", None)
    if isinstance(fields, dict) and attr in fields:
        return bool(fields[attr].is_required())
    return False


@functools.cache
def field_schema(model: str) -> dict[str, Field]:
    """JSON name → Field for a client model class name (empty for an unknown model)."""
    cls = model_class(model)
    if cls is None:
        return {}
    out: dict[str, Field] = {}
    for attr, type_str in cls.openapi_types.items():
        json_name = cls.attribute_map.get(attr, attr)
        ftype = parse_type(type_str)
        if ftype.kind == "any" and _is_int_or_string(cls, attr, json_name):
            ftype = FieldType("intstr")
        out[json_name] = Field(json_name, ftype, _attr_required(cls, attr), _attr_description(cls, attr))
    return out


@functools.cache
def model_description(model: str) -> str:
    """The class docstring's first paragraph: upstream's description of the type."""
    cls = model_class(model)
    doc = inspect.getdoc(cls) if cls is not None else ""
    first = (doc or "").split("\n\n", 1)[0].strip()
    return "" if first.startswith("NOTE: This class is auto generated") else first


def kind_model(kind: ResourceKind) -> str:
    """The client model class name of a served kind: V1Service, CoreV1Event, V1Deployment."""
    version = kind.version[0].upper() + kind.version[1:]
    group_prefix = "".join(p.capitalize() for p in (kind.group.split(".")[0] or "core",))
    for name in (f"{version}{kind.kind}", f"{group_prefix}{version}{kind.kind}"):
        if model_class(name) is not None:
            return name
    raise KeyError(f"no client model for {kind.kind} in {kind.api_version}")


# ---------------------------------------------------------------------------
# strict decoding
# ---------------------------------------------------------------------------


def _walk(value: object, ftype: FieldType, path: str, out: list[str]) -> None:
    if value is None:
        return
    if ftype.kind == "model":
        if not isinstance(value, dict):
            return
        fields = field_schema(ftype.name)
        for key, sub in value.items():
            child = f"{path}.{key}" if path else key
            f = fields.get(key)
            if f is None:
                out.append(child)
            else:
                _walk(sub, f.type, child, out)
    elif ftype.kind == "list" and ftype.item is not None:
        if isinstance(value, list):
            for i, sub in enumerate(value):
                _walk(sub, ftype.item, f"{path}[{i}]", out)
    elif ftype.kind == "map" and ftype.item is not None and ftype.item.kind in ("model", "list", "map") \
            and isinstance(value, dict):
        for key, sub in value.items():
            _walk(sub, ftype.item, f"{path}.{key}" if path else key, out)


def unknown_fields(kind: ResourceKind, obj: dict) -> list[str]:
    """Paths of the fields `obj` has that `kind` does not, in document order (empty when none)."""
    out: list[str] = []
    _walk(obj, FieldType("model", kind_model(kind)), "", out)
    return out


def strict_error_message(kind: ResourceKind, fields: list[str]) -> str:
    """The message of the 400 the API server sends for unknown fields under fieldValidation=Strict."""
    errors = ", ".join(f'unknown field "{f}"' for f in fields)
    return (f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: '
            f"strict decoding error: {errors}")
