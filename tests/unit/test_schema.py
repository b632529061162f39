"""Strict field checks and the OpenAPI v3 documents kubectl reads."""

from __future__ import annotations

import hashlib
import json

import pytest

from labkit.apiserver import openapi
from labkit.apiserver.schema import FieldType, parse_type, strict_error_message, unknown_fields
from labkit.kinds import ALL_KINDS, lookup

SVC = lookup("svc")
DEPLOY = lookup("deploy")


def test_type_strings_of_old_and_new_clients_parse_alike() -> None:
    assert parse_type("List[V1Container]") == parse_type("list[V1Container]") == \
        FieldType("list", item=FieldType("model", "V1Container"))
    assert parse_type("Dict[str, str]") == parse_type("dict(str, str)") == \
        FieldType("map", item=FieldType("prim", "str"))
    assert parse_type("object") == FieldType("any")


def test_a_valid_manifest_has_no_unknown_fields() -> None:
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "nginx", "labels": {"any-key": "v"}, "annotations": {"a/b": "c"},
                        "creationTimestamp": None},
           "spec": {"ports": [{"port": 80, "targetPort": "http", "protocol": "TCP"}], "selector": {"app": "x"},
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}},
           "status": {"loadBalancer": {}}}
    assert unknown_fields(SVC, svc) == []
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
                       "template": {"spec": {"containers": [{"name": "a", "image": "b",
                                                             "resources": {"limits": {"cpu": "1"}},
                                                             "readinessProbe": {"httpGet": {"port": 80}}}]}}}}
    assert unknown_fields(DEPLOY, deploy) == []


def test_unknown_fields_are_named_like_the_strict_decoder_names_them() -> None:
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "app": "y"},
              "spec": {"replicas": 1, "foo": {"bar": 1},
                       "template": {"spec": {"containers": [{"name": "a", "image": "b"},
                                                            {"name": "c", "imagee": "d",
                                                             "ports": [{"containerport": 80}]}]}}}}
    assert unknown_fields(DEPLOY, deploy) == [
        "metadata.app", "spec.foo", "spec.template.spec.containers[1].imagee",
        "spec.template.spec.containers[1].ports[0].containerport"]
    # Field names are case-sensitive, as in sigs.k8s.io/json.
    assert unknown_fields(SVC, {"spec": {"Type": "NodePort", "ports": [{"port": 80, "targetport": 80}]}}) == [
        "spec.Type", "spec.ports[0].targetport"]


def test_every_kind_has_a_schema() -> None:
    for kind in ALL_KINDS:
        assert unknown_fields(kind, {"apiVersion": kind.api_version, "kind": kind.kind,
                                     "metadata": {"name": "x"}, "bogus": 1}) == ["bogus"]


def test_strict_error_message() -> None:
    assert strict_error_message(SVC, ["spec.foo"]) == (
        'Service in version "v1" cannot be handled as a Service: strict decoding error: unknown field "spec.foo"')
    assert strict_error_message(DEPLOY, ["spec.ports[0].ports", "spec.x"]) == (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.ports[0].ports", unknown field "spec.x"')


# -- OpenAPI ----------------------------------------------------------------------------------------


def test_index_lists_every_group_version_with_the_hash_of_its_document() -> None:
    index = openapi.openapi_v3_index()
    gvs = {k.group_version for k in ALL_KINDS}
    assert set(index["paths"]) == gvs
    for gv, entry in index["paths"].items():
        url = entry["serverRelativeURL"]
        path, _, query = url.partition("?hash=")
        assert path == f"/openapi/v3/{gv}"
        body = openapi.openapi_v3_document_bytes(gv)
        assert body is not None
        assert query == hashlib.sha512(body).hexdigest().upper()
        assert json.loads(body) == openapi.openapi_v3_document(gv)
    assert openapi.openapi_v3_document("apis/policy/v1") is None
    assert openapi.openapi_v2() is None


def _patch_ops(doc: dict, kind) -> list[dict]:
    """The PATCH operations kubectl's query-param verifier would match for this kind."""
    gvk = {"group": kind.group, "version": kind.version, "kind": kind.kind}
    return [item["patch"] for item in doc["paths"].values()
            if "patch" in item and item["patch"]["x-kubernetes-group-version-kind"] == gvk]


@pytest.mark.parametrize("kind", [k for k in ALL_KINDS if "patch" in k.verbs], ids=lambda k: k.kind)
def test_each_kind_has_a_patch_operation_with_field_validation(kind) -> None:
    doc = openapi.openapi_v3_document(kind.group_version)
    assert doc is not None and doc["openapi"].startswith("3.")
    ops = _patch_ops(doc, kind)
    assert ops
    for op in ops:
        assert {"name": "fieldValidation", "in": "query"}.items() <= next(
            p for p in op["parameters"] if p["name"] == "fieldValidation").items()


def test_schemas_carry_gvk_refs_and_patch_metadata() -> None:
    doc = openapi.openapi_v3_document("api/v1")
    assert doc is not None
    schemas = doc["components"]["schemas"]
    svc = schemas["io.k8s.api.core.v1.Service"]
    assert svc["x-kubernetes-group-version-kind"] == [{"group": "", "version": "v1", "kind": "Service"}]
    assert svc["properties"]["spec"]["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ServiceSpec"}]
    assert svc["properties"]["metadata"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]
    ports = schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]
    assert (ports["x-kubernetes-patch-merge-key"], ports["x-kubernetes-patch-strategy"]) == ("port", "merge")
    target = schemas["io.k8s.api.core.v1.ServicePort"]["properties"]["targetPort"]
    assert target["allOf"] == [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}]
    int_or_string = schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert "type" not in int_or_string  # so that `kubectl explain` prints <IntOrString>
    assert int_or_string["oneOf"] == [{"type": "integer"}, {"type": "string"}]
    affinity = schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["sessionAffinity"]
    assert affinity["enum"] == ["ClientIP", "None"]
    assert affinity["description"].endswith('\n\nPossible enum values:\n - `"ClientIP"` is the Client IP based.\n'
                                            ' - `"None"` - no session affinity.')
    assert "port" in schemas["io.k8s.api.core.v1.ServicePort"].get("required", [])
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    # Every $ref resolves inside the document.
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in schemas, ref


def test_apps_document_names_types_by_group() -> None:
    doc = openapi.openapi_v3_document("apis/apps/v1")
    assert doc is not None
    schemas = doc["components"]["schemas"]
    assert "io.k8s.api.apps.v1.DeploymentSpec" in schemas
    assert "io.k8s.api.core.v1.PodTemplateSpec" in schemas
    assert schemas["io.k8s.api.autoscaling.v1.Scale"]["x-kubernetes-group-version-kind"] == [
        {"group": "autoscaling", "kind": "Scale", "version": "v1"}]
    scale_patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale_patch["x-kubernetes-group-version-kind"]["kind"] == "Scale"
