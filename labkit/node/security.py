"""A container's privileges: Docker's default capability set, `securityContext`, and applying them.

`container_security(pod, container)` turns the pod's and the container's securityContext into a `Security`
(JSON-able, sent to the zygote) or raises `ConfigError`, which the kubelet reports as
`CreateContainerConfigError`, as it does for a securityContext it cannot run. `apply(security)` runs in the
container's first process after its root filesystem is in place: it drops the capabilities outside the set
(bounding, permitted, effective, inheritable, ambient), sets no_new_privs, the groups and the user.

What is honoured: capabilities.add/drop (with `ALL`), runAsUser, runAsGroup, supplementalGroups, fsGroup (as a
supplementary group), runAsNonRoot (kubelet's checks and messages), readOnlyRootFilesystem,
allowPrivilegeEscalation. What is refused: `privileged` and capabilities that would hand a pod the host
(pods run as the host's root: CAP_SYS_ADMIN could remount and reach the host's disks, CAP_DAC_READ_SEARCH opens
any host file by handle, CAP_SYS_MODULE loads kernel modules, ...). What cannot be enforced here (seccomp and
AppArmor profiles, SELinux options, sysctls) is named in a Warning event instead of being ignored silently.

Sources: containerd pkg/oci/spec.go (defaultUnixCaps), internal/cri/opts/spec_linux_opts.go (WithCapabilities:
ALL first, then add, then drop), kubernetes pkg/kubelet/kuberuntime/security_context_others.go
(verifyRunAsNonRoot messages), pkg/kubelet/kuberuntime/kuberuntime_container_linux.go.
"""

from __future__ import annotations

import ctypes
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)  # index = the capability's number (linux/capability.h)

# containerd's defaultUnixCaps (identical to moby's oci/caps/defaults.go).
DEFAULT_CAPS = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP",
                "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")

# A pod's root is the host's root: these would let it reach past its namespaces into the machine.
REFUSED_CAPS = {
    "SYS_ADMIN": "it could remount the pod's filesystems and reach the host's disks",
    "DAC_READ_SEARCH": "it opens any file of the host by its handle (open_by_handle_at)",
    "SYS_MODULE": "it loads kernel modules",
    "SYS_RAWIO": "it gives raw access to the host's I/O ports and memory",
    "SYS_BOOT": "it reboots the host",
    "SYS_TIME": "it sets the host's clock",
    "SYS_PACCT": "it switches the host's process accounting",
    "SYS_TTY_CONFIG": "it reconfigures the host's terminals",
    "SYSLOG": "it reads and clears the host's kernel log",
    "MAC_ADMIN": "it changes the host's security policy",
    "MAC_OVERRIDE": "it overrides the host's security policy",
    "AUDIT_CONTROL": "it changes the host's audit rules",
    "BPF": "it loads BPF programs into the host's kernel",
    "PERFMON": "it observes the host's kernel",
    "CHECKPOINT_RESTORE": "it manipulates processes beyond the pod",
}

_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522


class ConfigError(Exception):
    """A container the node will not create (kubelet's CreateContainerConfigError)."""

    reason = "CreateContainerConfigError"


@dataclass
class Security:
    """What the container's first process becomes (JSON-able for the zygote)."""

    capabilities: list[str] = field(default_factory=lambda: list(DEFAULT_CAPS))
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    no_new_privs: bool = False
    read_only_root: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Security:
        return cls(**doc)


def _cap_name(name: str) -> str:
    name = str(name).upper()
    return name[4:] if name.startswith("CAP_") else name


def capability_set(add: list[str], drop: list[str]) -> list[str]:
    """containerd's WithCapabilities: the default set (all of them when `add` has ALL, none when `drop` has
    ALL), then the adds, then the drops."""
    adds = [_cap_name(c) for c in add]
    drops = [_cap_name(c) for c in drop]
    caps = list(CAPABILITIES) if "ALL" in adds else list(DEFAULT_CAPS)
    if "ALL" in drops:
        caps = []
    caps += [c for c in adds if c != "ALL" and c not in caps]
    return [c for c in caps if c not in drops]


def _pod_ref(pod: dict[str, Any]) -> str:
    md = pod["metadata"]
    return f"{md['name']}_{md.get('namespace') or 'default'}({md.get('uid', '')})"


def container_security(pod: dict[str, Any], container: dict[str, Any]) -> Security:
    """The effective security of `container` (container securityContext over the pod's); ConfigError if refused."""
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}
    name = container.get("name", "")
    if csc.get("privileged"):
        raise ConfigError(f"container {name} is privileged: the embedded labkit node does not run privileged "
                          "containers (they would own the host, whose root the pod's root is)")
    caps = csc.get("capabilities") or {}
    add = [_cap_name(c) for c in caps.get("add") or []]
    if "ALL" in add:
        raise ConfigError(f"container {name} adds capability ALL: the embedded labkit node refuses it (pods run "
                          "as the host's root)")
    for cap in add:
        if cap not in CAPABILITIES:
            raise ConfigError(f"container {name}: unknown capability {cap!r}")
        if cap in REFUSED_CAPS:
            raise ConfigError(f"container {name} adds capability {cap}: the embedded labkit node refuses it, since "
                              f"pods run as the host's root and {REFUSED_CAPS[cap]}")
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
    if non_root:
        # kubelet's verifyRunAsNonRoot; every built-in image runs as root (uid 0).
        if uid is not None and int(uid) == 0:
            raise ConfigError(f'container\'s runAsUser breaks non-root policy (pod: "{_pod_ref(pod)}", '
                              f"container: {name})")
        if uid is None:
            raise ConfigError(f'container has runAsNonRoot and image will run as root (pod: "{_pod_ref(pod)}", '
                              f"container: {name})")
    groups = [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        groups.append(int(psc["fsGroup"]))
    return Security(capabilities=capability_set(add, list(caps.get("drop") or [])),
                    uid=int(uid or 0), gid=int(gid or 0), groups=sorted(set(groups)),
                    no_new_privs=csc.get("allowPrivilegeEscalation") is False,
                    read_only_root=bool(csc.get("readOnlyRootFilesystem")))


def unenforced(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """securityContext settings this node cannot enforce (each becomes a Warning event)."""
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}
    found = []
    for where, sc in (("pod", psc), ("container", csc)):
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp and seccomp != "Unconfined":
            found.append(f"{where} securityContext.seccompProfile {seccomp} (no seccomp filter is applied)")
        apparmor = (sc.get("appArmorProfile") or {}).get("type")
        if apparmor and apparmor != "Unconfined":
            found.append(f"{where} securityContext.appArmorProfile {apparmor} (no AppArmor profile is applied)")
        if sc.get("seLinuxOptions"):
            found.append(f"{where} securityContext.seLinuxOptions (no SELinux label is applied)")
    spec = pod.get("spec") or {}
    if spec.get("shareProcessNamespace"):
        found.append("pod spec.shareProcessNamespace (each container keeps a PID namespace of its own)")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            found.append(f"pod spec.{key} (the pod keeps namespaces of its own)")
    if psc.get("sysctls"):
        names = ", ".join(s.get("name", "") for s in psc["sysctls"])
        found.append(f"pod securityContext.sysctls {names} (not set)")
    if csc.get("procMount") not in (None, "Default"):
        found.append(f"container securityContext.procMount {csc['procMount']} (/proc stays masked)")
    return found


def exec_argv(pid: int, argv: list[str], env: dict[str, str] | None = None, security: Security | None = None,
              working_dir: str | None = None) -> list[str]:
    """The host command line running `argv` inside the container whose first process is `pid` (see Node)."""
    sec = security or Security()
    prefix = ["nsenter", f"--target={pid}", "--mount", "--uts", "--ipc", "--net", "--pid"]
    if working_dir:
        prefix.append(f"--wd={working_dir}")
    caps = ",".join(["-all", *(f"+{c.lower()}" for c in sec.capabilities)])
    priv = ["setpriv", f"--bounding-set={caps}", "--inh-caps=-all"]
    if sec.uid or sec.gid or sec.groups:
        priv += [f"--reuid={sec.uid}", f"--regid={sec.gid}",
                 f"--groups={','.join(map(str, sec.groups))}" if sec.groups else "--clear-groups"]
    if sec.no_new_privs:
        priv.append("--no-new-privs")
    envs = ["env", "-i", *(f"{k}={v}" for k, v in env.items())] if env is not None else []
    return [*prefix, "--", *priv, "--", *envs, *argv]


# ---------------------------------------------------------------------------------- in the container
class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
_CapSets = _CapData * 2  # made once: a ctypes array type is an object of its own
try:  # the highest capability this kernel knows (read before any container's /proc replaces the host's)
    _LAST_CAP = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
except (OSError, ValueError):
    _LAST_CAP = len(CAPABILITIES) - 1


def _libc() -> ctypes.CDLL:
    return _LIBC


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def apply(sec: Security) -> None:
    """Become what `sec` says: run in the container's first process, before it runs the workload."""
    libc = _libc()
    keep = {CAPABILITIES.index(c) for c in sec.capabilities}
    last = _LAST_CAP
    for cap in range(last + 1):
        if cap not in keep:
            _check(libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"dropping capability {cap}")
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if sec.no_new_privs:
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if sec.groups or sec.gid or sec.uid:
        groups = (ctypes.c_uint32 * max(1, len(sec.groups)))(*sec.groups)
        _check(libc.setgroups(len(sec.groups), groups), "setgroups")
        os.setresgid(sec.gid, sec.gid, sec.gid)
    mask = sum(1 << c for c in keep)
    if sec.uid:
        os.setresuid(sec.uid, sec.uid, sec.uid)  # the kernel clears the capabilities of a non-root uid
        mask = 0
    if sec.groups or sec.gid or sec.uid:
        # A change of uid or gid clears the parent-death signal (prctl(2)): armed again, or the process would
        # outlive its zygote and the cluster's supervisor.
        _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "parent-death signal")
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = _CapSets(_CapData(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0), _CapData(mask >> 32, mask >> 32, 0))
    _check(libc.capset(ctypes.byref(header), data), "capset")
