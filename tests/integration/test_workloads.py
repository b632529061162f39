"""The documentation's images in real pods: agnhost's subcommands, serve_hostname, nginx-slim, and
`setHostnameAsFQDN`, observed the way the pages and the e2e tests observe them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.integration.doc_steps import NEEDS_ROOT, Page

pytestmark = [pytest.mark.integration, NEEDS_ROOT]

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"


@pytest.fixture
def page(cluster: Any, namespace: str) -> Page:
    page = Page(cluster, namespace)
    page.kubectl = lambda *a, **kw: cluster.kubectl("-n", namespace, *a, **kw)  # type: ignore[method-assign]
    return page


def pod(name: str, image: str, *, args: list[str] | None = None, command: list[str] | None = None,
        restart: str = "Always", **spec: Any) -> str:
    container: dict[str, Any] = {"name": name, "image": image}
    if args is not None:
        container["args"] = args
    if command is not None:
        container["command"] = command
    for key in ("env", "ports"):
        if key in spec:
            container[key] = spec.pop(key)
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
                       "spec": {"containers": [container], "restartPolicy": restart, **spec}})


def finished_logs(page: Page, name: str) -> tuple[str, str]:
    """(phase, logs) of a run-to-completion pod once it has finished."""
    def finished() -> str | None:
        phase = page.json("get", "pod", name)["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, f"pod {name} to finish", 60)
    return phase, page.out("logs", name)


def test_agnhost_dns_subcommands_print_the_pods_resolver_files(page: Page) -> None:
    for sub in ("dns-suffix", "dns-server-list", "etc-hosts"):
        page.apply(pod(sub, AGNHOST, args=[sub], restart="Never"))
    assert finished_logs(page, "dns-suffix") == (
        "Succeeded", f"{page.ns}.svc.cluster.local,svc.cluster.local,cluster.local\n")
    assert finished_logs(page, "dns-server-list") == ("Succeeded", "10.96.0.10\n")
    phase, hosts = finished_logs(page, "etc-hosts")
    ip = page.json("get", "pod", "etc-hosts")["status"]["podIP"]
    assert phase == "Succeeded" and hosts.startswith("# Kubernetes-managed hosts file.\n")
    assert hosts.endswith(f"{ip}\tetc-hosts\n\n")  # the file, then Println's newline


def test_agnhost_connect_reports_success_and_refusal(page: Page) -> None:
    page.apply(pod("server", AGNHOST, args=["netexec", "--http-port=8080"]))
    ip = page.wait_pod_ready("server")["status"]["podIP"]
    page.apply(pod("reach", AGNHOST, args=["connect", f"{ip}:8080", "--timeout=5s"], restart="Never"))
    page.apply(pod("refused", AGNHOST, args=["connect", f"{ip}:9999", "--timeout=5s"], restart="Never"))
    page.apply(pod("noname", AGNHOST, args=["connect", "no-such-service:80", "--timeout=5s"], restart="Never"))
    assert finished_logs(page, "reach") == ("Succeeded", "")
    assert finished_logs(page, "refused") == ("Failed", "REFUSED\n")
    phase, logs = finished_logs(page, "noname")
    assert phase == "Failed" and logs.startswith("DNS: lookup no-such-service on 10.96.0.10:53: ")
    status = page.json("get", "pod", "refused")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert status["exitCode"] == 1 and status["reason"] == "Error"


def test_agnhost_porter_serves_its_environment(page: Page) -> None:
    env = [{"name": "SERVE_PORT_8080", "value": "foo"}, {"name": "SERVE_TLS_PORT_8443", "value": "tls foo"}]
    page.apply(pod("porter", AGNHOST, args=["porter"], env=env))
    page.apply(pod("client", "busybox", command=["sleep", "3600"]))
    ip = page.wait_pod_ready("porter")["status"]["podIP"]
    page.wait_pod_ready("client")
    assert page.exec("client", "curl", "-s", f"http://{ip}:8080/").stdout == "foo"
    assert page.exec("client", "curl", "-sk", f"https://{ip}:8443/").stdout == "tls foo"


def test_agnhost_test_webserver_serves_the_containers_files(page: Page) -> None:
    page.apply(pod("webserver", AGNHOST, args=["test-webserver"], ports=[{"containerPort": 80}]))
    page.apply(pod("client", "busybox", command=["sleep", "3600"]))
    ip = page.wait_pod_ready("webserver")["status"]["podIP"]
    page.wait_pod_ready("client")
    # /etc/hostname and /etc/resolv.conf are the pod's own: the server reads its container's filesystem.
    assert page.exec("client", "curl", "-s", f"http://{ip}/etc/hostname").stdout == "webserver\n"
    resolv = page.exec("client", "curl", "-s", f"http://{ip}/etc/resolv.conf").stdout
    assert resolv.startswith(f"search {page.ns}.svc.cluster.local ")
    head = page.exec("client", "curl", "-sI", f"http://{ip}/etc/nothing-here").stdout
    assert head.startswith("HTTP/1.1 404 Not Found\n") and "Access-Control-Allow-Origin: *\n" in head


def test_serve_hostname_and_nginx_slim_images(page: Page) -> None:
    page.out("create", "deployment", "hostnames", "--image=registry.k8s.io/serve_hostname")
    page.apply(pod("web-0", "registry.k8s.io/nginx-slim:0.24", ports=[{"containerPort": 80, "name": "web"}]))
    page.apply(pod("client", "busybox", command=["sleep", "3600"]))
    hostnames = page.wait_pods_ready("app=hostnames", 1)[0]
    web = page.wait_pod_ready("web-0")
    page.wait_pod_ready("client")
    name, ip = hostnames["metadata"]["name"], hostnames["status"]["podIP"]
    assert page.exec("client", "wget", "-qO-", f"{ip}:9376").stdout == name  # no trailing newline
    assert "Serving on port 9376." in page.out("logs", name)
    headers = page.exec("client", "curl", "-sI", f"http://{web['status']['podIP']}/").stdout
    assert "Server: nginx/1.13.4\n" in headers


def test_set_hostname_as_fqdn(page: Page) -> None:
    page.apply(json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sub"},
                           "spec": {"clusterIP": "None", "selector": {"app": "fqdn"}, "ports": [{"port": 80}]}}))
    spec = {"hostname": "b1", "subdomain": "sub", "setHostnameAsFQDN": True}
    page.apply(pod("fqdn", "busybox", command=["sleep", "3600"], **spec))
    page.wait_pod_ready("fqdn")
    fqdn = f"b1.sub.{page.ns}.svc.cluster.local"
    assert len(fqdn) <= 64
    assert page.exec("fqdn", "hostname").stdout == fqdn + "\n"
    assert page.exec("fqdn", "hostname", "--fqdn").stdout == fqdn + "\n"
    assert page.exec("fqdn", "cat", "/etc/hostname").stdout == fqdn + "\n"
    assert page.exec("fqdn", "sh", "-c", "echo $HOSTNAME").stdout == fqdn + "\n"
    # Without setHostnameAsFQDN the same pod's hostname is the short one.
    page.apply(pod("short", "busybox", command=["sleep", "3600"], hostname="b2", subdomain="sub"))
    page.wait_pod_ready("short")
    assert page.exec("short", "hostname").stdout == "b2\n"


def test_an_fqdn_over_64_characters_keeps_the_pod_pending_with_kubelets_event(page: Page) -> None:
    name = "a-rather-long-pod-hostname"
    page.apply(pod("toolong", "busybox", command=["sleep", "3600"], hostname=name,
                   subdomain="busybox-subdomain", setHostnameAsFQDN=True))
    fqdn = f"{name}.busybox-subdomain.{page.ns}.svc.cluster.local"
    assert len(fqdn) > 64
    events = wait_for(lambda: [e for e in page.events("toolong") if e["reason"] == "FailedCreatePodSandBox"],
                      "the FailedCreatePodSandBox event", 30)
    assert events[0]["type"] == "Warning"
    assert events[0]["message"] == (
        f"Failed to create pod sandbox: failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} "
        f"is too long (64 characters is the max, {len(fqdn)} characters requested)")
    status = page.json("get", "pod", "toolong")["status"]
    assert status["phase"] == "Pending" and "podIP" not in status
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    row = page.out("get", "pod", "toolong", "--no-headers").split()
    assert row[1:3] == ["0/1", "ContainerCreating"]


def test_the_agnhost_executable_in_agnhost_containers(page: Page) -> None:
    page.apply(pod("agnhost", AGNHOST))  # the image's default: /agnhost pause
    page.wait_pod_ready("agnhost")
    assert page.exec("agnhost", "/agnhost", "dns-suffix").stdout == (
        f"{page.ns}.svc.cluster.local,svc.cluster.local,cluster.local\n")
    assert page.exec("agnhost", "/agnhost-2", "dns-server-list").stdout == "10.96.0.10\n"
    done = page.exec("agnhost", "/agnhost", "connect", "kubernetes.default:443", "--timeout=5s", check=False)
    assert (done.returncode, done.stderr) == (0, "")
    done = page.exec("agnhost", "/agnhost", "nope", check=False)
    assert done.returncode == 1 and 'Error: unknown command "nope" for "app"' in done.stderr


def test_nginx_serves_what_a_volume_mounted_over_its_html_root_holds(page: Page) -> None:
    # The StatefulSet tutorial's pattern: a volume over /usr/share/nginx/html hides the image's pages (403),
    # then `echo $(hostname) > /usr/share/nginx/html/index.html` is what nginx serves.
    spec = json.loads(pod("web-0", "registry.k8s.io/nginx-slim:0.24", ports=[{"containerPort": 80}]))
    spec["spec"]["volumes"] = [{"name": "www", "emptyDir": {}}]
    spec["spec"]["containers"][0]["volumeMounts"] = [{"name": "www", "mountPath": "/usr/share/nginx/html"}]
    page.apply(json.dumps(spec))
    page.apply(pod("client", "busybox", command=["sleep", "3600"]))
    ip = page.wait_pod_ready("web-0")["status"]["podIP"]
    page.wait_pod_ready("client")
    head = page.exec("client", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{ip}/").stdout
    assert head == "403"
    page.exec("web-0", "sh", "-c", 'echo "$(hostname)" > /usr/share/nginx/html/index.html')
    assert page.exec("client", "curl", "-s", f"http://{ip}/").stdout == "web-0\n"


def test_the_containers_process_shows_the_images_command_and_environment(page: Page) -> None:
    page.apply(pod("netexec", AGNHOST, args=["netexec", "--http-port=8080"], env=[{"name": "GREETING", "value": "hi"}]))
    page.apply(pod("web", "nginx:1.25"))
    page.wait_pod_ready("netexec")
    page.wait_pod_ready("web")
    cmdline = page.exec("netexec", "cat", "/proc/1/cmdline").stdout.rstrip("\0")
    assert cmdline == "/agnhost\0netexec\0--http-port=8080"
    environ = page.exec("netexec", "cat", "/proc/1/environ").stdout.rstrip("\0").split("\0")
    assert "GREETING=hi" in environ and "KUBERNETES_SERVICE_HOST=10.96.0.1" in environ
    assert not any("labkit" in e.lower() for e in environ)  # nothing of the node's environment
    ps = page.exec("web", "ps", "-o", "pid,args").stdout.splitlines()
    assert ps[1].split(None, 1) == ["1", "nginx: master process nginx -g daemon off;"]
