#!/bin/sh
# The workshop image's entry point: start the embedded cluster, then JupyterLab on port 8888 with the labs open.
# Terminals and notebooks opened in JupyterLab inherit KUBECONFIG, so `kubectl` talks to the cluster.
#
# Learners get the student build (what `labkit lab --student` serves): a copy of the labs in $LABKIT_WORK/labs
# (default /work/labs) with each exercise's solution replaced by a placeholder and its checks kept. The copy is the
# learner's: a file they edited is never overwritten, so a volume there keeps their work across restarts
# (`-v labkit-work:/work`). LABKIT_LABS=instructor serves the labs' sources, solutions included (the instructor's
# screen).
set -eu
checkout="$(cd "$(dirname "$0")/../.." && pwd)"  # /opt/labkit in the image
case "${LABKIT_LABS:-student}" in
  student)
    labs="${LABKIT_WORK:-/work}/labs"
    python -c "import sys; from pathlib import Path; from labkit import frontdoor
copy = frontdoor.student_labs(Path(sys.argv[1]), Path(sys.argv[2]))
print(f'labkit: student copy of the labs in {copy.folder}: {len(copy.written)} files written, '
      f'{len(copy.kept)} kept as the learner left them')" "$labs" "$checkout/labs" ;;
  instructor)
    labs="$checkout/labs" ;;
  *)
    echo "labkit: LABKIT_LABS is student (the default) or instructor, not ${LABKIT_LABS}" >&2
    exit 2 ;;
esac
labkit up --wait
KUBECONFIG="$(labkit kubeconfig)"
export KUBECONFIG
# A double click opens a lab's Markdown source as a notebook (labkit's JupyterLab overrides, as `labkit lab` writes).
python -c "from labkit import frontdoor; frontdoor.install_overrides()"
exec jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --allow-root \
  --ServerApp.root_dir="$labs" --LabApp.default_url=/lab/tree/README.md "$@"
