"""The kind backend against fake kind/docker/kubectl (tests/fakes): the calls it makes, in order, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import dns.message
import pytest
import yaml

from labkit import cli, errors
from labkit.agent.ipvsadm import render_list
from labkit.backends import images, kind
from labkit.backends.base import get_backend
from labkit.dns.dig import resolve
from tests.fakes import FakeTools, fake_tools, install  # noqa: F401
from tests.fakes.tools import positionals

NODE_IMAGE = "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"


def quiet(_: str) -> None:
    pass


def up(home: Path, **options: object) -> tuple[kind.Info, bool]:
    return kind.up(home, kind.Options(timeout=30, **options), progress=quiet)  # type: ignore[arg-type]


VALUE_FLAGS = {"--format", "-f", "-t", "--name", "-n", "--config", "--image", "--for", "--timeout"}


def verbs(fakes: FakeTools) -> list[str]:
    """Each call reduced to its tool and first words (no flags), for checking the order of steps."""
    result = []
    for tool, *argv in fakes.argvs():
        words = positionals(argv, VALUE_FLAGS)
        count = {"kind": 2, "kubectl": 1}.get(tool, 2 if words[0] in ("image", "exec") else 1)
        result.append(" ".join([tool, *words[:count]]))
    return result


def create_call(fakes: FakeTools) -> list[str]:
    return next(a for a in fakes.argvs("kind") if a[1:3] == ["create", "cluster"])


def test_up_makes_an_ipvs_cluster_and_waits_until_dns_answers(fake_tools: FakeTools, tmp_path: Path,  # noqa: F811
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fake_tools.add_image(images.AGNHOST)
    home = tmp_path / "home"
    info, started = up(home)
    assert started and info.name == "labkit" and info.proxy_mode == "ipvs"

    create = create_call(fake_tools)
    kubeconfig = home / "kind" / "kubeconfig"
    config_path = home / "kind" / "config.yaml"
    assert create == ["kind", "create", "cluster", "--name=labkit", f"--kubeconfig={kubeconfig}",
                      "--config", str(config_path)]
    config = yaml.safe_load(config_path.read_text())
    assert config["networking"]["kubeProxyMode"] == "ipvs"
    assert config["nodes"] == [{"role": "control-plane", "image": NODE_IMAGE}]

    assert verbs(fake_tools) == [
        "docker info", "kind version",
        "kind get clusters",                       # ours: is the name taken?
        "kind get clusters", "kind create cluster",  # pytest-kind's create
        *["docker image inspect"] * len(images.LAB_IMAGES),
        "kind load docker-image",                  # only the image Docker has
        "kubectl wait", "kubectl rollout",         # nodes Ready, CoreDNS rolled out
        "kubectl apply",                           # the labkit namespace
        "kubectl get", "kubectl get",              # the first node; its helper pod (absent)
        "kubectl apply", "kubectl get",            # the node helper pod, until Ready
        "kubectl get",                             # kube-dns's ClusterIP, the resolv.conf's nameserver
        "kubectl exec",                            # the query, from the node
    ]
    load = next(a for a in fake_tools.argvs("kind") if a[1:3] == ["load", "docker-image"])
    assert load == ["kind", "load", "docker-image", "--name", "labkit", images.AGNHOST]
    node = fake_tools.state()["clusters"]["labkit"]["nodes"][0]
    assert node["name"] == "labkit-control-plane" and node["images"] == [images.AGNHOST]
    # Every kubectl call goes to the cluster's own kubeconfig, whatever KUBECONFIG says.
    assert all(f"--kubeconfig={kubeconfig}" in argv for argv in fake_tools.argvs("kubectl"))
    exec_argv = fake_tools.argvs("kubectl")[-1]
    command = exec_argv[exec_argv.index("--") + 1:]
    assert command[:2] == ["python3", "-c"] and command[3:7] == ["-", "10.96.0.10", "53", "0"]
    query = dns.message.from_wire(bytes.fromhex(command[-1]))
    assert query.question[0].name.to_text() == "kubernetes.default.svc.cluster.local."
    helper = fake_tools.state()["clusters"]["labkit"]["objects"]["Pod/labkit/labkit-node-helper-labkit-control-plane"]
    assert helper["spec"]["nodeName"] == "labkit-control-plane" and helper["spec"]["hostNetwork"] is True
    assert helper["spec"]["containers"][0]["image"] == images.NODE_HELPER
    assert not (tmp_path / ".pytest-kind").exists()  # pytest-kind would write into the current directory
    assert kind.load_info(home) == info


def test_nodes_adds_workers_to_the_config(fake_tools: FakeTools, tmp_path: Path) -> None:  # noqa: F811
    up(tmp_path / "home", nodes=3, name="three")
    config = yaml.safe_load((tmp_path / "home" / "kind" / "config.yaml").read_text())
    assert [n["role"] for n in config["nodes"]] == ["control-plane", "worker", "worker"]
    assert config["name"] == "three"
    nodes = fake_tools.state()["clusters"]["three"]["nodes"]
    assert [n["name"] for n in nodes] == ["three-control-plane", "three-worker", "three-worker2"]
    wait = fake_tools.run("kubectl", f"--kubeconfig={tmp_path / 'home' / 'kind' / 'kubeconfig'}", "wait",
                          "--for=condition=Ready", "nodes", "--all")
    assert wait.stdout.count("condition met") == 3
    # The same config as the documented multi-node file, but for the name.
    documented = yaml.safe_load((kind.DOCKER_DIR / "kind" / "multi-node.yaml").read_text())
    assert {**config, "name": "labkit"} == documented


def test_nftables_mode_and_an_image_of_ones_own(fake_tools: FakeTools, tmp_path: Path) -> None:  # noqa: F811
    up(tmp_path / "home", proxy_mode="nftables", image="kindest/node:v1.35.1")
    create = create_call(fake_tools)
    assert "--image=kindest/node:v1.35.1" in create
    config = yaml.safe_load(Path(create[create.index("--config") + 1]).read_text())
    assert config["networking"]["kubeProxyMode"] == "nftables"


def test_proxy_labkit_builds_loads_and_runs_the_agent_before_waiting_for_coredns(
        fake_tools: FakeTools, tmp_path: Path) -> None:  # noqa: F811
    info, _ = up(tmp_path / "home", proxy="labkit", nodes=2)
    config = yaml.safe_load((tmp_path / "home" / "kind" / "config.yaml").read_text())
    assert config["networking"]["kubeProxyMode"] == "none"

    steps = verbs(fake_tools)
    build = steps.index("docker build")
    load = steps.index("kind load docker-image")
    apply_agent = steps.index("kubectl apply")
    rollout_agent = steps.index("kubectl rollout")
    coredns = len(steps) - 1 - steps[::-1].index("kubectl rollout")
    assert steps.index("kind create cluster") < build < load < apply_agent < rollout_agent < coredns

    argvs = fake_tools.argvs()
    assert argvs[build] == ["docker", "build", "-f", str(kind.DOCKER_DIR / "agent" / "Dockerfile"),
                            "-t", kind.AGENT_IMAGE, str(kind.CHECKOUT)]
    assert argvs[load][-1] == kind.AGENT_IMAGE
    assert argvs[rollout_agent][-3:-1] == ["status", "daemonset/labkit-agent"]
    cluster = fake_tools.state()["clusters"]["labkit"]
    assert all(kind.AGENT_IMAGE in node["images"] for node in cluster["nodes"])
    daemonset = cluster["objects"]["DaemonSet/kube-system/labkit-agent"]
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == kind.AGENT_IMAGE
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == "labkit-control-plane" and env["KUBERNETES_SERVICE_PORT"] == "6443"
    assert {"ServiceAccount/kube-system/labkit-agent", "ClusterRole/labkit-agent",
            "ClusterRoleBinding/labkit-agent"} <= set(cluster["objects"])
    assert kind.describe_proxy(info) == "the labkit agent (kernel IPVS)"


def test_without_the_agent_a_kube_proxy_less_cluster_never_answers(fake_tools: FakeTools,  # noqa: F811
                                                                   tmp_path: Path) -> None:
    # The fake is faithful enough to fail where the real cluster would: CoreDNS needs a Service proxy.
    options = kind.Options(proxy="labkit", timeout=5)
    home = tmp_path / "home"
    found = kind.find_tools(options)
    kind.save_info(home, kind.Info("labkit", str(home / "kind" / "kubeconfig"), str(found.kind),
                                   str(found.kubectl), str(found.docker), "labkit", "ipvs", 1))
    (home / "kind").mkdir(parents=True, exist_ok=True)
    (home / "kind" / "config.yaml").write_text(yaml.safe_dump(kind.cluster_config(options)))
    cluster = kind.load_info(home).cluster()
    cluster.create(home / "kind" / "config.yaml")
    with pytest.raises(errors.ClusterError, match="timed out waiting for the condition"):
        kind.wait_usable(kind.load_info(home), 5, quiet)


def test_up_twice_reuses_the_cluster_and_down_deletes_it(fake_tools: FakeTools, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    up(home)
    fake_tools.forget_calls()
    info, started = up(home)
    assert not started
    assert "kind create cluster" not in verbs(fake_tools)
    assert "kubectl exec" in verbs(fake_tools)  # still waits until usable

    fake_tools.forget_calls()
    assert kind.down(home)
    assert fake_tools.argvs("kind")[-1] == ["kind", "delete", "cluster", "--name=labkit",
                                            f"--kubeconfig={info.kubeconfig}"]
    assert fake_tools.state()["clusters"] == {}
    assert kind.load_info(home) is None
    assert not kind.down(home)


def test_a_cluster_deleted_behind_labkits_back_is_made_again(fake_tools: FakeTools, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    up(home)
    fake_tools.run("kind", "delete", "cluster", "--name=labkit")
    _, started = up(home)
    assert started


def test_a_cluster_labkit_did_not_make_is_left_alone(fake_tools: FakeTools, tmp_path: Path) -> None:  # noqa: F811
    fake_tools.run("kind", "create", "cluster", "--name=labkit", f"--kubeconfig={tmp_path / 'other'}")
    with pytest.raises(errors.ClusterError, match="a kind cluster named 'labkit' exists and labkit did not make"):
        up(tmp_path / "home")
    assert [a[1:3] for a in fake_tools.argvs("kind")].count(["create", "cluster"]) == 1


def test_missing_docker_names_the_embedded_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = install(tmp_path / "fakes", names=("kind", "kubectl"))
    monkeypatch.setenv("PATH", str(fakes.bin))
    monkeypatch.setenv("FAKE_TOOLS_STATE", str(fakes.state_dir))
    with pytest.raises(errors.BackendUnavailable) as caught:
        up(tmp_path / "home")
    assert str(caught.value) == ("kind backend: `docker` is not on PATH; the embedded backend (`labkit up`, "
                                 "the default) needs neither Docker nor kind")


def test_missing_kind_names_the_embedded_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes = install(tmp_path / "fakes", names=("docker", "kubectl"))
    monkeypatch.setenv("PATH", str(fakes.bin))
    monkeypatch.setenv("FAKE_TOOLS_STATE", str(fakes.state_dir))
    with pytest.raises(errors.BackendUnavailable, match=r"`kind` is not on PATH; the embedded backend"):
        up(tmp_path / "home")


def test_docker_that_does_not_answer(fake_tools: FakeTools, tmp_path: Path,  # noqa: F811
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_DOWN", "1")
    with pytest.raises(errors.BackendUnavailable) as caught:
        up(tmp_path / "home")
    assert str(caught.value) == (
        "kind backend: Docker does not answer (Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?); the embedded backend (`labkit up`, the default) needs neither Docker nor "
        "kind")
    assert verbs(fake_tools) == ["docker info"]


def test_kind_too_old_for_the_pinned_image(fake_tools: FakeTools, tmp_path: Path,  # noqa: F811
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KIND_VERSION", "v0.17.0")
    with pytest.raises(errors.BackendUnavailable, match=r"needs kind >= v0.32.0 \(or pass --image"):
        up(tmp_path / "home")
    up(tmp_path / "home", image="kindest/node:v1.25.3")  # the user's own image: their choice


def test_given_paths_are_used_and_nothing_is_downloaded(fake_tools: FakeTools, tmp_path: Path,  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = install(tmp_path / "elsewhere", names=("kind", "kubectl"))
    for name in ("kind", "kubectl"):
        (fake_tools.bin / name).unlink()
    info, _ = up(tmp_path / "home", kind_bin=str(elsewhere.bin / "kind"), kubectl_bin=str(elsewhere.bin / "kubectl"))
    assert info.kind == str(elsewhere.bin / "kind")
    with pytest.raises(errors.BackendUnavailable, match="is not an executable kind"):
        up(tmp_path / "home2", kind_bin=str(tmp_path / "nope"))
    cluster = kind.KindCluster("x", tmp_path / "state", kind_path=tmp_path / "nope", kubectl_path=tmp_path / "nope")
    with pytest.raises(errors.BackendUnavailable, match="kind is missing"):
        cluster.ensure_kind()
    with pytest.raises(errors.BackendUnavailable, match="kubectl is missing"):
        cluster.ensure_kubectl()


def test_options_are_checked() -> None:
    with pytest.raises(errors.ClusterError, match="use --proxy-mode ipvs with --proxy labkit"):
        kind.Options(proxy="labkit", proxy_mode="nftables").validate()
    with pytest.raises(errors.ClusterError, match="not a valid cluster name"):
        kind.Options(name="Lab_Kit").validate()
    with pytest.raises(errors.ClusterError, match="at least 1"):
        kind.Options(nodes=0).validate()


def test_ipvs_table_is_read_from_each_nodes_proc(fake_tools: FakeTools, tmp_path: Path) -> None:  # noqa: F811
    info, _ = up(tmp_path / "home", nodes=2)
    tables = kind.ipvs_tables(info)
    assert list(tables) == ["labkit-control-plane", "labkit-worker"]
    assert render_list(tables["labkit-control-plane"]) == (
        "IP Virtual Server version 1.2.1 (size=4096)\n"
        "Prot LocalAddress:Port Scheduler Flags\n"
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"
        "TCP  10.96.0.1:443 rr\n"
        "  -> 172.18.0.2:6443              Masq    1      0          0         \n"
        "TCP  10.96.0.10:53 rr\n"
        "  -> 10.244.0.2:53                Masq    1      0          0         \n"
        "  -> 10.244.0.3:53                Masq    1      0          0         \n"
        "TCP  10.96.0.10:9153 rr\n"
        "  -> 10.244.0.2:9153              Masq    1      0          0         \n"
        "  -> 10.244.0.3:9153              Masq    1      0          0         \n"
        "UDP  10.96.0.10:53 rr\n"
        "  -> 10.244.0.2:53                Masq    1      0          0         \n"
        "  -> 10.244.0.3:53                Masq    1      0          0         \n")
    assert tables["labkit-worker"] == tables["labkit-control-plane"]
    assert fake_tools.argvs("docker")[-1] == ["docker", "exec", "labkit-worker", "cat", "/proc/net/ip_vs"]


def test_persistent_timeouts_are_read_in_seconds_from_the_jiffies_proc_shows(fake_tools: FakeTools,  # noqa: F811
                                                                            tmp_path: Path) -> None:
    info, _ = up(tmp_path / "home")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"clusterIP": "10.96.0.50", "sessionAffinity": "ClientIP",
                        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                        "ports": [{"port": 80, "protocol": "TCP"}]}}
    info.kubectl_runner()("apply", "-f", "-", input=yaml.safe_dump(service))
    table = {(vs.address, vs.port): vs for vs in kind.ipvs_table(info)}
    assert table[("10.96.0.50", 80)].persistent and table[("10.96.0.50", 80)].timeout == 60  # /proc: 15000
    assert not table[("10.96.0.1", 443)].persistent
    assert "TCP  10.96.0.50:80 rr persistent 60" in render_list(list(table.values())).splitlines()
    assert ["docker", "exec", "labkit-control-plane", "cat", "/proc/timer_list"] in fake_tools.argvs("docker")


def test_ipvs_table_of_an_nftables_cluster_says_why_there_is_none(fake_tools: FakeTools,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    info, _ = up(tmp_path / "home", proxy_mode="nftables")
    with pytest.raises(errors.Unavailable, match=r"runs kube-proxy in nftables mode: it has no IPVS table"):
        kind.ipvs_table(info)


def test_lab_images_not_present_locally_are_reported(fake_tools: FakeTools, tmp_path: Path) -> None:  # noqa: F811
    said: list[str] = []
    kind.up(tmp_path / "home", kind.Options(timeout=30), progress=said.append)
    assert any("nodes will pull them" in line and images.AGNHOST in line for line in said)
    assert not any(a[1:3] == ["load", "docker-image"] for a in fake_tools.argvs("kind"))


# ------------------------------------------------------------------------------------------------ the CLI

def test_cli_up_status_kubeconfig_down(fake_tools: FakeTools, tmp_path: Path,  # noqa: F811
                                       capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert cli.main(["--home", str(home), "up", "--backend", "kind", "--nodes", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("labkit: kind cluster labkit is usable in ")
    assert "(kube-proxy mode ipvs; nodes labkit-control-plane, labkit-worker)" in out
    assert f"export KUBECONFIG={home}/kind/kubeconfig" in out

    assert cli.main(["--home", str(home), "kubeconfig"]) == 0
    assert capsys.readouterr().out == f"{home}/kind/kubeconfig\n"
    assert cli.main(["--home", str(home), "status"]) == 0
    status = capsys.readouterr().out
    assert "proxy mode: ipvs\n" in status and "proxy:      kube-proxy in ipvs mode\n" in status
    assert "cluster:    labkit\n" in status and "  node labkit-worker\n" in status

    assert cli.main(["--home", str(home), "ipvs"]) == 0
    assert "TCP  10.96.0.1:443 rr\n  -> 172.18.0.2:6443" in capsys.readouterr().out
    assert cli.main(["--home", str(home), "dig", "kubernetes.default.svc.cluster.local.", "--short"]) == 0
    assert capsys.readouterr().out == "10.96.0.1\n"

    assert cli.main(["--home", str(home), "up"]) == 1  # the embedded backend at a home holding a kind cluster
    assert "holds a kind cluster" in capsys.readouterr().err

    assert cli.main(["--home", str(home), "down"]) == 0
    assert "kind cluster 'labkit' deleted" in capsys.readouterr().out
    assert fake_tools.state()["clusters"] == {}


def test_cli_curl_sends_from_the_pods_network_namespace_and_names_who_answered(
        fake_tools: FakeTools, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    home = str(tmp_path / "home")
    assert cli.main(["--home", home, "up", "--backend", "kind", "--nodes", "2"]) == 0
    fake_tools.add_pod("labkit", "lab1", "client", "labkit-worker", "10.244.1.5")
    fake_tools.add_pod("labkit", "lab1", "web-a", "labkit-control-plane", "10.244.0.7")
    fake_tools.add_pod("labkit", "lab1", "web-b", "labkit-worker", "10.244.1.8")
    fake_tools.add_service("labkit", "web.lab1.svc.cluster.local.", "10.96.0.100", 80,
                           [("web-a", "10.244.0.7"), ("web-b", "10.244.1.8")])
    capsys.readouterr()
    fake_tools.forget_calls()

    assert cli.main(["--home", home, "curl", "http://web/", "--from", "client", "-n", "lab1", "--count", "4",
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["address"] == "10.96.0.100:80" and doc["errors"] == 0
    assert doc["counts"] == {"web-a": 2, "web-b": 2}  # named from the pods kubectl listed
    assert all(r["local"].startswith("10.244.1.5:") for r in doc["requests"])  # the client pod's own address
    assert [r["destination"] for r in doc["requests"]] == ["10.244.0.7:80", "10.244.1.8:80"] * 2  # IPVS's choice
    kubectl = fake_tools.argvs("kubectl")
    assert any(a[-4:] == ["pods", "--all-namespaces", "-o", "json"] for a in kubectl)
    relays = [a for a in kubectl if "exec" in a and any("labkit node helper: relay" in w for w in a)]
    assert len(relays) == 4 and all("labkit-node-helper-labkit-worker" in a for a in relays)
    # entering the client's network namespace, connecting to the address resolved once
    assert all(a[a.index("--") + 4:] == ["10.244.1.5/client", "10.96.0.100", "80", "3.0"] for a in relays)

    assert cli.main(["--home", home, "curl", "10.96.0.200", "--count", "2"]) == 1
    err = capsys.readouterr().err
    assert "request 0: connect to 10.96.0.200:80: Connection refused" in err and "2 of 2 requests failed" in err
    assert cli.main(["--home", home, "curl", "web", "--from", "nobody", "-n", "lab1"]) == 1
    assert 'pods "nobody" not found' in capsys.readouterr().err

    assert cli.main(["--home", home, "nft"]) == 1  # kube-proxy in IPVS mode made no nftables rules
    assert "made no nftables rules" in capsys.readouterr().err
    assert cli.main(["--home", home, "down"]) == 0


def test_cli_curl_and_nft_on_an_nftables_kind_cluster(fake_tools: FakeTools, tmp_path: Path,  # noqa: F811
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "home")
    assert cli.main(["--home", home, "up", "--backend", "kind", "--proxy-mode", "nftables"]) == 0
    fake_tools.add_pod("labkit", "default", "web-a", "labkit-control-plane", "10.244.0.7")
    fake_tools.add_service("labkit", "web.default.svc.cluster.local.", "10.96.0.100", 8080, [("web-a", "10.244.0.7")])
    capsys.readouterr()

    assert cli.main(["--home", home, "curl", "web:8080/hostname"]) == 0  # from the node
    assert capsys.readouterr().out == "web-a  1\n"
    assert cli.main(["--home", home, "curl", "web:8080", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["from"] == "node" and doc["requests"][0]["local"].startswith("172.18.0.2:")
    assert doc["requests"][0]["destination"] == "10.244.0.7:8080"  # the node's conntrack table

    assert cli.main(["--home", home, "nft"]) == 0
    assert capsys.readouterr().out.startswith("table ip kube-proxy {")
    assert fake_tools.argvs("docker")[-1][-5:] == ["nft", "list", "table", "ip", "kube-proxy"]
    assert cli.main(["--home", home, "nft", "flush", "ruleset"]) == 1
    assert "only nft listings" in capsys.readouterr().err
    assert cli.main(["--home", home, "down"]) == 0


def test_cli_without_docker_prints_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fakes = install(tmp_path / "fakes", names=("kind", "kubectl"))
    monkeypatch.setenv("PATH", str(fakes.bin))
    monkeypatch.setenv("FAKE_TOOLS_STATE", str(fakes.state_dir))
    assert cli.main(["--home", str(tmp_path / "home"), "up", "--backend", "kind"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("labkit: kind backend: `docker` is not on PATH")
    assert "embedded backend" in err


def test_cli_images_lists_the_lab_images(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["images"]) == 0
    assert capsys.readouterr().out.splitlines() == list(images.LAB_IMAGES)



# ------------------------------------------------------------------------------------------------ the Backend

def test_backend_sends_queries_and_connections_from_the_pods_network_namespace(fake_tools: FakeTools,  # noqa: F811
                                                                               tmp_path: Path) -> None:
    backend = kind.KindBackend(tmp_path / "home", nodes=2, progress=quiet)
    assert backend.start(timeout=30)
    assert not backend.start(timeout=30)
    fake_tools.add_pod("labkit", "lab1", "client", "labkit-worker", "10.244.1.5")
    fake_tools.add_service("labkit", "web.lab1.svc.cluster.local.", "10.96.0.100", 80,
                           [("web-a", "10.244.0.7"), ("web-b", "10.244.1.8")])
    fake_tools.forget_calls()

    result = resolve("web", transport=backend.dns_transport("client", "lab1"))
    assert result.addresses == ["10.96.0.100"]
    assert result.tries[0].name == "web.lab1.svc.cluster.local."  # the pod's own search list
    query = fake_tools.argvs("kubectl")[-1]
    assert "labkit-node-helper-labkit-worker" in query  # the helper on the pod's node
    assert query[query.index("--") + 4] == "10.244.1.5/client"  # entering the pod's network namespace

    answers = []
    for _ in range(2):
        with backend.http_connection("web", 80, from_pod="client", namespace="lab1") as conn:
            answers.append(conn.request("/hostname", close=True))
    assert [a.body for a in answers] == ["web-a", "web-b"] and all(a.status == 200 for a in answers)
    assert answers[0].local is not None and answers[0].local[0] == "10.244.1.5"
    assert answers[0].peer == ("10.96.0.100", 80)
    # where IPVS sent each connection: the client node's /proc/net/ip_vs_conn, matched by the client's port
    assert [a.destination for a in answers] == [("10.244.0.7", 80), ("10.244.1.8", 80)]
    assert ["docker", "exec", "labkit-worker", "cat", "/proc/net/ip_vs_conn"] in fake_tools.argvs("docker")

    with pytest.raises(ConnectionError, match=r"connect to 10\.96\.0\.200:80: Connection refused"):
        backend.http_connection("10.96.0.200", 80, from_pod="client", namespace="lab1")

    info = backend.describe()
    assert (info.backend, info.proxy_mode, info.nodes) == ("kind", "ipvs", ("labkit-control-plane", "labkit-worker"))
    assert info.server.startswith("https://127.0.0.1:") and info.kubeconfig == backend.kubeconfig
    assert len(backend.ipvs_table()) == 4
    assert backend.running()
    assert backend.stop() and not backend.running()
    with pytest.raises(errors.ClusterNotRunning):
        backend.connect(timeout=5)


def test_backend_refuses_a_second_mode_on_the_same_home(fake_tools: FakeTools, tmp_path: Path) -> None:  # noqa: F811
    backend = kind.KindBackend(tmp_path / "home", progress=quiet)
    backend.start(timeout=30)
    with pytest.raises(errors.ClusterError, match="runs kube-proxy in ipvs mode, not nftables mode"):
        backend.start(proxy_mode="nftables", timeout=30)
    assert not backend.start(timeout=30)  # no mode asked: the running cluster's
    with pytest.raises(errors.Unavailable, match="not iptables"):
        backend.start(proxy_mode="iptables", timeout=30)


def test_get_backend_makes_the_kind_backend(tmp_path: Path) -> None:
    backend = get_backend("kind", home=tmp_path, cluster_name="x", nodes=3)
    assert isinstance(backend, kind.KindBackend) and backend.options.nodes == 3
    assert backend.kubeconfig == tmp_path / "kind" / "kubeconfig"


def test_nftables_mode_lists_kube_proxys_table_and_finds_destinations_in_conntrack(
        fake_tools: FakeTools, tmp_path: Path) -> None:  # noqa: F811
    backend = kind.KindBackend(tmp_path / "home", progress=quiet)
    backend.start(proxy_mode="nftables", timeout=30)
    assert backend.nft(["list", "table", "ip", "kube-proxy"]).startswith("table ip kube-proxy {")
    assert fake_tools.argvs("docker")[-1] == ["docker", "exec", "labkit-control-plane", "nft", "list", "table", "ip",
                                              "kube-proxy"]
    with pytest.raises(errors.Unavailable, match="only nft listings"):
        backend.nft(["flush", "ruleset"])
    with pytest.raises(errors.Unavailable, match="no IPVS table"):
        backend.ipvs_table()
    fake_tools.add_service("labkit", "web.default.svc.cluster.local.", "10.96.0.100", 80, [("web-a", "10.244.0.7")])
    with backend.http_connection("web", 80, from_pod=None, namespace="default") as conn:
        reply = conn.request("/", close=True)
    assert reply.body == "web-a" and reply.local is not None and reply.local[0] == "172.18.0.2"  # from the node
    assert reply.destination == ("10.244.0.7", 80)
    assert ["docker", "exec", "labkit-control-plane", "cat", "/proc/net/nf_conntrack"] in fake_tools.argvs("docker")


def test_nft_on_an_ipvs_cluster_says_there_are_no_rules(fake_tools: FakeTools, tmp_path: Path) -> None:  # noqa: F811
    backend = kind.KindBackend(tmp_path / "home", progress=quiet)
    backend.start(timeout=30)
    with pytest.raises(errors.Unavailable, match="runs kube-proxy in ipvs mode: kube-proxy made no nftables rules"):
        backend.nft(["list", "table", "ip", "kube-proxy"])
