"""API discovery documents: aggregated (apidiscovery.k8s.io/v2, v2beta1) and legacy.

kubectl asks `/api` and `/apis` with an Accept header offering the aggregated
form; it only accepts it when the response Content-Type names it exactly
(see reference/kubectl-contract.md §1). Clients that do not offer it (kubectl
1.28 offers only v2beta1, the Python client none) get the legacy documents.
"""

from __future__ import annotations

from labkit.kinds import ALL_KINDS, ResourceKind, group_versions

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

# Verbs of subresources as the real API server lists them.
_SUB_VERBS = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "log": ["get"],
    "exec": ["create", "get"],
    "eviction": ["create"],
    "binding": ["create"],
    "finalize": ["update"],
}
_SUB_KIND = {
    "scale": ("autoscaling", "v1", "Scale"),
    "eviction": ("policy", "v1", "Eviction"),
    "binding": ("", "v1", "Binding"),
    "exec": ("", "v1", "PodExecOptions"),
    "log": ("", "v1", "Pod"),
}


def negotiate(accept: str) -> str | None:
    """Which aggregated form the client accepts, or None for legacy."""
    if "v=v2;" in accept and "as=APIGroupDiscoveryList" in accept:
        return AGGREGATED_V2
    if "v=v2beta1" in accept and "as=APIGroupDiscoveryList" in accept:
        return AGGREGATED_V2BETA1
    return None


def _aggregated_resource(k: ResourceKind) -> dict:
    res: dict = {
        "resource": k.plural,
        "responseKind": {"group": k.group, "version": k.version, "kind": k.kind},
        "scope": "Namespaced" if k.namespaced else "Cluster",
        "singularResource": k.singular,
        "verbs": list(k.verbs),
    }
    if k.short_names:
        res["shortNames"] = list(k.short_names)
    if k.categories:
        res["categories"] = list(k.categories)
    subs = []
    for sub in k.subresources:
        g, v, kind = _SUB_KIND.get(sub, (k.group, k.version, k.kind))
        subs.append({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": kind},
                     "verbs": _SUB_VERBS.get(sub, ["get"])})
    if subs:
        res["subresources"] = subs
    return res


def aggregated(core: bool, content_type: str) -> dict:
    """The APIGroupDiscoveryList for `/api` (core) or `/apis` (named groups)."""
    version = "v2" if content_type == AGGREGATED_V2 else "v2beta1"
    items = []
    for group, ver in group_versions():
        if (group == "") != core:
            continue
        resources = [_aggregated_resource(k) for k in ALL_KINDS if k.group == group and k.version == ver]
        items.append({"metadata": {"name": group, "creationTimestamp": None},
                      "versions": [{"version": ver, "resources": resources, "freshness": "Current"}]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def legacy_versions(server_address: str) -> dict:
    """`/api`: APIVersions."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def legacy_groups() -> dict:
    """`/apis`: APIGroupList."""
    groups = []
    for group, ver in group_versions():
        if not group:
            continue
        gv = {"groupVersion": f"{group}/{ver}", "version": ver}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def legacy_group(group: str) -> dict | None:
    """`/apis/<group>`: APIGroup."""
    for g, ver in group_versions():
        if g == group and g:
            gv = {"groupVersion": f"{g}/{ver}", "version": ver}
            return {"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [gv], "preferredVersion": gv}
    return None


def legacy_resources(group: str, version: str) -> dict | None:
    """`/api/v1` or `/apis/<g>/<v>`: APIResourceList."""
    kinds = [k for k in ALL_KINDS if k.group == group and k.version == version]
    if not kinds:
        return None
    resources = []
    for k in kinds:
        res = {"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
               "verbs": list(k.verbs)}
        if k.short_names:
            res["shortNames"] = list(k.short_names)
        if k.categories:
            res["categories"] = list(k.categories)
        resources.append(res)
        for sub in k.subresources:
            g, v, kind = _SUB_KIND.get(sub, (k.group, k.version, k.kind))
            entry = {"name": f"{k.plural}/{sub}", "singularName": "", "namespaced": k.namespaced, "kind": kind,
                     "verbs": _SUB_VERBS.get(sub, ["get"])}
            if g != k.group:
                entry["group"] = g
                entry["version"] = v
            resources.append(entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
