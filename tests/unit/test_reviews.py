"""SelfSubjectReview / SelfSubjectAccessReview / SelfSubjectRulesReview answers for labkit's two identities."""

from __future__ import annotations

from labkit.apiserver import protobuf, reviews


def _ssar(verb: str, resource: str, subresource: str = "") -> dict:
    return {"spec": {"resourceAttributes": {"namespace": "default", "verb": verb, "resource": resource,
                                            "subresource": subresource}}}


def test_admin_may_do_anything_with_rbacs_reason() -> None:
    out = reviews.review("SelfSubjectAccessReview", "authorization.k8s.io/v1", _ssar("create", "pods"),
                         "kubernetes-admin", False)
    assert out["status"] == {"allowed": True, "reason": 'RBAC: allowed by ClusterRoleBinding "kubeadm:cluster-admins"'
                             ' of ClusterRole "cluster-admin" to Group "kubeadm:cluster-admins"'}
    assert out["spec"] == _ssar("create", "pods")["spec"]


def test_pod_token_reads_only() -> None:
    user = "system:serviceaccount:kube-system:default"
    allowed = {(verb, sub): reviews.review("SelfSubjectAccessReview", "authorization.k8s.io/v1",
                                           _ssar(verb, "pods", sub), user, True)["status"]["allowed"]
               for verb, sub in (("get", ""), ("list", ""), ("watch", ""), ("create", ""), ("delete", ""),
                                 ("create", "exec"), ("get", "log"))}
    assert allowed == {("get", ""): True, ("list", ""): True, ("watch", ""): True, ("create", ""): False,
                       ("delete", ""): False, ("create", "exec"): False, ("get", "log"): True}
    who = reviews.review("SelfSubjectReview", "authentication.k8s.io/v1", {}, user, True)
    assert who["status"]["userInfo"] == {"username": user, "groups": [
        "system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]}
    rules = reviews.review("SelfSubjectRulesReview", "authorization.k8s.io/v1", {"spec": {"namespace": "x"}},
                           user, True)["status"]
    assert rules["resourceRules"] == [{"verbs": ["get", "list", "watch"], "apiGroups": ["*"], "resources": ["*"]}]


def test_kubectl_protobuf_review_decodes() -> None:
    # The body kubectl 1.32 sends for `kubectl auth can-i create pods` (its field numbers).
    def msg(*fields: tuple[int, bytes | str]) -> bytes:
        out = b""
        for number, value in fields:
            data = value.encode() if isinstance(value, str) else value
            out += bytes([number << 3 | 2, len(data)]) + data
        return out
    attrs = msg((1, "default"), (2, "create"), (5, "pods"))
    raw = msg((1, b""), (2, msg((1, attrs))), (3, b""))
    body = protobuf.MAGIC + msg((1, msg((1, "authorization.k8s.io/v1"), (2, "SelfSubjectAccessReview"))), (2, raw))
    decoded = protobuf.decode(body)
    assert decoded["spec"] == {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}}
