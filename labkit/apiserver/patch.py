"""The three PATCH content types of the Kubernetes API, for labkit's kinds.

- `application/merge-patch+json`: RFC 7386 (`merge_patch`).
- `application/json-patch+json`: RFC 6902 (`json_patch`, on top of the `jsonpatch` package).
- `application/strategic-merge-patch+json`: Kubernetes' own flavour (`strategic_merge_patch`), which knows that
  `containers` is a list keyed by `name`, that `finalizers` is a set, and so on.

This module also holds the *field schema* of the kinds: for each field that does not merge the default way, how
it merges. Strategic merge reads the `patchStrategy`/`patchMergeKey` half of it; server-side apply
(`labkit.apiserver.apply`) reads the `listType`/`listMapKey`/`structType`/`mapType` half. The facts come from the
struct tags in kubernetes/api (core/v1, apps/v1, discovery/v1 types.go) and apimachinery's meta/v1 types.go.
Fields missing from the table merge the default way: objects field by field, lists replaced whole.

All three functions return a new object and never modify their inputs. They raise `PatchError` with the API
server's wording when a patch cannot be applied.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from labkit.errors import ApiError, BadRequest, Invalid

# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


class PatchError(ValueError):
    """A patch that cannot be applied; `to_api_error()` gives the Status the API server would send.

    `code` is 400 (a malformed patch: the server's BadRequest) or 422 (a well-formed patch that does not apply to
    this object: the server's generic "Invalid" answer, with the detail in a cause).
    """

    def __init__(self, message: str, *, code: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def to_api_error(self) -> ApiError:
        if self.code == 400:
            return BadRequest(self.message)
        # k8s.io/apiserver answers a patch that fails to apply with NewGenericServerResponse(422, …): a fixed
        # message, the real reason as the only cause.
        return Invalid("the server rejected our request due to an error in our request",
                       details={"causes": [{"message": self.message}]})


# ---------------------------------------------------------------------------------------------------------------
# The field schema
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """How one field merges, in strategic merge patch (SMP) and in server-side apply (SSA).

    A field holding an object lists its special children in `fields`; a field holding a list describes its
    elements with `items`. Anything not described merges the default way.
    """

    fields: dict[str, Field] = field(default_factory=dict)
    items: Field | None = None
    # SSA: "atomic" lists are replaced whole, "map" lists are merged by `keys`, "set" lists are sets of scalars.
    list_type: str = "atomic"
    keys: tuple[str, ...] = ()
    # SSA: the defaults of key fields an element may omit (a Service port without `protocol` is keyed TCP).
    key_defaults: dict[str, Any] = field(default_factory=dict)
    # SSA: an object (`structType=atomic`, `mapType=atomic`) that one manager owns and replaces as a whole.
    atomic: bool = False
    # SMP: `patchStrategy:"merge"` on a list, with `patchMergeKey` for lists of objects (None for scalars).
    smp_merge: bool = False
    merge_key: str | None = None
    # SMP: `patchStrategy:"retainKeys"`: `$retainKeys` may clear the object's other fields.
    retain_keys: bool = False

    def child(self, name: str) -> Field:
        return self.fields.get(name, DEFAULT)

    def element(self) -> Field:
        return self.items or DEFAULT


DEFAULT = Field()
ATOMIC = Field(atomic=True)


def _obj(**fields: Field) -> Field:
    return Field(fields=fields)


def _keyed(*keys: str, item: Field = DEFAULT, smp_key: str | None = "", defaults: dict[str, Any] | None = None,
           retain_keys: bool = False) -> Field:
    """A list of objects that SSA merges by `keys` (`listType=map`) and SMP merges by `smp_key`.

    `smp_key=""` means "the first SSA key"; `smp_key=None` means SMP replaces the list (no patchStrategy).
    """
    merge_key = keys[0] if smp_key == "" else smp_key
    return Field(items=item, list_type="map", keys=keys, key_defaults=defaults or {},
                 smp_merge=merge_key is not None, merge_key=merge_key, retain_keys=retain_keys)


# `patchStrategy:"merge"` + `listType=set`: finalizers, podCIDRs.
_MERGED_SET = Field(list_type="set", smp_merge=True)
_TCP = {"protocol": "TCP"}

_OBJECT_META = _obj(
    finalizers=_MERGED_SET,
    ownerReferences=_keyed("uid"),
    managedFields=ATOMIC,
)

_ENV_VAR = _obj(valueFrom=_obj(
    fieldRef=ATOMIC, resourceFieldRef=ATOMIC, configMapKeyRef=ATOMIC, secretKeyRef=ATOMIC, fileKeyRef=ATOMIC,
))

_CONTAINER = _obj(
    ports=_keyed("containerPort", "protocol", defaults=_TCP),
    env=_keyed("name", item=_ENV_VAR),
    volumeMounts=_keyed("mountPath"),
    volumeDevices=_keyed("devicePath"),
    resources=_obj(claims=_keyed("name", smp_key=None)),
)

_POD_SPEC = _obj(
    containers=_keyed("name", item=_CONTAINER),
    initContainers=_keyed("name", item=_CONTAINER),
    ephemeralContainers=_keyed("name", item=_CONTAINER),
    volumes=_keyed("name", retain_keys=True, item=Field(retain_keys=True)),
    imagePullSecrets=_keyed("name", item=ATOMIC),
    hostAliases=_keyed("ip"),
    topologySpreadConstraints=_keyed("topologyKey", "whenUnsatisfiable"),
    schedulingGates=_keyed("name"),
    resourceClaims=_keyed("name", retain_keys=True, item=Field(retain_keys=True)),
    nodeSelector=ATOMIC,
)

_POD_TEMPLATE = _obj(metadata=_OBJECT_META, spec=_POD_SPEC)
_LABEL_SELECTOR = ATOMIC  # meta/v1 LabelSelector is `structType=atomic`
_CONDITIONS = _keyed("type")

_POD_STATUS = _obj(
    conditions=_CONDITIONS,
    podIPs=_keyed("ip"),
    # hostIPs: SMP merges by ip, SSA keeps the list atomic.
    hostIPs=Field(list_type="atomic", smp_merge=True, merge_key="ip"),
)

SCHEMAS: dict[str, Field] = {
    "Pod": _obj(metadata=_OBJECT_META, spec=_POD_SPEC, status=_POD_STATUS),
    "Service": _obj(
        metadata=_OBJECT_META,
        # Service ports: SMP merges by `port` alone, SSA keys them by port and protocol.
        spec=_obj(ports=_keyed("port", "protocol", defaults=_TCP), selector=ATOMIC),
        status=_obj(conditions=_CONDITIONS),
    ),
    "Endpoints": _obj(metadata=_OBJECT_META),
    "EndpointSlice": _obj(metadata=_OBJECT_META),
    "Namespace": _obj(metadata=_OBJECT_META, status=_obj(conditions=_CONDITIONS)),
    "Node": _obj(
        metadata=_OBJECT_META,
        spec=_obj(podCIDRs=_MERGED_SET, configSource=DEFAULT),
        status=_obj(conditions=_CONDITIONS, addresses=_keyed("type")),
    ),
    "Event": _obj(metadata=_OBJECT_META, involvedObject=ATOMIC),
    "Deployment": _obj(
        metadata=_OBJECT_META,
        spec=_obj(selector=_LABEL_SELECTOR, template=_POD_TEMPLATE, strategy=Field(retain_keys=True)),
        status=_obj(conditions=_CONDITIONS),
    ),
    "ReplicaSet": _obj(
        metadata=_OBJECT_META,
        spec=_obj(selector=_LABEL_SELECTOR, template=_POD_TEMPLATE),
        status=_obj(conditions=_CONDITIONS),
    ),
    "StatefulSet": _obj(
        metadata=_OBJECT_META,
        spec=_obj(selector=_LABEL_SELECTOR, template=_POD_TEMPLATE),
        status=_obj(conditions=_CONDITIONS),
    ),
}


def schema_for(kind: str) -> Field:
    """The field schema of a kind; an unknown kind merges the default way everywhere."""
    return SCHEMAS.get(kind, DEFAULT)


# ---------------------------------------------------------------------------------------------------------------
# RFC 7386 merge patch
# ---------------------------------------------------------------------------------------------------------------


def merge_patch(target: dict, patch: dict) -> dict:
    """Apply a JSON merge patch: objects merge key by key, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        # RFC 7386: a non-object patch replaces the whole document; for an API object that is never valid.
        raise _not_an_object(patch)
    return _merge_objects(copy.deepcopy(target) if isinstance(target, dict) else {}, patch)


def _merge_objects(target: dict, patch: dict) -> dict:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            target[key] = _merge_objects(current if isinstance(current, dict) else {}, value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _not_an_object(patch: Any) -> PatchError:
    return PatchError(f"json: cannot unmarshal {_json_type(patch)} into Go value of type map[string]interface {{}}",
                      code=400)


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "bool", type(None): "null"}.get(type(value), "number")


# ---------------------------------------------------------------------------------------------------------------
# RFC 6902 JSON patch
# ---------------------------------------------------------------------------------------------------------------


def json_patch(target: dict, operations: list) -> dict:
    """Apply a list of JSON patch operations (`add`, `remove`, `replace`, `move`, `copy`, `test`)."""
    if not isinstance(operations, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch", code=400)
    for op in operations:
        if not isinstance(op, dict):
            raise PatchError("json: cannot unmarshal " + _json_type(op) + " into Go value of type jsonpatch.Operation",
                             code=400)
    doc = copy.deepcopy(target)
    # One operation at a time, so an error can name the operation that failed.
    for op in operations:
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except jsonpatch.JsonPatchTestFailed:
            # evanphx/json-patch (the API server's library): `testing value /spec/replicas failed: test failed`
            raise PatchError(f"testing value {op.get('path')} failed: test failed") from None
        except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPointerException, KeyError, IndexError, TypeError):
            path = op.get("from") if op.get("op") in ("move", "copy") else op.get("path")
            raise PatchError(f'{op.get("op")} operation does not apply: doc is missing path: "{path}": '
                             "missing value") from None
        except jsonpatch.InvalidJsonPatch as exc:
            if op.get("op") not in ("add", "remove", "replace", "move", "copy", "test"):
                raise PatchError(f"Unexpected kind: {op.get('op')}") from None
            raise PatchError(str(exc)) from None
    return doc


# ---------------------------------------------------------------------------------------------------------------
# Strategic merge patch
# ---------------------------------------------------------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVES = "$deleteFromPrimitiveList/"


def strategic_merge_patch(target: dict, patch: dict, kind: str) -> dict:
    """Apply a strategic merge patch to an object of `kind` (e.g. "Deployment").

    Like a merge patch, plus: lists with a merge strategy merge element by element (by merge key, or as sets of
    scalars), and the directives `$patch` (replace / delete / merge), `$retainKeys`, `$setElementOrder/<list>` and
    `$deleteFromPrimitiveList/<list>` steer the merge.
    """
    if not isinstance(patch, dict):
        raise _not_an_object(patch)
    original = copy.deepcopy(target) if isinstance(target, dict) else {}
    return _smp_map(original, copy.deepcopy(patch), schema_for(kind))


def _smp_map(original: dict, patch: dict, schema: Field) -> dict:
    """Merge `patch` into `original` (both already private copies) and return the result."""
    directive = patch.pop(_DIRECTIVE, None)
    if directive == "replace":
        # The patch is the whole new object, minus its directives.
        return _smp_map({}, patch, schema)
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive} in map: {_go_map(patch)}", code=400)

    retain = patch.pop(_RETAIN_KEYS, None)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError("doesn't support setting the value of $retainKeys to a non-list type", code=400)
        # Keep only the listed fields of the original (and the patch may only set listed fields).
        for key in list(original):
            if key not in retain:
                del original[key]
        for key in patch:
            if not key.startswith("$") and key not in retain and patch[key] is not None:
                raise PatchError("The patch and the $retainKeys list don't match.")

    orders: dict[str, list] = {}
    for key in [k for k in patch if k.startswith(_SET_ORDER)]:
        orders[key[len(_SET_ORDER):]] = patch.pop(key)
    for key in [k for k in patch if k.startswith(_DELETE_PRIMITIVES)]:
        name = key[len(_DELETE_PRIMITIVES):]
        doomed = patch.pop(key)
        if not isinstance(doomed, list):
            raise PatchError("doesn't support $deleteFromPrimitiveList directive on non-list", code=400)
        if isinstance(original.get(name), list):
            original[name] = [v for v in original[name] if v not in doomed]

    for key, value in patch.items():
        if key.startswith("$"):
            raise PatchError(f"Unknown patch directive: {key}", code=400)
        if value is None:
            original.pop(key, None)
            continue
        sub = schema.child(key)
        current = original.get(key)
        if isinstance(value, dict):
            original[key] = _smp_map(current if isinstance(current, dict) else {}, value, sub)
        elif isinstance(value, list):
            original[key] = _smp_list(current if isinstance(current, list) else [], value, sub)
        else:
            original[key] = value

    for name, order in orders.items():
        if isinstance(original.get(name), list):
            original[name] = _apply_order(original[name], order, schema.child(name))
    return original


def _smp_list(original: list, patch: list, schema: Field) -> list:
    """Merge a patch list into the original list according to the field's patch strategy."""
    if not schema.smp_merge:
        # No strategy: the patch list replaces the original, minus any directive markers.
        return [_strip(v, schema.element()) for v in patch if not _is_directive(v)]

    # A `{"$patch": "replace"}` element means: the other elements are the whole new list.
    if any(_is_directive(v) and v.get(_DIRECTIVE) == "replace" for v in patch):
        return [_strip(v, schema.element()) for v in patch if not _is_directive(v)]

    if schema.merge_key is None:
        # A set of scalars: add the new values, keep the order of the original.
        merged = list(original)
        for value in patch:
            if isinstance(value, (dict, list)):
                raise PatchError("unable to find api field in struct for the primitive list", code=400)
            if value not in merged:
                merged.append(value)
        return merged

    key = schema.merge_key
    merged = list(original)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"map: {_go_value(item)} does not contain declared merge key: {key}")
        directive = item.get(_DIRECTIVE)
        if directive == "merge" and key not in item:
            continue
        if key not in item:
            raise PatchError(f"map: {_go_map(item)} does not contain declared merge key: {key}")
        index = next((i for i, v in enumerate(merged) if isinstance(v, dict) and v.get(key) == item[key]), None)
        if directive == "delete":
            merged = [v for v in merged if not (isinstance(v, dict) and v.get(key) == item[key])]
            continue
        if index is None:
            merged.append(_smp_map({}, dict(item), schema.element()))
        else:
            merged[index] = _smp_map(merged[index], dict(item), schema.element())
    return merged


def _apply_order(merged: list, order: list, schema: Field) -> list:
    """Reorder a merged list as `$setElementOrder` asks.

    Elements named in the order come in that order; elements only the server knows keep their relative place,
    interleaved by their position in the original list (Kubernetes' normalizeElementOrder).
    """
    key = schema.merge_key

    def ident(v: Any) -> Any:
        return json.dumps(v.get(key) if key and isinstance(v, dict) else v, sort_keys=True)

    wanted = [ident(o) for o in order]
    position = {w: i for i, w in enumerate(wanted)}
    ordered = sorted((v for v in merged if ident(v) in position), key=lambda v: position[ident(v)])
    server_only = [(i, v) for i, v in enumerate(merged) if ident(v) not in position]
    original_index = {ident(v): i for i, v in enumerate(merged)}

    result: list = []
    for item in ordered:
        while server_only and server_only[0][0] < original_index[ident(item)]:
            result.append(server_only.pop(0)[1])
        result.append(item)
    result.extend(v for _, v in server_only)
    return result


def _is_directive(value: Any) -> bool:
    return isinstance(value, dict) and _DIRECTIVE in value and len(value) == 1


def _strip(value: Any, schema: Field) -> Any:
    """A patch value with its directives processed, for places where there is nothing to merge with."""
    if isinstance(value, dict):
        return _smp_map({}, dict(value), schema)
    return value


def _go_value(value: Any) -> str:
    if isinstance(value, dict):
        return _go_map(value)
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    return str(value)


def _go_map(value: dict) -> str:
    """How Go's %v prints a map[string]interface{} (keys sorted): `map[image:nginx]`."""
    return "map[" + " ".join(f"{k}:{_go_value(value[k])}" for k in sorted(value)) + "]"
