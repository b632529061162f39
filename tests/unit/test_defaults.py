"""Defaulting: the objects kubectl sends come back as a real 1.32 cluster shows them."""

from __future__ import annotations

import copy

from labkit.apiserver.defaults import apply_defaults
from labkit.apiserver.validation import validate
from labkit.kinds import lookup

SVC = lookup("svc")
DEPLOY = lookup("deploy")
POD = lookup("pod")
STS = lookup("sts")
RS = lookup("rs")
NS = lookup("ns")
EP = lookup("ep")
SLICE = lookup("endpointslices")

# `kubectl expose deploy nginx --port=80 --target-port=80` (kubectl-contract.md §2), namespace set by the server.
EXPOSE_BODY = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"creationTimestamp": None, "labels": {"app": "nginx"}, "name": "nginx",
                            "namespace": "default"},
               "spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}], "selector": {"app": "nginx"}},
               "status": {"loadBalancer": {}}}

# `kubectl create deploy nginx --image=nginx:1.19`, decoded from its protobuf body (§3).
CREATE_DEPLOY_BODY = {"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "nginx", "labels": {"app": "nginx"}, "namespace": "default"},
                      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "nginx"}},
                               "template": {"metadata": {"labels": {"app": "nginx"}},
                                            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.19",
                                                                     "resources": {}}]}},
                               "strategy": {}}}

CONTAINER_DEFAULTS = {"imagePullPolicy": "IfNotPresent", "resources": {},
                      "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
POD_SPEC_DEFAULTS = {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                     "securityContext": {}, "terminationGracePeriodSeconds": 30}


def defaulted(kind, body: dict) -> dict:
    obj = copy.deepcopy(body)
    apply_defaults(kind, obj)
    return obj


def test_expose_body_gets_the_service_defaults_a_cluster_shows() -> None:
    obj = defaulted(SVC, EXPOSE_BODY)
    assert obj["spec"] == {
        "internalTrafficPolicy": "Cluster",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
        "selector": {"app": "nginx"},
        "sessionAffinity": "None",
        "type": "ClusterIP",
    }
    assert obj["status"] == {"loadBalancer": {}}
    assert validate(SVC, obj) == []


def test_target_port_and_protocol_default_from_port() -> None:
    obj = defaulted(SVC, {"metadata": {"name": "a"},
                          "spec": {"ports": [{"port": 8080}, {"port": 53, "targetPort": 0}]}})
    assert obj["spec"]["ports"] == [{"port": 8080, "protocol": "TCP", "targetPort": 8080},
                                    {"port": 53, "protocol": "TCP", "targetPort": 53}]


def test_node_port_service_gets_external_traffic_policy() -> None:
    obj = defaulted(SVC, {"metadata": {"name": "a"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
    assert obj["spec"]["externalTrafficPolicy"] == "Cluster"
    assert obj["spec"]["internalTrafficPolicy"] == "Cluster"
    cluster_ip = defaulted(SVC, {"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}})
    assert "externalTrafficPolicy" not in cluster_ip["spec"]


def test_client_ip_affinity_timeout_and_none_affinity_drops_config() -> None:
    obj = defaulted(SVC, {"metadata": {"name": "a"}, "spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}})
    assert obj["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    obj = defaulted(SVC, {"metadata": {"name": "a"},
                          "spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}},
                                   "ports": [{"port": 80}]}})
    assert "sessionAffinityConfig" not in obj["spec"]


def test_headless_and_external_name_ip_families() -> None:
    headless = defaulted(SVC, {"metadata": {"name": "a"}, "spec": {"clusterIP": "None", "selector": {"app": "a"}}})
    assert headless["spec"]["clusterIPs"] == ["None"]
    assert (headless["spec"]["ipFamilies"], headless["spec"]["ipFamilyPolicy"]) == (["IPv4"], "SingleStack")
    selectorless = defaulted(SVC, {"metadata": {"name": "a"}, "spec": {"clusterIP": "None"}})
    assert selectorless["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    ext = defaulted(SVC, {"metadata": {"name": "db"},
                          "spec": {"type": "ExternalName", "externalName": "my.database.example.com"}})
    assert ext["spec"] == {"type": "ExternalName", "externalName": "my.database.example.com",
                           "sessionAffinity": "None"}


def test_service_update_keeps_allocated_values() -> None:
    old = defaulted(SVC, {"metadata": {"name": "a", "namespace": "default"},
                          "spec": {"type": "NodePort", "ports": [{"port": 80}]}})
    old["spec"].update(clusterIP="10.96.0.20", clusterIPs=["10.96.0.20"])
    old["spec"]["ports"][0]["nodePort"] = 30080
    new = {"metadata": {"name": "a", "namespace": "default"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    apply_defaults(SVC, new, old)
    assert new["spec"]["clusterIP"] == "10.96.0.20"
    assert new["spec"]["clusterIPs"] == ["10.96.0.20"]
    assert new["spec"]["ports"][0]["nodePort"] == 30080
    assert validate(SVC, new, old) == []
    # Switching to ClusterIP drops the untouched nodePort and externalTrafficPolicy.
    back = copy.deepcopy(old)
    back["spec"]["type"] = "ClusterIP"
    apply_defaults(SVC, back, old)
    assert "nodePort" not in back["spec"]["ports"][0]
    assert "externalTrafficPolicy" not in back["spec"]
    assert validate(SVC, back, old) == []


def test_create_deploy_body_gets_the_deployment_defaults_a_cluster_shows() -> None:
    obj = defaulted(DEPLOY, CREATE_DEPLOY_BODY)
    assert obj["spec"] == {
        "progressDeadlineSeconds": 600,
        "replicas": 1,
        "revisionHistoryLimit": 10,
        "selector": {"matchLabels": {"app": "nginx"}},
        "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
        "template": {
            "metadata": {"creationTimestamp": None, "labels": {"app": "nginx"}},
            "spec": {"containers": [{"image": "nginx:1.19", "name": "nginx", **CONTAINER_DEFAULTS}],
                     **POD_SPEC_DEFAULTS},
        },
    }
    assert validate(DEPLOY, obj) == []


def test_image_pull_policy() -> None:
    images = {"nginx": "Always", "nginx:latest": "Always", "nginx:1.19": "IfNotPresent",
              "localhost:5000/nginx": "Always", "registry.k8s.io/e2e-test-images/agnhost:2.39": "IfNotPresent",
              "nginx@sha256:" + "0" * 64: "IfNotPresent"}
    for image, policy in images.items():
        pod = defaulted(POD, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": image}]}})
        assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy, image


def test_pod_gets_admission_and_probe_defaults() -> None:
    body = {"metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.19", "ports": [{"containerPort": 80}],
                                     "readinessProbe": {"httpGet": {"port": 80}}}]}}
    pod = defaulted(POD, body)
    spec = pod["spec"]
    assert {k: spec[k] for k in POD_SPEC_DEFAULTS} == POD_SPEC_DEFAULTS
    assert spec["enableServiceLinks"] is True
    assert (spec["serviceAccountName"], spec["serviceAccount"]) == ("default", "default")
    assert (spec["priority"], spec["preemptionPolicy"]) == (0, "PreemptLowerPriority")
    assert spec["tolerations"] == [
        {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists",
         "tolerationSeconds": 300},
        {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists",
         "tolerationSeconds": 300},
    ]
    c = spec["containers"][0]
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["readinessProbe"] == {"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"}, "failureThreshold": 3,
                                   "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1}
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert validate(POD, pod) == []
    # Defaulting twice changes nothing (updates run it again).
    again = copy.deepcopy(pod)
    apply_defaults(POD, again)
    assert again == pod


def test_limits_become_requests_and_qos() -> None:
    pod = defaulted(POD, {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "x:1", "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}}]}})
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    assert pod["status"]["qosClass"] == "Guaranteed"


def test_statefulset_and_replicaset_defaults() -> None:
    body = {"metadata": {"name": "web"},
            "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
                     "template": {"metadata": {"labels": {"app": "nginx"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}}
    sts = defaulted(STS, body)["spec"]
    assert sts["podManagementPolicy"] == "OrderedReady"
    assert sts["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sts["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert (sts["replicas"], sts["revisionHistoryLimit"]) == (1, 10)
    assert sts["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    rs = defaulted(RS, body)["spec"]
    assert rs["replicas"] == 1


def test_namespace_defaults() -> None:
    ns = defaulted(NS, {"metadata": {"name": "lab"}})
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "lab"}
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["status"] == {"phase": "Active"}
    assert validate(NS, ns) == []


def test_endpoint_port_protocols() -> None:
    ep = defaulted(EP, {"metadata": {"name": "db"}, "subsets": [{"addresses": [{"ip": "203.0.113.10"}],
                                                                  "ports": [{"port": 5432}]}]})
    assert ep["subsets"][0]["ports"] == [{"port": 5432, "protocol": "TCP"}]
    es = defaulted(SLICE, {"metadata": {"name": "db-1"}, "addressType": "IPv4", "ports": [{"port": 5432}]})
    assert es["ports"] == [{"port": 5432, "name": "", "protocol": "TCP"}]


def test_service_type_switches_on_update_behave_like_the_registry() -> None:
    old = defaulted(SVC, {"metadata": {"name": "nginx", "namespace": "default"},
                          "spec": {"type": "NodePort", "clusterIP": "10.96.18.165", "selector": {"app": "nginx"},
                                   "ports": [{"port": 80, "nodePort": 32072}]}})
    # A changed clusterIP is copied into clusterIPs, so the error names the plural field.
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.96.0.99"
    apply_defaults(SVC, new, old)
    assert validate(SVC, new, old) == [{"reason": "FieldValueInvalid", "field": "spec.clusterIPs[0]",
                                        "message": 'Invalid value: []string{"10.96.0.99"}: may not change once set'}]
    # Switching to ExternalName drops the allocated IPs, families and node ports the client did not touch.
    new = copy.deepcopy(old)
    new["spec"].update(type="ExternalName", externalName="example.net")
    apply_defaults(SVC, new, old)
    assert validate(SVC, new, old) == []
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "externalTrafficPolicy"} & set(new["spec"])
    assert new["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
