"""Validation causes: upstream's exact texts for the bad inputs kubectl users hit."""

from __future__ import annotations

import copy

import pytest

from labkit.apiserver.defaults import apply_defaults
from labkit.apiserver.validation import validate
from labkit.errors import invalid
from labkit.kinds import lookup

SVC = lookup("svc")
DEPLOY = lookup("deploy")
STS = lookup("sts")
POD = lookup("pod")
NS = lookup("ns")
EP = lookup("ep")
SLICE = lookup("endpointslices")

DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
               "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
               "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                     "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                     "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                         "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                         "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def service(name: str = "nginx", **spec: object) -> dict:
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
           "spec": {"ports": [{"port": 80}], "selector": {"app": "nginx"}, **spec}}
    return obj


def defaulted(kind, obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    apply_defaults(kind, obj)
    return obj


def causes(kind, obj: dict, old: dict | None = None) -> list[tuple[str, str, str]]:
    return [(c["field"], c["reason"], c["message"]) for c in validate(kind, defaulted(kind, obj), old)]


def deployment(selector: dict | None, labels: dict | None, name: str = "nginx") -> dict:
    spec: dict = {"replicas": 1,
                  "template": {"metadata": {"labels": labels} if labels is not None else {},
                               "spec": {"containers": [{"name": "nginx", "image": "nginx:1.19"}]}}}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


# -- Services --------------------------------------------------------------------------------


def test_valid_service_has_no_causes() -> None:
    assert causes(SVC, service()) == []


def test_bad_name_and_no_ports_give_two_causes_and_the_api_servers_message() -> None:
    obj = {"metadata": {"name": "Bad_Name", "namespace": "default"}, "spec": {"selector": {"app": "x"}}}
    got = validate(SVC, defaulted(SVC, obj))
    assert got == [
        {"reason": "FieldValueInvalid", "message": f'Invalid value: "Bad_Name": {DNS1035_MSG}',
         "field": "metadata.name"},
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.ports"},
    ]
    err = invalid("Service", "Bad_Name", got)
    assert err.message == (f'Service "Bad_Name" is invalid: [metadata.name: Invalid value: "Bad_Name": {DNS1035_MSG}, '
                           "spec.ports: Required value]")


def test_name_too_long_and_with_dots() -> None:
    long_name = "a" * 64
    assert causes(SVC, service(long_name)) == [
        ("metadata.name", "FieldValueInvalid", f'Invalid value: "{long_name}": must be no more than 63 characters')]
    got = causes(NS, {"metadata": {"name": "my.ns"}})
    assert got == [("metadata.name", "FieldValueInvalid", 'Invalid value: "my.ns": must not contain dots')]


def test_namespace_and_pod_name_rules() -> None:
    assert causes(NS, {"metadata": {"name": "Team_A"}}) == [
        ("metadata.name", "FieldValueInvalid", f'Invalid value: "Team_A": {DNS1123_LABEL_MSG}')]
    pod = {"metadata": {"name": "Web", "namespace": "default"},
           "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    assert causes(POD, pod) == [
        ("metadata.name", "FieldValueInvalid", f'Invalid value: "Web": {DNS1123_SUBDOMAIN_MSG}')]


def test_headless_and_external_name_services_need_no_ports() -> None:
    headless = {"metadata": {"name": "nginx", "namespace": "default"},
                "spec": {"clusterIP": "None", "selector": {"app": "nginx"}}}
    assert causes(SVC, headless) == []
    ext = {"metadata": {"name": "my-db", "namespace": "default"},
           "spec": {"type": "ExternalName", "externalName": "my.database.example.com"}}
    assert causes(SVC, ext) == []


def test_external_name_rules() -> None:
    missing = {"metadata": {"name": "db", "namespace": "default"}, "spec": {"type": "ExternalName"}}
    assert causes(SVC, missing) == [("spec.externalName", "FieldValueRequired", "Required value")]
    bad = {"metadata": {"name": "db", "namespace": "default"},
           "spec": {"type": "ExternalName", "externalName": "Not_A_Host", "clusterIP": "10.96.0.5"}}
    assert causes(SVC, bad) == [
        ("spec.clusterIPs", "FieldValueForbidden", "Forbidden: may not be set for ExternalName services"),
        ("spec.externalName", "FieldValueInvalid", f'Invalid value: "Not_A_Host": {DNS1123_SUBDOMAIN_MSG}'),
    ]


def test_cluster_ip_none_on_node_port() -> None:
    assert causes(SVC, service(type="NodePort", clusterIP="None")) == [
        ("spec.clusterIPs[0]", "FieldValueInvalid",
         "Invalid value: \"None\": may not be set to 'None' for NodePort services")]


def test_bad_cluster_ip() -> None:
    assert causes(SVC, service(clusterIP="10.96.0.300")) == [
        ("spec.clusterIPs[0]", "FieldValueInvalid",
         'Invalid value: "10.96.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)')]


def test_bad_protocol_lists_supported_values() -> None:
    obj = service()
    obj["spec"]["ports"] = [{"port": 80, "protocol": "HTTP"}]
    assert causes(SVC, obj) == [
        ("spec.ports[0].protocol", "FieldValueNotSupported",
         'Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"')]


def test_duplicate_ports_and_missing_names() -> None:
    obj = service()
    obj["spec"]["ports"] = [{"port": 80}, {"port": 80}]
    assert causes(SVC, obj) == [
        ("spec.ports[0].name", "FieldValueRequired", "Required value"),
        ("spec.ports[1].name", "FieldValueRequired", "Required value"),
        ("spec.ports[1]", "FieldValueDuplicate",
         'Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), Port:80, '
         'TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}'),
    ]
    obj["spec"]["ports"] = [{"name": "http", "port": 80}, {"name": "http", "port": 81}]
    assert causes(SVC, obj) == [("spec.ports[1].name", "FieldValueDuplicate", 'Duplicate value: "http"')]


def test_port_numbers_and_target_port_names() -> None:
    obj = service()
    obj["spec"]["ports"] = [{"port": 70000, "targetPort": "Web--Port"}]
    assert causes(SVC, obj) == [
        ("spec.ports[0].port", "FieldValueInvalid", "Invalid value: 70000: must be between 1 and 65535, inclusive"),
        ("spec.ports[0].targetPort", "FieldValueInvalid",
         'Invalid value: "Web--Port": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)'),
        ("spec.ports[0].targetPort", "FieldValueInvalid",
         'Invalid value: "Web--Port": must not contain consecutive hyphens'),
    ]


def test_node_port_forbidden_on_cluster_ip_and_bad_type_and_affinity() -> None:
    obj = service()
    obj["spec"]["ports"] = [{"port": 80, "nodePort": 30080}]
    assert causes(SVC, obj) == [
        ("spec.ports[0].nodePort", "FieldValueForbidden", "Forbidden: may not be used when `type` is 'ClusterIP'")]
    assert causes(SVC, service(sessionAffinity="Sticky")) == [
        ("spec.sessionAffinity", "FieldValueNotSupported",
         'Unsupported value: "Sticky": supported values: "ClientIP", "None"')]
    got = causes(SVC, service(type="Balancer"))
    assert ("spec.type", "FieldValueNotSupported",
            'Unsupported value: "Balancer": supported values: '
            '"ClusterIP", "ExternalName", "LoadBalancer", "NodePort"') in got


def test_client_ip_affinity_timeout_range() -> None:
    obj = service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}})
    assert causes(SVC, obj) == [
        ("spec.sessionAffinityConfig.clientIP.timeoutSeconds", "FieldValueInvalid",
         "Invalid value: 0: must be greater than 0 and less than 86400")]


def test_selector_label_values_are_checked() -> None:
    assert causes(SVC, service(selector={"app": "my app"})) == [
        ("spec.selector", "FieldValueInvalid",
         "Invalid value: \"my app\": a valid label must be an empty string or consist of alphanumeric characters, "
         "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  "
         "or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")]


def test_cluster_ip_may_not_change_once_set() -> None:
    old = defaulted(SVC, service(clusterIP="10.96.0.20"))
    new = service(clusterIP="10.96.0.21", clusterIPs=["10.96.0.21"])
    assert causes(SVC, new, old) == [
        ("spec.clusterIPs[0]", "FieldValueInvalid", 'Invalid value: []string{"10.96.0.21"}: may not change once set')]
    # A replace that leaves clusterIP out keeps the allocated one (patchAllocatedValues), so it is valid.
    assert causes(SVC, service(), old) == []
    assert validate(SVC, defaulted(SVC, service()), old) == []
    headless_old = defaulted(SVC, service(clusterIP="None"))
    assert causes(SVC, service(clusterIP="10.96.0.9"), headless_old) == [
        ("spec.clusterIPs[0]", "FieldValueInvalid", 'Invalid value: []string{"10.96.0.9"}: may not change once set')]


def test_namespace_is_required_for_namespaced_kinds() -> None:
    obj = service()
    del obj["metadata"]["namespace"]
    assert causes(SVC, obj) == [("metadata.namespace", "FieldValueRequired", "Required value")]
    assert causes(NS, {"metadata": {"name": "x", "namespace": "default"}}) == [
        ("metadata.namespace", "FieldValueForbidden", "Forbidden: not allowed on this type")]


def test_label_keys() -> None:
    obj = service()
    obj["metadata"]["labels"] = {"-bad": "ok"}
    assert causes(SVC, obj) == [
        ("metadata.labels", "FieldValueInvalid",
         "Invalid value: \"-bad\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
         "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
         "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")]


# -- workloads ---------------------------------------------------------------------------------


def test_selector_does_not_match_template_labels() -> None:
    got = causes(DEPLOY, deployment({"matchLabels": {"app": "nginx"}}, {"app": "x"}))
    assert got == [("spec.template.metadata.labels", "FieldValueInvalid",
                    'Invalid value: map[string]string{"app":"x"}: `selector` does not match template `labels`')]


def test_missing_selector() -> None:
    got = causes(DEPLOY, deployment(None, {"app": "push-test"}))
    assert got == [
        ("spec.selector", "FieldValueRequired", "Required value"),
        ("spec.template.metadata.labels", "FieldValueInvalid",
         'Invalid value: map[string]string{"app":"push-test"}: `selector` does not match template `labels`'),
    ]


def test_containers_required_with_name_and_image() -> None:
    obj = deployment({"matchLabels": {"app": "a"}}, {"app": "a"})
    obj["spec"]["template"]["spec"]["containers"] = []
    assert causes(DEPLOY, obj) == [("spec.template.spec.containers", "FieldValueRequired", "Required value")]
    obj["spec"]["template"]["spec"]["containers"] = [{"ports": [{"containerPort": 0}]}]
    assert causes(DEPLOY, obj) == [
        ("spec.template.spec.containers[0].name", "FieldValueRequired", "Required value"),
        ("spec.template.spec.containers[0].image", "FieldValueRequired", "Required value"),
        ("spec.template.spec.containers[0].ports[0].containerPort", "FieldValueRequired", "Required value"),
    ]


def test_negative_replicas() -> None:
    obj = deployment({"matchLabels": {"app": "a"}}, {"app": "a"})
    obj["spec"]["replicas"] = -1
    assert causes(DEPLOY, obj) == [("spec.replicas", "FieldValueInvalid",
                                    "Invalid value: -1: must be greater than or equal to 0")]


def test_deployment_selector_is_immutable() -> None:
    old = defaulted(DEPLOY, deployment({"matchLabels": {"app": "a"}}, {"app": "a", "tier": "web"}))
    new = deployment({"matchLabels": {"tier": "web"}}, {"app": "a", "tier": "web"})
    assert causes(DEPLOY, new, old) == [
        ("spec.selector", "FieldValueInvalid",
         'Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"tier":"web"}, '
         "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable")]


def test_recreate_strategy_with_rolling_update_is_forbidden() -> None:
    obj = defaulted(DEPLOY, deployment({"matchLabels": {"app": "a"}}, {"app": "a"}))
    obj["spec"]["strategy"]["type"] = "Recreate"
    assert [(c["field"], c["message"]) for c in validate(DEPLOY, obj)] == [
        ("spec.strategy.rollingUpdate", "Forbidden: may not be specified when strategy `type` is 'Recreate'")]


def sts(**spec: object) -> dict:
    return {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
                     "template": {"metadata": {"labels": {"app": "nginx"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}, **spec}}


def test_statefulset_spec_updates_are_restricted() -> None:
    old = defaulted(STS, sts())
    assert causes(STS, sts(replicas=3), old) == []
    assert causes(STS, sts(serviceName="other"), old) == [
        ("spec", "FieldValueForbidden",
         "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
         "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
         "are forbidden")]


def test_pod_spec_is_mostly_immutable() -> None:
    pod = {"metadata": {"name": "web", "namespace": "default"},
           "spec": {"containers": [{"name": "web", "image": "nginx:1.19", "ports": [{"containerPort": 80}]}]}}
    old = defaulted(POD, pod)
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.20"
    assert validate(POD, new, old) == []
    new["spec"]["containers"][0]["ports"][0]["containerPort"] = 8080
    got = validate(POD, new, old)
    assert [c["field"] for c in got] == ["spec"]
    assert got[0]["message"].startswith("Forbidden: pod updates may not change fields other than "
                                        "`spec.containers[*].image`,")


# -- Endpoints and EndpointSlices ---------------------------------------------------------------


def test_endpoints_addresses_must_be_valid_ips() -> None:
    obj = {"metadata": {"name": "my-db", "namespace": "default"},
           "subsets": [{"addresses": [{"ip": "203.0.113.10"}, {"ip": "db.example"}, {"ip": "127.0.0.1"}],
                        "ports": [{"port": 5432}]}]}
    assert causes(EP, obj) == [
        ("subsets[0].addresses[1].ip", "FieldValueInvalid",
         'Invalid value: "db.example": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'),
        ("subsets[0].addresses[1].ip", "FieldValueInvalid", 'Invalid value: "db.example": must be a valid IP address'),
        ("subsets[0].addresses[2].ip", "FieldValueInvalid",
         'Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)'),
    ]


def test_endpoint_slice_rules() -> None:
    obj = {"metadata": {"name": "my-db-1", "namespace": "default"}, "addressType": "IPv4",
           "endpoints": [{"addresses": ["203.0.113.10"]}, {"addresses": ["2001:db8::1"]}],
           "ports": [{"name": "pg", "port": 5432}]}
    assert causes(SLICE, obj) == [
        ("endpoints[1].addresses[0]", "FieldValueInvalid",
         'Invalid value: "2001:db8::1": must be a valid IPv4 address')]
    old = defaulted(SLICE, {**obj, "endpoints": []})
    changed = {**obj, "addressType": "IPv6", "endpoints": []}
    assert causes(SLICE, changed, old) == [
        ("addressType", "FieldValueInvalid", 'Invalid value: "IPv6": field is immutable')]


# -- robustness (bench_apiserver.py times defaulting and validating) -----------------------------------


@pytest.mark.parametrize("kind", [SVC, DEPLOY, STS, POD, NS, EP, SLICE])
def test_garbage_shapes_do_not_crash(kind) -> None:
    for body in ({}, {"metadata": None, "spec": "x"}, {"metadata": {"name": 5}, "spec": {"ports": "x"}}):
        obj = copy.deepcopy(body)
        apply_defaults(kind, obj)
        assert isinstance(validate(kind, obj), list)
