"""The cluster's own processes as kind shows them in `kubectl get pods -n kube-system`.

On kind, kubelet runs the control plane from static pod manifests (kubeadm's) and publishes each as a *mirror
pod* `<component>-<node>` (annotation `kubernetes.io/config.mirror`, owned by the Node); kube-proxy runs as the
`kube-proxy` DaemonSet's pod. In labkit the supervisor runs those processes (labkit.backends.processes), so the
node agent does not run these pods: it reports them Running with the component's start time and restart count,
and their logs are the component's log file. `component_of(pod)` says which process a pod stands for;
`log_file(home, pod)` is the one seam through which `kubectl logs` reads a component's log.

Which labkit process stands for which component: kube-apiserver → `apiserver`; kube-controller-manager and
kube-scheduler → `controller-manager` (labkit's scheduler is one of its controllers); etcd → `apiserver` (its
SQLite store lives in the API server's process); kube-proxy → `ipvs-agent` (the IPVS/nftables agent).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KUBE_VERSION = "v1.32.5"
NODE_IP = "172.18.0.2"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
KUBE_PROXY_IMAGE = f"registry.k8s.io/kube-proxy:{KUBE_VERSION}"

# component → (labkit process, image, command, cpu request, extra annotations)
_CONTROL_PLANE: dict[str, tuple[str, str, list[str], str, dict[str, str]]] = {
    "etcd": ("apiserver", "registry.k8s.io/etcd:3.5.16-0", [
        "etcd", f"--advertise-client-urls=https://{NODE_IP}:2379", "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
        "--client-cert-auth=true", "--data-dir=/var/lib/etcd", "--experimental-initial-corrupt-check=true",
        "--experimental-watch-progress-notify-interval=5s", f"--initial-advertise-peer-urls=https://{NODE_IP}:2380",
        f"--initial-cluster=labkit-control-plane=https://{NODE_IP}:2380",
        "--key-file=/etc/kubernetes/pki/etcd/server.key",
        f"--listen-client-urls=https://127.0.0.1:2379,https://{NODE_IP}:2379", "--listen-metrics-urls=http://127.0.0.1:2381",
        f"--listen-peer-urls=https://{NODE_IP}:2380", "--name=labkit-control-plane",
        "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt", "--peer-client-cert-auth=true",
        "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key", "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--snapshot-count=10000", "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt"], "100m",
        {"kubeadm.kubernetes.io/etcd.advertise-client-urls": f"https://{NODE_IP}:2379"}),
    "kube-apiserver": ("apiserver", f"registry.k8s.io/kube-apiserver:{KUBE_VERSION}", [
        "kube-apiserver", f"--advertise-address={NODE_IP}", "--allow-privileged=true",
        "--authorization-mode=Node,RBAC", "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--enable-admission-plugins=NodeRestriction", "--enable-bootstrap-token-auth=true",
        "--etcd-servers=https://127.0.0.1:2379", "--runtime-config=", "--secure-port=6443",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key", "--service-cluster-ip-range=10.96.0.0/16",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key"],
        "250m", {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": f"{NODE_IP}:6443"}),
    "kube-controller-manager": ("controller-manager", f"registry.k8s.io/kube-controller-manager:{KUBE_VERSION}", [
        "kube-controller-manager", "--allocate-node-cidrs=true",
        "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf", "--bind-address=127.0.0.1",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt", "--cluster-cidr=10.244.0.0/16", "--cluster-name=labkit",
        "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key", "--controllers=*,bootstrapsigner,tokencleaner",
        "--enable-hostpath-provisioner=true", "--kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--leader-elect=true", "--root-ca-file=/etc/kubernetes/pki/ca.crt",
        "--service-account-private-key-file=/etc/kubernetes/pki/sa.key", "--service-cluster-ip-range=10.96.0.0/16",
        "--use-service-account-credentials=true"], "200m", {}),
    "kube-scheduler": ("controller-manager", f"registry.k8s.io/kube-scheduler:{KUBE_VERSION}", [
        "kube-scheduler", "--authentication-kubeconfig=/etc/kubernetes/scheduler.conf",
        "--authorization-kubeconfig=/etc/kubernetes/scheduler.conf", "--bind-address=127.0.0.1",
        "--kubeconfig=/etc/kubernetes/scheduler.conf", "--leader-elect=true"], "100m", {}),
}


def mirror_pods(node_name: str, node_uid: str) -> list[dict[str, Any]]:
    """The control plane's mirror pods as kubelet creates them from kubeadm's static pod manifests."""
    pods = []
    for component, (_process, image, command, cpu, extra) in _CONTROL_PLANE.items():
        spec: dict[str, Any] = {
            "containers": [{"name": component, "image": image, "imagePullPolicy": "IfNotPresent",
                            "command": command, "resources": {"requests": {"cpu": cpu}}}],
            "hostNetwork": True, "nodeName": node_name, "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
        }
        config_hash = hashlib.md5(json.dumps(spec, sort_keys=True).encode()).hexdigest()  # a name, not a secret
        pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": f"{component}-{node_name}", "namespace": "kube-system",
            "labels": {"component": component, "tier": "control-plane"},
            "annotations": {**extra, "kubernetes.io/config.hash": config_hash, MIRROR_ANNOTATION: config_hash,
                            "kubernetes.io/config.seen": datetime.now(UTC).isoformat(timespec="microseconds")
                            .replace("+00:00", "Z"), "kubernetes.io/config.source": "file"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid,
                                 "controller": True}]},
            "spec": spec})
    return pods


def component_of(pod: dict[str, Any]) -> str | None:
    """The labkit process a pod stands for (None for an ordinary pod the node runs)."""
    meta = pod.get("metadata") or {}
    if meta.get("namespace") != "kube-system":
        return None
    containers = (pod.get("spec") or {}).get("containers") or []
    if (meta.get("annotations") or {}).get(MIRROR_ANNOTATION):
        entry = _CONTROL_PLANE.get((meta.get("labels") or {}).get("component", ""))
        return entry[0] if entry else None
    if containers and containers[0].get("image", "").startswith("registry.k8s.io/kube-proxy:"):
        return "ipvs-agent"
    return None


def log_file(home: str | os.PathLike[str], pod: dict[str, Any]) -> Path | None:
    """The seam for `kubectl logs`: the log of the process a system pod stands for, None for other pods."""
    process = component_of(pod)
    return Path(home) / "logs" / f"{process}.log" if process else None


def _process_state(home: Path, process: str) -> tuple[str | None, int, bool]:
    """(start time, restarts, running) of a supervised process, from the supervisor's status file."""
    try:
        entry = json.loads((home / "run" / "status.json").read_text()).get(process) or {}
    except (OSError, ValueError):
        return None, 0, False
    started = None
    pid = entry.get("pid")
    if pid:
        try:
            started = datetime.fromtimestamp(os.stat(f"/proc/{pid}").st_ctime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except OSError:
            started = None
    return started, int(entry.get("restarts") or 0), bool(entry.get("running"))


def status(home: str | os.PathLike[str], pod: dict[str, Any], now: str) -> dict[str, Any]:
    """The pod status kubelet would report for a system pod: Running while its process runs."""
    process = component_of(pod) or ""
    started, restarts, running = _process_state(Path(home), process)
    started = started or now
    ready = "True" if running else "False"
    conditions = [{"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": started}
                  for t, s in (("PodReadyToStartContainers", "True"), ("Initialized", "True"), ("Ready", ready),
                               ("ContainersReady", ready), ("PodScheduled", "True"))]
    container_statuses = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        cid = hashlib.sha256(f"{(pod.get('metadata') or {}).get('uid')}/{c['name']}/{restarts}".encode()).hexdigest()
        state = {"running": {"startedAt": started}} if running else {"waiting": {"reason": "CrashLoopBackOff"}}
        container_statuses.append({
            "name": c["name"], "state": state, "lastState": {}, "ready": running, "restartCount": restarts,
            "image": c.get("image", ""), "imageID": "", "containerID": f"containerd://{cid}", "started": running})
    return {"phase": "Running", "conditions": conditions, "hostIP": NODE_IP, "hostIPs": [{"ip": NODE_IP}],
            "podIP": NODE_IP, "podIPs": [{"ip": NODE_IP}], "startTime": started,
            "containerStatuses": container_statuses}
