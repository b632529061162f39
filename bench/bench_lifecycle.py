"""Benchmark of the embedded cluster's life: `labkit up` (to the API, to usable) and `labkit down` with pods running.

    python bench/bench_lifecycle.py [--rounds 5] [--pods 10]

Each round starts a cluster in a private LABKIT_HOME, waits until it is usable (node Ready, kube-dns answering
through its Service), runs `--pods` nginx pods, then times `labkit down` (the CLI, as a learner runs it) and checks
that nothing of the cluster is left on the host: no process, no network namespace, no mount. Targets (issue 14):
down ≤ 1 s, like removing a kind node container.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labkit.backends import embedded
from labkit.node.cleanup import cluster_netns, cluster_processes
from labkit.node.names import cluster_prefix

DOWN_TARGET = 1.0


def labkit(*args: str, home: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "labkit", "--home", str(home), *args], check=True, capture_output=True)
    return time.perf_counter() - start


def kubectl(home: Path, *args: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(home / "kubeconfig")}
    subprocess.run(["kubectl", *args], check=True, capture_output=True, env=env, timeout=120)


def leftovers(home: Path) -> dict[str, int]:
    prefix = cluster_prefix(home)
    mounts = sum(prefix in line for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return {"processes": len(cluster_processes(prefix)), "netns": len(cluster_netns(prefix)), "mounts": mounts}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pods", type=int, default=10)
    args = parser.parse_args()
    ups, usable, downs = [], [], []
    with tempfile.TemporaryDirectory(prefix="labkit-bench-lifecycle-") as tmp:
        home = Path(tmp) / "home"
        try:
            for _ in range(args.rounds):
                ups.append(labkit("up", home=home))
                start = time.perf_counter()
                embedded.wait_usable(embedded.Paths(home))
                usable.append(ups[-1] + time.perf_counter() - start)
                kubectl(home, "create", "deployment", "web", "--image=nginx", f"--replicas={args.pods}")
                kubectl(home, "rollout", "status", "deployment/web", "--timeout=120s")
                downs.append(labkit("down", home=home))
                left = leftovers(home)
                if any(left.values()):
                    raise SystemExit(f"labkit down left {left}")
        finally:
            embedded.down(home)
    print(f"labkit up (to the API)   median {statistics.median(ups):.2f} s  (rounds: {len(ups)})")
    print(f"labkit up --wait (usable) median {statistics.median(usable):.2f} s")
    print(f"labkit down, {args.pods} pods   median {statistics.median(downs):.2f} s  max {max(downs):.2f} s  "
          f"(target ≤ {DOWN_TARGET:.1f} s: {'met' if statistics.median(downs) <= DOWN_TARGET else 'NOT met'})")
    print("left on the host after each down: nothing (processes, network namespaces, mounts)")


if __name__ == "__main__":
    main()
