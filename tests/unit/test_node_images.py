"""Image references → built-in workloads."""


from labkit.node.images import ImageError, ImageRef, Workload, image_files, resolve_image


def test_image_ref_parsing():
    assert ImageRef.parse("nginx") == ImageRef("docker.io", "nginx", "latest")
    assert ImageRef.parse("docker.io/library/nginx:1.25") == ImageRef("docker.io", "nginx", "1.25")
    assert ImageRef.parse("localhost:5000/x/y:2@sha256:ab") == ImageRef("localhost:5000", "x/y", "2")
    assert ImageRef.parse("registry.k8s.io/e2e-test-images/agnhost:2.52").repository == "e2e-test-images/agnhost"


def test_nginx_versions():
    assert resolve_image("nginx:1.25.3") == Workload("nginx", {"version": "1.25.3", "port": 80})
    assert resolve_image("docker.io/library/nginx:1.25").spec["version"] == "1.25.5"
    assert resolve_image("nginx:alpine").spec["version"] == resolve_image("nginx").spec["version"]


def test_agnhost_subcommands():
    img = "registry.k8s.io/e2e-test-images/agnhost:2.52"
    assert resolve_image(img, None, ["netexec", "--http-port=80"]) == Workload(
        "agnhost", {"argv": ["netexec", "--http-port=80"]})
    assert resolve_image(img, ["/agnhost", "serve-hostname"], None).spec["argv"] == ["serve-hostname"]
    assert resolve_image(img).spec["argv"] == ["pause"]  # the image's default CMD
    # The Kubernetes docs' dnsutils pod: agnhost with `sleep infinity`.
    assert resolve_image(img, ["sleep", "infinity"]) == Workload("command", {"argv": ["sleep", "infinity"]})
    for sub in ("connect", "dns-suffix", "dns-server-list", "etc-hosts", "porter", "test-webserver"):
        assert resolve_image(img, None, [sub]) == Workload("agnhost", {"argv": [sub]})
    assert resolve_image(img, ["/agnhost-2", "pause"]).spec["argv"] == ["pause"]
    err = resolve_image(img, None, ["guestbook"])
    assert isinstance(err, ImageError) and "guestbook" in err.message


def test_agnhost_containers_get_the_agnhost_executable():
    files = image_files("registry.k8s.io/e2e-test-images/agnhost:2.39")
    assert set(files) == {"/agnhost", "/agnhost-2"} and files["/agnhost"].mode == 0o755
    script = files["/agnhost"].data.decode()
    # The node's Python as containers see it (labkit.node.rootfs binds it read-only at /opt/labkit).
    assert script.startswith("#!/opt/labkit/bin/python3\n")
    assert "from labkit.node.workloads.agnhost import cli" in script
    assert image_files("busybox") == {}


def test_documentation_images():
    # Debug Services: `kubectl create deployment hostnames --image=registry.k8s.io/serve_hostname` (port 9376).
    for image in ("registry.k8s.io/serve_hostname", "k8s.gcr.io/serve_hostname:1.4",
                  "gcr.io/google_containers/serve_hostname"):
        assert resolve_image(image) == Workload("agnhost", {"argv": ["serve-hostname"], "title": ["/serve_hostname"]})
    assert resolve_image("registry.k8s.io/serve_hostname", None, ["-udp", "-http=false"]).spec["argv"] == [
        "serve-hostname", "-udp", "-http=false"]
    assert resolve_image("registry.k8s.io/serve_hostname", ["sh", "-c", "true"]).kind == "command"
    # The StatefulSet tutorial's nginx-slim tags.
    for tag, version in (("0.8", "1.11.12"), ("0.21", "1.11.12"), ("0.24", "1.13.4"), ("0.27", "1.13.4")):
        assert resolve_image(f"registry.k8s.io/nginx-slim:{tag}") == Workload("nginx", {"version": version,
                                                                                       "port": 80})


def test_toolbox_commands():
    # The command as given (the host's programs run it), else the image's ENTRYPOINT/CMD.
    assert resolve_image("busybox:1.36", ["sleep", "3600"]) == Workload("command", {"argv": ["sleep", "3600"]})
    assert resolve_image("alpine", ["sh", "-c", "echo hi"]).spec["argv"] == ["sh", "-c", "echo hi"]
    assert resolve_image("nicolaka/netshoot", None, ["nslookup", "kubernetes"]).spec["argv"] == [
        "nslookup", "kubernetes"]
    assert resolve_image("busybox").spec["argv"] == ["sh"] and resolve_image("alpine").spec["argv"] == ["/bin/sh"]
    assert resolve_image("curlimages/curl", None, ["-s", "http://web"]).spec["argv"] == ["curl", "-s", "http://web"]
    assert resolve_image("curlimages/curl", None, ["sh", "-c", "x"]).spec["argv"] == ["sh", "-c", "x"]
    assert resolve_image("registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7").spec["argv"] == ["bash"]


def test_coredns_runs_labkit_dns():
    wl = resolve_image("registry.k8s.io/coredns/coredns:v1.11.1", None, ["-conf", "/etc/coredns/Corefile"])
    # CoreDNS's flags go to labkit's coredns, which reads the Corefile the ConfigMap volume holds.
    assert wl == Workload("exec", {"argv": ["/opt/labkit/bin/python3", "-m", "labkit.dns", "serve", "-conf",
                                            "/etc/coredns/Corefile"]}) and wl.runtime
    wl = resolve_image("coredns/coredns:1.9.0", ["/coredns"], ["-conf", "/etc/coredns/Corefile", "-quiet"])
    assert wl.spec["argv"][-3:] == ["-conf", "/etc/coredns/Corefile", "-quiet"]


def test_unknown_image_is_an_image_error_listing_what_runs():
    err = resolve_image("quay.io/acme/app:1.0")
    assert isinstance(err, ImageError) and err.reason == "ErrImagePull"
    assert 'Failed to pull image "quay.io/acme/app:1.0"' in err.message and "agnhost" in err.message
