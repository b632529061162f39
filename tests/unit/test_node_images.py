"""Image references → built-in workloads."""

import sys

from labkit.node.images import ImageError, ImageRef, Workload, resolve_image


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
    assert resolve_image(img, ["sleep", "infinity"]) == Workload("toolbox", {"mode": "sleep", "seconds": None})
    err = resolve_image(img, None, ["porter"])
    assert isinstance(err, ImageError) and "porter" in err.message


def test_toolbox_commands():
    assert resolve_image("busybox:1.36", ["sleep", "3600"]).spec == {"mode": "sleep", "seconds": 3600.0}
    assert resolve_image("alpine", ["sh", "-c", "echo hi"]).spec == {"mode": "shell",
                                                                     "argv": ["/bin/sh", "-c", "echo hi"]}
    other = resolve_image("nicolaka/netshoot", ["nslookup", "kubernetes"])
    assert other.spec["seconds"] is None and "nslookup" in other.spec["note"]
    assert resolve_image("registry.k8s.io/e2e-test-images/jessie-dnsutils:1.7").kind == "toolbox"


def test_coredns_runs_labkit_dns():
    wl = resolve_image("registry.k8s.io/coredns/coredns:v1.11.1", None, ["-conf", "/etc/coredns/Corefile"])
    # CoreDNS's `-conf` names kind's Corefile, which labkit.dns serve has built in (and does not accept).
    assert wl == Workload("exec", {"argv": [sys.executable, "-m", "labkit.dns", "serve"]})


def test_unknown_image_is_an_image_error_listing_what_runs():
    err = resolve_image("quay.io/acme/app:1.0")
    assert isinstance(err, ImageError) and err.reason == "ErrImagePull"
    assert 'Failed to pull image "quay.io/acme/app:1.0"' in err.message and "agnhost" in err.message
