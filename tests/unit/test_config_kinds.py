"""ConfigMap, Secret and ServiceAccount through the registry: conversion, defaults, validation, tables."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from labkit import errors, kinds
from labkit.apiserver import tables
from labkit.apiserver.convert import base64_error_offset
from labkit.apiserver.registry import Registry
from labkit.apiserver.storage import Store

CM = kinds.lookup("cm")
SECRET = kinds.lookup("secrets")
SA = kinds.lookup("sa")
NS = kinds.lookup("namespaces")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    store = Store(tmp_path / "s.db")
    reg = Registry(store, rng=random.Random(1))
    reg.create(NS, None, {"metadata": {"name": "default"}}, manager="test")
    yield reg
    store.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _causes(exc: pytest.ExceptionInfo[errors.ApiError]) -> list[tuple[str, str]]:
    return [(c["field"], c["message"]) for c in exc.value.status()["details"]["causes"]]


@pytest.mark.parametrize(("text", "offset"), [
    ("aGVsbG8=", None), ("aGVsbG8", 4), ("abc", 0), ("ab=c", 2), ("a!cd", 1), ("aGVs\nbG8=", None),
    ("aGVsbA==", None), ("aGVsbA=", 7), ("aGVsbA==x", 8), ("", None),
])
def test_base64_errors_are_reported_where_go_reports_them(text: str, offset: int | None) -> None:
    assert base64_error_offset(text) == offset


def test_secret_string_data_becomes_data_and_type_defaults_to_opaque(registry: Registry) -> None:
    obj = registry.create(SECRET, "default", {"metadata": {"name": "s"}, "data": {"a": _b64("old"), "b": _b64("x")},
                                              "stringData": {"a": "new", "c": "ç"}}, manager="test")
    assert obj["type"] == "Opaque"
    assert "stringData" not in obj
    assert {k: base64.b64decode(v).decode() for k, v in obj["data"].items()} == {"a": "new", "b": "x", "c": "ç"}
    patched, _ = registry.patch(SECRET, "default", "s", json.dumps({"stringData": {"b": "y"}}).encode(),
                                "application/merge-patch+json", manager="test")
    assert base64.b64decode(patched["data"]["b"]) == b"y"
    assert "stringData" not in registry.get(SECRET, "default", "s")


def test_secret_with_bad_base64_is_a_bad_request(registry: Registry) -> None:
    with pytest.raises(errors.BadRequest) as exc:
        registry.create(SECRET, "default", {"metadata": {"name": "s"}, "data": {"a": "not base64!"}}, manager="t")
    assert exc.value.message == 'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input ' \
                                "byte 3"
    assert registry.store.get(("", "secrets"), "default", "s") is None


def test_secret_type_rules(registry: Registry) -> None:
    with pytest.raises(errors.Invalid) as exc:
        registry.create(SECRET, "default", {"metadata": {"name": "t"}, "type": "kubernetes.io/tls",
                                            "data": {"tls.crt": _b64("c")}}, manager="t")
    assert _causes(exc) == [("data[tls.key]", "Required value")]
    with pytest.raises(errors.Invalid) as exc:
        registry.create(SECRET, "default", {"metadata": {"name": "t"}, "type": "kubernetes.io/basic-auth"},
                        manager="t")
    assert _causes(exc) == [("data[username]", "Required value"), ("data[password]", "Required value")]
    with pytest.raises(errors.Invalid) as exc:
        registry.create(SECRET, "default", {"metadata": {"name": "t"}, "type": "kubernetes.io/dockerconfigjson",
                                            "data": {".dockerconfigjson": _b64("[1]")}}, manager="t")
    assert _causes(exc) == [("data[.dockerconfigjson]", 'Invalid value: "<secret contents redacted>": json: cannot '
                             "unmarshal array into Go value of type map[string]interface {}")]
    with pytest.raises(errors.Invalid) as exc:
        registry.create(SECRET, "default", {"metadata": {"name": "t"}, "type": SA_TOKEN}, manager="t")
    assert _causes(exc) == [("metadata.annotations[kubernetes.io/service-account.name]", "Required value")]
    registry.create(SECRET, "default", {"metadata": {"name": "t"}, "type": "kubernetes.io/basic-auth",
                                        "stringData": {"password": ""}}, manager="t")
    current = registry.get(SECRET, "default", "t")
    with pytest.raises(errors.Invalid) as exc:
        registry.update(SECRET, "default", "t", {**current, "type": "Opaque"}, manager="t")
    assert _causes(exc) == [("type", 'Invalid value: "Opaque": field is immutable')]


SA_TOKEN = "kubernetes.io/service-account-token"


def test_config_map_keys_and_immutability(registry: Registry) -> None:
    with pytest.raises(errors.Invalid) as exc:
        registry.create(CM, "default", {"metadata": {"name": "c"}, "data": {"a b": "1", "..x": "2", "k": "v"},
                                        "binaryData": {"k": _b64("v")}}, manager="t")
    assert _causes(exc) == [
        ("data[..x]", 'Invalid value: "..x": must not start with \'..\''),
        ("data[a b]", "Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' "
                      "or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
                      "'[-._a-zA-Z0-9]+')"),
        ("data[k]", 'Invalid value: "k": duplicate of key present in binaryData'),
    ]
    cm = registry.create(CM, "default", {"metadata": {"name": "c"}, "data": {"k": "v"}, "immutable": True},
                         manager="t")
    with pytest.raises(errors.Invalid) as exc:
        registry.update(CM, "default", "c", {**cm, "data": {"k": "w"}, "immutable": False}, manager="t")
    assert _causes(exc) == [("immutable", "Forbidden: field is immutable when `immutable` is set"),
                            ("data", "Forbidden: field is immutable when `immutable` is set")]
    with pytest.raises(errors.Invalid):
        registry.create(CM, "default", {"metadata": {"name": "big"}, "data": {"k": "x" * (1024 * 1024 + 1)}},
                        manager="t")


def test_service_account_round_trip_and_strict_fields(registry: Registry) -> None:
    sa = registry.create(SA, "default", {"metadata": {"name": "build-robot"}, "automountServiceAccountToken": False},
                         manager="t")
    assert sa["automountServiceAccountToken"] is False
    with pytest.raises(errors.BadRequest) as exc:
        registry.create(SA, "default", {"metadata": {"name": "x"}, "secret": []}, manager="t", strict=True)
    assert exc.value.message == ('ServiceAccount in version "v1" cannot be handled as a ServiceAccount: strict '
                                 'decoding error: unknown field "secret"')


def test_tables_print_kubectl_columns() -> None:
    now = datetime(2025, 1, 1, 0, 1, tzinfo=UTC)
    created = {"name": "x", "creationTimestamp": "2025-01-01T00:00:00Z"}
    cm = tables.to_table("configmaps", [{"metadata": created, "data": {"a": "1"}, "binaryData": {"b": "AA=="}}],
                         now=now)
    assert [c["name"] for c in cm["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert cm["rows"][0]["cells"] == ["x", 2, "60s"]
    secret = tables.to_table("secrets", [{"metadata": created, "type": "kubernetes.io/tls", "data": {"a": ""}}],
                             now=now)
    assert [c["name"] for c in secret["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    assert secret["rows"][0]["cells"] == ["x", "kubernetes.io/tls", 1, "60s"]
    sa = tables.to_table("serviceaccounts", [{"metadata": created}], now=now)
    assert [c["name"] for c in sa["columnDefinitions"]] == ["Name", "Secrets", "Age"]
    assert sa["rows"][0]["cells"] == ["x", 0, "60s"]
    assert sa["columnDefinitions"][1]["description"].startswith("Secrets is a list of the secrets")
