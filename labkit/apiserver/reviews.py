"""The review kinds kube-apiserver answers without storing anything: who the caller is and what it may do.

- `SelfSubjectReview` (authentication.k8s.io, `kubectl auth whoami`): the caller's user info.
- `SelfSubjectAccessReview` (authorization.k8s.io, `kubectl auth can-i VERB RESOURCE`): whether the caller may.
- `SelfSubjectRulesReview` (authorization.k8s.io, `kubectl auth can-i --list`): what the caller may, as rules.

labkit has two identities (the tokens of labkit.pki): the kubeconfig's `kubernetes-admin`, in kind's admin
group `kubeadm:cluster-admins` bound to `cluster-admin`, who may do anything; and the token every pod gets,
which reads (get, list, watch) and nothing else — what the API server enforces (server.py refuses its writes and
exec). The answers say exactly that, with RBAC's wording for the admin's reason.
"""

from __future__ import annotations

from typing import Any

ADMIN_GROUP = "kubeadm:cluster-admins"
READ_VERBS = ("get", "list", "watch")
_ADMIN_REASON = (f'RBAC: allowed by ClusterRoleBinding "{ADMIN_GROUP}" of ClusterRole "cluster-admin" to Group '
                 f'"{ADMIN_GROUP}"')
_WRITE_SUBRESOURCES = {"exec", "attach", "portforward", "proxy", "binding", "eviction"}


def groups_of(user: str, readonly: bool) -> list[str]:
    """The groups an authenticated user is in (the token authenticator's view)."""
    if user.startswith("system:serviceaccount:"):
        namespace = user.split(":")[2]
        return ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    return [ADMIN_GROUP, "system:authenticated"] if not readonly else ["system:authenticated"]


def _allowed(readonly: bool, verb: str, subresource: str) -> bool:
    if not readonly:
        return True
    return verb in READ_VERBS and subresource not in _WRITE_SUBRESOURCES


def review(kind: str, api_version: str, body: dict[str, Any], user: str, readonly: bool) -> dict[str, Any]:
    """The answer to a POSTed review of `kind`: the request with its status filled in."""
    out: dict[str, Any] = {"kind": kind, "apiVersion": api_version,
                           "metadata": {**(body.get("metadata") or {}), "creationTimestamp": None}}
    spec = body.get("spec") or {}
    if kind == "SelfSubjectReview":
        out["status"] = {"userInfo": {"username": user, "groups": groups_of(user, readonly)}}
        return out
    out["spec"] = spec
    if kind == "SelfSubjectAccessReview":
        attrs = spec.get("resourceAttributes")
        if attrs is not None:
            allowed = _allowed(readonly, attrs.get("verb", ""), attrs.get("subresource", ""))
        else:
            allowed = _allowed(readonly, (spec.get("nonResourceAttributes") or {}).get("verb", ""), "")
        out["status"] = {"allowed": allowed}
        if allowed and not readonly:
            out["status"]["reason"] = _ADMIN_REASON
        return out
    # SelfSubjectRulesReview
    verbs = ["*"] if not readonly else list(READ_VERBS)
    out["status"] = {
        "resourceRules": [{"verbs": verbs, "apiGroups": ["*"], "resources": ["*"]}],
        "nonResourceRules": [{"verbs": ["*"] if not readonly else ["get"], "nonResourceURLs": ["*"]}],
        "incomplete": False,
    }
    return out
