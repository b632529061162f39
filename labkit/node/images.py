"""Image references → built-in workloads. The embedded node pulls nothing: it knows a few images.

`resolve_image(image, command, args)` returns a `Workload` (JSON-able spec for the zygote) or an
`ImageError` whose message the kubelet reports with reason ErrImagePull / ImagePullBackOff.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from labkit.node.rootfs import RUNTIME_LIB, RUNTIME_PYTHON, runtime_argv

NGINX_LATEST = "1.29.1"  # what `nginx:latest`/`stable`/`alpine` report (a recent mainline release)
# Last patch release of the nginx minor versions an image tag like `nginx:1.25` points at.
NGINX_MINOR_PATCH = {"1.19": "1.19.10", "1.20": "1.20.2", "1.21": "1.21.6", "1.22": "1.22.1", "1.23": "1.23.4",
                     "1.24": "1.24.0", "1.25": "1.25.5", "1.26": "1.26.3", "1.27": "1.27.5", "1.28": "1.28.0",
                     "1.29": "1.29.1"}

TOOLBOX_REPOS = {"busybox", "alpine", "debian", "ubuntu", "nicolaka/netshoot", "e2e-test-images/jessie-dnsutils",
                 "e2e-test-images/dnsutils", "kubernetes-e2e-test-images/dnsutils", "curlimages/curl",
                 "python"}  # python: the node helper of the kind and kubeconfig backends (`kubectl exec … python3`)
# Each toolbox image's default command (its Dockerfile's CMD). netshoot's is zsh; where the host has no zsh, bash,
# which the image has too.
TOOLBOX_CMD = {"busybox": ["sh"], "alpine": ["/bin/sh"], "debian": ["bash"], "ubuntu": ["/bin/bash"],
               "nicolaka/netshoot": ["zsh"] if shutil.which("zsh") else ["bash"],
               "e2e-test-images/jessie-dnsutils": ["bash"], "e2e-test-images/dnsutils": ["/bin/sh"],
               "kubernetes-e2e-test-images/dnsutils": ["/bin/sh"], "python": ["python3"]}
PYTHON_KINDS = {"nginx", "agnhost", "webhost"}  # workloads the zygote's forked children run in Python

# nginx-slim (kubernetes/ingress-nginx images/nginx-slim, the StatefulSet tutorial's image): the nginx release a
# tag was built from, where its release notes say (0.16: build.sh; 0.23: ingress-nginx#1087); other tags report
# the nearest cited tag below them.
NGINX_SLIM_VERSIONS = {(0, 16): "1.11.12", (0, 23): "1.13.4"}
SERVE_HOSTNAME_REPOS = {"serve_hostname", "google_containers/serve_hostname", "google-containers/serve_hostname",
                        "e2e-test-images/serve-hostname"}

SUPPORTED = ("nginx[:tag] and registry.k8s.io/nginx-slim (an nginx-like web server on :80); "
             "registry.k8s.io/e2e-test-images/agnhost:<tag> with connect, dns-server-list, dns-suffix, etc-hosts, "
             "netexec, pause, porter, serve-hostname or test-webserver; "
             "registry.k8s.io/serve_hostname (its hostname on :9376); "
             "busybox, alpine, debian, ubuntu, python, nicolaka/netshoot, "
             "registry.k8s.io/e2e-test-images/jessie-dnsutils "
             "(toolbox images: their command runs as given, with the host's programs); "
             "registry.k8s.io/coredns/coredns (labkit's cluster DNS)")


@dataclass(frozen=True)
class Workload:
    """What a container runs: `spec` goes to labkit.node.workloads.run in the zygote's child."""

    kind: str
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def runtime(self) -> bool:
        """Whether it runs on the node's Python: its container then sees that runtime (labkit.node.rootfs)."""
        return self.kind in PYTHON_KINDS or (self.kind == "exec" and self.spec["argv"][:1] == [RUNTIME_PYTHON])

    def to_spec(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.spec}


@dataclass(frozen=True)
class ImageError:
    """An image the node cannot run (the kubelet reports ErrImagePull with `message`)."""

    image: str
    message: str
    reason: str = "ErrImagePull"


@dataclass(frozen=True)
class ImageFile:
    """A file an image holds in its container's root filesystem that the node provides itself."""

    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class ImageRef:
    registry: str
    repository: str  # without registry, `library/` removed
    tag: str

    @classmethod
    def parse(cls, image: str) -> ImageRef:
        ref = image.split("@", 1)[0]
        name, tag = ref, "latest"
        last = ref.rsplit("/", 1)[-1]
        if ":" in last:
            name, tag = ref.rsplit(":", 1)
        parts = name.split("/")
        registry = "docker.io"
        if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
            registry, parts = parts[0], parts[1:]
        if registry in ("docker.io", "index.docker.io", "registry-1.docker.io") and parts[0] == "library":
            parts = parts[1:]
        return cls(registry, "/".join(parts), tag)


def nginx_version(tag: str) -> str:
    """The version an nginx image tag runs: `1.25.3` → 1.25.3, `1.25` → 1.25.5, `latest`/`alpine` → recent."""
    m = re.match(r"^(\d+\.\d+)(\.\d+)?", tag)
    if not m:
        return NGINX_LATEST
    if m.group(2):
        return m.group(0)
    return NGINX_MINOR_PATCH.get(m.group(1), m.group(1) + ".0")


def nginx_slim_version(tag: str) -> str:
    """The nginx version an nginx-slim tag runs (see NGINX_SLIM_VERSIONS)."""
    m = re.match(r"^(\d+)\.(\d+)", tag)
    wanted = (int(m.group(1)), int(m.group(2))) if m else max(NGINX_SLIM_VERSIONS)
    cited = [t for t in sorted(NGINX_SLIM_VERSIONS) if t <= wanted] or [min(NGINX_SLIM_VERSIONS)]
    return NGINX_SLIM_VERSIONS[cited[-1]]


def toolbox(argv: list[str]) -> Workload:
    """A container that runs its command as given (`sleep 3600`, `sh -c '…'`, `nslookup kubernetes`, an interactive
    shell), with the host's programs: the node has no image to take them from."""
    return Workload("command", {"argv": list(argv)})


def toolbox_command(repo: str, command: list[str], args: list[str]) -> list[str]:
    """What a toolbox image runs: `command` + `args` when the pod gives a command, else the image's ENTRYPOINT and
    CMD as its Dockerfile has them (kubelet's and Docker's rules)."""
    if command:
        return command + args
    name = next((t for t in TOOLBOX_REPOS if repo == t or repo.endswith("/" + t)), repo)
    if name == "curlimages/curl":  # ENTRYPOINT ["/entrypoint.sh"]: flags go to curl, anything else runs as is
        return ["curl", *args] if not args or args[0].startswith("-") else args
    return args or list(TOOLBOX_CMD.get(name, ["sh"]))


def resolve_image(image: str, command: list[str] | None = None, args: list[str] | None = None
                  ) -> Workload | ImageError:
    """Map a container's image, command and args to a built-in workload (or an ImageError)."""
    ref = ImageRef.parse(image)
    command, args = list(command or []), list(args or [])
    repo = ref.repository
    base = repo.rsplit("/", 1)[-1]
    if is_official_nginx(ref):
        return Workload("nginx", {"version": nginx_version(ref.tag), "port": 80})
    if base == "nginx-slim":
        return Workload("nginx", {"version": nginx_slim_version(ref.tag), "port": 80})
    if repo in SERVE_HOSTNAME_REPOS:
        # ENTRYPOINT ["/serve_hostname"]: its flags are the args; another command runs in the busybox base.
        if command and os.path.basename(command[0]) not in ("serve_hostname", "serve-hostname"):
            return toolbox(command + args)
        flags = command[1:] + args
        return Workload("agnhost", {"argv": ["serve-hostname", *flags], "title": ["/serve_hostname", *flags]})
    if base == "agnhost":
        from labkit.node.workloads.agnhost import EXECUTABLE_PATHS, SUBCOMMANDS

        names = {os.path.basename(p) for p in EXECUTABLE_PATHS}
        argv = command + args if command else (args or ["pause"])
        if command and os.path.basename(argv[0]) not in names:
            return toolbox(argv)  # e.g. the dnsutils pod of the Kubernetes docs: agnhost + `sleep infinity`
        if os.path.basename(argv[0]) in names:
            argv = argv[1:] or ["pause"]

        if argv[0] not in SUBCOMMANDS:
            return ImageError(image, f"agnhost subcommand {argv[0]!r} is not built into the embedded labkit node; "
                                     f"it runs: {SUPPORTED}")
        return Workload("agnhost", {"argv": argv})
    if base == "pause" and ref.registry in ("registry.k8s.io", "k8s.gcr.io"):
        return Workload("agnhost", {"argv": ["pause"]})
    if repo in TOOLBOX_REPOS or any(repo.endswith("/" + t) for t in TOOLBOX_REPOS):
        return toolbox(toolbox_command(repo, command, args))
    if repo.endswith("coredns"):
        # The image's entrypoint is /coredns: its flags (`-conf /etc/coredns/Corefile`, ...) go to labkit's.
        flags = command[1:] + args if command else args
        return Workload("exec", {"argv": runtime_argv("labkit.dns", ["serve", *flags])})
    return ImageError(image, f'Failed to pull image "{image}": the embedded labkit node cannot pull images. '
                             f"It runs these built-in images: {SUPPORTED}")


def is_official_nginx(ref: ImageRef) -> bool:
    base = ref.repository.rsplit("/", 1)[-1]
    return ref.repository == "nginx" or (base == "nginx" and ref.registry != "docker.io")


def image_files(image: str) -> dict[str, ImageFile]:
    """Files of `image` a container's root filesystem must hold at these paths, beyond what every container
    gets: agnhost's executable at /agnhost (its ENTRYPOINT; `kubectl exec POD -- /agnhost dns-suffix`) and
    the /agnhost-2 alias the e2e entrypoint tests use; the official nginx image's conf.d/default.conf (which
    the nginx workload reads, and a ConfigMap mounted over /etc/nginx/conf.d replaces)."""
    ref = ImageRef.parse(image)
    if is_official_nginx(ref):
        from labkit.node.workloads.nginx import CONF_DIR, DEFAULT_CONF

        return {f"{CONF_DIR}/default.conf": ImageFile(DEFAULT_CONF.encode())}
    if ref.repository.rsplit("/", 1)[-1] != "agnhost":
        return {}
    from labkit.node.workloads.agnhost import EXECUTABLE_PATHS, launcher_script

    launcher = ImageFile(launcher_script(RUNTIME_PYTHON, RUNTIME_LIB).encode(), 0o755)
    return dict.fromkeys(EXECUTABLE_PATHS, launcher)
