"""Label and field selectors as the API server parses and matches them."""

from __future__ import annotations

import pytest

from labkit.apiserver.selectors import (
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
    selector_from_match,
)
from labkit.errors import BadRequest

LABELS = {"app": "nginx", "tier": "front", "env": "prod"}


@pytest.mark.parametrize(("selector", "expected"), [
    ("app=nginx", True),
    ("app==nginx", True),
    ("app!=nginx", False),
    ("app=web", False),
    ("missing!=x", True),
    ("tier in (front,back)", True),
    ("tier notin (front)", False),
    ("missing notin (a)", True),
    ("tier", True),
    ("!tier", False),
    ("!missing", True),
    ("app=nginx,env in (prod, staging),!debug", True),
    ("app=nginx,env=dev", False),
    ("", True),
])
def test_label_selector_operators(selector: str, expected: bool) -> None:
    assert labels_match(parse_label_selector(selector), LABELS) is expected


def test_malformed_label_selector_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        parse_label_selector("app in nginx")


def test_match_labels_and_expressions() -> None:
    reqs = selector_from_match({"matchLabels": {"app": "nginx"},
                                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]},
                                                     {"key": "debug", "operator": "DoesNotExist"}]})
    assert labels_match(reqs, LABELS)
    assert not labels_match(reqs, {"app": "nginx", "env": "dev"})


def test_field_selectors_for_pods() -> None:
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"nodeName": "n1"},
           "status": {"phase": "Running", "podIP": "10.244.0.5"}}
    assert fields_match(parse_field_selector("metadata.name=p,status.phase=Running", "pods"), pod)
    assert not fields_match(parse_field_selector("spec.nodeName!=n1", "pods"), pod)
    assert fields_match(parse_field_selector("status.podIP==10.244.0.5", "pods"), pod)


def test_unsupported_field_is_rejected_with_upstream_words() -> None:
    with pytest.raises(BadRequest, match=r"field label not supported: spec\.clusterIP"):
        parse_field_selector("spec.clusterIP=1.2.3.4", "pods")
