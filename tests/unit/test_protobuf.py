"""Tests for labkit.apiserver.protobuf: Kubernetes protobuf bodies → Kubernetes JSON.

The main oracle is real kubectl: fixtures under data/protobuf/ hold the protobuf bodies kubectl 1.32 and 1.33 sent
for `kubectl create ...` and the JSON body kubectl 1.31 sent for the same command (capture.py regenerates them).
Kinds kubectl never sends as protobuf (Pod, EndpointSlice, Event, StatefulSet, Node) are checked with bodies
built here from the upstream field numbers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from labkit.apiserver.protobuf import MAGIC, ProtobufError, decode, is_protobuf

DATA = Path(__file__).parent / "data" / "protobuf"
FIXTURES = {path.stem: json.loads(path.read_text()) for path in sorted(DATA.glob("*.json"))}


# --- a tiny protobuf encoder for hand-built bodies ------------------------------------------------------------

Field = tuple[int, Any]


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative numbers are sent as 10-byte two's complement, like Go
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def msg(*fields: Field) -> bytes:
    """Encode (number, value) pairs: int → varint, bool → varint, str/bytes → length-delimited."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, bool | int):
            out += _varint(number << 3) + _varint(int(value))
        else:
            data = value.encode() if isinstance(value, str) else value
            out += _varint(number << 3 | 2) + _varint(len(data)) + data
    return bytes(out)


def entry(key: str, value: Any) -> bytes:
    """A map entry message {1: key, 2: value}."""
    return msg((1, key), (2, value))


def envelope(api_version: str, kind: str, raw: bytes, *extra: Field) -> bytes:
    """`k8s\\0` + runtime.Unknown{typeMeta, raw, contentEncoding "", contentType ""}."""
    return MAGIC + msg((1, msg((1, api_version), (2, kind))), (2, raw), (3, ""), (4, ""), *extra)


def meta(name: str, **extra: Any) -> bytes:
    """ObjectMeta as gogo writes it: every non-pointer scalar, the zero creationTimestamp as an empty message."""
    fields: list[Field] = [(1, name), (2, ""), (3, extra.get("namespace", "")), (4, ""), (5, ""), (6, ""), (7, 0),
                           (8, b"")]
    fields += [(11, entry(k, v)) for k, v in extra.get("labels", {}).items()]
    return msg(*fields)


# --- real kubectl bodies ----------------------------------------------------------------------------------------

CASES = [(case, version) for case, fx in FIXTURES.items() for version in fx["protobuf"]]


def test_fixtures_cover_the_tutorial_commands() -> None:
    wanted = {
        ("create", "deployment", "nginx", "--image=nginx:1.19"),
        ("create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80"),
        ("create", "service", "clusterip", "my-svc", "--tcp=5678:8080"),
        ("create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30080"),
        ("create", "service", "externalname", "ext", "--external-name=www.example.net"),
        ("create", "service", "clusterip", "hl", "--clusterip=None"),
        ("create", "namespace", "lab"),
    }
    assert wanted <= {tuple(fx["args"]) for fx in FIXTURES.values()}
    assert all(set(fx["protobuf"]) == {"1.32", "1.33"} for fx in FIXTURES.values())


@pytest.mark.parametrize(("case", "version"), CASES)
def test_decode_matches_the_json_kubectl_131_sends(case: str, version: str) -> None:
    fixture = FIXTURES[case]
    body = bytes.fromhex(fixture["protobuf"][version])
    assert is_protobuf(body)
    assert decode(body) == fixture["json"]


def test_deployment_details() -> None:
    got = decode(bytes.fromhex(FIXTURES["deployment_web"]["protobuf"]["1.32"]))
    assert list(got)[:2] == ["kind", "apiVersion"]
    assert got["spec"]["replicas"] == 3
    assert got["spec"]["strategy"] == {}  # a non-pointer struct stays, as in Go's JSON
    assert got["metadata"] == {"name": "web", "creationTimestamp": None, "labels": {"app": "web"}}
    assert got["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80}]


def test_nodeport_keeps_ports_and_drops_zero_scalars() -> None:
    svc = decode(bytes.fromhex(FIXTURES["service_nodeport"]["protobuf"]["1.33"]))
    assert svc["spec"]["ports"] == [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080,
                                     "nodePort": 30080}]
    clusterip = decode(bytes.fromhex(FIXTURES["service_clusterip"]["protobuf"]["1.33"]))
    assert "nodePort" not in clusterip["spec"]["ports"][0]  # sent as 0, omitempty in JSON


def test_unsupported_kind_is_a_protobuf_error() -> None:
    body = envelope("policy/v1", "PodDisruptionBudget", b"")
    with pytest.raises(ProtobufError, match="policy/v1 PodDisruptionBudget"):
        decode(body)


def test_is_protobuf() -> None:
    assert is_protobuf(MAGIC + b"\x0a\x00")
    assert not is_protobuf(b'{"kind":"Service"}')
    assert not is_protobuf(b"k8s")
    assert not is_protobuf(b"")


# --- hand-built bodies for kinds kubectl does not send as protobuf ---------------------------------------------

def test_pod_semantics() -> None:
    port = msg((1, "http"), (2, 0), (3, 8080), (4, "TCP"), (5, ""))
    probe = msg((1, msg((2, msg((1, "/healthz"), (2, msg((1, 1), (2, 0), (3, "http"))), (3, ""), (4, "HTTP"))))),
                (2, 0), (3, 1), (4, 10), (5, 1), (6, 3))
    container = msg((1, "web"), (2, "nginx"), (6, port),
                    (8, msg((1, entry("cpu", msg((1, "500m")))), (1, entry("memory", msg((1, "64Mi")))))),
                    (11, probe), (13, "/dev/termination-log"), (16, False))
    ephemeral = msg((1, msg((1, "debug"), (2, "busybox"))), (2, "web"))
    # supplementalGroups mixes an unpacked value with a packed run (decoders must accept both).
    security = msg((2, -1), (4, 1)) + _varint(4 << 3 | 2) + _varint(2) + _varint(2) + _varint(3)
    spec = msg((2, container), (34, ephemeral), (3, "Always"), (4, 0), (6, "ClusterFirst"), (11, False),
               (14, security), (999, "a field from the future"))
    status = msg((1, "Running"), (2, msg((1, "Ready"), (2, "True"), (3, b""), (4, msg((1, 1704164705))))),
                 (6, "10.244.0.5"), (7, msg((1, 1704164645), (2, 5))))
    pod = decode(envelope("v1", "Pod", msg((1, meta("web-0", namespace="default", labels={"app": "web"})),
                                          (2, spec), (3, status))))
    assert pod["kind"] == "Pod" and pod["apiVersion"] == "v1"
    assert pod["metadata"] == {"name": "web-0", "namespace": "default", "creationTimestamp": None,
                               "labels": {"app": "web"}}
    c = pod["spec"]["containers"][0]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]  # hostPort 0 dropped
    assert c["resources"] == {"limits": {"cpu": "500m", "memory": "64Mi"}}
    assert c["readinessProbe"] == {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                                   "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                                   "failureThreshold": 3}  # ProbeHandler is inlined
    assert "stdin" not in c and c["terminationMessagePath"] == "/dev/termination-log"
    assert pod["spec"]["ephemeralContainers"] == [{"name": "debug", "image": "busybox", "resources": {},
                                                   "targetContainerName": "web"}]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 0  # pointer: a sent zero is kept
    assert pod["spec"]["securityContext"] == {"runAsUser": -1, "supplementalGroups": [1, 2, 3]}
    assert "hostNetwork" not in pod["spec"]
    assert pod["status"]["conditions"] == [{"type": "Ready", "status": "True", "lastProbeTime": None,
                                            "lastTransitionTime": "2024-01-02T03:05:05Z"}]
    assert pod["status"]["startTime"] == "2024-01-02T03:04:05Z"  # nanos are ignored, like upstream
    assert pod["status"]["podIP"] == "10.244.0.5"


def test_int_or_string_forms() -> None:
    def target_port(value: bytes) -> Any:
        svc = decode(envelope("v1", "Service", msg((2, msg((1, msg((3, 80), (4, value))))))))
        return svc["spec"]["ports"][0]["targetPort"]

    assert target_port(msg((1, 0), (2, 8080), (3, ""))) == 8080
    assert target_port(msg((1, 1), (2, 0), (3, "http"))) == "http"
    assert target_port(b"") == 0
    with pytest.raises(ProtobufError, match="IntOrString"):
        target_port(msg((1, 2)))


def test_endpointslice_nil_lists_and_pointer_bools() -> None:
    empty = decode(envelope("discovery.k8s.io/v1", "EndpointSlice", msg((1, meta("s")), (4, "IPv4"))))
    assert empty["addressType"] == "IPv4"
    assert empty["endpoints"] is None and empty["ports"] is None  # no omitempty: Go's nil slice is null
    endpoint = msg((1, "10.244.0.5"), (2, msg((1, False), (2, True))), (6, "labkit-control-plane"),
                   (4, msg((1, "Pod"), (2, "default"), (3, "web-0"))))
    port = msg((1, ""), (2, "TCP"), (3, 80))
    got = decode(envelope("discovery.k8s.io/v1", "EndpointSlice",
                          msg((1, meta("s")), (4, "IPv4"), (2, endpoint), (3, port))))
    assert got["endpoints"] == [{"addresses": ["10.244.0.5"], "conditions": {"ready": False, "serving": True},
                                 "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0"},
                                 "nodeName": "labkit-control-plane"}]
    assert got["ports"] == [{"name": "", "protocol": "TCP", "port": 80}]  # pointer strings keep ""


def test_statefulset_pointer_zero_and_required_strings() -> None:
    spec = msg((1, 0), (2, msg((1, entry("app", "web")))), (3, msg((1, meta("")), (2, msg()))), (5, ""))
    sts = decode(envelope("apps/v1", "StatefulSet", msg((1, meta("web")), (2, spec))))
    assert sts["spec"]["replicas"] == 0
    assert sts["spec"]["serviceName"] == ""
    assert sts["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert sts["spec"]["template"]["spec"] == {"containers": None}
    assert sts["spec"]["updateStrategy"] == {}
    assert sts["status"] == {"replicas": 0, "availableReplicas": 0}


def test_event_micro_time_and_owner_references() -> None:
    owner = msg((5, "apps/v1"), (1, "ReplicaSet"), (3, "web-abc"), (4, "uid-1"), (6, True))
    event = msg((1, msg((1, "e1"), (13, owner))), (2, msg((1, "Pod"), (3, "web-0"))), (3, "Started"),
                (10, msg((1, 1704164645), (2, 123456789))), (14, ""), (15, ""))
    got = decode(envelope("v1", "Event", event))
    assert got["eventTime"] == "2024-01-02T03:04:05.123456Z"
    assert got["firstTimestamp"] is None
    assert got["reportingComponent"] == "" and got["reportingInstance"] == ""
    assert got["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                   "name": "web-abc", "uid": "uid-1", "controller": True}]


def test_node_quantities_and_secret_bytes() -> None:
    status = msg((1, entry("cpu", msg((1, "2")))), (1, entry("pods", msg((1, "110")))),
                 (5, msg((1, "InternalIP"), (2, "10.0.0.2"))))
    node = decode(envelope("v1", "Node", msg((1, meta("n1")), (3, status))))
    assert node["status"]["capacity"] == {"cpu": "2", "pods": "110"}
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "10.0.0.2"}]
    assert node["spec"] == {} and node["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 0}}
    secret = decode(envelope("v1", "Secret", msg((1, meta("s")), (2, entry("k", b"\xff\x00")), (3, ""))))
    assert secret["data"] == {"k": "/wA="} and "type" not in secret


def test_managed_fields_raw_json_and_pointer_time() -> None:
    managed = msg((1, "kubectl-create"), (2, "Update"), (3, "v1"), (4, msg((1, 0))), (6, "FieldsV1"),
                  (7, msg((1, b'{"f:spec":{}}'))), (8, ""))
    metadata = msg((1, "lab"), (9, msg((1, 1704164645))), (10, 0), (14, "kubernetes"), (17, managed))
    got = decode(envelope("v1", "Namespace", msg((1, metadata))))["metadata"]
    assert got["deletionTimestamp"] == "2024-01-02T03:04:05Z"
    assert got["deletionGracePeriodSeconds"] == 0
    assert got["finalizers"] == ["kubernetes"]
    assert got["managedFields"] == [{"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
                                     "time": "1970-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                                     "fieldsV1": {"f:spec": {}}}]
    bad = msg((1, "lab"), (17, msg((7, msg((1, b"{not json"))))))
    with pytest.raises(ProtobufError, match="not JSON"):
        decode(envelope("v1", "Namespace", msg((1, bad))))


def test_status_kind() -> None:
    got = decode(envelope("v1", "Status", msg((1, msg()), (2, "Failure"), (4, "NotFound"), (6, 404))))
    assert got == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound",
                   "code": 404}


def test_repeated_singular_fields_last_wins_and_messages_merge() -> None:
    raw = msg((1, msg((1, "first"))), (1, msg((1, "second"), (11, entry("a", "b")))))
    assert decode(envelope("v1", "Namespace", raw))["metadata"] == {"name": "second", "creationTimestamp": None,
                                                                     "labels": {"a": "b"}}


# --- malformed input --------------------------------------------------------------------------------------------

GOOD = bytes.fromhex(FIXTURES["deployment_nginx"]["protobuf"]["1.32"])


@pytest.mark.parametrize(("body", "match"), [
    (b"", "magic"),
    (b'{"kind":"Deployment"}', "magic"),
    (b"k8s\x01" + GOOD[4:], "magic"),
    (MAGIC, "no kind"),
    (MAGIC + b"\x0a", "truncated varint"),
    (MAGIC + b"\x0a\xff", "truncated varint"),
    (MAGIC + b"\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", "longer than 10 bytes"),
    (MAGIC + b"\x0a\x15\x0a\x07apps/v1", "runs past the end"),
    (MAGIC + b"\x0b", "wire type 3"),
    (MAGIC + b"\x0e", "wire type 6"),
    (MAGIC + b"\x00\x00", "field number 0"),
    (MAGIC + b"\x09\x01\x02", "truncated fixed64"),
    (MAGIC + b"\x08\x01", "wrong wire type"),
    (envelope("apps/v1", "Deployment", msg((1, 5))), "wrong wire type"),
    (envelope("v1", "Service", msg((2, msg((1, msg((3, "eighty"))))))), "wrong wire type"),
    (envelope("v1", "Pod", msg((3, msg((7, msg((1, 10**15))))))), "out of range"),
    (MAGIC + msg((1, msg((1, "v1"), (2, "Namespace"))), (2, b""), (3, "gzip")), "contentEncoding"),
    (MAGIC + msg((1, msg((1, "v1"), (2, "Namespace"))), (4, "application/json")), "contentType"),
    (envelope("example.com/v1", "Widget", b""), "not supported"),
])
def test_malformed_bodies_raise_protobuf_error(body: bytes, match: str) -> None:
    with pytest.raises(ProtobufError, match=match):
        decode(body)


@pytest.mark.timeout(20)
def test_truncated_and_corrupted_bodies_never_raise_anything_else() -> None:
    bodies = [GOOD[:n] for n in range(len(GOOD))]
    rng = random.Random(1234)
    for _ in range(1500):
        corrupt = bytearray(GOOD)
        for _ in range(rng.randint(1, 4)):
            corrupt[rng.randrange(4, len(corrupt))] = rng.randrange(256)
        bodies.append(bytes(corrupt))
    outcomes = {"ok": 0, "error": 0}
    for body in bodies:
        try:
            result = decode(body)
        except ProtobufError as exc:
            assert str(exc)
            outcomes["error"] += 1
        else:
            assert isinstance(result, dict)
            outcomes["ok"] += 1
    assert outcomes["error"] > len(GOOD) - 5  # nearly every truncation is detected


# --- live capture (needs kubectl 1.33 next to the kubectl on PATH) ------------------------------------------------

def _capture_module() -> Any:
    spec = importlib.util.spec_from_file_location("labkit_pb_capture", DATA / "capture.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(60)
async def test_live_kubectl_133_capture_decodes_to_the_131_json() -> None:
    capture = _capture_module()
    kubectl = capture.kubectl_binary("1.33")
    if kubectl is None:
        pytest.skip("kubectl.1.33 is not installed")
    for case in ("deployment_web", "service_nodeport"):
        got = await asyncio.wait_for(capture.capture_post(kubectl, FIXTURES[case]["args"]), 50)
        assert got.content_type == "application/vnd.kubernetes.protobuf"
        assert decode(got.body) == FIXTURES[case]["json"]
