"""The resource kinds labkit's embedded API server serves.

One table, read by the API server (routing, discovery, OpenAPI), the client
(URL paths) and the CLI. The values are upstream's: plural, short names,
categories and subresources as `kubectl api-resources` shows them on a real
cluster.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ResourceKind:
    """One REST resource: where it lives and what it is called."""

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )
    list_kind: str = field(default="")
    stored: bool = True  # False for the reviews the API server answers without keeping them (create only)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        """The URL prefix of the group-version: `api/v1` or `apis/apps/v1`."""
        return f"apis/{self.group}/{self.version}" if self.group else f"api/{self.version}"

    @property
    def qualified(self) -> str:
        """`services`, `deployments.apps`: how error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind_list(self) -> str:
        return self.list_kind or f"{self.kind}List"

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        """The URL path of a collection or an object."""
        parts = ["", self.group_version]
        if self.namespaced and namespace:
            parts += ["namespaces", namespace]
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if sub:
                parts.append(sub)
        return "/".join(parts)


_ALL = (
    ResourceKind("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",),
                 subresources=("status", "finalize"),
                 verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    ResourceKind("", "v1", "Node", "nodes", "node", False, ("no",), subresources=("status",)),
    ResourceKind("", "v1", "Pod", "pods", "pod", True, ("po",), ("all",),
                 subresources=("status", "log", "exec", "attach", "portforward", "proxy", "ephemeralcontainers",
                               "eviction", "binding")),
    ResourceKind("", "v1", "Service", "services", "service", True, ("svc",), ("all",),
                 subresources=("status", "proxy"),
                 verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")),
    ResourceKind("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",)),
    ResourceKind("", "v1", "Event", "events", "event", True, ("ev",)),
    ResourceKind("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
    ResourceKind("", "v1", "Secret", "secrets", "secret", True),
    ResourceKind("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, ("sa",)),
    ResourceKind("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",), ("all",),
                 subresources=("scale", "status")),
    ResourceKind("apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, ("rs",), ("all",),
                 subresources=("scale", "status")),
    ResourceKind("apps", "v1", "StatefulSet", "statefulsets", "statefulset", True, ("sts",), ("all",),
                 subresources=("scale", "status")),
    ResourceKind("apps", "v1", "DaemonSet", "daemonsets", "daemonset", True, ("ds",), ("all",),
                 subresources=("status",)),
    ResourceKind("batch", "v1", "Job", "jobs", "job", True, (), ("all",), subresources=("status",)),
    ResourceKind("batch", "v1", "CronJob", "cronjobs", "cronjob", True, ("cj",), ("all",), subresources=("status",)),
    ResourceKind("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True),
    ResourceKind("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", False),
    ResourceKind("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding",
                 False),
    ResourceKind("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
                 False, verbs=("create",), stored=False),
    ResourceKind("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
                 "selfsubjectaccessreview", False, verbs=("create",), stored=False),
    ResourceKind("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
                 "selfsubjectrulesreview", False, verbs=("create",), stored=False),
)

ALL_KINDS: tuple[ResourceKind, ...] = _ALL
BY_PLURAL: dict[tuple[str, str], ResourceKind] = {(k.group, k.plural): k for k in _ALL}
BY_KIND: dict[tuple[str, str], ResourceKind] = {(k.api_version, k.kind): k for k in _ALL}


def lookup(name: str) -> ResourceKind:
    """Find a kind by plural, singular, short name, kind or `plural.group`.

    Raises KeyError with a kubectl-like message for an unknown name.
    """
    wanted = name.lower()
    for k in _ALL:
        names = {k.plural, k.singular, k.kind.lower(), *k.short_names, k.qualified}
        if wanted in names:
            return k
    raise KeyError(f'the server doesn\'t have a resource type "{name}"')


def for_object(obj: dict) -> ResourceKind:
    """The kind of a JSON object, from its apiVersion and kind."""
    try:
        return BY_KIND[(obj["apiVersion"], obj["kind"])]
    except KeyError:
        raise KeyError(f"no kind {obj.get('kind')!r} in {obj.get('apiVersion')!r}") from None


def group_versions() -> list[tuple[str, str]]:
    """Each (group, version) pair served, core first, in discovery order."""
    seen: list[tuple[str, str]] = []
    for k in _ALL:
        if (k.group, k.version) not in seen:
            seen.append((k.group, k.version))
    return seen
