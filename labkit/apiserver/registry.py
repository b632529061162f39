"""What each REST verb does to objects: the API server's "registry" layer.

The order of a write follows kube-apiserver's generic registry:
decode → prepare (server-managed fields) → defaults → strict field check →
validation → admission-like steps (namespace lifecycle, IP allocation) →
optimistic concurrency → store. No-op updates are not written, so they keep
their resourceVersion, as upstream.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import yaml

from labkit import errors, kinds
from labkit.apiserver import apply as ssa
from labkit.apiserver import convert, defaults, patch, schema, validation, workloads
from labkit.apiserver.ipalloc import ServiceAllocator
from labkit.apiserver.normalize import normalize
from labkit.apiserver.selectors import FieldRequirement, Requirement, fields_match, labels_match
from labkit.apiserver.storage import Store
from labkit.kinds import ResourceKind

# generateName's suffix alphabet and length (k8s.io/apimachinery/pkg/util/rand).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_GENERATED_SUFFIX = 5
# Kinds whose metadata.generation tracks spec changes.
_GENERATION_KINDS = {"deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs"}
# Kinds whose status is only written through the /status subresource.
_STATUS_SUBRESOURCE = {"pods", "services", "nodes", "namespaces", "deployments", "replicasets", "statefulsets",
                       "daemonsets", "jobs", "cronjobs"}
_CREATE_ON_UPDATE = {"endpoints", "events", "endpointslices"}
_IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")
_SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                "resourceVersion", "selfLink")

PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")


_last_second: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    """The current time at the API's one-second resolution (formatted once per second: every write asks twice)."""
    global _last_second
    second = int(time.time())
    if second != _last_second[0]:
        _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)))
    return _last_second[1]


def _copy(obj: dict) -> dict:
    # A JSON round trip is several times faster than copy.deepcopy for API objects, and orjson's several times
    # faster than the json module's. Non-string keys (YAML can make them) become strings, as json.dumps did.
    return orjson.loads(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS))


class Registry:
    """Verbs over a Store, with upstream's semantics for the kinds labkit serves."""

    def __init__(self, store: Store, allocator: ServiceAllocator | None = None,
                 rng: random.Random | None = None) -> None:
        self.store = store
        self.allocator = allocator or ServiceAllocator()
        self.allocator.load(store.list(("", "services")))
        self.rng = rng or random.SystemRandom()

    # -- reads --------------------------------------------------------------------------------
    def get(self, kind: ResourceKind, namespace: str | None, name: str) -> dict:
        obj = self.store.get((kind.group, kind.plural), namespace or "", name)
        if obj is None:
            raise errors.not_found(kind.plural, name, kind.group)
        return obj

    def list(self, kind: ResourceKind, namespace: str | None, label_sel: list[Requirement],
             field_sel: list[FieldRequirement], *, limit: int = 0,
             cont: str | None = None) -> tuple[list[dict], int, str | None, int]:
        items = [o for o in self.store.list((kind.group, kind.plural), namespace)
                 if labels_match(label_sel, o["metadata"].get("labels")) and fields_match(field_sel, o)]
        rv = self.store.rv
        if cont:
            try:
                after = json.loads(base64.urlsafe_b64decode(cont.encode()))
            except ValueError:
                raise errors.BadRequest("continue key is not valid: illegal base64 data") from None
            start = (after.get("ns", ""), after.get("name", ""))
            items = [o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start]
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            token = base64.urlsafe_b64encode(json.dumps(
                {"ns": last.get("namespace", ""), "name": last["name"], "rv": rv}).encode()).decode()
            return items[:limit], rv, token, len(items) - limit
        return items, rv, None, 0

    # -- create -------------------------------------------------------------------------------
    def create(self, kind: ResourceKind, namespace: str | None, body: dict, *, manager: str,
               dry_run: bool = False, strict: bool = False, warnings: list[str] | None = None) -> dict:
        """POST. Unknown fields are dropped (their paths appended to `warnings` if given) unless `strict`."""
        obj = self._typed(kind, body)
        meta = obj.setdefault("metadata", {})
        self._check_namespace_field(kind, namespace, meta)
        if strict:
            self._strict_check(kind, obj)
        convert.to_stored(kind, obj)
        if meta.get("resourceVersion"):
            raise errors.BadRequest("resourceVersion should not be set on objects to be created")
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise errors.invalid(kind.kind, "", [{
                    "reason": "FieldValueRequired", "message": "Required value: name or generateName is required",
                    "field": "metadata.name"}], kind.group)
            meta["name"] = self._generate_name(kind, meta.get("namespace", ""), meta["generateName"])
        if kind.namespaced:
            self._check_namespace_open(meta["namespace"])
        for key in _SERVER_META:
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        self._prepare_for_create(kind, obj)
        defaults.apply_defaults(kind, obj)
        causes = validation.validate(kind, obj)
        if causes:
            raise errors.invalid(kind.kind, meta["name"], causes, kind.group)
        key = (kind.group, kind.plural)
        if self.store.get(key, meta.get("namespace", ""), meta["name"]) is not None:
            raise errors.already_exists(kind.plural, meta["name"], kind.group)
        undo = self.allocator.allocate(obj) if kind.plural == "services" else None
        try:
            if kind.plural in _GENERATION_KINDS:
                meta["generation"] = 1
            # What Go's decode/encode round trip leaves of the object (empty omitempty fields gone, ...).
            obj = normalize(kind, obj, warnings)
            obj = ssa.record_update(None, obj, manager=manager, now=now_rfc3339())
            if dry_run:
                if undo:
                    undo()
                return obj
            return self.store.put(key, obj)
        except BaseException:
            if undo:
                undo()
            raise

    # -- update -------------------------------------------------------------------------------
    def update(self, kind: ResourceKind, namespace: str | None, name: str, body: dict, *, sub: str | None = None,
               manager: str, strict: bool = False, dry_run: bool = False,
               warnings: list[str] | None = None) -> tuple[dict, bool]:
        """PUT. Returns (object, created)."""
        body = self._typed(kind, body)
        meta = body.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise _name_mismatch(meta["name"], name)
        meta["name"] = name
        self._check_namespace_field(kind, namespace, meta)
        old = self.store.get((kind.group, kind.plural), namespace or "", name)
        if old is None:
            if sub is None and kind.plural in _CREATE_ON_UPDATE:
                meta.pop("resourceVersion", None)
                return self.create(kind, namespace, body, manager=manager, dry_run=dry_run, strict=strict,
                                   warnings=warnings), True
            raise errors.not_found(kind.plural, name, kind.group)
        if strict and sub is None:
            self._strict_check(kind, body)
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(kind.plural, name, kind.group)
        return self._write_update(kind, old, body, sub=sub, manager=manager, dry_run=dry_run,
                                  warnings=warnings), False

    def _write_update(self, kind: ResourceKind, old: dict, new: dict, *, sub: str | None, manager: str,
                      dry_run: bool = False, applied: bool = False, warnings: list[str] | None = None) -> dict:
        """Merge server-managed state into `new`, validate and store it (unless it is a no-op)."""
        new = convert.to_stored(kind, _copy(new))
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        for key in _SERVER_META:
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["namespace"] = old_meta.get("namespace") if kind.namespaced else meta.pop("namespace", None)
        if not kind.namespaced:
            meta.pop("namespace", None)
        if sub == "status":
            merged = _copy(old)
            merged["status"] = new.get("status", {})
            new = merged
        elif sub == "finalize":
            merged = _copy(old)
            merged.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
            new = merged
        elif sub == "ephemeralcontainers":  # only what `kubectl debug` adds
            merged = _copy(old)
            merged.setdefault("spec", {})["ephemeralContainers"] = (new.get("spec") or {}).get("ephemeralContainers")
            if merged["spec"]["ephemeralContainers"] is None:
                merged["spec"].pop("ephemeralContainers")
            new = merged
        elif kind.plural in _STATUS_SUBRESOURCE:  # main resource or /scale: status is not theirs to write
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if kind.plural == "pods" and sub is None:  # ephemeral containers change through their subresource only
            ecs = (old.get("spec") or {}).get("ephemeralContainers")
            new.setdefault("spec", {}).pop("ephemeralContainers", None)
            if ecs is not None:
                new["spec"]["ephemeralContainers"] = ecs
        if kind.plural == "namespaces" and sub != "finalize":
            new.setdefault("spec", {})["finalizers"] = (old.get("spec") or {}).get("finalizers", [])
        if old_meta.get("deletionTimestamp"):
            # Once marked for deletion, finalizers may only be removed.
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise errors.invalid(kind.kind, old_meta["name"], [{
                    "reason": "FieldValueForbidden", "field": "metadata.finalizers",
                    "message": "Forbidden: no new finalizers can be added if the object is being deleted, found "
                               f"new finalizers {sorted(added)!r}".replace("'", '"')}], kind.group)
        # spec.finalizers of a namespace is defaulted on create only (PrepareForCreate); defaulting must not
        # re-add "kubernetes" on update, or the finalize call could never let a Terminating namespace go.
        ns_finalizers = list(new["spec"]["finalizers"] or []) if kind.plural == "namespaces" else None
        defaults.apply_defaults(kind, new, old)
        workloads.prepare_for_update(kind.plural, new, old)
        if ns_finalizers is not None:
            new["spec"]["finalizers"] = ns_finalizers
        causes = validation.validate(kind, new, old)
        if causes:
            raise errors.invalid(kind.kind, old_meta["name"], causes, kind.group)
        undo = self.allocator.reallocate(old, new) if kind.plural == "services" and sub is None else None
        try:
            new = normalize(kind, new, warnings)
            meta = new["metadata"]
            if kind.plural in _GENERATION_KINDS and new.get("spec") != old.get("spec"):
                meta["generation"] = int(old_meta.get("generation", 1)) + 1
            if not applied:
                new = ssa.record_update(old, new, manager=manager, now=now_rfc3339(), subresource=sub or "")
            if _same_object(old, new):
                if undo:
                    undo()
                return old
            if dry_run:
                if undo:
                    undo()
                return new
            key = (kind.group, kind.plural)
            if self._ready_to_remove(kind, new):
                if kind.plural == "services":
                    self.allocator.release(new)
                return self.store.remove(key, new)
            return self.store.put(key, new, old)
        except BaseException:
            if undo:
                undo()
            raise

    @staticmethod
    def _ready_to_remove(kind: ResourceKind, obj: dict) -> bool:
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp") or meta.get("finalizers"):
            return False
        if kind.plural == "namespaces" and (obj.get("spec") or {}).get("finalizers"):
            return False
        # Like the generic registry's ShouldDeleteDuringUpdate: only an object whose grace period is over (0)
        # goes when its last finalizer does; a pod being deleted gracefully waits for its kubelet's delete.
        return int(meta.get("deletionGracePeriodSeconds") or 0) == 0

    # -- patch --------------------------------------------------------------------------------
    def patch(self, kind: ResourceKind, namespace: str | None, name: str, raw: bytes, content_type: str, *,
              sub: str | None = None, manager: str, force: bool = False, strict: bool = False,
              dry_run: bool = False, warnings: list[str] | None = None) -> tuple[dict, bool]:
        if content_type not in PATCH_TYPES:
            raise errors.UnsupportedMediaType(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{', '.join(PATCH_TYPES)}")
        try:
            body = yaml.safe_load(raw) if content_type == "application/apply-patch+yaml" else orjson.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.BadRequest(f"error decoding patch: {exc}") from None
        key = (kind.group, kind.plural)
        old = self.store.get(key, namespace or "", name)
        if sub == "scale":
            return self._patch_scale(kind, namespace, name, body, content_type, manager=manager), False
        if content_type == "application/apply-patch+yaml":
            return self._apply(kind, namespace, name, old, body, manager=manager, force=force, strict=strict,
                               dry_run=dry_run, sub=sub, warnings=warnings)
        if old is None:
            raise errors.not_found(kind.plural, name, kind.group)
        try:
            if content_type == "application/json-patch+json":
                patched = patch.json_patch(old, body)
            elif content_type == "application/merge-patch+json":
                patched = patch.merge_patch(old, body)
            else:
                patched = patch.strategic_merge_patch(old, body, kind.kind)
        except patch.PatchError as exc:
            raise exc.to_api_error() from None
        meta = patched.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise _name_mismatch(meta["name"], name)
        if strict and sub is None:
            self._strict_check(kind, patched)
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(kind.plural, name, kind.group)
        return self._write_update(kind, old, patched, sub=sub, manager=manager, dry_run=dry_run,
                                  warnings=warnings), False

    def _apply(self, kind: ResourceKind, namespace: str | None, name: str, old: dict | None, body: Any, *,
               manager: str, force: bool, strict: bool, dry_run: bool, sub: str | None,
               warnings: list[str] | None = None) -> tuple[dict, bool]:
        if not isinstance(body, dict):
            raise errors.BadRequest("the body of an apply patch must be an object")
        applied = self._typed(kind, body)
        meta = applied.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise _name_mismatch(meta["name"], name)
        meta["name"] = name
        self._check_namespace_field(kind, namespace, meta)
        if strict:
            self._strict_check(kind, applied)
        if old is None:
            if sub is not None:
                raise errors.not_found(kind.plural, name, kind.group)
            merged = ssa.server_side_apply(None, applied, manager=manager, force=force, kind=kind.kind,
                                           now=now_rfc3339())
            created = self.create(kind, namespace, _strip_server_meta(merged), manager=manager, dry_run=dry_run,
                                  warnings=warnings)
            # create() recorded an Update entry; an applied object is owned by its Apply entry instead.
            created_meta = created["metadata"]
            created_meta["managedFields"] = merged["metadata"].get("managedFields", [])
            return created, True
        merged = ssa.server_side_apply(old, applied, manager=manager, force=force, kind=kind.kind, now=now_rfc3339())
        return self._write_update(kind, old, merged, sub=sub, manager=manager, dry_run=dry_run, applied=True,
                                  warnings=warnings), False

    # -- delete -------------------------------------------------------------------------------
    def delete(self, kind: ResourceKind, namespace: str | None, name: str, opts: dict) -> dict:
        key = (kind.group, kind.plural)
        obj = self.store.get(key, namespace or "", name)
        if obj is None:
            raise errors.not_found(kind.plural, name, kind.group)
        meta = obj["metadata"]
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(kind.plural, name, kind.group,
                                  f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                                  f"{meta.get('uid')}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise errors.conflict(kind.plural, name, kind.group,
                                  f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                                  f"ResourceVersion in object meta: {meta.get('resourceVersion')}")
        policy = opts.get("propagationPolicy")
        if policy is None and opts.get("orphanDependents") is not None:
            policy = "Orphan" if opts["orphanDependents"] else "Background"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise errors.invalid("DeleteOptions", "", [{
                "reason": "FieldValueNotSupported", "field": "propagationPolicy",
                "message": f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan", '
                           f'"nil"'}])
        new = _copy(obj)
        new_meta = new["metadata"]
        finalizers = list(new_meta.get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        if kind.plural == "namespaces":
            if name in _IMMORTAL_NAMESPACES:  # the NamespaceLifecycle admission plugin
                raise errors.Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                                       details={"name": name, "kind": "namespaces"})
            if meta.get("deletionTimestamp"):
                return obj
            new_meta["deletionTimestamp"] = now_rfc3339()
            new_meta["deletionGracePeriodSeconds"] = 0
            new_meta["finalizers"] = finalizers or new_meta.get("finalizers")
            if not new_meta.get("finalizers"):
                new_meta.pop("finalizers", None)
            new.setdefault("status", {})["phase"] = "Terminating"
            if not (new.get("spec") or {}).get("finalizers") and not finalizers:
                return self.store.remove(key, obj)
            return self.store.put(key, new, obj)
        if kind.plural == "pods" and self._graceful(obj, opts):
            grace = opts.get("gracePeriodSeconds")
            if grace is None:
                grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            if meta.get("deletionTimestamp") and grace >= int(meta.get("deletionGracePeriodSeconds") or 0):
                return obj  # already terminating; a longer grace cannot extend it
            when = datetime.now(UTC) + timedelta(seconds=int(grace))
            new_meta["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            new_meta["deletionGracePeriodSeconds"] = int(grace)
            if finalizers:
                new_meta["finalizers"] = finalizers
            return self.store.put(key, new, obj)
        if finalizers:
            grace_left = int(meta.get("deletionGracePeriodSeconds") or 0)
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []) \
                    and grace_left == 0:
                return obj
            new_meta["finalizers"] = finalizers
            if grace_left:  # a graceful deletion cut short (grace 0): its grace is over now
                new_meta["deletionTimestamp"] = now_rfc3339()
                new_meta["deletionGracePeriodSeconds"] = 0
            new_meta.setdefault("deletionTimestamp", now_rfc3339())
            new_meta.setdefault("deletionGracePeriodSeconds", 0)
            return self.store.put(key, new, obj)
        if kind.plural == "services":
            self.allocator.release(obj)
        return self.store.remove(key, obj)

    def _graceful(self, pod: dict, opts: dict) -> bool:
        """Whether a pod's deletion waits for its kubelet: it must be bound to a Ready node and grace > 0."""
        if opts.get("gracePeriodSeconds") == 0:
            return False
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return False
        node = self.store.get(("", "nodes"), "", node_name)
        if node is None:
            return False
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (node.get("status") or {}).get("conditions") or [])

    def delete_collection(self, kind: ResourceKind, namespace: str | None, label_sel: list[Requirement],
                          field_sel: list[FieldRequirement], opts: dict) -> dict:
        items, _, _, _ = self.list(kind, namespace, label_sel, field_sel)
        deleted = []
        for obj in items:
            try:
                deleted.append(self.delete(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"], opts))
            except errors.NotFound:
                continue
        return {"kind": kind.kind_list, "apiVersion": kind.api_version,
                "metadata": {"resourceVersion": str(self.store.rv)},
                "items": [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in deleted]}

    # -- subresources -------------------------------------------------------------------------
    def get_scale(self, kind: ResourceKind, namespace: str | None, name: str) -> dict:
        obj = self.get(kind, namespace, name)
        return _scale_of(obj)

    def put_scale(self, kind: ResourceKind, namespace: str | None, name: str, body: dict, *, manager: str) -> dict:
        obj = self.get(kind, namespace, name)
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv and rv != obj["metadata"]["resourceVersion"]:
            raise errors.conflict(kind.plural, name, kind.group)
        return self._set_replicas(kind, obj, body, manager)

    def _patch_scale(self, kind: ResourceKind, namespace: str | None, name: str, body: Any, content_type: str, *,
                     manager: str) -> dict:
        obj = self.get(kind, namespace, name)
        scale = _scale_of(obj)
        try:
            if content_type == "application/json-patch+json":
                patched = patch.json_patch(scale, body)
            elif content_type == "application/merge-patch+json":
                patched = patch.merge_patch(scale, body)
            else:
                patched = patch.strategic_merge_patch(scale, body, "Scale")
        except patch.PatchError as exc:
            raise exc.to_api_error() from None
        return self._set_replicas(kind, obj, patched, manager)

    def _set_replicas(self, kind: ResourceKind, obj: dict, scale: dict, manager: str) -> dict:
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid("Scale", obj["metadata"]["name"], [{
                "reason": "FieldValueInvalid", "field": "spec.replicas",
                "message": f"Invalid value: {replicas}: must be greater than or equal to 0"}], "autoscaling")
        new = _copy(obj)
        new.setdefault("spec", {})["replicas"] = replicas
        stored = self._write_update(kind, obj, new, sub="scale", manager=manager)
        return _scale_of(stored)

    def bind(self, namespace: str | None, name: str, binding: dict) -> dict:
        """POST pods/<name>/binding: what the scheduler does to place a pod."""
        kind = kinds.BY_PLURAL[("", "pods")]
        pod = self.get(kind, namespace, name)
        target = (binding.get("target") or {}).get("name")
        if not target:
            raise errors.invalid("Binding", name, [{"reason": "FieldValueRequired", "field": "target.name",
                                                     "message": "Required value"}])
        if (pod.get("spec") or {}).get("nodeName"):
            raise errors.conflict("pods", name, "", f"pod {name} is already assigned to node "
                                                    f'"{pod["spec"]["nodeName"]}"')
        new = _copy(pod)
        new["spec"]["nodeName"] = target
        conditions = [c for c in (new.setdefault("status", {}).get("conditions") or []) if c["type"] != "PodScheduled"]
        conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                           "lastTransitionTime": now_rfc3339()})
        new["status"]["conditions"] = conditions
        self.store.put(("", "pods"), new, pod)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _typed(kind: ResourceKind, body: dict) -> dict:
        """Check and fill apiVersion/kind; bodies from the Python client carry neither."""
        obj = _copy(body)
        api_version, obj_kind = obj.get("apiVersion"), obj.get("kind")
        if api_version and api_version != kind.api_version:
            raise errors.BadRequest(f"the API version in the data ({api_version}) does not match the expected API "
                                    f"version ({kind.api_version})")
        if obj_kind and obj_kind != kind.kind:
            raise errors.BadRequest(f"the kind in the data ({obj_kind}) does not match the expected kind "
                                    f"({kind.kind})")
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        if not isinstance(obj.get("metadata", {}), dict):
            raise errors.BadRequest("metadata must be an object")
        return obj

    @staticmethod
    def _check_namespace_field(kind: ResourceKind, namespace: str | None, meta: dict) -> None:
        if not kind.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on the "
                                    "request")
        if not namespace and not meta.get("namespace"):
            raise errors.BadRequest("an empty namespace may not be set during creation")
        meta["namespace"] = namespace or meta["namespace"]

    def _check_namespace_open(self, namespace: str) -> None:
        ns = self.store.get(("", "namespaces"), "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.Forbidden(f"unable to create new content in namespace {namespace} because it is being "
                                   "terminated", details={"name": namespace, "kind": "namespaces"})

    @staticmethod
    def _strict_check(kind: ResourceKind, obj: dict) -> None:
        unknown = schema.unknown_fields(kind, obj)
        if unknown:
            raise errors.BadRequest(schema.strict_error_message(kind, unknown))

    def _generate_name(self, kind: ResourceKind, namespace: str, prefix: str) -> str:
        for _ in range(8):
            name = prefix + "".join(self.rng.choice(_NAME_ALPHABET) for _ in range(_GENERATED_SUFFIX))
            if self.store.get((kind.group, kind.plural), namespace, name) is None:
                return name
        raise errors.already_exists(kind.plural, prefix, kind.group)

    @staticmethod
    def _prepare_for_create(kind: ResourceKind, obj: dict) -> None:
        """Status a new object starts with (PrepareForCreate of each kind's strategy)."""
        if kind.plural == "pods":
            obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj)}
        elif kind.plural in ("deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs"):
            obj["status"] = {}
            workloads.prepare_for_create(kind.plural, obj)
        elif kind.plural == "services":
            obj["status"] = {"loadBalancer": {}}
        elif kind.plural == "namespaces":
            obj["status"] = {"phase": "Active"}


def _qos_class(pod: dict) -> str:
    """BestEffort unless a container sets requests or limits (a coarse GetPodQOS)."""
    containers = (pod.get("spec") or {}).get("containers") or []
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(r.get("limits", {}).get(res) and r.get("requests", r.get("limits", {})).get(res)
                     == r["limits"][res] for r in resources for res in ("cpu", "memory"))
    return "Guaranteed" if guaranteed else "Burstable"


def _scale_of(obj: dict) -> dict:
    meta = obj["metadata"]
    selector = ((obj.get("spec") or {}).get("selector") or {})
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr["operator"]
        if op in ("In", "NotIn"):
            parts.append(f"{expr['key']} {op.lower()} ({','.join(expr.get('values') or [])})")
        elif op == "Exists":
            parts.append(expr["key"])
        else:
            parts.append("!" + expr["key"])
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in meta},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": ",".join(parts)},
    }


def _strip_server_meta(obj: dict) -> dict:
    obj = copy.copy(obj)
    obj["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in _SERVER_META}
    return obj


def _same_object(old: dict, new: dict) -> bool:
    """Equal apart from resourceVersion and managedFields timestamps: a no-op write."""
    def normal(o: dict) -> dict:
        meta = {k: v for k, v in o["metadata"].items() if k not in ("resourceVersion", "managedFields")}
        fields = [{k: v for k, v in e.items() if k != "time"} for e in o["metadata"].get("managedFields") or []]
        return {**o, "metadata": meta, "_fields": fields}
    return normal(old) == normal(new)


def _name_mismatch(body_name: str, url_name: str) -> errors.BadRequest:
    return errors.BadRequest(f"the name of the object ({body_name}) does not match the name on the URL ({url_name})")
