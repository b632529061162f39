"""Server-side apply and `metadata.managedFields`, the way structured-merge-diff does them.

Every write records *who owns which field* in `metadata.managedFields`:

- `server_side_apply` (PATCH `application/apply-patch+yaml`): the body is the manager's whole intent. It is
  merged into the live object; fields the manager applied last time and leaves out now are removed (unless some
  other manager still owns them); a field another manager owns and the body would change is a conflict (409)
  unless `force` is set, which takes the field over.
- `record_update` (create, PUT, and the other PATCH types): the manager becomes the owner of every field the
  write added or changed, and the other managers lose those fields.

A *field set* is a set of paths. A path is a tuple of path elements, each one of
    ("f", "spec")                                   a field of an object
    ("k", '{"name":"nginx"}')                       an element of a keyed list, by its key (JSON, keys sorted)
    ("v", '"example.com/finalizer"')                an element of a set of scalars, by its value (JSON)
and is written in `fieldsV1` as nested objects `{"f:spec": {"f:replicas": {}}}`, where `".": {}` marks a path that
is itself owned and also has owned children (a list element, a map). Which lists are keyed, which are sets and
which objects are atomic comes from the field schema in `labkit.apiserver.patch`.

Upstream: sigs.k8s.io/structured-merge-diff (typed/merge.go, typed/compare.go, typed/tofieldset.go,
merge/update.go, fieldpath) and k8s.io/apiserver's fieldmanager (stripmeta, managedfieldsupdater, conflict.go).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from labkit import kinds
from labkit.apiserver.patch import DEFAULT, Field, schema_for
from labkit.errors import ApiError, BadRequest, Conflict

PathElement = tuple[str, str]
Path = tuple[PathElement, ...]

_MISSING: Any = object()  # "no such field", as opposed to a field whose value is null

# Fields the API server owns: never recorded as anyone's (k8s.io/apiserver fieldmanager, stripmeta.go).
_STRIPPED: frozenset[Path] = frozenset(
    [(("f", "apiVersion"),), (("f", "kind"),), (("f", "metadata"),)]
    + [(("f", "metadata"), ("f", name)) for name in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation", "managedFields",
        "resourceVersion",
    )]
)

# Metadata the server sets itself; an applied config's values for these are not merged into the object.
_SERVER_METADATA = ("creationTimestamp", "selfLink", "uid", "generation", "managedFields", "resourceVersion")

# The zero value of each kind as Go serialises it. An update that creates an object is compared with this, so a
# struct that always exists (`spec`, `spec.template`) is not "added" and gets no `.` entry in fieldsV1, while
# optional ones (`metadata.labels`, a list element) do, exactly as on a real cluster.
_POD_TEMPLATE_ZERO = {"metadata": {}, "spec": {"containers": None}}
_ZERO: dict[str, dict] = {
    "Pod": {"metadata": {}, "spec": {"containers": None}, "status": {}},
    "Service": {"metadata": {}, "spec": {}, "status": {"loadBalancer": {}}},
    "Endpoints": {"metadata": {}},
    "EndpointSlice": {"metadata": {}, "addressType": "", "endpoints": None},
    "Namespace": {"metadata": {}, "spec": {}, "status": {}},
    "Node": {"metadata": {}, "spec": {}, "status": {}},
    "Event": {"metadata": {}, "involvedObject": {}, "source": {}, "reportingComponent": "", "reportingInstance": ""},
    "Deployment": {"metadata": {}, "spec": {"selector": None, "template": _POD_TEMPLATE_ZERO, "strategy": {}},
                   "status": {}},
    "ReplicaSet": {"metadata": {}, "spec": {"selector": None, "template": _POD_TEMPLATE_ZERO}, "status": {}},
    "StatefulSet": {"metadata": {}, "spec": {"selector": None, "template": _POD_TEMPLATE_ZERO,
                                             "updateStrategy": {}}, "status": {}},
}


# ---------------------------------------------------------------------------------------------------------------
# Public interface
# ---------------------------------------------------------------------------------------------------------------


def parse_apply_body(body: bytes | str) -> dict:
    """Decode an `application/apply-patch+yaml` body (YAML, or JSON, which is YAML too)."""
    try:
        obj = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        raise BadRequest(f"error decoding YAML: {exc}") from None
    if not isinstance(obj, dict):
        raise BadRequest("error decoding YAML: the apply patch is not an object")
    return obj


def server_side_apply(live: dict | None, applied: dict, *, manager: str, force: bool, kind: str, now: str) -> dict:
    """Apply `applied` (the manager's full intent) to `live` (None: the object does not exist yet).

    Returns the new object with `metadata.managedFields` updated. Raises `labkit.errors.Conflict` when another
    manager owns a field this config would change and `force` is false, `BadRequest` for a malformed config.
    `status` is not applied through the main resource: the live status is kept and nobody owns it here.
    """
    schema = schema_for(kind)
    api_version = _api_version(kind, live or applied)
    _check_config(applied, api_version)

    config = copy.deepcopy(applied)
    config.pop("status", None)
    for name in _SERVER_METADATA:
        config.get("metadata", {}).pop(name, None)

    live_obj = _without_managed_fields(live) if live is not None else {}
    managers = _decode_managers(live)
    me = _Manager(manager, "Apply", "", "", now)
    previous = next((m for m in managers if m.same_as(me)), None)
    last_set = previous.fields if previous else set()

    # The config has no status, so the merge keeps the live one (a create starts with none).
    merged = _merge(live_obj, config, schema)
    applied_set = _filter_reset(field_set(config, schema) - _STRIPPED, "")

    others = [m for m in managers if not m.same_as(me)]
    owned = set(applied_set).union(*(m.fields for m in others))
    merged = _prune(merged, last_set - owned, owned, schema)

    before = _fill_zero(live_obj, kind) if live is not None else _zero(kind)
    added, modified, removed = compare(before, _fill_zero(merged, kind), schema)
    changed = added | modified
    conflicts = {id(m): m.fields & changed for m in others if m.fields & changed}
    if conflicts and not force:
        raise _conflict_error([(m, path) for m in others for path in sorted(conflicts.get(id(m), ()), key=_sort_key)])
    for m in others:
        m.fields = m.fields - changed - removed if id(m) in conflicts else m.fields - removed

    object_changed = live is None or merged != live_obj
    me.fields = applied_set
    me.api_version = api_version
    me.time = now if (object_changed or previous is None) else previous.time
    result_managers = [me, *others]
    return _with_managed_fields(merged, [m for m in result_managers if m.fields])


def record_update(old: dict | None, new: dict, *, manager: str, now: str, subresource: str = "",
                  kind: str | None = None) -> dict:
    """Return `new` with `metadata.managedFields` updated for an ordinary write (operation "Update").

    `manager` becomes the owner of every field the write added or changed; other managers lose those fields and
    everyone loses the fields the write removed. `old` is None for a create. `subresource` is "" for the object
    itself, or "status" / "scale": a write to the main resource never owns `status`, a status write never `spec`.
    The result is a private copy; neither `old` nor `new` is modified.
    """
    kind = kind or new.get("kind") or (old or {}).get("kind") or ""
    schema = schema_for(kind)
    api_version = _api_version(kind, new if new.get("apiVersion") else (old or new))

    managers = _base_managers(old, new)
    # compare() only reads, so both sides are views sharing the callers' data: no copies on this hot path.
    zero = _ZERO.get(kind, {})
    before = _with_zero(_strip_managed_fields(old), zero) if old is not None else _ZERO.get(kind, _EMPTY_ZERO)
    after = _strip_managed_fields(new)
    added, modified, removed = compare(before, _with_zero(after, zero), schema)
    changed = _filter_reset((added | modified) - _STRIPPED, subresource)

    me = _Manager(manager, "Update", api_version, subresource, now)
    previous = next((m for m in managers if m.same_as(me)), None)
    if changed or removed:
        for m in managers:
            # Like upstream, the write is recorded as a separate "current operation" first, so the manager's own
            # previous entry also drops the changed fields; they come back in the union below.
            if not m.fields.isdisjoint(changed) or not m.fields.isdisjoint(removed):
                m.fields = m.fields - changed - removed
    if changed:
        me.fields = changed | (previous.fields if previous else set())
    elif previous is not None:
        me.fields, me.time = previous.fields, previous.time
    result = [m for m in managers if m is not previous] + [me]
    return _with_managed_fields(_json_copy(after), [m for m in result if m.fields])


# ---------------------------------------------------------------------------------------------------------------
# Managers and the managedFields encoding
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Manager:
    """One `managedFields` entry, with its fieldsV1 decoded to a set of paths."""

    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    fields: AbstractSet[Path] = field(default_factory=set)

    def same_as(self, other: _Manager) -> bool:
        """Whether two entries are the same manager (upstream's manager identifier).

        An applier is one manager whatever API version it used; an updater is one per API version.
        """
        mine = (self.manager, self.operation, self.subresource)
        if mine != (other.manager, other.operation, other.subresource):
            return False
        return self.operation == "Apply" or self.api_version == other.api_version

    def describe(self) -> str:
        """How a conflict message names this manager: `"kubectl-client-side-apply" using apps/v1`."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def entry(self) -> dict:
        out: dict[str, Any] = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version}
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = _encode_shared(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _decode_managers(obj: dict | None) -> list[_Manager]:
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    return [_from_entry(e) for e in entries if isinstance(e, dict) and e.get("manager") is not None]


def _from_entry(entry: dict) -> _Manager:
    return _Manager(entry.get("manager", ""), entry.get("operation", "Update"), entry.get("apiVersion", ""),
                    entry.get("subresource", ""), entry.get("time"), _decode_shared(entry.get("fieldsV1") or {}))


def _base_managers(old: dict | None, new: dict) -> list[_Manager]:
    """The entries an update starts from (fieldmanager's handling of managedFields sent by the client).

    A client that sends no managedFields, or sends back the ones it read, keeps the live ones; a client that sends
    different ones replaces them; a single empty entry `[{}]` resets them.
    """
    sent = (new.get("metadata") or {}).get("managedFields")
    live = ((old or {}).get("metadata") or {}).get("managedFields")
    if sent is None or sent == live:
        return _decode_managers(old)
    if sent == [{}]:
        return []
    return _decode_managers(new)


def _with_managed_fields(obj: dict, managers: list[_Manager]) -> dict:
    """`obj` (a private copy) with its managedFields replaced, sorted the way the API server stores them."""
    managers.sort(key=lambda m: (m.operation, m.time or "", m.manager, m.api_version, m.subresource))
    meta = obj.setdefault("metadata", {})
    if managers:
        meta["managedFields"] = [m.entry() for m in managers]
    else:
        meta.pop("managedFields", None)
    return obj


def _json_copy(obj: Any) -> Any:
    """A deep copy of JSON data, as a JSON round trip makes it (tuples become lists, keys become strings).

    orjson is several times faster than the json module, which is several times faster than copy.deepcopy.
    orjson refuses integers beyond 64 bits; the json module takes those.
    """
    try:
        return orjson.loads(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:
        return json.loads(json.dumps(obj))


def _strip_managed_fields(obj: dict) -> dict:
    """A shallow view of `obj` without `metadata.managedFields` (sharing everything else with it)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj


def _without_managed_fields(obj: dict) -> dict:
    return _json_copy(_strip_managed_fields(obj))


def encode_fields(paths: set[Path]) -> dict:
    """A field set as fieldsV1: `{"f:spec": {"f:replicas": {}}}`, with `".": {}` for owned inner nodes.

    Children are in path-element order (fields, then keys, then values), as upstream prints them.
    """
    root: dict = {}
    for path in paths:
        node = root
        for pe in path:
            child = node.get(pe)
            if child is None:
                child = node[pe] = {}
            node = child
        node["."] = True
    return _emit(root)


def _emit(node: dict) -> dict:
    """One node of the tree encode_fields builds (keyed by path elements) as fieldsV1."""
    out: dict = {}
    owned = node.pop(".", False)
    if owned and node:
        out["."] = {}  # an owned node with owned children says so first; a leaf `{}` says it already
    for pe in sorted(node, key=_pe_sort_key):
        out[f"{pe[0]}:{pe[1]}"] = _emit(node[pe])
    return out


def _pe_sort_key(pe: PathElement) -> tuple:
    # Field names sort before keys before values (fieldpath.PathElement.Compare).
    return (_KIND_ORDER.get(pe[0], 4), pe[1])


_KIND_ORDER = {"f": 0, "k": 1, "v": 2, "i": 3}


def decode_fields(fields_v1: dict) -> set[Path]:
    """The set of paths a fieldsV1 object names."""
    out: set[Path] = set()

    def walk(node: dict, prefix: Path) -> None:
        for key, child in node.items():
            if key == ".":
                out.add(prefix)
                continue
            kind, _, rest = key.partition(":")
            path = (*prefix, (kind, rest))
            if child:
                walk(child, path)
            else:
                out.add(path)

    walk(fields_v1, ())
    return out


# Every write decodes each managedFields entry of the object and encodes each one again; objects of one kind
# written by one manager (the pods of one template, say) share a few distinct fieldsV1, so both directions are
# remembered by content. The sets are frozensets: field-set arithmetic here always makes new sets. An entry of
# both caches is ~16 KB for a pod's fieldsV1, so they stay small.


def _decode_shared(fields_v1: dict) -> AbstractSet[Path]:
    """decode_fields, remembered by the fieldsV1's JSON."""
    try:
        raw = orjson.dumps(fields_v1)
    except (orjson.JSONEncodeError, TypeError):
        return decode_fields(fields_v1)  # not JSON (non-string keys, say): nothing to remember it by
    return _decode_raw(raw)


@functools.lru_cache(maxsize=256)
def _decode_raw(raw: bytes) -> frozenset[Path]:
    return frozenset(decode_fields(orjson.loads(raw)))


def _encode_shared(fields: AbstractSet[Path]) -> dict:
    """encode_fields, remembered by the set; a fresh dict each time (callers own what they get)."""
    return orjson.loads(_encode_raw(fields if isinstance(fields, frozenset) else frozenset(fields)))


@functools.lru_cache(maxsize=256)
def _encode_raw(fields: frozenset[Path]) -> bytes:
    return orjson.dumps(encode_fields(fields))


def path_string(path: Path) -> str:
    """A path as upstream prints it in messages: `.spec.template.spec.containers[name="nginx"].image`."""
    parts = []
    for kind, text in path:
        if kind == "f":
            parts.append("." + text)
        elif kind == "k":
            key = json.loads(text)
            parts.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in key.items()) + "]")
        elif kind == "v":
            parts.append(f"[={text}]")
        else:
            parts.append(f"[{text}]")
    return "".join(parts)


def _sort_key(path: Path) -> tuple:
    # Field names sort before keys before values (fieldpath.PathElement.Compare).
    return tuple(("fkvi".index(kind) if kind in "fkvi" else 4, text) for kind, text in path)


def _conflict_error(conflicts: list[tuple[_Manager, Path]]) -> Conflict:
    """The 409 of an apply conflict, worded like k8s.io/apiserver's fieldmanager (internal/conflict.go)."""
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {m.describe()}", "field": path_string(p)}
              for m, p in conflicts]
    if len(conflicts) == 1:
        m, p = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {m.describe()}: {path_string(p)}"
    else:
        lines: list[str] = []
        for described in sorted({m.describe() for m, _ in conflicts}):
            lines.append(f"conflicts with {described}:")
            lines.extend(f"- {path_string(p)}" for m, p in conflicts if m.describe() == described)
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return Conflict(message, details={"causes": causes})


# ---------------------------------------------------------------------------------------------------------------
# Field sets, merge, compare, prune (the structured-merge-diff part)
# ---------------------------------------------------------------------------------------------------------------


def _item_pe(item: Any, schema: Field, path: Path) -> PathElement:
    """The path element that names one element of a keyed list or a set."""
    if schema.list_type == "set":
        return ("v", _json_scalar(item, sort_keys=False))
    if not isinstance(item, dict):
        raise _typed_error(path, "expected a map for an element of an associative list")
    parts = []
    for name in sorted(schema.keys):
        if name in item:
            value = item[name]
        elif name in schema.key_defaults:
            value = schema.key_defaults[name]
        else:
            raise _typed_error(path, f'associative list with keys has an element that omits key field "{name}" '
                                     "(and doesn't have default value)")
        parts.append(f"{_encode_str(name)}:{_json_scalar(value, sort_keys=True)}")
    # What json.dumps(key, separators=(",", ":"), sort_keys=True) gives, built without its per-call setup.
    return ("k", "{" + ",".join(parts) + "}")


_encode_str: Any = json.encoder.encode_basestring_ascii  # what json.dumps uses for strings (ensure_ascii)


def _json_scalar(value: Any, *, sort_keys: bool) -> str:
    """`json.dumps(value, separators=(",", ":"), sort_keys=...)`, with fast paths for strings and integers."""
    if type(value) is str:
        return _encode_str(value)
    if type(value) is int:
        return int.__repr__(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys)


def _typed_error(path: Path, why: str) -> ApiError:
    # structured-merge-diff rejects such a config before merging; the API server passes the error on as is.
    return ApiError(f"failed to create typed patch object: {path_string(path) or '.'}: {why}")


def _keyed(items: list, schema: Field, path: Path) -> list[tuple[PathElement, Any]]:
    out = [(_item_pe(v, schema, path), v) for v in items]
    seen: set[PathElement] = set()
    for pe, _ in out:
        if pe in seen:
            raise _typed_error(path, f"duplicate entries for key {path_string((pe,))}")
        seen.add(pe)
    return out


def _is_keyed_list(schema: Field) -> bool:
    return schema.list_type in ("map", "set")


def field_set(value: Any, schema: Field, path: Path = ()) -> set[Path]:
    """The fields a config sets (typed/tofieldset.go): leaves, atomic values and list elements."""
    out: set[Path] = set()
    if isinstance(value, dict) and not schema.atomic:
        for name, child in value.items():
            out |= field_set(child, schema.child(name), (*path, ("f", name)))
    elif isinstance(value, list) and _is_keyed_list(schema):
        for pe, item in _keyed(value, schema, path):
            out |= field_set(item, schema.element(), (*path, pe)) if schema.list_type == "map" else set()
            out.add((*path, pe))
    elif path:
        out.add(path)
    return out


def _merge(live: Any, config: Any, schema: Field) -> Any:
    """Merge a config into a live value (typed/merge.go): the config wins, keyed lists merge element-wise."""
    if live is _MISSING or schema.atomic:
        return _drop_nulls(copy.deepcopy(config))
    if isinstance(config, dict) and isinstance(live, dict):
        out = copy.deepcopy(live)
        for name, child in config.items():
            if child is None:
                out.pop(name, None)  # an explicit null: the field goes (the server drops nulls when decoding)
            else:
                out[name] = _merge(live.get(name, _MISSING), child, schema.child(name))
        return out
    if isinstance(config, list) and isinstance(live, list) and _is_keyed_list(schema):
        return _merge_list(live, config, schema)
    return _drop_nulls(copy.deepcopy(config))


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _merge_list(live: list, config: list, schema: Field) -> list:
    """Merge two keyed lists, keeping the config's order for shared elements and live-only ones in place."""
    lhs = _keyed(live, schema, ())
    rhs = _keyed(config, schema, ())
    lhs_items = dict(lhs)
    rhs_items = dict(rhs)
    element = schema.element()

    def merged_item(pe: PathElement) -> Any:
        if schema.list_type == "set":
            return copy.deepcopy(rhs_items[pe])
        return _merge(lhs_items.get(pe, _MISSING), rhs_items[pe], element)

    # The shared elements in the config's order: each round of the walk below waits for the next one.
    shared = [pe for pe, _ in rhs if pe in lhs_items]
    out: list = []
    done: set[PathElement] = set()
    li = ri = 0
    while li < len(lhs) or ri < len(rhs):
        next_shared = shared[0] if shared else None
        if li < len(lhs) and ri < len(rhs):
            lpe, rpe = lhs[li][0], rhs[ri][0]
            if lpe == rpe:
                out.append(merged_item(rpe))
                done.add(rpe)
                li, ri = li + 1, ri + 1
                if shared and shared[0] == rpe:
                    shared.pop(0)
                continue
            if lpe in rhs_items and next_shared is not None and next_shared != lpe:
                li += 1  # a shared element, but not the one due now: it comes with the config's walk
                continue
        if li < len(lhs):
            lpe = lhs[li][0]
            if lpe not in rhs_items:
                out.append(copy.deepcopy(lhs[li][1]))  # only the live object has it: it stays where it was
                li += 1
                continue
            if lpe in done:
                li += 1
        if ri < len(rhs):
            rpe = rhs[ri][0]
            out.append(merged_item(rpe))
            done.add(rpe)
            ri += 1
            if shared and shared[0] == rpe:
                shared.pop(0)
    return out


def compare(old: Any, new: Any, schema: Field, path: Path = ()) -> tuple[set[Path], set[Path], set[Path]]:
    """What changed between two objects (typed/compare.go): the added, modified and removed paths.

    Leaves (scalars, atomic values, empty objects and lists) are compared by value; an object field or list
    element that appears or disappears is itself added or removed too. Equal subtrees are skipped whole: nothing
    in them is added, modified or removed, and a write usually changes a small part of an object.
    """
    added: set[Path] = set()
    modified: set[Path] = set()
    removed: set[Path] = set()

    def walk_added(n: Any, s: Field, p: Path) -> None:
        # walk(_MISSING, n, s, p) without the comparisons: a whole new subtree (all of an object being created).
        if not s.atomic and n:
            if isinstance(n, dict):
                for name, value in n.items():
                    walk_added(value, s.child(name), (*p, ("f", name)))
                if p:
                    added.add(p)
                return
            if isinstance(n, list) and _is_keyed_list(s):
                element = s.element() if s.list_type == "map" else DEFAULT
                for pe, value in dict(_keyed(n, s, p)).items():  # a repeated key: the last one, as walk() does
                    walk_added(value, element, (*p, pe))
                if p:
                    added.add(p)
                return
        added.add(p)

    def walk(o: Any, n: Any, s: Field, p: Path) -> None:
        if o is _MISSING and n is not _MISSING:
            walk_added(n, s, p)
            return
        if o is not _MISSING and n is not _MISSING and o == n:
            return
        shape = _shape(o, n, s)
        if shape == "leaf":
            if o is _MISSING:
                added.add(p)
            elif n is _MISSING:
                removed.add(p)
            else:
                modified.add(p)  # not equal, or walk would have returned
            return
        if shape == "object":
            lo = o if isinstance(o, dict) else {}
            ln = n if isinstance(n, dict) else {}
            for name, value in lo.items():
                other = ln.get(name, _MISSING)
                if other is _MISSING or value != other:
                    walk(value, other, s.child(name), (*p, ("f", name)))
            for name, value in ln.items():
                if name not in lo:
                    walk(_MISSING, value, s.child(name), (*p, ("f", name)))
        else:
            lo = dict(_keyed(o, s, p)) if isinstance(o, list) else {}
            ln = dict(_keyed(n, s, p)) if isinstance(n, list) else {}
            element = s.element() if s.list_type == "map" else DEFAULT
            for pe, value in lo.items():
                other = ln.get(pe, _MISSING)
                if other is _MISSING or value != other:
                    walk(value, other, element, (*p, pe))
            for pe, value in ln.items():
                if pe not in lo:
                    walk(_MISSING, value, element, (*p, pe))
        if p and o is _MISSING:
            added.add(p)
        elif p and n is _MISSING:
            removed.add(p)

    walk(old, new, schema, path)
    return added, modified, removed


def _shape(old: Any, new: Any, schema: Field) -> str:
    """Whether two values compare as an object, a keyed list or a single leaf."""
    if schema.atomic:
        return "leaf"
    o = None if old is _MISSING else old
    n = None if new is _MISSING else new
    if o is None and n is None:
        return "leaf"
    if (o is None or isinstance(o, dict)) and (n is None or isinstance(n, dict)):
        return "object" if (o or n) else "leaf"
    if (o is None or isinstance(o, list)) and (n is None or isinstance(n, list)) and _is_keyed_list(schema):
        return "list" if (o or n) else "leaf"
    return "leaf"


def _prune(obj: dict, doomed: set[Path], owned: set[Path], schema: Field) -> dict:
    """Remove the fields an applier gave up and nobody owns (merge/update.go `prune`).

    A path stays while anyone still owns something beneath it (a list element whose other fields another
    manager set, say); its own unowned leaves go one by one.
    """
    still_needed = {path[:i] for path in owned for i in range(1, len(path) + 1)}
    for path in sorted(doomed, key=len):
        if path not in still_needed:
            _remove(obj, path, schema)
    return obj


def _remove(obj: Any, path: Path, schema: Field) -> None:
    parent: Any = obj
    for depth, (kind, text) in enumerate(path):
        last = depth == len(path) - 1
        if kind == "f":
            if not isinstance(parent, dict) or text not in parent:
                return
            if last:
                del parent[text]
                return
            parent, schema = parent[text], schema.child(text)
        elif kind in ("k", "v"):
            if not isinstance(parent, list):
                return
            try:
                index = next(i for i, v in enumerate(parent) if _item_pe(v, schema, path[:depth]) == (kind, text))
            except StopIteration:
                return
            if last:
                del parent[index]
                return
            parent, schema = parent[index], schema.element()
        else:
            return


def _filter_reset(paths: set[Path], subresource: str) -> set[Path]:
    """Drop the fields a write through this endpoint cannot own (the strategies' GetResetFields).

    The main resource (and /scale) resets `status`; /status resets `spec`.
    """
    reset = "spec" if subresource == "status" else "status"
    return {p for p in paths if not p or p[0] != ("f", reset)}


def _zero(kind: str) -> dict:
    return copy.deepcopy(_ZERO.get(kind, _EMPTY_ZERO))


_EMPTY_ZERO: dict = {"metadata": {}}


def _fill_zero(obj: dict, kind: str) -> dict:
    """A copy of `obj` with the always-present structs of its kind's zero value filled in where missing.

    The Go API server never sees an object without them; comparing with them in place keeps a stored object
    that lacks, say, `status: {}` from making `status` look newly added.
    """
    return _json_copy(_with_zero(obj, _ZERO.get(kind, {})))


def _with_zero(obj: dict, zero: dict) -> dict:
    """`obj` with the structs of `zero` filled in where missing: a shallow view, copying only what it fills."""
    out = obj
    for name, value in zero.items():
        if not isinstance(value, dict):
            continue
        current = obj.get(name, _MISSING)
        if current is _MISSING:
            filled = _with_zero({}, value)
        elif isinstance(current, dict):
            filled = _with_zero(current, value)
        else:
            continue
        if filled is not current:
            if out is obj:
                out = dict(obj)
            out[name] = filled
    return out


def _api_version(kind: str, obj: dict | None) -> str:
    try:
        return kinds.lookup(kind).api_version
    except KeyError:
        return (obj or {}).get("apiVersion", "")


def _check_config(applied: dict, api_version: str) -> None:
    """The checks k8s.io/apiserver's FieldManager.Apply makes before merging."""
    if not isinstance(applied, dict):
        raise BadRequest("error decoding YAML: the apply patch is not an object")
    sent = applied.get("apiVersion")
    if sent != api_version:
        raise BadRequest(f"Incorrect version specified in apply patch. Specified patch version: {sent or ''}, "
                         f"expected: {api_version}")
    if (applied.get("metadata") or {}).get("managedFields") is not None:
        raise BadRequest("metadata.managedFields must be nil")
