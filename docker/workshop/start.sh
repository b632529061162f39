#!/bin/sh
# The workshop image's entry point: start the embedded cluster, then JupyterLab on port 8888 with the labs open.
# Terminals and notebooks opened in JupyterLab inherit KUBECONFIG, so `kubectl` talks to the cluster.
set -eu
labkit up --wait
KUBECONFIG="$(labkit kubeconfig)"
export KUBECONFIG
# A double click opens a lab's Markdown source as a notebook (labkit's JupyterLab overrides, as `labkit lab` writes).
python -c "from labkit import frontdoor; frontdoor.install_overrides()"
exec jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --allow-root \
  --ServerApp.root_dir=/opt/labkit --LabApp.default_url=/lab/tree/labs "$@"
