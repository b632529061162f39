"""docker/: the kind configs say what the kind backend expects, the Dockerfiles build from this checkout."""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from labkit.backends import images, incluster, kind

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
KIND_CONFIGS = sorted((DOCKER / "kind").glob("*.yaml"))


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines()
                                          if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines() if line.strip()]


def pyproject_dependencies() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


# ------------------------------------------------------------------------------------------------ kind configs

def test_there_is_a_config_for_each_proxy_mode_and_the_multi_node_one() -> None:
    assert {p.name for p in KIND_CONFIGS} == {"ipvs.yaml", "nftables.yaml", "none.yaml", "multi-node.yaml"}
    for options in (kind.Options(), kind.Options(proxy_mode="nftables"), kind.Options(proxy="labkit")):
        assert (DOCKER / "kind" / options.config_name).exists()


@pytest.mark.parametrize("path", KIND_CONFIGS, ids=lambda p: p.name)
def test_kind_config_is_a_v1alpha4_cluster_with_the_labs_addresses(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["name"] == kind.DEFAULT_NAME
    networking = config["networking"]
    assert networking["podSubnet"] == "10.244.0.0/16" and networking["serviceSubnet"] == "10.96.0.0/16"
    assert networking["kubeProxyMode"] == {"ipvs.yaml": "ipvs", "multi-node.yaml": "ipvs",
                                           "nftables.yaml": "nftables", "none.yaml": "none"}[path.name]
    roles = [n["role"] for n in config["nodes"]]
    assert roles[0] == "control-plane" and set(roles[1:]) <= {"worker"}
    assert set(config) <= {"kind", "apiVersion", "name", "networking", "nodes"}
    assert all(set(n) <= {"role", "image"} for n in config["nodes"])


@pytest.mark.parametrize("path", KIND_CONFIGS, ids=lambda p: p.name)
def test_node_image_is_pinned_by_digest_to_a_kubernetes_that_still_has_ipvs(path: Path) -> None:
    for node in yaml.safe_load(path.read_text())["nodes"]:
        match = re.fullmatch(r"kindest/node:v1\.(\d+)\.\d+@sha256:[0-9a-f]{64}", node["image"])
        assert match, node["image"]
        assert int(match[1]) <= 39  # IPVS mode is off by default from Kubernetes 1.40
        assert int(match[1]) >= 31  # nftables mode needs 1.31


# ------------------------------------------------------------------------------------------------ Dockerfiles

@pytest.mark.parametrize("name", ["agent", "workshop"])
def test_dockerfile_copies_only_what_exists_and_installs_labkit_from_this_checkout(name: str) -> None:
    steps = dockerfile_instructions(DOCKER / name / "Dockerfile")
    copies = [shlex.split(args) for op, args in steps if op == "COPY"]
    assert copies
    for *sources, _ in copies:
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the checkout"
    runs = " ".join(args for op, args in steps if op == "RUN")
    destination = copies[-1][-1]  # labkit's sources: into WORKDIR (relative) or a directory of their own
    target = destination if destination.startswith("/") else "."
    assert re.search(rf"pip install (--[\w-]+ )*{re.escape(target)}(\s|$)", runs), runs
    entry = next(args for op, args in steps if op == "ENTRYPOINT")
    for word in yaml.safe_load(entry):  # exec form is a JSON (so YAML) list
        if word.startswith("/opt/labkit/"):
            assert (REPO / word.removeprefix("/opt/labkit/")).exists()


def test_agent_image_installs_pyproject_pins_of_what_the_agent_imports(tmp_path: Path) -> None:
    steps = dockerfile_instructions(DOCKER / "agent" / "Dockerfile")
    installs = [shlex.split(args) for op, args in steps if op == "RUN" and "pip install" in args]
    specs = [w for words in installs for w in words if re.match(r"^[A-Za-z][\w.-]*[<>=!~]", w)]
    assert specs and set(specs) <= set(pyproject_dependencies())
    assert installs[-1][:5] == ["pip", "install", "--no-cache-dir", "--no-deps", "."]
    entry = yaml.safe_load(next(args for op, args in steps if op == "ENTRYPOINT"))
    assert entry == ["python", "-m", "labkit.agent"]
    # Those distributions (and what they require) are enough to start the agent's kernel backend: run its imports
    # with only them importable, as in the image (python -S: no site-packages; PYTHONPATH: them and labkit).
    site = tmp_path / "site-packages"
    site.mkdir()
    for dist in requirement_closure([*specs]):
        for file in md.files(dist) or []:
            top = file.parts[0]
            if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__"):
                continue
            source = Path(file.locate()).parents[len(file.parts) - 1] / top
            if not (site / top).exists():
                (site / top).symlink_to(source)
    probe = """
import labkit.agent.__main__ as agent, labkit.client, labkit.agent.kernel
from pyroute2 import IPVS
import uvloop
assert agent.parse_args(["--node-name=n", "--backend=kernel"]).backend == "kernel"
print("imports ok")
"""
    proc = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": f"{site}{os.pathsep}{REPO}", "PATH": os.environ["PATH"]})
    assert proc.returncode == 0 and proc.stdout.strip() == "imports ok", proc.stderr[-2000:]


def requirement_closure(specs: list[str]) -> set[str]:
    """The installed distributions `specs` need, transitively (markers evaluated, extras left out)."""
    seen: set[str] = set()
    todo = [Requirement(spec) for spec in specs]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo.extend(Requirement(r) for r in md.requires(name) or [])
    return seen


def test_workshop_image_installs_runs_debian_packages_kubectl_and_starts_jupyterlab() -> None:
    steps = dockerfile_instructions(DOCKER / "workshop" / "Dockerfile")
    runs = " ".join(args for op, args in steps if op == "RUN")
    apt = re.search(r"apt-get install -y --no-install-recommends ([^&]+)", runs)
    assert apt
    run_script = (REPO / "run").read_text()
    packages = re.search(r"DEBIAN_PACKAGES=\(([^)]*)\)", run_script)
    assert packages
    assert set(packages[1].split()) <= set(apt[1].split())
    assert "dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${arch}/kubectl" in runs
    assert "sha256sum --check" in runs
    version = next(args for op, args in steps if op == "ARG" and args.startswith("KUBECTL_VERSION="))
    assert re.fullmatch(r"KUBECTL_VERSION=v1\.(2[7-9]|3[0-3])\.\d+", version)  # the kubectl labkit is tested with
    start = (DOCKER / "workshop" / "start.sh").read_text()
    assert "labkit up --wait" in start and "exec jupyter lab" in start
    assert (DOCKER / "workshop" / "start.sh").stat().st_mode & 0o111


def run_workshop_start(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """docker/workshop/start.sh with fake `labkit` and `jupyter` on PATH (this venv's python writes the copy)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "labkit").write_text("#!/bin/sh\n[ \"$1\" = kubeconfig ] && echo /tmp/kubeconfig; exit 0\n")
    (bin_dir / "jupyter").write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {tmp_path}/jupyter-args\n")
    for tool in ("labkit", "jupyter"):
        (bin_dir / tool).chmod(0o755)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    proc = subprocess.run(["sh", str(DOCKER / "workshop" / "start.sh")], env={**os.environ, "PATH": path, **env},
                          capture_output=True, text=True, timeout=120)
    args = (tmp_path / "jupyter-args").read_text().splitlines() if (tmp_path / "jupyter-args").exists() else []
    return proc, args


def test_workshop_image_serves_learners_the_student_build(tmp_path: Path) -> None:
    from labkit import frontdoor

    proc, args = run_workshop_start(tmp_path, LABKIT_WORK=str(tmp_path / "work"))
    assert proc.returncode == 0, proc.stderr
    copy = tmp_path / "work" / "labs"
    assert f"--ServerApp.root_dir={copy}" in args and "--ip=0.0.0.0" in args
    student = frontdoor.student_texts(REPO / "labs")
    assert {p.name for p in copy.iterdir() if not p.name.startswith(".")} == set(student)
    assert all((copy / name).read_text() == text for name, text in student.items())
    lab = (REPO / "labs" / "01-clusterip.md").read_text()
    assert (copy / "01-clusterip.md").read_text() != lab  # the solutions are gone
    (copy / "01-clusterip.md").write_text("the learner's answer\n")  # a restart keeps the learner's work
    proc, _ = run_workshop_start(tmp_path, LABKIT_WORK=str(tmp_path / "work"))
    assert proc.returncode == 0 and "1 kept" in proc.stdout
    assert (copy / "01-clusterip.md").read_text() == "the learner's answer\n"
    proc, args = run_workshop_start(tmp_path, LABKIT_LABS="instructor")
    assert proc.returncode == 0 and f"--ServerApp.root_dir={REPO / 'labs'}" in args
    proc, _ = run_workshop_start(tmp_path, LABKIT_LABS="solutions")
    assert proc.returncode == 2 and "student (the default) or instructor" in proc.stderr


def test_workshop_dockerfile_documents_its_run_line_with_the_capabilities_it_needs() -> None:
    text = (DOCKER / "workshop" / "Dockerfile").read_text()
    line = re.search(r"#\s+(docker run (?:[^\n\\]|\\\n#)*)", text)
    assert line
    words = shlex.split(re.sub(r"\\\n#", " ", line[1]))
    assert {"NET_ADMIN", "SYS_ADMIN"} <= {words[i + 1] for i, w in enumerate(words) if w == "--cap-add"}
    assert words[-1] == "labkit/workshop"
    assert any(w.startswith("127.0.0.1:8888:8888") for w in words)  # Jupyter on loopback only


def test_dockerignore_keeps_the_virtualenv_and_git_out_of_the_build_context() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored)


# ------------------------------------------------------------------------------------------------ manifests

def test_agent_manifest_runs_the_agent_image_on_every_node_with_kernel_ipvs() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((DOCKER / "manifests" / "labkit-agent.yaml").read_text())}
    assert set(docs) == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"}
    pod = docs["DaemonSet"]["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    assert {"operator": "Exists"} in pod["tolerations"]
    container = pod["containers"][0]
    assert container["image"] == kind.AGENT_IMAGE and container["imagePullPolicy"] == "Never"
    assert "--backend=kernel" in container["args"]
    assert "NET_ADMIN" in container["securityContext"]["capabilities"]["add"]
    # Read-only access to exactly what the agent watches.
    rules = docs["ClusterRole"]["rules"]
    assert {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]} == {
        ("", "services"), ("discovery.k8s.io", "endpointslices")}
    assert all(set(rule["verbs"]) == {"get", "list", "watch"} for rule in rules)
    binding = docs["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == docs["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "labkit-agent", "namespace": "kube-system"}]


def test_agent_manifest_for_a_cluster_points_at_its_control_plane() -> None:
    docs = list(yaml.safe_load_all(kind.agent_manifest("workshop", image="labkit/agent:test")))
    container = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == "workshop-control-plane"
    assert container["image"] == "labkit/agent:test"


def test_node_helper_manifest_is_placed_on_the_node_given_with_the_host_network_and_pids() -> None:
    pod = yaml.safe_load(incluster.helper_manifest("lab-worker2", "alice-labkit", DOCKER))
    assert pod["metadata"] == {"name": "labkit-node-helper-lab-worker2", "namespace": "alice-labkit",
                               "labels": {"app.kubernetes.io/name": "labkit-node-helper"}}
    spec = pod["spec"]
    assert spec["nodeName"] == "lab-worker2" and spec["hostNetwork"] and spec["hostPID"]
    assert spec["activeDeadlineSeconds"] > 0  # lives only while it is used
    container = spec["containers"][0]
    assert container["image"] == images.NODE_HELPER and container["securityContext"] == {"privileged": True}
    assert images.NODE_HELPER in images.LAB_IMAGES
    assert re.fullmatch(r"python:3\.1[2-9][\w.-]*", images.NODE_HELPER)  # os.setns: Python >= 3.12
