"""Pod volumes on the node: what each volume holds on the host, and where it goes in each container.

A pod's volumes live under its directory, `<pod dir>/volumes/<name>` (an `emptyDir` of `medium: Memory` under
/dev/shm, which is memory), and are bind-mounted into each container's root where its `volumeMounts` say
(labkit.node.rootfs). So an `emptyDir` is shared by the pod's containers, survives their restarts and goes with
the pod.

`configMap`, `secret`, `downwardAPI` and `projected` volumes are written the way kubelet's AtomicWriter writes
them (pkg/volume/util/atomic_writer.go): the files live in a timestamped directory `..2006_01_02_15_04_05.NNN`,
`..data` is a symlink to it, and each top-level name is a symlink into `..data`. An update writes a new
directory and renames a new `..data` over the old one, so a reader sees the old files or the new ones, never a
mix; that is what CoreDNS's `reload` and every config-reloading program rely on. The kubelet calls
`Volumes.sync` whenever the pod, or a ConfigMap or Secret it uses, changes.

Messages are kubelet's: pkg/volume/configmap/configmap.go, pkg/volume/secret/secret.go ("configmap "x" not
found", "configmap references non-existent config key: k"), pkg/volume/downwardapi, pkg/volume/projected,
pkg/kubelet/volumemanager (`MountVolume.SetUp failed for volume "v" : …`).
"""

from __future__ import annotations

import base64
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.node.rootfs import Mount
from labkit.node.status import cpu_millis, field_ref_value

DATA_DIR = "..data"
SERVICEACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_MODE = 0o644

# Payload: relative path → (bytes, file mode).
Payload = dict[str, tuple[bytes, int]]


class VolumeError(Exception):
    """A volume that cannot be set up yet (the kubelet reports FailedMount and retries)."""

    def __init__(self, volume: str, message: str) -> None:
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {message}')
        self.volume = volume


@dataclass
class Sources:
    """Where the kubelet finds what volumes hold: its caches of ConfigMaps and Secrets, the service-account
    token and the cluster's CA."""

    configmap: Callable[[str, str], dict[str, Any] | None]
    secret: Callable[[str, str], dict[str, Any] | None]
    token: Callable[[], str]
    ca_cert: Callable[[], str]


# ------------------------------------------------------------------------------------------ AtomicWriter
def _check_path(path: str) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or parts[0].startswith(".."):
        raise ValueError(f"invalid path {path!r}: must be relative, without '..' and not start with '..'")


def read_payload(target: Path) -> Payload | None:
    """What the volume at `target` holds now (None if it was never written)."""
    data = target / DATA_DIR
    if not data.is_symlink():
        return None
    current: Payload = {}
    root = target / os.readlink(data)
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            current[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mode & 0o7777)
    return current


def _timestamped_dir(target: Path) -> Path:
    """`..2006_01_02_15_04_05.<digits>` (Go's os.MkdirTemp with kubelet's timestamp pattern), mode 0755."""
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())
    while True:
        path = target / f"{stamp}{random.randrange(10**9):09d}"
        try:
            path.mkdir(mode=0o755)
        except FileExistsError:
            continue
        path.chmod(0o755)
        return path


def atomic_write(target: Path, payload: Payload) -> bool:
    """Make the volume at `target` hold exactly `payload`, atomically; False when it already did."""
    for path in payload:
        _check_path(path)
    target.mkdir(parents=True, exist_ok=True)
    if read_payload(target) == payload:
        return False
    data = target / DATA_DIR
    old = os.readlink(data) if data.is_symlink() else None
    new = _timestamped_dir(target)
    for path, (content, mode) in payload.items():
        file = new / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(content)
        file.chmod(mode)
    tmp = target / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(new.name)
    tmp.rename(data)  # the switch: rename(2) over the old symlink is atomic
    visible = {path.split("/")[0] for path in payload}
    for name in visible:
        link = target / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA_DIR}/{name}")
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in visible and entry.is_symlink():
            entry.unlink()
    if old:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


# ---------------------------------------------------------------------------------------------- payloads
def _mode(item_mode: Any, default_mode: int) -> int:
    return int(item_mode) if item_mode is not None else default_mode


def _keyed_payload(volume: str, data: dict[str, bytes], items: list[dict[str, Any]] | None, default_mode: int,
                   missing_key: str, optional: bool) -> Payload:
    """configMap/secret: every key as a file, or only `items` (key → path, mode)."""
    if not items:
        return {key: (value, default_mode) for key, value in data.items()}
    payload: Payload = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise VolumeError(volume, f"{missing_key}: {key}")
        payload[item.get("path") or key] = (data[key], _mode(item.get("mode"), default_mode))
    return payload


def configmap_data(cm: dict[str, Any]) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return data


def secret_data(secret: dict[str, Any]) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def configmap_payload(volume: str, src: dict[str, Any], namespace: str, sources: Sources,
                      default_mode: int) -> Payload:
    name = src.get("name", "")
    cm = sources.configmap(namespace, name)
    if cm is None:
        if name == "kube-root-ca.crt":  # published in every namespace by kube-controller-manager
            cm = {"data": {"ca.crt": sources.ca_cert()}}
        elif src.get("optional"):
            return {}
        else:
            raise VolumeError(volume, f'configmap "{name}" not found')
    return _keyed_payload(volume, configmap_data(cm), src.get("items"), default_mode,
                          "configmap references non-existent config key", bool(src.get("optional")))


def secret_payload(volume: str, src: dict[str, Any], namespace: str, sources: Sources, default_mode: int,
                   name_key: str = "secretName") -> Payload:
    name = src.get(name_key, "")
    secret = sources.secret(namespace, name)
    if secret is None:
        if src.get("optional"):
            return {}
        raise VolumeError(volume, f'secret "{name}" not found')
    return _keyed_payload(volume, secret_data(secret), src.get("items"), default_mode,
                          "references non-existent secret key", bool(src.get("optional")))


def _quantity_value(quantity: Any) -> float:
    """A memory-like quantity in units (Ki, Mi, Gi, k, M, G, plain)."""
    text = str(quantity).strip()
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
             "m": 10**-3}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _node_allocatable(resource: str) -> float:
    if resource == "cpu":
        return float(os.cpu_count() or 1)
    with open("/proc/meminfo") as f:
        kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    return kb * 1024.0


def resource_field_value(pod: dict[str, Any], ref: dict[str, Any], default_container: str = "") -> str:
    """ExtractContainerResourceValue: a container's request or limit (limits default to the node's
    allocatable), divided by the divisor and rounded up."""
    name = ref.get("containerName") or default_container
    container = next((c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == name), {})
    kind, _, resource = str(ref.get("resource", "")).partition(".")
    res = container.get("resources") or {}
    value = (res.get(kind) or {}).get(resource)
    if value is None and kind == "requests":
        value = (res.get("limits") or {}).get(resource)
    divisor = ref.get("divisor") or "1"
    if _quantity_value(divisor) == 0:
        divisor = "1"  # the API stores an unset divisor as the zero Quantity "0"; upstream reads it as 1
    if resource == "cpu":
        millis = cpu_millis(value) if value is not None else int(_node_allocatable("cpu") * 1000)
        return str(math.ceil(millis / max(1, cpu_millis(divisor))))
    amount = _quantity_value(value) if value is not None else _node_allocatable(resource)
    return str(math.ceil(amount / _quantity_value(divisor)))


def downward_payload(pod: dict[str, Any], items: list[dict[str, Any]], default_mode: int, pod_ip: str) -> Payload:
    payload: Payload = {}
    for item in items or []:
        if item.get("fieldRef"):
            value = field_ref_value(pod, item["fieldRef"].get("fieldPath", ""), pod_ip=pod_ip)
        elif item.get("resourceFieldRef"):
            value = resource_field_value(pod, item["resourceFieldRef"])
        else:
            continue
        payload[item.get("path", "")] = (value.encode(), _mode(item.get("mode"), default_mode))
    return payload


def serviceaccount_payload(pod: dict[str, Any], sources: Sources, mode: int = DEFAULT_MODE) -> Payload:
    """What kube-api-access volumes hold: token, ca.crt, namespace."""
    namespace = pod["metadata"].get("namespace") or "default"
    return {"token": (sources.token().encode(), mode), "ca.crt": (sources.ca_cert().encode(), mode),
            "namespace": (namespace.encode(), mode)}


def projected_payload(volume: str, src: dict[str, Any], pod: dict[str, Any], sources: Sources,
                      pod_ip: str) -> Payload:
    namespace = pod["metadata"].get("namespace") or "default"
    default_mode = _mode(src.get("defaultMode"), DEFAULT_MODE)
    payload: Payload = {}
    for source in src.get("sources") or []:
        if "serviceAccountToken" in source:
            path = source["serviceAccountToken"].get("path") or "token"
            payload[path] = (sources.token().encode(), default_mode)
        elif "configMap" in source:
            payload.update(configmap_payload(volume, source["configMap"], namespace, sources, default_mode))
        elif "secret" in source:
            payload.update(secret_payload(volume, source["secret"], namespace, sources, default_mode, "name"))
        elif "downwardAPI" in source:
            payload.update(downward_payload(pod, source["downwardAPI"].get("items") or [], default_mode, pod_ip))
        else:
            kind = next(iter(source), "unknown")
            raise VolumeError(volume, f"projected source {kind} is not supported by the embedded labkit node")
    return payload


# ------------------------------------------------------------------------------------------------ volumes
UNSUPPORTED_HINT = "the embedded labkit node supports emptyDir, configMap, secret, projected and downwardAPI volumes"


class Volumes:
    """The volumes of one pod on the host: `sync` (re)writes them, `mounts` says where each container gets them."""

    def __init__(self, pod_dir: Path, shm_dir: Path) -> None:
        self.pod_dir = pod_dir
        self.shm_dir = shm_dir
        self.paths: dict[str, Path] = {}

    def path(self, volume: dict[str, Any]) -> Path:
        empty = volume.get("emptyDir")
        if isinstance(empty, dict) and empty.get("medium") == "Memory":
            return self.shm_dir / volume["name"]
        return self.pod_dir / "volumes" / volume["name"]

    def sync(self, pod: dict[str, Any], sources: Sources, pod_ip: str) -> list[str]:
        """Create or update every volume of `pod`; returns the names of those whose content changed. Raises
        VolumeError for the first one that cannot be set up (the others are still written)."""
        namespace = pod["metadata"].get("namespace") or "default"
        changed: list[str] = []
        first_error: VolumeError | None = None
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            name = volume.get("name", "")
            try:
                if self._sync_one(volume, pod, namespace, sources, pod_ip):
                    changed.append(name)
            except VolumeError as exc:
                first_error = first_error or exc
        if first_error:
            raise first_error
        return changed

    def _sync_one(self, volume: dict[str, Any], pod: dict[str, Any], namespace: str, sources: Sources,
                  pod_ip: str) -> bool:
        name = volume["name"]
        path = self.path(volume)
        default_mode = DEFAULT_MODE
        if "emptyDir" in volume:
            if not path.exists():
                path.mkdir(parents=True)
                path.chmod(0o777)  # kubelet makes emptyDirs world-writable
            self.paths[name] = path
            return False
        if "hostPath" in volume:
            raise VolumeError(name, f"hostPath volumes are refused by the embedded labkit node: its pods would write "
                                    f"the host's {volume['hostPath'].get('path', '')} (use an emptyDir)")
        for kind in ("configMap", "secret", "downwardAPI", "projected"):
            if kind in volume:
                src = volume[kind] or {}
                default_mode = _mode(src.get("defaultMode"), DEFAULT_MODE)
                break
        else:
            kind = next((k for k in volume if k != "name"), "unknown")
            raise VolumeError(name, f"{kind} volumes are not supported: {UNSUPPORTED_HINT}")
        if kind == "configMap":
            payload = configmap_payload(name, src, namespace, sources, default_mode)
        elif kind == "secret":
            payload = secret_payload(name, src, namespace, sources, default_mode)
        elif kind == "downwardAPI":
            payload = downward_payload(pod, src.get("items") or [], default_mode, pod_ip)
        else:
            payload = projected_payload(name, src, pod, sources, pod_ip)
        written = atomic_write(path, payload)
        self.paths[name] = path
        return written

    def serviceaccount(self, pod: dict[str, Any], sources: Sources) -> Path:
        """The token directory kubelet mounts when the pod does not mount one itself (automount)."""
        path = self.pod_dir / "serviceaccount"
        atomic_write(path, serviceaccount_payload(pod, sources))
        return path

    def mounts(self, pod: dict[str, Any], container: dict[str, Any], serviceaccount: Path | None) -> list[Mount]:
        """The container's volumeMounts as bind mounts (configMap, secret, downwardAPI, projected: read-only)."""
        kinds = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
        result: list[Mount] = []
        for vm in container.get("volumeMounts") or []:
            volume = kinds.get(vm.get("name"))
            base = self.paths.get(vm.get("name", ""))
            if volume is None or base is None:
                raise VolumeError(vm.get("name", ""), "volume is not set up")
            source = base
            sub = vm.get("subPath") or ""
            if vm.get("subPathExpr"):
                sub = _expand_env(vm["subPathExpr"], pod)
            if sub:
                source = _subpath(base, sub, vm.get("name", ""))
            read_only = bool(vm.get("readOnly")) or "emptyDir" not in volume
            result.append(Mount(str(source), vm.get("mountPath", ""), read_only))
        if serviceaccount is not None and not any(m.target.rstrip("/") == SERVICEACCOUNT_PATH for m in result):
            result.append(Mount(str(serviceaccount), SERVICEACCOUNT_PATH, True))
        return result


def _expand_env(expr: str, pod: dict[str, Any]) -> str:
    md = pod["metadata"]
    env = {"POD_NAME": md.get("name", ""), "POD_NAMESPACE": md.get("namespace") or "default"}
    for key, value in env.items():
        expr = expr.replace(f"$({key})", value)
    return expr


def _subpath(base: Path, sub: str, volume: str) -> Path:
    """`sub` inside the volume, which no symlink may leave (kubelet's subpath checks)."""
    if sub.startswith("/") or ".." in sub.split("/"):
        raise VolumeError(volume, f"subPath {sub!r} must be a relative path without '..'")
    path = base / sub
    real = os.path.realpath(path)
    if not (real == os.path.realpath(base) or real.startswith(os.path.realpath(base) + "/")):
        raise VolumeError(volume, f"subPath {sub!r} leaves the volume")
    if not os.path.exists(real):
        os.makedirs(real, exist_ok=True)  # kubelet creates a missing subPath directory
    return Path(real)


def volume_references(pod: dict[str, Any]) -> set[tuple[str, str]]:
    """("configMap" | "secret", name) of every object the pod's volumes show."""
    refs: set[tuple[str, str]] = set()
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        if volume.get("configMap"):
            refs.add(("configMap", volume["configMap"].get("name", "")))
        if volume.get("secret"):
            refs.add(("secret", volume["secret"].get("secretName", "")))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if source.get("configMap"):
                refs.add(("configMap", source["configMap"].get("name", "")))
            if source.get("secret"):
                refs.add(("secret", source["secret"].get("name", "")))
    return refs
