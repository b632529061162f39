"""Pod volumes on the host: kubelet's AtomicWriter layout, configMap/secret/downwardAPI/projected payloads, mounts."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import pytest

from labkit.node.rootfs import secure_join
from labkit.node.volumes import (
    SERVICEACCOUNT_PATH,
    Sources,
    VolumeError,
    Volumes,
    atomic_write,
    read_payload,
    volume_references,
)


def sources(configmaps: dict | None = None, secrets: dict | None = None) -> Sources:
    configmaps, secrets = configmaps or {}, secrets or {}
    return Sources(configmap=lambda ns, name: configmaps.get((ns, name)),
                   secret=lambda ns, name: secrets.get((ns, name)), token=lambda: "tok", ca_cert=lambda: "CA")


def pod(volumes: list[dict], containers: list[dict] | None = None, **meta) -> dict:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}, **meta},
            "spec": {"volumes": volumes, "containers": containers or [{"name": "c"}]}}


def test_atomic_write_layout_and_an_update_that_swaps_data(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert atomic_write(target, {"Corefile": (b".:53 {}\n", 0o644), "sub/x": (b"1", 0o600)})
    data = os.readlink(target / "..data")
    assert data.startswith("..") and data[2:21].count("_") == 5 and data.split(".")[-1].isdigit()
    assert os.readlink(target / "Corefile") == "..data/Corefile" and os.readlink(target / "sub") == "..data/sub"
    assert (target / "Corefile").read_text() == ".:53 {}\n"
    assert (target / "sub" / "x").stat().st_mode & 0o777 == 0o600
    assert not atomic_write(target, {"Corefile": (b".:53 {}\n", 0o644), "sub/x": (b"1", 0o600)})  # unchanged
    # A reader polling the file during updates sees one whole version or the other.
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                seen.add((target / "Corefile").read_text())
            except FileNotFoundError:
                seen.add("missing")

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(30):
        atomic_write(target, {"Corefile": (f"version {i}\n".encode() * 50, 0o644)})
    stop.set()
    thread.join()
    assert all(s.count("version") in (0, 50) and len(set(s.split("\n")) - {""}) <= 1 for s in seen)
    assert "missing" not in seen
    # Old versions are gone, the removed key's symlink too.
    assert sorted(p.name for p in target.iterdir() if p.name.startswith("..2")) == [os.readlink(target / "..data")]
    assert not (target / "sub").exists() and not (target / "sub").is_symlink()
    assert read_payload(target) == {"Corefile": (b"version 29\n" * 50, 0o644)}


def test_atomic_write_refuses_paths_that_leave_the_volume(tmp_path: Path) -> None:
    for bad in ("../x", "/etc/passwd", "..data", "a/../../b"):
        with pytest.raises(ValueError):
            atomic_write(tmp_path / "v", {bad: (b"", 0o644)})


def test_configmap_keys_items_modes_and_kubelets_messages(tmp_path: Path) -> None:
    cm = {"data": {"a": "1", "b": "2"}, "binaryData": {"bin": base64.b64encode(b"\x00\x01").decode()}}
    src = sources({("ns", "cfg"): cm})
    vols = Volumes(tmp_path / "pod", tmp_path / "shm")
    spec = pod([{"name": "all", "configMap": {"name": "cfg", "defaultMode": 0o400}},
                {"name": "some", "configMap": {"name": "cfg",
                                               "items": [{"key": "b", "path": "dir/b.txt", "mode": 0o600}]}}])
    assert sorted(vols.sync(spec, src, "10.244.0.9")) == ["all", "some"]
    all_dir, some_dir = vols.paths["all"], vols.paths["some"]
    assert {p.name for p in all_dir.iterdir() if not p.name.startswith("..")} == {"a", "b", "bin"}
    assert (all_dir / "bin").read_bytes() == b"\x00\x01" and (all_dir / "a").stat().st_mode & 0o777 == 0o400
    b_txt = some_dir / "dir" / "b.txt"
    assert b_txt.read_text() == "2" and b_txt.stat().st_mode & 0o777 == 0o600
    with pytest.raises(VolumeError, match=r'MountVolume.SetUp failed for volume "x" : configmap "nope" not found'):
        vols.sync(pod([{"name": "x", "configMap": {"name": "nope"}}]), src, "")
    with pytest.raises(VolumeError, match="configmap references non-existent config key: zz"):
        vols.sync(pod([{"name": "x", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}]), src, "")
    vols.sync(pod([{"name": "opt", "configMap": {"name": "nope", "optional": True}}]), src, "")
    assert read_payload(vols.paths["opt"]) == {}  # an optional ConfigMap that does not exist: an empty volume


def test_secret_projected_downward_and_hostpath(tmp_path: Path) -> None:
    secret = {"data": {"password": base64.b64encode(b"s3cret").decode()}}
    src = sources({("ns", "cfg"): {"data": {"k": "v"}}}, {("ns", "db"): secret})
    vols = Volumes(tmp_path / "pod", tmp_path / "shm")
    spec = pod([
        {"name": "sec", "secret": {"secretName": "db"}},
        {"name": "proj", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            {"secret": {"name": "db", "items": [{"key": "password", "path": "pw"}]}}]}},
        {"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "requests.cpu", "divisor": "1m"}}]}},
    ], [{"name": "c", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}}])
    vols.sync(spec, src, "10.244.0.9")
    assert (vols.paths["sec"] / "password").read_text() == "s3cret"
    proj = vols.paths["proj"]
    assert [(proj / f).read_text() for f in ("token", "ca.crt", "namespace", "pw")] == ["tok", "CA", "ns", "s3cret"]
    info = vols.paths["info"]
    assert (info / "labels").read_text() == 'app="web"'
    assert [(info / f).read_text() for f in ("ip", "mem", "cpu")] == ["10.244.0.9", "64", "250"]
    with pytest.raises(VolumeError, match="hostPath volumes are refused"):
        vols.sync(pod([{"name": "h", "hostPath": {"path": "/etc"}}]), src, "")
    assert volume_references(spec) == {("secret", "db"), ("configMap", "kube-root-ca.crt")}


def test_mounts_emptydir_shared_read_only_kinds_subpath_and_serviceaccount(tmp_path: Path) -> None:
    src = sources({("ns", "cfg"): {"data": {"nginx.conf": "x"}}})
    vols = Volumes(tmp_path / "pod", tmp_path / "shm")
    spec = pod([{"name": "cache", "emptyDir": {}}, {"name": "mem", "emptyDir": {"medium": "Memory"}},
                {"name": "cfg", "configMap": {"name": "cfg"}}])
    vols.sync(spec, src, "")
    assert vols.paths["cache"].stat().st_mode & 0o777 == 0o777
    assert vols.paths["mem"] == tmp_path / "shm" / "mem"
    container = {"name": "c", "volumeMounts": [
        {"name": "cache", "mountPath": "/cache"}, {"name": "cache", "mountPath": "/ro", "readOnly": True},
        {"name": "cfg", "mountPath": "/etc/nginx/nginx.conf", "subPath": "nginx.conf"},
        {"name": "cache", "mountPath": "/logs", "subPathExpr": "$(POD_NAME)"}]}
    sa = vols.serviceaccount(spec, src)
    mounts = vols.mounts(spec, container, sa)
    by_target = {m.target: m for m in mounts}
    assert not by_target["/cache"].read_only and by_target["/ro"].read_only
    assert by_target["/etc/nginx/nginx.conf"].read_only
    assert Path(by_target["/etc/nginx/nginx.conf"].source).read_text() == "x"
    assert by_target["/logs"].source == str(vols.paths["cache"].resolve() / "p")
    assert by_target[SERVICEACCOUNT_PATH].source == str(sa) and (sa / "namespace").read_text() == "ns"
    # subPath may not leave the volume, even through a symlink a container left in it.
    (vols.paths["cache"] / "escape").symlink_to("/etc")
    for sub in ("../x", "escape"):
        with pytest.raises(VolumeError):
            mount = {"name": "cache", "mountPath": "/x", "subPath": sub}
            vols.mounts(spec, {"name": "c", "volumeMounts": [mount]}, None)


def test_secure_join_never_leaves_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "abs").symlink_to("/usr/share")
    (root / "etc" / "up").symlink_to("../../../../..")
    (root / "var").mkdir()
    (root / "var" / "run").symlink_to("../run")
    assert secure_join(str(root), "/etc/abs/x") == f"{root}/usr/share/x"
    assert secure_join(str(root), "/etc/up/tmp") == f"{root}/tmp"
    assert secure_join(str(root), "/var/run/secrets") == f"{root}/run/secrets"
    assert secure_join(str(root), "/../../etc") == f"{root}/etc"
