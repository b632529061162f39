"""OpenAPI v3 documents for the served kinds, generated from the client models' schema.

What kubectl needs (see reference/kubectl-contract.md §4):

- `apply`/`create -f` with default validation read `/openapi/v3`, fetch the group-version
  document and look for the kind's PATCH operation (matched by its
  `x-kubernetes-group-version-kind`) carrying a `fieldValidation` query parameter; finding
  it, kubectl sends `fieldValidation=Strict` and leaves unknown-field checks to the server.
- `explain` finds the schema whose `x-kubernetes-group-version-kind` names the kind and
  follows `$ref`s through `components.schemas`; type names are the last dotted segment of
  the definition name (`io.k8s.api.core.v1.ServiceSpec` → `ServiceSpec`), so definitions are
  named as upstream names them.

`/openapi/v2` is not served (`openapi_v2()` returns None → 404), which kubectl tolerates.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from labkit.apiserver.enums import ENUMS, describe
from labkit.apiserver.schema import FieldType, field_schema, kind_model, model_description
from labkit.kinds import ALL_KINDS, ResourceKind

KUBE_VERSION = "v1.32.0"

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_META_TYPES = {
    "ObjectMeta", "ListMeta", "LabelSelector", "LabelSelectorRequirement", "OwnerReference",
    "ManagedFieldsEntry", "Status", "StatusDetails", "StatusCause", "DeleteOptions", "Preconditions",
    "Condition", "WatchEvent", "APIResource", "APIResourceList",
}
_APPS_PREFIXES = ("Deployment", "ReplicaSet", "StatefulSet", "RollingUpdateDeployment",
                  "RollingUpdateStatefulSetStrategy", "DaemonSet", "RollingUpdateDaemonSet", "ControllerRevision")
_DISCOVERY_TYPES = {"EndpointSlice", "EndpointSliceList", "Endpoint", "EndpointConditions", "EndpointHints",
                    "ForZone", "ForNode"}
_AUTOSCALING_TYPES = {"Scale", "ScaleSpec", "ScaleStatus"}
_RBAC_TYPES = {"ClusterRole", "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "PolicyRule",
               "AggregationRule", "RoleRef"}
_BATCH_PREFIXES = ("Job", "CronJob", "PodFailurePolicy", "SuccessPolicy", "UncountedTerminatedPods")
_AUTHENTICATION_TYPES = {"SelfSubjectReview", "SelfSubjectReviewStatus", "UserInfo"}
_AUTHORIZATION_TYPES = {"SelfSubjectAccessReview", "SelfSubjectAccessReviewSpec", "SubjectAccessReviewStatus",
                        "ResourceAttributes", "NonResourceAttributes", "FieldSelectorAttributes",
                        "LabelSelectorAttributes", "SelfSubjectRulesReview", "SelfSubjectRulesReviewSpec",
                        "SubjectRulesReviewStatus", "ResourceRule", "NonResourceRule"}

# Strategic-merge-patch metadata upstream declares on list fields: (model, json field) → (strategy, merge key).
_PATCH_META: dict[tuple[str, str], tuple[str, str]] = {
    ("V1PodSpec", "containers"): ("merge", "name"),
    ("V1PodSpec", "initContainers"): ("merge", "name"),
    ("V1PodSpec", "ephemeralContainers"): ("merge", "name"),
    ("V1PodSpec", "volumes"): ("merge,retainKeys", "name"),
    ("V1PodSpec", "imagePullSecrets"): ("merge", "name"),
    ("V1PodSpec", "hostAliases"): ("merge", "ip"),
    ("V1PodSpec", "topologySpreadConstraints"): ("merge", "topologyKey"),
    ("V1PodSpec", "resourceClaims"): ("merge,retainKeys", "name"),
    ("V1PodSpec", "schedulingGates"): ("merge", "name"),
    ("V1Container", "ports"): ("merge", "containerPort"),
    ("V1Container", "env"): ("merge", "name"),
    ("V1Container", "volumeMounts"): ("merge", "mountPath"),
    ("V1Container", "volumeDevices"): ("merge", "devicePath"),
    ("V1ServiceSpec", "ports"): ("merge", "port"),
    ("V1ObjectMeta", "ownerReferences"): ("merge", "uid"),
    ("V1ObjectMeta", "finalizers"): ("merge", ""),
    ("V1PodStatus", "conditions"): ("merge", "type"),
    ("V1DeploymentStatus", "conditions"): ("merge", "type"),
    ("V1ReplicaSetStatus", "conditions"): ("merge", "type"),
    ("V1StatefulSetStatus", "conditions"): ("merge", "type"),
    ("V1NodeStatus", "conditions"): ("merge", "type"),
    ("V1NodeStatus", "addresses"): ("merge", "type"),
    ("V1DeploymentSpec", "strategy"): ("retainKeys", ""),
}


# IntOrString as kube-apiserver's OpenAPI v3 defines it: `oneOf` integer/string and no `type`, so `kubectl explain`
# names the field's type after the definition (`<IntOrString>`), not `<string>`.
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_INT_OR_STRING_SCHEMA = {
    "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML marshalling "
                   "and unmarshalling, it produces or consumes the inner type.  This allows you to have, for example, "
                   "a JSON field that can accept a name or number.",
    "format": "int-or-string",
    "oneOf": [{"type": "integer"}, {"type": "string"}],
}


def definition_name(model: str) -> str:
    """Upstream's definition name for a client model: V1ServiceSpec → io.k8s.api.core.v1.ServiceSpec."""
    for prefix, group in (("CoreV1", "core"), ("DiscoveryV1", "discovery"), ("AppsV1", "apps"),
                          ("EventsV1", "events"), ("AutoscalingV1", "autoscaling"), ("RbacV1", "rbac")):
        if model.startswith(prefix):
            return f"io.k8s.api.{group}.v1.{model[len(prefix):]}"
    base = model[2:] if model.startswith("V1") else model
    if base in _META_TYPES:
        return _META + base
    if base.startswith(_APPS_PREFIXES):
        return f"io.k8s.api.apps.v1.{base}"
    if base in _DISCOVERY_TYPES:
        return f"io.k8s.api.discovery.v1.{base}"
    if base in _AUTHENTICATION_TYPES:
        return f"io.k8s.api.authentication.v1.{base}"
    if base in _AUTHORIZATION_TYPES:
        return f"io.k8s.api.authorization.v1.{base}"
    if base.startswith(_BATCH_PREFIXES):
        return f"io.k8s.api.batch.v1.{base}"
    if base in _AUTOSCALING_TYPES:
        return f"io.k8s.api.autoscaling.v1.{base}"
    if base in _RBAC_TYPES:
        return f"io.k8s.api.rbac.v1.{base}"
    return f"io.k8s.api.core.v1.{base}"


def _ref(model: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{definition_name(model)}"}


def _type_schema(ftype: FieldType, need: set[str]) -> dict[str, Any]:
    if ftype.kind == "prim":
        if ftype.name == "int":
            return {"type": "integer", "format": "int32"}
        if ftype.name == "bool":
            return {"type": "boolean"}
        if ftype.name == "float":
            return {"type": "number", "format": "double"}
        if ftype.name == "bytes":
            return {"type": "string", "format": "byte"}
        if ftype.name in ("datetime", "date"):
            return {"type": "string", "format": "date-time"}
        return {"type": "string"}
    if ftype.kind == "intstr":
        need.add(INT_OR_STRING)
        return {"allOf": [{"$ref": f"#/components/schemas/{INT_OR_STRING}"}]}
    if ftype.kind == "any":
        return {"type": "object"}
    if ftype.kind == "model":
        need.add(ftype.name)
        return {"allOf": [_ref(ftype.name)], "default": {}}
    if ftype.kind == "list" and ftype.item is not None:
        items = _type_schema(ftype.item, need)
        items.pop("default", None)
        return {"type": "array", "items": items}
    if ftype.kind == "map" and ftype.item is not None:
        values = _type_schema(ftype.item, need)
        values.pop("default", None)
        return {"type": "object", "additionalProperties": values}
    return {"type": "object"}


def _model_schema(model: str, need: set[str]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    for name, f in field_schema(model).items():
        schema = _type_schema(f.type, need)
        values = ENUMS.get((model, name))
        description = f.description + (describe(values) if values else "")
        if description:
            schema["description"] = description
        if values:
            schema["enum"] = [v for v, _ in values]
        meta = _PATCH_META.get((model, name))
        if meta:
            strategy, key = meta
            schema["x-kubernetes-patch-strategy"] = strategy
            if key:
                schema["x-kubernetes-patch-merge-key"] = key
                schema["x-kubernetes-list-type"] = "map"
                schema["x-kubernetes-list-map-keys"] = [key]
        props[name] = schema
        if f.required:
            required.append(name)
    out: dict[str, Any] = {"type": "object", "properties": props}
    desc = model_description(model)
    if desc:
        out["description"] = desc
    if required:
        out["required"] = required
    return out


def _gvk(kind: ResourceKind, kind_name: str | None = None) -> dict[str, str]:
    return {"group": kind.group, "version": kind.version, "kind": kind_name or kind.kind}


def _param(name: str, where: str, description: str, schema_type: str = "string") -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": where, "description": description,
                         "schema": {"type": schema_type, "uniqueItems": True}}
    if where == "path":
        p["required"] = True
    return p


_DRY_RUN = _param("dryRun", "query", "When present, indicates that modifications should not be persisted.")
_FIELD_MANAGER = _param("fieldManager", "query", "fieldManager is a name associated with the actor or entity "
                                                 "that is making these changes.")
_FIELD_VALIDATION = _param(
    "fieldValidation", "query",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing "
    "unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict")
_FORCE = _param("force", "query", "Force is going to \"force\" Apply requests.", "boolean")
_PRETTY = _param("pretty", "query", "If 'true', then the output is pretty printed.")
_NAME = _param("name", "path", "name of the resource")
_NAMESPACE = _param("namespace", "path", "object name and auth scope, such as for teams and projects")
_LIST_PARAMS = [
    _param("labelSelector", "query", "A selector to restrict the list of returned objects by their labels."),
    _param("fieldSelector", "query", "A selector to restrict the list of returned objects by their fields."),
    _param("limit", "query", "limit is a maximum number of responses to return for a list call.", "integer"),
    _param("resourceVersion", "query", "resourceVersion sets a constraint on what resource versions a request may "
                                       "be served from."),
    _param("watch", "query", "Watch for changes to the described resources.", "boolean"),
    _param("timeoutSeconds", "query", "Timeout for the list/watch call.", "integer"),
]

_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json")


def _content(schema_ref: dict[str, Any]) -> dict[str, Any]:
    return {ct: {"schema": schema_ref} for ct in ("application/json", "application/yaml",
                                                   "application/vnd.kubernetes.protobuf")}


def _op(action: str, op_id: str, gvk: dict[str, str], params: list[dict], ok_ref: dict[str, Any],
        body_ref: dict[str, Any] | None = None, codes: tuple[str, ...] = ("200",), patch: bool = False) -> dict:
    op: dict[str, Any] = {
        "description": f"{action} the specified object",
        "operationId": op_id,
        "parameters": params,
        "responses": {c: {"description": {"200": "OK", "201": "Created", "202": "Accepted"}[c],
                          "content": _content(ok_ref)} for c in codes},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if patch:
        op["requestBody"] = {"content": {ct: {"schema": {"type": "object"}} for ct in _PATCH_TYPES},
                             "required": True}
    elif body_ref is not None:
        op["requestBody"] = {"content": {"*/*": {"schema": body_ref}}, "required": True}
    return op


def _op_prefix(kind: ResourceKind) -> str:
    group = "".join(p.capitalize() for p in (kind.group.split(".")[0] or "core",))
    return f"{group}{kind.version.capitalize()}"


def _paths_for(kind: ResourceKind, need: set[str]) -> dict[str, Any]:
    model = kind_model(kind)
    need.add(model)
    list_model = model + "List"
    ref = _ref(model)
    gvk = _gvk(kind)
    pre = _op_prefix(kind)
    scope = "Namespaced" if kind.namespaced else ""
    base = f"/{kind.group_version}"
    coll = f"{base}/namespaces/{{namespace}}/{kind.plural}" if kind.namespaced else f"{base}/{kind.plural}"
    item = f"{coll}/{{name}}"
    scope_params = [_NAMESPACE] if kind.namespaced else []
    write = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
    status_ref = _ref("V1Status")
    need.add("V1Status")
    need.add("V1DeleteOptions")
    paths: dict[str, Any] = {}
    coll_ops: dict[str, Any] = {"parameters": [*scope_params, _PRETTY]}
    if "list" in kind.verbs and model_class_exists(list_model):
        need.add(list_model)
        coll_ops["get"] = _op("list", f"list{pre}{scope}{kind.kind}", gvk, _LIST_PARAMS, _ref(list_model))
    if "create" in kind.verbs:
        coll_ops["post"] = _op("post", f"create{pre}{scope}{kind.kind}", gvk, write, ref, ref,
                               ("200", "201", "202"))
    if "deletecollection" in kind.verbs:
        coll_ops["delete"] = _op("deletecollection", f"deletecollection{pre}{scope}{kind.kind}", gvk,
                                 _LIST_PARAMS, status_ref, _ref("V1DeleteOptions"))
    paths[coll] = coll_ops
    item_ops: dict[str, Any] = {"parameters": [_NAME, *scope_params, _PRETTY]}
    if "get" in kind.verbs:
        item_ops["get"] = _op("get", f"read{pre}{scope}{kind.kind}", gvk, [], ref)
    if "update" in kind.verbs:
        item_ops["put"] = _op("put", f"replace{pre}{scope}{kind.kind}", gvk, write, ref, ref, ("200", "201"))
    if "patch" in kind.verbs:
        item_ops["patch"] = _op("patch", f"patch{pre}{scope}{kind.kind}", gvk, [*write, _FORCE], ref,
                                codes=("200", "201"), patch=True)
    if "delete" in kind.verbs:
        item_ops["delete"] = _op("delete", f"delete{pre}{scope}{kind.kind}", gvk, [], status_ref,
                                 _ref("V1DeleteOptions"), ("200", "202"))
    if len(item_ops) > 1:  # a review kind has no item path
        paths[item] = item_ops
    if kind.namespaced and "list" in kind.verbs and model_class_exists(list_model):
        paths[f"{base}/{kind.plural}"] = {
            "parameters": [_PRETTY],
            "get": _op("list", f"list{pre}{kind.kind}ForAllNamespaces", gvk, _LIST_PARAMS, _ref(list_model)),
        }
    for sub in kind.subresources:
        if sub == "status":
            paths[f"{item}/status"] = {
                "parameters": [_NAME, *scope_params, _PRETTY],
                "get": _op("get", f"read{pre}{scope}{kind.kind}Status", gvk, [], ref),
                "put": _op("put", f"replace{pre}{scope}{kind.kind}Status", gvk, write, ref, ref, ("200", "201")),
                "patch": _op("patch", f"patch{pre}{scope}{kind.kind}Status", gvk, [*write, _FORCE], ref,
                             codes=("200", "201"), patch=True),
            }
        elif sub == "scale":
            need.add("V1Scale")
            sgvk = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
            sref = _ref("V1Scale")
            paths[f"{item}/scale"] = {
                "parameters": [_NAME, *scope_params, _PRETTY],
                "get": _op("get", f"read{pre}{scope}{kind.kind}Scale", sgvk, [], sref),
                "put": _op("put", f"replace{pre}{scope}{kind.kind}Scale", sgvk, write, sref, sref, ("200", "201")),
                "patch": _op("patch", f"patch{pre}{scope}{kind.kind}Scale", sgvk, [*write, _FORCE], sref,
                             codes=("200", "201"), patch=True),
            }
    return paths


def model_class_exists(model: str) -> bool:
    return bool(field_schema(model))


def _components(need: set[str], top: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    done: set[str] = set()
    pending = sorted(need)
    while pending:
        model = pending.pop()
        if model in done:
            continue
        done.add(model)
        if model == INT_OR_STRING:
            schemas[INT_OR_STRING] = _INT_OR_STRING_SCHEMA
            continue
        more: set[str] = set()
        schema = _model_schema(model, more)
        if model in top:
            schema["x-kubernetes-group-version-kind"] = top[model]
        schemas[definition_name(model)] = schema
        pending.extend(sorted(more - done))
    return dict(sorted(schemas.items()))


@functools.cache
def _document(group_version: str) -> str | None:
    kinds = [k for k in ALL_KINDS if k.group_version == group_version]
    if not kinds:
        return None
    need: set[str] = set()
    paths: dict[str, Any] = {}
    top: dict[str, list[dict[str, str]]] = {}
    for k in kinds:
        paths.update(_paths_for(k, need))
        model = kind_model(k)
        top[model] = [_gvk(k)]
        if model_class_exists(model + "List"):
            top[model + "List"] = [_gvk(k, k.kind_list)]
    if any("scale" in k.subresources for k in kinds):
        top["V1Scale"] = [{"group": "autoscaling", "kind": "Scale", "version": "v1"}]
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION},
        "paths": paths,
        "components": {"schemas": _components(need, top)},
    }
    return json.dumps(doc, separators=(",", ":"))


def openapi_v3_document(group_version: str) -> dict | None:
    """The OpenAPI v3 document of one group-version (`api/v1`, `apis/apps/v1`), or None if not served."""
    text = _document(group_version.strip("/"))
    return json.loads(text) if text is not None else None


def openapi_v3_document_bytes(group_version: str) -> bytes | None:
    """The same document, serialised once and cached (what the server should send)."""
    text = _document(group_version.strip("/"))
    return text.encode() if text is not None else None


@functools.cache
def _hash(group_version: str) -> str:
    text = _document(group_version) or ""
    return hashlib.sha512(text.encode()).hexdigest().upper()


def openapi_v3_index() -> dict:
    """`GET /openapi/v3`: each served group-version with the hash of its document."""
    paths = {}
    for k in ALL_KINDS:
        gv = k.group_version
        if gv not in paths:
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_hash(gv)}"}
    return {"paths": paths}


def openapi_v2() -> dict | None:
    """`GET /openapi/v2` is not served: kubectl falls back to its compiled-in patch metadata."""
    return None
