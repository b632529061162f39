"""ClusterRole and ClusterRoleBinding (rbac.authorization.k8s.io/v1): defaults and validation as upstream's.

Served so that manifests granting a component its minimal RBAC (the labkit agent's, docker/manifests/) apply here
as on kind. The embedded API server stores them and does not enforce them: its admin may do anything and the pods'
token may only read (labkit.apiserver.reviews).

Upstream: pkg/apis/rbac/v1/defaults.go (SetDefaults_ClusterRoleBinding, SetDefaults_Subject),
pkg/apis/rbac/validation/validation.go (ValidateClusterRole, ValidatePolicyRule, ValidateClusterRoleBinding,
ValidateRoleBindingSubject, ValidateClusterRoleBindingUpdate), apimachinery's path.IsValidPathSegmentName.
"""

from __future__ import annotations

from typing import Any

from labkit.apiserver.validation import (
    Cause,
    GoValue,
    _d,
    _l,
    _s,
    invalid,
    name_is_dns_subdomain,
    not_supported,
    required,
    validate_object_meta,
    validate_object_meta_update,
)

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


# -- defaults -------------------------------------------------------------------------------------------------

def default_cluster_role_binding(obj: dict) -> None:
    role_ref = obj.get("roleRef")
    if isinstance(role_ref, dict) and not role_ref.get("apiGroup"):
        role_ref["apiGroup"] = GROUP
    for subject in _l(obj.get("subjects")):
        if isinstance(subject, dict) and not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = GROUP  # a ServiceAccount's stays ""


# -- validation -----------------------------------------------------------------------------------------------

def path_segment_name(name: str, prefix: bool) -> list[str]:
    """A name that is safe as one URL path segment (RBAC objects' only name rule)."""
    if not prefix and name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def _policy_rule(rule: Any, field: str) -> list[Cause]:
    rule = _d(rule)
    errs: list[Cause] = []
    if not _l(rule.get("verbs")):
        errs.append(required(f"{field}.verbs", "verbs must contain at least one value"))
    urls = _l(rule.get("nonResourceURLs"))
    if urls:
        if _l(rule.get("apiGroups")) or _l(rule.get("resources")) or _l(rule.get("resourceNames")):
            errs.append(invalid(f"{field}.nonResourceURLs", _go_strings(urls),
                                "rules cannot apply to both regular resources and non-resource URLs"))
        return errs
    if not _l(rule.get("apiGroups")):
        errs.append(required(f"{field}.apiGroups", "resource rules must supply at least one api group"))
    if not _l(rule.get("resources")):
        errs.append(required(f"{field}.resources", "resource rules must supply at least one resource"))
    return errs


def _go_strings(values: list) -> GoValue:
    return GoValue("[]string{" + ", ".join(f'"{_s(v)}"' for v in values) + "}")


def validate_cluster_role(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
    errs += validate_object_meta(obj.get("metadata"), False, path_segment_name)
    for i, rule in enumerate(_l(obj.get("rules"))):
        errs += _policy_rule(rule, f"rules[{i}]")
    aggregation = obj.get("aggregationRule")
    if aggregation is not None and not _l(_d(aggregation).get("clusterRoleSelectors")):
        errs.append(required("aggregationRule.clusterRoleSelectors",
                             "at least one clusterRoleSelector required if aggregationRule is non-nil"))
    return errs


def _subject(subject: Any, field: str) -> list[Cause]:
    subject = _d(subject)
    errs: list[Cause] = []
    name, kind, group = _s(subject.get("name")), _s(subject.get("kind")), _s(subject.get("apiGroup"))
    if not name:
        errs.append(required(f"{field}.name"))
    if kind == "ServiceAccount":
        if name:
            errs += [invalid(f"{field}.name", name, m) for m in name_is_dns_subdomain(name, False)]
        if group:
            errs.append(not_supported(f"{field}.apiGroup", group, [""]))
        if not _s(subject.get("namespace")):  # a ClusterRoleBinding's subjects are in no namespace of their own
            errs.append(required(f"{field}.namespace"))
    elif kind in ("User", "Group"):
        if group != GROUP:
            errs.append(not_supported(f"{field}.apiGroup", group, [GROUP]))
    else:
        errs.append(not_supported(f"{field}.kind", kind, SUBJECT_KINDS))
    return errs


def _role_ref_value(ref: dict) -> GoValue:
    return GoValue(f'rbac.RoleRef{{APIGroup:"{_s(ref.get("apiGroup"))}", Kind:"{_s(ref.get("kind"))}", '
                   f'Name:"{_s(ref.get("name"))}"}}')


def validate_cluster_role_binding(obj: dict, old: dict | None) -> list[Cause]:
    errs: list[Cause] = []
    ref = _d(obj.get("roleRef"))
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), old.get("metadata"))
        if ref != _d(old.get("roleRef")):
            errs.append(invalid("roleRef", _role_ref_value(ref), "cannot change roleRef"))
    errs += validate_object_meta(obj.get("metadata"), False, path_segment_name)
    if _s(ref.get("apiGroup")) != GROUP:
        errs.append(not_supported("roleRef.apiGroup", _s(ref.get("apiGroup")), [GROUP]))
    if _s(ref.get("kind")) != "ClusterRole":
        errs.append(not_supported("roleRef.kind", _s(ref.get("kind")), ["ClusterRole"]))
    name = _s(ref.get("name"))
    if not name:
        errs.append(required("roleRef.name"))
    else:
        errs += [invalid("roleRef.name", name, m) for m in path_segment_name(name, False)]
    for i, subject in enumerate(_l(obj.get("subjects"))):
        errs += _subject(subject, f"subjects[{i}]")
    return errs
