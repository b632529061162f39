"""securityContext → a container's privileges (Docker's default capability set, containerd's add/drop rules)."""

from __future__ import annotations

import pytest

from labkit.node.security import DEFAULT_CAPS, ConfigError, capability_set, container_security, unenforced


def pod(container_sc: dict | None = None, pod_sc: dict | None = None) -> tuple[dict, dict]:
    c = {"name": "app", "securityContext": container_sc or {}}
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
            "spec": {"securityContext": pod_sc or {}, "containers": [c]}}, c


def test_docker_default_set_and_containerds_add_drop_order() -> None:
    assert len(DEFAULT_CAPS) == 14 and "NET_ADMIN" not in DEFAULT_CAPS and "SYS_ADMIN" not in DEFAULT_CAPS
    assert capability_set(["NET_ADMIN"], ["KILL"]) == [c for c in DEFAULT_CAPS if c != "KILL"] + ["NET_ADMIN"]
    assert capability_set(["net_bind_service"], ["ALL"]) == ["NET_BIND_SERVICE"]
    assert capability_set(["CAP_NET_RAW"], []) == list(DEFAULT_CAPS)
    assert capability_set([], ["ALL"]) == []


def test_container_context_over_the_pods() -> None:
    p, c = pod({"runAsUser": 1000, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                "capabilities": {"add": ["NET_ADMIN"]}}, {"runAsUser": 5, "runAsGroup": 3000, "fsGroup": 2000,
                                                          "supplementalGroups": [4000]})
    sec = container_security(p, c)
    assert (sec.uid, sec.gid, sec.groups) == (1000, 3000, [2000, 4000])
    assert sec.read_only_root and sec.no_new_privs and "NET_ADMIN" in sec.capabilities


@pytest.mark.parametrize(("sc", "pod_sc", "message"), [
    ({"privileged": True}, {}, "is privileged"),
    ({"capabilities": {"add": ["SYS_ADMIN"]}}, {}, "adds capability SYS_ADMIN"),
    ({"capabilities": {"add": ["ALL"]}}, {}, "adds capability ALL"),
    ({"runAsNonRoot": True}, {}, 'container has runAsNonRoot and image will run as root (pod: "p_default(u)", '
                                 "container: app)"),
    ({"runAsUser": 0}, {"runAsNonRoot": True}, "container's runAsUser breaks non-root policy"),
])
def test_refused_with_kubelets_reason(sc: dict, pod_sc: dict, message: str) -> None:
    p, c = pod(sc, pod_sc)
    with pytest.raises(ConfigError) as info:
        container_security(p, c)
    assert message in str(info.value) and info.value.reason == "CreateContainerConfigError"


def test_what_cannot_be_enforced_is_named() -> None:
    p, c = pod({"seccompProfile": {"type": "RuntimeDefault"}}, {"sysctls": [{"name": "net.ipv4.tcp_syncookies"}]})
    found = unenforced(p, c)
    assert any("seccompProfile RuntimeDefault" in f for f in found)
    assert any("net.ipv4.tcp_syncookies" in f for f in found)
    p, c = pod({"seccompProfile": {"type": "Unconfined"}})
    assert unenforced(p, c) == []
    p["spec"]["shareProcessNamespace"] = True
    assert any("shareProcessNamespace" in f for f in unenforced(p, c))
