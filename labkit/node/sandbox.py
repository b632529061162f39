"""Pod sandboxes: the namespaces a pod's containers share, kept alive without a "pause" process.

A sandbox is three namespaces persisted as bind-mounted namespace files, the way `ip netns add` does:
- network: /run/netns/<prefix>-p<key> (visible to `ip netns`), eth0 = one end of a veth whose other end
  (`veth<key>`) is attached to the node's cni0 bridge; lo up; routed point-to-point style (see below);
- UTS: hostname = spec.hostname or the pod name (the FQDN with setHostnameAsFQDN, podfiles.kernel_hostname);
- IPC: System V IPC and POSIX message queues of the pod's own.
Plus the files kubelet writes for the pod (hosts, hostname, resolv.conf) in the pod's directory. Each container
then gets a mount and a PID namespace of its own, made by the zygote (labkit.node.rootfs): the sandbox holds
no mount namespace.

Pod routing is kindnet's (CNI `ptp`): the address keeps its /24 (`ip addr` shows 10.244.0.x/24) but without the
on-link subnet route (`noprefixroute`); the only routes are `10.244.0.1 dev eth0 scope link` and `default via
10.244.0.1`. So every packet a pod sends, even to a neighbour pod on the same bridge, goes through the node's
namespace. That is what lets the userspace IPVS data plane keep the client pod's address as the source towards a
backend pod (as kernel IPVS NAT does): the backend's reply to the client's address comes back to the node, where
the agent's transparent socket takes it (labkit/agent/transparent.py), instead of going straight to the client.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.node import nsutil, podfiles
from labkit.node.ipam import IPAM
from labkit.node.names import Names
from labkit.node.network import POD_GATEWAY, UPSTREAM_DNS

NODE_RESOLV_CONF = f"nameserver {UPSTREAM_DNS}\n"  # the embedded node's own resolver: the outside world's DNS


@dataclass(frozen=True)
class Sandbox:
    """Where a pod's namespaces and files are."""

    uid: str
    name: str
    namespace: str
    ip: str
    hostname: str
    netns: str          # name under /run/netns
    net_file: str       # /run/netns/<name>
    uts_file: str
    ipc_file: str
    pod_dir: str        # hosts, hostname, resolv.conf, logs/, volumes/

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def ensure_private_dir(path: Path) -> None:
    """Make `path` a private bind mount of itself: mount-namespace files may only be bind-mounted onto a
    mount that is not shared (else the new namespace would see itself)."""
    path.mkdir(parents=True, exist_ok=True)
    if str(path) in {p for p, _ in nsutil.mountpoints()}:
        return  # made private when it was mounted (saves a `mount` process per sandbox)
    nsutil.run(["mount", "--bind", str(path), str(path)])
    nsutil.run(["mount", "--make-private", str(path)])


class SandboxManager:
    """Creates and removes pod sandboxes of one cluster (the node network must exist)."""

    def __init__(self, names: Names, *, cluster_dns: tuple[str, ...] = ("10.96.0.10",),
                 cluster_domain: str = "cluster.local", node_resolv_conf: str = NODE_RESOLV_CONF) -> None:
        self.names = names
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        self.node_resolv_conf = node_resolv_conf
        self.ipam = IPAM(names.ipam_file)

    def _sandbox(self, pod: dict[str, Any], ip: str) -> Sandbox:
        meta = pod["metadata"]
        uid = meta["uid"]
        hostname = podfiles.kernel_hostname(pod, self.cluster_domain)
        netns = self.names.pod_netns(uid)
        return Sandbox(uid=uid, name=meta["name"], namespace=meta.get("namespace") or "default", ip=ip,
                       hostname=hostname, netns=netns, net_file=str(Names.netns_path(netns)),
                       uts_file=str(self.names.pod_uts_file(uid)), ipc_file=str(self.names.pod_ipc_file(uid)),
                       pod_dir=str(self.names.pod_dir(uid)))

    def get(self, pod: dict[str, Any]) -> Sandbox | None:
        """The sandbox of `pod` if it exists (e.g. made before a node agent restart)."""
        uid = pod["metadata"]["uid"]
        ip = self.ipam.ip_of(uid)
        if ip is None:
            return None
        sandbox = self._sandbox(pod, ip)
        complete = all(os.path.exists(p) for p in (sandbox.net_file, sandbox.uts_file, sandbox.ipc_file))
        return sandbox if complete else None

    def create(self, pod: dict[str, Any]) -> Sandbox:
        """Make the sandbox of `pod` (idempotent). Raises podfiles.SandboxConfigError, before anything is made,
        for a pod no sandbox can be made for."""
        existing = self.get(pod)
        if existing:
            return existing
        podfiles.kernel_hostname(pod, self.cluster_domain)
        uid = pod["metadata"]["uid"]
        ip = self.ipam.allocate(uid)
        sandbox = self._sandbox(pod, ip)
        try:
            self._create(pod, sandbox)
        except BaseException:
            self.remove(uid)
            raise
        return sandbox

    def _create(self, pod: dict[str, Any], sb: Sandbox) -> None:
        node = self.names.node_netns
        veth = Names.pod_veth(sb.uid)
        # Leftovers of an interrupted attempt (the veth goes with its peer's namespace).
        if Names.netns_path(sb.netns).exists():
            nsutil.ip(None, "netns", "del", sb.netns, check=False)
            nsutil.ip(node, "link", "del", veth, check=False)
        nsutil.ip(None, "netns", "add", sb.netns)
        nsutil.ip_batch(node, [
            f"link add {veth} type veth peer name eth0 netns {sb.netns}",
            f"link set {veth} master cni0 up",
        ])
        nsutil.ip_batch(sb.netns, [
            "link set lo up",
            f"addr add {sb.ip}/24 dev eth0 noprefixroute",  # no on-link 10.244.0.0/24: neighbours via the node
            "link set eth0 up",
            f"route add {POD_GATEWAY} dev eth0 scope link",
            f"route add default via {POD_GATEWAY} dev eth0",
        ])
        # Files kubelet writes for the pod.
        pod_dir = Path(sb.pod_dir)
        (pod_dir / "logs").mkdir(parents=True, exist_ok=True)
        (pod_dir / "hosts").write_text(podfiles.hosts_file(pod, [sb.ip], self.cluster_domain))
        (pod_dir / "hostname").write_text(podfiles.hostname_file(pod, self.cluster_domain))
        (pod_dir / "resolv.conf").write_text(podfiles.resolv_conf(
            pod, cluster_dns=self.cluster_dns, cluster_domain=self.cluster_domain,
            node_resolv_conf=self.node_resolv_conf))
        # UTS + IPC namespaces, persisted by unshare's bind mounts of the namespace files.
        ensure_private_dir(self.names.ns_dir)
        for f in (sb.uts_file, sb.ipc_file):
            Path(f).touch()
        nsutil.run(["unshare", f"--uts={sb.uts_file}", f"--ipc={sb.ipc_file}", "--", "hostname", sb.hostname])

    def remove(self, uid: str) -> None:
        """Kill whatever still runs in the pod, remove its namespaces, veth, files and IP (idempotent)."""
        netns = self.names.pod_netns(uid)
        net_file = Names.netns_path(netns)
        kill_processes_in({nsutil.ns_inode(net_file)} - {None})  # type: ignore[arg-type]
        for f in (self.names.pod_uts_file(uid), self.names.pod_ipc_file(uid)):
            try:
                nsutil.umount(f)
            except OSError:
                pass
            Path(f).unlink(missing_ok=True)
        nsutil.ip(self.names.node_netns, "link", "del", Names.pod_veth(uid), check=False)
        nsutil.ip(None, "netns", "del", netns, check=False)
        shutil.rmtree(self.names.pod_dir(uid), ignore_errors=True)
        shutil.rmtree(self.names.pod_shm_dir(uid), ignore_errors=True)
        self.ipam.release(uid)


def _proc_net_inode(pid: str) -> int | None:
    return nsutil.ns_inode(f"/proc/{pid}/ns/net")


def kill_processes_in(net_inodes: set[int], timeout: float = 5.0) -> int:
    """SIGKILL every process whose network namespace is one of `net_inodes`; wait until they are gone.
    Returns how many were signalled."""
    if not net_inodes:
        return 0
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        found = [int(p) for p in os.listdir("/proc") if p.isdigit() and _proc_net_inode(p) in net_inodes
                 and int(p) != os.getpid()]
        if not found or time.monotonic() > deadline:
            return len(killed)
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.01)  # zombies linger until their parent reaps them; bounded by `deadline`

