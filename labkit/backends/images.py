"""The container images the labs run, so that a real cluster can have them before a lab needs them.

`labkit images` prints them (one per line: `labkit images | xargs -n1 docker pull` fetches them while online);
`labkit up --backend kind` loads those present locally into the nodes, so the labs run offline. The embedded
cluster pulls nothing: it runs built-in workloads for these same references (labkit/node/images.py).
"""

from __future__ import annotations

# agnhost: netexec/serve-hostname backends that answer with their pod's name, and the toolbox (dig, curl).
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"
TOOLBOX = AGNHOST

LAB_IMAGES: tuple[str, ...] = (
    AGNHOST,
    "nginx:1.19",   # the article's web server (the README's first Service)
    "busybox:1.36",  # a shell in a pod
)
