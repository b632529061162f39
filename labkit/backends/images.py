"""The container images the labs run, so that a real cluster can have them before a lab needs them.

`labkit images` prints them (one per line: `labkit images | xargs -n1 docker pull` fetches them while online);
`labkit up --backend kind` loads those present locally into the nodes, so the labs run offline. The embedded
cluster pulls nothing: it runs built-in workloads for these same references (labkit/node/images.py).
"""

from __future__ import annotations

# agnhost: netexec/serve-hostname backends that answer with their pod's name.
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"
# The node helper pods of the kind and kubeconfig backends (docker/manifests/node-helper.yaml): Python, to run the
# query and relay scripts they send with `kubectl exec`.
NODE_HELPER = "python:3.12-alpine"

LAB_IMAGES: tuple[str, ...] = (
    "nginx:1.19",    # the labs' web server (the article's)
    "busybox:1.36",  # the labs' client pods
    AGNHOST,
    NODE_HELPER,
)
