"""Fake `kind`, `docker` and `kubectl` executables for testing the kind and kubeconfig backends without Docker.

Each fake records its arguments (and KUBECONFIG) in `<state>/calls.jsonl` and answers the way the real tool does:
the same words on the same stream, the same exit status. Where the words come from:

- kind v0.32.0 (kubernetes-sigs/kind): `pkg/cmd/kind/...` (commands, flags, "No kind clusters found."),
  `pkg/internal/cli/status.go` (" • step  ..." / " ✓ step" lines when stderr is not a terminal),
  `pkg/cluster/internal/create/create.go` (the create sequence and its closing lines),
  `pkg/cluster/internal/providers/common/namer.go` (node names: <name>-control-plane, <name>-worker, -worker2),
  `pkg/cmd/kind/load/docker-image/docker-image.go` (the load messages), `cmd/kind/app/main.go` ("ERROR: ...").
- Docker CLI 28.2.2 (run on this machine, daemon absent): "Cannot connect to the Docker daemon at
  unix:///var/run/docker.sock. Is the docker daemon running?", exit status 1.
- kubectl: "<resource>[.<group>]/<name> created", "condition met", rollout status lines, the connection-refused
  message; dig 9.18's output format.
- The kernel's /proc/net/ip_vs (net/netfilter/ipvs/ip_vs_ctl.c ip_vs_info_seq_show) for what kube-proxy programs
  on a fresh kind cluster (the kubernetes and kube-dns Services).

The state (`<state>/state.json`) is what the Docker host would hold: clusters with their nodes, config and loaded
images, the local images, the objects applied with kubectl. Knobs: FAKE_DOCKER_DOWN=1 (no daemon answers),
FAKE_KIND_VERSION (what `kind version` says).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

DAEMON_DOWN = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
LIST_CLUSTERS = ("docker ps -a --filter label=io.x-k8s.kind.cluster "
                 "--format '{{.Label \"io.x-k8s.kind.cluster\"}}'")
NODE_HZ = 250  # the Docker host kernel's CONFIG_HZ (Debian's)
DEFAULT_NODE_IMAGE = "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"


# ------------------------------------------------------------------------------------------------ state

class State:
    def __init__(self) -> None:
        self.dir = Path(os.environ["FAKE_TOOLS_STATE"])
        self.path = self.dir / "state.json"
        self.data: dict[str, Any] = (json.loads(self.path.read_text()) if self.path.exists()
                                     else {"clusters": {}, "images": {}})

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def record(self, tool: str, argv: list[str], stdin: str | None = None) -> None:
        entry = {"tool": tool, "argv": argv, "KUBECONFIG": os.environ.get("KUBECONFIG")}
        if stdin is not None:
            entry["stdin"] = stdin
        with open(self.dir / "calls.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")

    @property
    def docker_up(self) -> bool:
        return os.environ.get("FAKE_DOCKER_DOWN") != "1"

    def cluster_of_kubeconfig(self, path: str | None) -> tuple[str | None, dict | None, str]:
        """(cluster name, cluster, server) the kubeconfig's current context points at."""
        if not path or not Path(path).exists():
            return None, None, "localhost:8080"
        config = yaml.safe_load(Path(path).read_text()) or {}
        context = config.get("current-context", "")
        server = next((c["cluster"]["server"] for c in config.get("clusters") or []
                       if c["name"] == context), "localhost:8080")
        name = context.removeprefix("kind-")
        return name, self.data["clusters"].get(name), server.removeprefix("https://")


def out(text: str) -> None:
    sys.stdout.write(text)


def err(text: str) -> None:
    sys.stderr.write(text)


def flag(argv: list[str], *names: str, default: str | None = None) -> str | None:
    """The value of `--name=value` / `--name value` / `-n value` in argv."""
    for i, arg in enumerate(argv):
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
    return default


def positionals(argv: list[str], with_values: set[str]) -> list[str]:
    """argv without its flags (and without the values of the flags in `with_values`)."""
    result, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--":
            break
        if arg.startswith("-"):
            skip = arg in with_values
            continue
        result.append(arg)
    return result


def image_id(image: str) -> str:
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ kind

def kind(argv: list[str], state: State) -> int:
    words = positionals(argv, {"--name", "-n", "--config", "--image", "--kubeconfig", "--wait", "--nodes"})
    if words[:1] == ["version"]:
        out(f"kind {os.environ.get('FAKE_KIND_VERSION', 'v0.32.0')} go1.24.3 linux/amd64\n")
        return 0
    if not state.docker_up:
        command = LIST_CLUSTERS if words[:2] in (["get", "clusters"], ["create", "cluster"]) else "docker ps -a"
        verb = "failed to list clusters" if words[:2] == ["get", "clusters"] else "failed to list nodes"
        err(f"ERROR: {verb}: command \"{command}\" failed with error: exit status 1\n\nCommand Output: "
            f"{DAEMON_DOWN}\n")
        return 1
    name = flag(argv, "--name", "-n", default=os.environ.get("KIND_CLUSTER_NAME", "kind"))
    clusters = state.data["clusters"]
    match words[:2]:
        case ["get", "clusters"]:
            if not clusters:
                err("No kind clusters found.\n")
            for cluster_name in sorted(clusters):
                out(cluster_name + "\n")
            return 0
        case ["get", "nodes"]:
            if name not in clusters:
                err(f'No kind nodes found for cluster "{name}".\n')
                return 0
            for node in reversed(clusters[name]["nodes"]):  # `docker ps` lists the newest container first
                out(node["name"] + "\n")
            return 0
        case ["create", "cluster"]:
            return kind_create(argv, name, state)
        case ["load", "docker-image"]:
            return kind_load(words[2:], name, state)
        case ["delete", "cluster"]:
            err(f'Deleting cluster "{name}" ...\n')
            cluster = clusters.pop(name, None)
            if cluster is not None:
                names = " ".join(f'"{n["name"]}"' for n in cluster["nodes"])
                err(f"Deleted nodes: [{names}]\n")
            state.save()
            return 0
    err(f"ERROR: unknown command {' '.join(words)!r} for \"kind\"\n")
    return 1


def kind_create(argv: list[str], name: str, state: State) -> int:
    config_path = flag(argv, "--config")
    config = yaml.safe_load(Path(config_path).read_text()) if config_path else {}
    if config_path and (config.get("kind") != "Cluster" or config.get("apiVersion") != "kind.x-k8s.io/v1alpha4"):
        err(f"ERROR: failed to create cluster: unknown apiVersion: {config.get('apiVersion')}\n")
        return 1
    name = flag(argv, "--name", "-n") or config.get("name") or "kind"
    if name in state.data["clusters"]:
        err(f'ERROR: failed to create cluster: node(s) already exist for a cluster with the name "{name}"\n')
        return 1
    nodes_config = config.get("nodes") or [{"role": "control-plane"}]
    cli_image = flag(argv, "--image")
    counter: dict[str, int] = {}
    nodes = []
    for index, node in enumerate(nodes_config):
        role = node.get("role", "control-plane")
        counter[role] = counter.get(role, 0) + 1
        suffix = "" if counter[role] == 1 else str(counter[role])
        nodes.append({"name": f"{name}-{role}{suffix}", "role": role, "ip": f"172.18.0.{index + 2}",
                      "image": cli_image or node.get("image") or DEFAULT_NODE_IMAGE, "images": []})
    mode = (config.get("networking") or {}).get("kubeProxyMode", "iptables")
    kubeconfig = flag(argv, "--kubeconfig") or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config")
    port = 40000 + len(state.data["clusters"])
    friendly = nodes[0]["image"].split("@")[0]
    steps = [f"Ensuring node image ({friendly}) 🖼", "Preparing nodes " + " ".join("📦" for _ in nodes),
             "Writing configuration 📜", "Starting control-plane 🕹️", "Installing CNI 🔌",
             "Installing StorageClass 💾"]
    if any(n["role"] == "worker" for n in nodes):
        steps.append("Joining worker nodes 🚜")
    err(f'Creating cluster "{name}" ...\n')
    for step in steps:
        err(f" • {step}  ...\n ✓ {step}\n")
    write_kubeconfig(Path(kubeconfig), name, port)
    state.data["clusters"][name] = {"nodes": nodes, "kubeProxyMode": mode, "config": config,
                                    "kubeconfig": kubeconfig, "port": port, "objects": {}}
    state.save()
    err(f'Set kubectl context to "kind-{name}"\nYou can now use your cluster with:\n\n'
        f"kubectl cluster-info --context kind-{name} --kubeconfig {kubeconfig}\n\nHave a nice day! 👋\n")
    return 0


def write_kubeconfig(path: Path, name: str, port: int) -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    key = f"kind-{name}"
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": key,
        "clusters": [{"name": key, "cluster": {"server": f"https://127.0.0.1:{port}", "certificate-authority-data":
                                               b64("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")}}],
        "contexts": [{"name": key, "context": {"cluster": key, "user": key}}],
        "users": [{"name": key, "user": {
            "client-certificate-data": b64("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"),
            "client-key-data": b64("-----BEGIN RSA PRIVATE KEY-----\nfake\n-----END RSA PRIVATE KEY-----\n")}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))


def kind_load(images: list[str], name: str, state: State) -> int:
    if not images:
        err("ERROR: a list of image names is required\n")
        return 1
    for image in images:
        if image not in state.data["images"]:
            err(f'ERROR: image: "{image}" not present locally\n')
            return 1
    cluster = state.data["clusters"].get(name)
    if cluster is None:
        err(f'ERROR: no nodes found for cluster "{name}"\n')
        return 1
    for image in images:
        iid = state.data["images"][image]
        missing = [n for n in cluster["nodes"] if image not in n["images"]]
        if not missing:
            err(f'Image: "{image}" with ID "{iid}" found to be already present on all nodes.\n')
        for node in missing:
            err(f'Image: "{image}" with ID "{iid}" not yet present on node "{node["name"]}", loading...\n')
            node["images"].append(image)
    state.save()
    return 0


# ------------------------------------------------------------------------------------------------ docker

def docker(argv: list[str], state: State) -> int:
    if not state.docker_up:
        err(DAEMON_DOWN + "\n")
        return 1
    words = positionals(argv, {"--format", "-f", "-t", "--tag", "--file"})
    match words[:2]:
        case ["info", *_]:
            out("28.2.2\n" if flag(argv, "--format", "-f") else "Server Version: 28.2.2\n")
            return 0
        case ["image", "inspect"]:
            missing = [i for i in words[2:] if i not in state.data["images"]]
            if missing:
                out("[]\n")
                err("".join(f"Error response from daemon: No such image: {i}\n" for i in missing))
                return 1
            for image in words[2:]:
                out(state.data["images"][image] + "\n")
            return 0
        case ["build", *_]:
            dockerfile, tag, context = flag(argv, "-f", "--file"), flag(argv, "-t", "--tag"), words[1]
            if not Path(context).is_dir() or (dockerfile and not Path(dockerfile).is_file()):
                err(f"ERROR: failed to build: unable to prepare context: path {context!r} not found\n")
                return 1
            err(f"#0 building with \"default\" instance using docker driver\n#1 [internal] load build definition "
                f"from {Path(dockerfile or 'Dockerfile').name}\n#9 naming to docker.io/{tag} done\n")
            state.data["images"][tag] = image_id(tag)
            state.save()
            return 0
        case ["exec", node_name]:
            return docker_exec(node_name, argv[argv.index(node_name) + 1:], state)
    err(f"docker: unknown command: docker {' '.join(words)}\n")
    return 1


def docker_exec(node_name: str, command: list[str], state: State) -> int:
    for cluster in state.data["clusters"].values():
        for node in cluster["nodes"]:
            if node["name"] == node_name:
                if command == ["cat", "/proc/net/ip_vs_conn"] and proc_ip_vs(cluster, node) is not None:
                    out(proc_ip_vs_conn(cluster, node))
                    return 0
                if command == ["cat", "/proc/net/nf_conntrack"]:
                    out(proc_nf_conntrack(cluster, node))
                    return 0
                if command[:1] == ["nft"]:
                    return node_nft(cluster, command[1:])
                if command == ["cat", "/proc/timer_list"]:
                    out(timer_list())
                    return 0
                if command == ["cat", "/proc/net/ip_vs"]:
                    text = proc_ip_vs(cluster, node)
                    if text is None:
                        err("cat: /proc/net/ip_vs: No such file or directory\n")
                        return 1
                    out(text)
                    return 0
                err(f"OCI runtime exec failed: exec: {command[0]!r}: executable file not found in $PATH\n")
                return 126
    err(f"Error response from daemon: No such container: {node_name}\n")
    return 1


def proxy_running(cluster: dict) -> bool:
    """Does something program Services on this cluster: kube-proxy, or a rolled-out labkit agent?"""
    if cluster["kubeProxyMode"] != "none":
        return True
    agent = cluster["objects"].get("DaemonSet/kube-system/labkit-agent")
    return agent is not None and daemonset_ready(cluster, agent)


def proc_ip_vs(cluster: dict, node: dict) -> str | None:
    """/proc/net/ip_vs on a fresh kind cluster's node (the ip_vs module is loaded by IPVS mode only)."""
    ipvs = cluster["kubeProxyMode"] == "ipvs" or (cluster["kubeProxyMode"] == "none" and proxy_running(cluster))
    if not ipvs:
        return None
    apiserver = "".join(f"{int(octet):02X}" for octet in cluster["nodes"][0]["ip"].split("."))
    lines = ["IP Virtual Server version 1.2.1 (size=4096)\n", "Prot LocalAddress:Port Scheduler Flags\n",
             "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n",
             "TCP  0A600001:01BB rr \n", f"  -> {apiserver}:192B      Masq    1      0          0         \n"]
    for proto, port in (("TCP", "0035"), ("TCP", "23C1"), ("UDP", "0035")):
        lines.append(f"{proto}  0A60000A:{port} rr \n")
        for pod in ("0AF40002", "0AF40003"):
            lines.append(f"  -> {pod}:{port}      Masq    1      0          0         \n")
    for key, svc in cluster["objects"].items():  # Services applied with a cluster IP and ClientIP affinity
        spec = svc.get("spec") or {}
        if key.startswith("Service/") and spec.get("clusterIP") and spec.get("sessionAffinity") == "ClientIP":
            seconds = spec.get("sessionAffinityConfig", {}).get("clientIP", {}).get("timeoutSeconds", 10800)
            for port in spec["ports"]:
                address = hex_address(spec["clusterIP"], port["port"]).replace(" ", ":")
                # ip_vs_info_seq_show prints svc->timeout, which the kernel keeps in jiffies
                lines.append(f"{port.get('protocol', 'TCP')}  {address} rr persistent {seconds * NODE_HZ} FFFFFFFF\n")
    return "".join(lines)


def timer_list() -> str:
    """The lines of the node kernel's /proc/timer_list that tell its HZ, an hour after boot."""
    uptime = 3600
    return (f"Timer List Version: v0.10\nHRTIMER_MAX_CLOCK_BASES: 8\nnow at {uptime * 10**9} nsecs\n\ncpu: 0\n"
            f"  .last_jiffies   : {2**32 + NODE_HZ * (uptime - 300)}\njiffies: {2**32 + NODE_HZ * (uptime - 300)}\n")


def hex_address(ip: str, port: int) -> str:
    return "".join(f"{int(octet):02X}" for octet in ip.split(".")) + f" {port:04X}"


def proc_ip_vs_conn(cluster: dict, node: dict) -> str:
    """/proc/net/ip_vs_conn (ip_vs_conn_seq_show): the relayed connections that left from this node."""
    lines = ["Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"]
    for conn in cluster.get("conns", []):
        if conn["node"] == node["name"]:
            lines.append(f"TCP {hex_address(*conn['source'])} {hex_address(*conn['virtual'])} "
                         f"{hex_address(*conn['destination'])} {'TIME_WAIT':<11} {119:7d}\n")
    return "".join(lines)


def proc_nf_conntrack(cluster: dict, node: dict) -> str:
    """/proc/net/nf_conntrack: the relayed connections that left from this node, DNATed to their pod."""
    return "".join(
        f"ipv4     2 tcp      6 117 TIME_WAIT src={c['source'][0]} dst={c['virtual'][0]} sport={c['source'][1]} "
        f"dport={c['virtual'][1]} src={c['destination'][0]} dst={c['source'][0]} sport={c['destination'][1]} "
        f"dport={c['source'][1]} [ASSURED] mark=0 zone=0 use=2\n"
        for c in cluster.get("conns", []) if c["node"] == node["name"])


NFT_TABLE = """table ip kube-proxy {
\tcomment "rules for kube-proxy"
\tchain services {
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t}
}
"""


def node_nft(cluster: dict, args: list[str]) -> int:
    """nft on a node: kube-proxy's table exists in nftables mode only (nft's own error otherwise)."""
    if args == ["list", "table", "ip", "kube-proxy"] and cluster["kubeProxyMode"] == "nftables":
        out(NFT_TABLE)
        return 0
    err(f"Error: No such file or directory\n{' '.join(args)}\n" + "^" * len(" ".join(args)) + "\n")
    return 1


# ------------------------------------------------------------------------------------------------ kubectl

def resource_name(obj: dict) -> str:
    """How kubectl names an object in its output: <kind lowercased>[.<group>]/<name>."""
    group = obj["apiVersion"].rpartition("/")[0]
    return f"{obj['kind'].lower()}{'.' + group if group else ''}/{obj['metadata']['name']}"


def object_key(obj: dict, namespace: str | None) -> str:
    ns = obj["metadata"].get("namespace") or (namespace if obj["kind"] not in CLUSTER_SCOPED else None)
    return "/".join(p for p in (obj["kind"], ns or "", obj["metadata"]["name"]) if p)


CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "Node"}


def daemonset_ready(cluster: dict, daemonset: dict) -> bool:
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    if container.get("imagePullPolicy") == "Never":
        return all(container["image"] in node["images"] for node in cluster["nodes"])
    return True


def kubectl(argv: list[str], state: State, stdin: str | None) -> int:
    kubeconfig = flag(argv, "--kubeconfig") or os.environ.get("KUBECONFIG")
    _, cluster, server = state.cluster_of_kubeconfig(kubeconfig)
    words = positionals(argv, {"-n", "--namespace", "-f", "--filename", "-o", "--output", "--for", "--timeout",
                               "--kubeconfig", "--context", "-c", "--container"})
    if words[:1] == ["version"] and "--client" in argv:
        out("Client Version: v1.33.1\nKustomize Version: v5.6.0\n")
        return 0
    if cluster is None or not state.docker_up:
        host = server.split("/")[0]
        err(f'E0101 00:00:00.000000    4242 memcache.go:265] "Unhandled Error" err="couldn\'t get current server API '
            f'group list: Get \\"https://{host}/api?timeout=32s\\": dial tcp {host}: connect: connection refused"\n'
            f"The connection to the server {host} was refused - did you specify the right host or port?\n")
        return 1
    namespace = flag(argv, "-n", "--namespace", default="default")
    timeout = flag(argv, "--timeout", default="30s")
    match words[:1]:
        case ["apply"]:
            docs = [d for d in yaml.safe_load_all(stdin or "") if d]
            for obj in docs:
                key = object_key(obj, namespace)
                verb = "unchanged" if cluster["objects"].get(key) == obj else (
                    "configured" if key in cluster["objects"] else "created")
                cluster["objects"][key] = obj
                out(f"{resource_name(obj)} {verb}\n")
            state.save()
            return 0
        case ["wait"]:
            return kubectl_wait(argv, words, cluster, namespace, timeout)
        case ["rollout"]:
            return kubectl_rollout(words, cluster, namespace, timeout)
        case ["exec"]:
            code = kubectl_exec(argv, words, cluster, namespace, stdin)
            state.save()
            return code
        case ["get"]:
            return kubectl_get(argv, words, cluster, namespace)
        case ["delete"]:
            kind, _, obj_name = words[1].partition("/")
            obj_name = obj_name or words[2]
            key = next((k for k in cluster["objects"] if k.lower().startswith(kind.lower() + "/")
                        and k.endswith("/" + obj_name)), None)
            if key is None:
                err(f'Error from server (NotFound): {kind}s "{obj_name}" not found\n')
                return 1
            out(f"{resource_name(cluster['objects'].pop(key))} deleted\n")
            state.save()
            return 0
    err(f"error: unknown command \"{' '.join(words)}\" for \"kubectl\"\n")
    return 1


def kubectl_wait(argv: list[str], words: list[str], cluster: dict, namespace: str, timeout: str) -> int:
    condition = flag(argv, "--for")
    target = words[1]
    if target in ("nodes", "node") and "--all" in argv and condition == "condition=Ready":
        for node in cluster["nodes"]:
            out(f"node/{node['name']} condition met\n")
        return 0
    kind, _, obj_name = target.partition("/")
    key = f"{kind.capitalize()}/{namespace}/{obj_name}"
    obj = cluster["objects"].get(key)
    if obj is None:
        err(f'Error from server (NotFound): {kind}s "{obj_name}" not found\n')
        return 1
    out(f"{kind}/{obj_name} condition met\n")
    return 0


def kubectl_rollout(words: list[str], cluster: dict, namespace: str, timeout: str) -> int:
    kind, _, obj_name = words[2].partition("/")
    if (kind, obj_name, namespace) == ("deployment", "coredns", "kube-system"):
        if proxy_running(cluster):
            out('deployment "coredns" successfully rolled out\n')
            return 0
        # CoreDNS never becomes ready without a Service proxy: it cannot reach the API at 10.96.0.1.
        out('Waiting for deployment "coredns" rollout to finish: 0 of 2 updated replicas are available...\n')
        err("error: timed out waiting for the condition\n")
        return 1
    obj = cluster["objects"].get(f"DaemonSet/{namespace}/{obj_name}")
    if kind == "daemonset" and obj is not None:
        if daemonset_ready(cluster, obj):
            out(f'daemon set "{obj_name}" successfully rolled out\n')
            return 0
        n = len(cluster["nodes"])
        out(f'Waiting for daemon set "{obj_name}" rollout to finish: 0 of {n} updated pods are available...\n')
        err("error: timed out waiting for the condition\n")
        return 1
    err(f'Error from server (NotFound): {kind}s.apps "{obj_name}" not found\n')
    return 1


def pod_view(cluster: dict, key: str, obj: dict) -> dict:
    """A pod as the API shows it once running: the fake schedules it and gives it an IP."""
    spec = obj.get("spec") or {}
    node = spec.get("nodeName") or cluster["nodes"][0]["name"]
    node_ip = next(n["ip"] for n in cluster["nodes"] if n["name"] == node)
    ip = node_ip if spec.get("hostNetwork") else obj.get("podIP", "10.244.0.99")
    return {**obj, "spec": {**spec, "nodeName": node},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}}


def kubectl_get(argv: list[str], words: list[str], cluster: dict, namespace: str) -> int:
    output = flag(argv, "-o", "--output")
    if "--raw" in argv:
        out("ok")
        return 0
    kind, name = words[1], words[2] if len(words) > 2 else None
    if kind in ("nodes", "node") and output == "json":
        items = [{"metadata": {"name": n["name"], "labels": {f"node-role.kubernetes.io/{n['role']}": ""}
                               if n["role"] == "control-plane" else {}}} for n in cluster["nodes"]]
        out(json.dumps({"kind": "List", "items": items}))
        return 0
    if kind in ("service", "services", "svc") and (namespace, name) == ("kube-system", "kube-dns"):
        out("10.96.0.10" if output == "jsonpath={.spec.clusterIP}" else "")
        return 0
    if kind in ("pod", "pods") and name is None and output == "json":  # a list: -A, else the namespace's
        everywhere = "-A" in argv or "--all-namespaces" in argv
        items = [pod_view(cluster, k, o) for k, o in cluster["objects"].items()
                 if k.startswith("Pod/") and (everywhere or k.split("/")[1] == namespace)]
        out(json.dumps({"kind": "List", "items": items}))
        return 0
    if kind in ("pod", "pods"):
        key = f"Pod/{namespace}/{name}"
        if key not in cluster["objects"]:
            err(f'Error from server (NotFound): pods "{name}" not found\n')
            return 1
        pod = pod_view(cluster, key, cluster["objects"][key])
        out(json.dumps(pod) if output == "json" else pod["status"]["phase"])
        return 0
    err(f"error: the server doesn't have a resource type \"{kind}\"\n")
    return 1


def dns_reply(cluster: dict, wire_hex: str) -> str:
    """What CoreDNS answers a fresh kind cluster: the kubernetes Service, the names a test added, else NXDOMAIN."""
    import dns.message
    import dns.rcode
    import dns.rrset

    query = dns.message.from_wire(bytes.fromhex(wire_hex))
    reply = dns.message.make_response(query)
    question = query.question[0]
    name = question.name.to_text()
    addresses = {"kubernetes.default.svc.cluster.local.": ["10.96.0.1"], **cluster.get("dns", {})}.get(name)
    if addresses is None:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    elif question.rdtype == dns.rdatatype.A:
        reply.answer.append(dns.rrset.from_text_list(name, 30, "IN", "A", addresses))
    return reply.to_wire().hex()


def kubectl_exec(argv: list[str], words: list[str], cluster: dict, namespace: str, stdin: str | None) -> int:
    pod_name = words[1]
    obj = cluster["objects"].get(f"Pod/{namespace}/{pod_name}")
    if obj is None:
        err(f'Error from server (NotFound): pods "{pod_name}" not found\n')
        return 1
    command = argv[argv.index("--") + 1:]
    helper = pod_name.startswith("labkit-node-helper-")
    if command[:2] == ["cat", "/etc/resolv.conf"] and not helper:
        out(f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n"
            "options ndots:5\n")
        return 0
    if not helper or command[:1] != ["python3"]:
        err(f"error: Internal error occurred: error executing command in container: failed to exec in container: "
            f'starting container process caused: exec: "{command[0]}": executable file not found in $PATH\n'
            "command terminated with exit code 126\n")
        return 126
    program, args = command[2], command[3:]
    node = pod_view(cluster, "", obj)["spec"]["nodeName"]
    target = args[0]
    ip, _, hostname = target.partition("/")
    if target != "-" and not any(pod_view(cluster, k, o)["status"]["podIP"] == ip
                                 and pod_view(cluster, k, o)["spec"]["nodeName"] == node
                                 and o["metadata"]["name"] == hostname
                                 for k, o in cluster["objects"].items() if k.startswith("Pod/")):
        err(f"no network namespace on this node holds {target}\ncommand terminated with exit code 1\n")
        return 1
    if program.startswith("# labkit node helper: dns"):
        if not proxy_running(cluster):
            err("timed out\ncommand terminated with exit code 1\n")
            return 1
        out(dns_reply(cluster, args[5]) + "\n")
        return 0
    if program.startswith("# labkit node helper: relay"):
        return relay(cluster, node, ip, args[1], int(args[2]))
    err("fake kubectl: unknown helper program\n")
    return 1


def relay(cluster: dict, node: str, ip: str, host: str, port: int) -> int:
    """A web Service the test declared in state["web"]["host:port"] = [[pod, podIP], ...]: round robin."""
    backends = cluster.get("web", {}).get(f"{host}:{port}")
    if not backends:
        err(f"connect to {host}:{port}: Connection refused\ncommand terminated with exit code 1\n")
        return 1
    turn = cluster.setdefault("turns", {}).get(f"{host}:{port}", 0)
    cluster["turns"][f"{host}:{port}"] = turn + 1
    pod, pod_ip = backends[turn % len(backends)]
    local_ip = ip if ip != "-" else next(n["ip"] for n in cluster["nodes"] if n["name"] == node)
    local_port = 40000 + len(cluster.setdefault("conns", []))
    cluster["conns"].append({"node": node, "source": [local_ip, local_port], "virtual": [host, port],
                             "destination": [pod_ip, port]})
    out(f"{local_ip} {local_port} {host} {port}\n")
    sys.stdout.flush()
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = os.read(0, 65536)
        if not chunk:
            return 0
        request += chunk
    out(f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(pod)}\r\nConnection: close\r\n\r\n"
        f"{pod}")
    return 0


def main(tool: str) -> None:
    state = State()
    argv = sys.argv[1:]
    stdin = sys.stdin.read() if tool == "kubectl" and flag(argv, "-f", "--filename") == "-" else None
    state.record(tool, argv, stdin)
    handler = {"kind": kind, "docker": docker}.get(tool)
    code = handler(argv, state) if handler else kubectl(argv, state, stdin)
    sys.exit(code)
