"""Names of the kernel objects one embedded cluster makes, derived from its state directory.

Only objects that live in the *host's* namespaces need a cluster-unique name: the network namespace
files under /run/netns and the namespace bind mounts under the state dir. Links (bridge, veths, dummies)
live inside the cluster's own namespaces, so they can keep the short names kind uses (`cni0`, `eth0`,
`veth<8 hex>`): two clusters with different LABKIT_HOME never see each other's links.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/run/netns")
SHM_DIR = Path("/dev/shm")
# One file per cluster started on this machine, named after its prefix and holding its state directory: the
# prefix is a one-way hash, and a cluster whose state directory was deleted after a SIGKILL (a test run's
# temporary home) can only be found and reaped through it. /run is a tmpfs, like the /run/netns files it explains.
REGISTRY_DIR = Path("/run/labkit/clusters")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def cluster_prefix(home: str | os.PathLike[str]) -> str:
    """`lk` + 6 hex digits of sha1(absolute state dir): the prefix of every host-visible object."""
    absolute = os.path.abspath(os.fspath(home))
    return "lk" + hashlib.sha1(absolute.encode()).hexdigest()[:6]


def register(home: str | os.PathLike[str]) -> None:
    """Record which state directory a prefix belongs to (see REGISTRY_DIR)."""
    absolute = os.path.abspath(os.fspath(home))
    REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
    (REGISTRY_DIR / cluster_prefix(absolute)).write_text(absolute + "\n")


def unregister(home: str | os.PathLike[str]) -> None:
    (REGISTRY_DIR / cluster_prefix(home)).unlink(missing_ok=True)


def registered() -> dict[str, Path]:
    """prefix → state directory of every cluster registered on this machine."""
    found: dict[str, Path] = {}
    try:
        entries = list(REGISTRY_DIR.iterdir())
    except FileNotFoundError:
        return found
    for entry in entries:
        try:
            found[entry.name] = Path(entry.read_text().strip())
        except OSError:
            continue
    return found


def pod_key(uid: str) -> str:
    """8 hex characters naming a pod's objects: the UID's first 8 when it is a UUID, else a hash of it."""
    if _UUID.match(uid.lower()):
        return uid.lower()[:8]
    return hashlib.sha1(uid.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Names:
    """Every name and path one cluster uses on the host."""

    home: Path
    prefix: str

    @classmethod
    def for_home(cls, home: str | os.PathLike[str]) -> Names:
        return cls(Path(os.path.abspath(os.fspath(home))), cluster_prefix(home))

    # ---- network namespaces (files in /run/netns, visible to `ip netns`) ----
    @property
    def node_netns(self) -> str:
        return f"{self.prefix}-node"

    @property
    def ext_netns(self) -> str:
        return f"{self.prefix}-ext"

    def pod_netns(self, uid: str) -> str:
        return f"{self.prefix}-p{pod_key(uid)}"

    @staticmethod
    def netns_path(name: str) -> Path:
        return NETNS_DIR / name

    # ---- links inside the node namespace ----
    @staticmethod
    def pod_veth(uid: str) -> str:
        """Node-side end of a pod's veth pair (kind/kindnet style `veth<8 hex>`, 12 chars ≤ 15)."""
        return f"veth{pod_key(uid)}"

    # ---- state on disk ----
    @property
    def node_dir(self) -> Path:
        return self.home / "node"

    @property
    def ns_dir(self) -> Path:
        """Private bind mount holding the UTS and mount namespace files of pods (named after the prefix so
        that cleanup(prefix) finds it from mountinfo alone)."""
        return self.node_dir / self.prefix

    def pod_uts_file(self, uid: str) -> Path:
        return self.ns_dir / f"{self.prefix}-p{pod_key(uid)}.uts"

    def pod_ipc_file(self, uid: str) -> Path:
        return self.ns_dir / f"{self.prefix}-p{pod_key(uid)}.ipc"

    def pod_dir(self, uid: str) -> Path:
        return self.node_dir / "pods" / uid

    @property
    def shm_dir(self) -> Path:
        """Memory-backed emptyDir volumes of the cluster's pods (/dev/shm is a tmpfs)."""
        return SHM_DIR / f"labkit-{self.prefix}"

    def pod_shm_dir(self, uid: str) -> Path:
        return self.shm_dir / uid

    @property
    def rootfs_staging(self) -> Path:
        """An empty directory over which each new container mounts its root, in its own mount namespace."""
        return self.node_dir / "rootfs"

    @property
    def ipam_file(self) -> Path:
        return self.node_dir / "ipam.json"

    @property
    def kubelet_socket(self) -> Path:
        """The node's streaming server (exec, attach, logs, port-forward), which the API server proxies to."""
        return self.node_dir / "kubelet.sock"

    @property
    def zygote_socket(self) -> Path:
        return self.node_dir / "zygote.sock"

    @property
    def marker(self) -> str:
        """Environment entry every process of this cluster carries (found by cleanup after a SIGKILL)."""
        return f"LABKIT_CLUSTER={self.prefix}"
