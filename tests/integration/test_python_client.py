"""The official `kubernetes` Python client against the embedded API server."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from kubernetes import watch
from kubernetes.client.rest import ApiException

from tests.conftest import Cluster

pytestmark = pytest.mark.integration


def _service(name: str, labels: dict[str, str], port: int = 80) -> dict:
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]}}


def test_create_get_list_patch_delete(cluster: Cluster, namespace: str) -> None:
    client, api_client = cluster.api_client()
    core = client.CoreV1Api(api_client)
    created = core.create_namespaced_service(namespace, _service("web", {"tier": "front"}))
    assert created.spec.cluster_ip.startswith("10.96.")
    assert created.spec.ports[0].target_port == 80
    core.create_namespaced_service(namespace, _service("db", {"tier": "back"}, 5432))
    core.create_namespaced_service(namespace, _service("cache", {"tier": "back", "team": "x"}, 6379))

    assert core.read_namespaced_service("web", namespace).metadata.uid == created.metadata.uid

    def names(**selectors: str) -> list[str]:
        return sorted(s.metadata.name for s in core.list_namespaced_service(namespace, **selectors).items)

    assert names() == ["cache", "db", "web"]
    assert names(label_selector="tier=back") == ["cache", "db"]
    assert names(label_selector="tier in (front,back),!team") == ["db", "web"]
    assert names(label_selector="tier!=back") == ["web"]
    assert names(field_selector="metadata.name=db") == ["db"]

    patched = core.patch_namespaced_service("web", namespace, {"metadata": {"labels": {"tier": "edge"}}})
    assert patched.metadata.labels == {"tier": "edge"}
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)

    core.delete_namespaced_service("web", namespace)
    with pytest.raises(ApiException) as info:
        core.read_namespaced_service("web", namespace)
    assert info.value.status == 404
    assert json.loads(info.value.body)["message"] == 'services "web" not found'


def test_stale_update_conflicts(cluster: Cluster, namespace: str) -> None:
    client, api_client = cluster.api_client()
    core = client.CoreV1Api(api_client)
    svc = core.create_namespaced_service(namespace, _service("web", {}))
    core.patch_namespaced_service("web", namespace, {"metadata": {"labels": {"a": "1"}}})
    svc.metadata.labels = {"b": "2"}
    with pytest.raises(ApiException) as info:
        core.replace_namespaced_service("web", namespace, svc)
    assert info.value.status == 409
    assert json.loads(info.value.body)["message"] == (
        'Operation cannot be fulfilled on services "web": the object has been modified; please apply your changes '
        "to the latest version and try again")


def test_wrong_or_missing_token(cluster: Cluster) -> None:
    import copy

    client, api_client = cluster.api_client()
    for header in ("Bearer not-the-token", None):
        config = copy.copy(api_client.configuration)
        config.refresh_api_key_hook = None  # the kubeconfig loader would put the real token back
        config.api_key = {"BearerToken": header} if header else {}
        core = client.CoreV1Api(client.ApiClient(config))
        with pytest.raises(ApiException) as info:
            core.list_namespace()
        assert info.value.status == 401
        assert json.loads(info.value.body)["reason"] == "Unauthorized"


def test_watch_sees_every_change(cluster: Cluster, namespace: str) -> None:
    client, api_client = cluster.api_client()
    core = client.CoreV1Api(api_client)
    start_rv = core.list_namespaced_service(namespace).metadata.resource_version
    core.create_namespaced_service(namespace, _service("a", {"x": "0"}))
    core.patch_namespaced_service("a", namespace, {"metadata": {"labels": {"x": "1"}}})
    core.delete_namespaced_service("a", namespace)
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_service, namespace, resource_version=start_rv,
                                      timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name, event["object"].metadata.labels))
        if len(seen) == 3:
            break
    assert seen == [("ADDED", "a", {"x": "0"}), ("MODIFIED", "a", {"x": "1"}), ("DELETED", "a", {"x": "1"})]


def _apiserver_pid(cluster: Cluster) -> int:
    return int((cluster.home / "run" / "apiserver.pid").read_text())


def _wait_restarted(cluster: Cluster, old_pid: int, core) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if _apiserver_pid(cluster) != old_pid:
                core.list_namespace()
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise AssertionError("the API server did not come back")


def test_killed_apiserver_loses_nothing_and_watch_resumes(fresh_cluster: Cluster) -> None:
    client, api_client = fresh_cluster.api_client()
    core = client.CoreV1Api(api_client)
    created = [core.create_namespaced_service("default", _service(f"s{i}", {"i": str(i)})) for i in range(5)]
    last_rv = created[-1].metadata.resource_version

    pid = _apiserver_pid(fresh_cluster)
    os.kill(pid, signal.SIGKILL)
    _wait_restarted(fresh_cluster, pid, core)

    after = {s.metadata.name: s for s in core.list_namespaced_service("default", label_selector="i").items}
    assert sorted(after) == [f"s{i}" for i in range(5)]
    for svc in created:
        assert after[svc.metadata.name].metadata.resource_version == svc.metadata.resource_version
        assert after[svc.metadata.name].spec.cluster_ip == svc.spec.cluster_ip

    core.delete_namespaced_service("s0", "default")
    core.create_namespaced_service("default", _service("s5", {"i": "5"}))
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_service, "default", resource_version=last_rv,
                                      timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:
            break
    assert seen == [("DELETED", "s0"), ("ADDED", "s5")]
