"""ClusterRole and ClusterRoleBinding: upstream's defaults and validation messages (pkg/apis/rbac/validation)."""

from __future__ import annotations

from labkit.apiserver import rbac
from labkit.apiserver.defaults import apply_defaults
from labkit.apiserver.validation import validate
from labkit.kinds import lookup

ROLE, BINDING = lookup("clusterroles"), lookup("clusterrolebindings")


def messages(causes: list[dict]) -> list[str]:
    return [f"{c['field']}: {c['message']}" for c in causes]


def role(*rules: dict, name: str = "reader") -> dict:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
            "rules": list(rules)}


def binding(ref: dict, *subjects: dict, name: str = "b") -> dict:
    obj = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
           "roleRef": ref, "subjects": list(subjects)}
    apply_defaults(BINDING, obj)
    return obj


def test_both_kinds_are_cluster_scoped_and_found_by_kubectls_names() -> None:
    assert not ROLE.namespaced and not BINDING.namespaced
    assert lookup("clusterroles.rbac.authorization.k8s.io") is ROLE


def test_a_policy_rule_needs_verbs_groups_and_resources_or_only_urls() -> None:
    assert validate(ROLE, role({"verbs": ["get"], "apiGroups": [""], "resources": ["services"]})) == []
    assert validate(ROLE, role({"verbs": ["get"], "nonResourceURLs": ["/healthz"]})) == []
    assert messages(validate(ROLE, role({}))) == [
        "rules[0].verbs: Required value: verbs must contain at least one value",
        "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        "rules[0].resources: Required value: resource rules must supply at least one resource"]
    assert messages(validate(ROLE, role({"verbs": ["get"], "nonResourceURLs": ["/x"], "resources": ["pods"]}))) == [
        'rules[0].nonResourceURLs: Invalid value: []string{"/x"}: rules cannot apply to both regular resources and '
        "non-resource URLs"]
    assert messages(validate(ROLE, role(name="a/b"))) == ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
    assert messages(validate(ROLE, {**role(), "aggregationRule": {}})) == [
        "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if "
        "aggregationRule is non-nil"]


def test_a_binding_gets_upstreams_defaults_and_checks() -> None:
    ok = binding({"kind": "ClusterRole", "name": "reader"}, {"kind": "ServiceAccount", "name": "agent",
                                                              "namespace": "kube-system"},
                 {"kind": "User", "name": "alice"})
    assert ok["roleRef"]["apiGroup"] == rbac.GROUP
    assert ok["subjects"][1]["apiGroup"] == rbac.GROUP and "apiGroup" not in ok["subjects"][0]
    assert validate(BINDING, ok) == []
    bad = binding({"kind": "Role", "name": ""}, {"kind": "ServiceAccount", "name": "Agent"},
                  {"kind": "Robot", "name": "r2"}, {"kind": "Group", "name": "g", "apiGroup": "x"})
    assert messages(validate(BINDING, bad)) == [
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
        "roleRef.name: Required value",
        'subjects[0].name: Invalid value: "Agent": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
        "[a-z0-9])?)*')",
        "subjects[0].namespace: Required value",
        'subjects[1].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"',
        'subjects[2].apiGroup: Unsupported value: "x": supported values: "rbac.authorization.k8s.io"']


def test_a_bindings_role_cannot_change() -> None:
    old = binding({"kind": "ClusterRole", "name": "reader"})
    new = binding({"kind": "ClusterRole", "name": "edit"})
    assert messages(validate(BINDING, new, old)) == [
        'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", '
        'Name:"edit"}: cannot change roleRef']
