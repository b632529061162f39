"""Benchmark: every lab executed top to bottom, one after another, as `./run tests` runs them.

Prints each lab's wall time (fresh kernel included) and the total, against the target of 60 s for all labs.
Each lab runs on an embedded cluster of the proxy mode it asks for (labkit.notebooks.run, as the test suite);
the clusters' starts are timed apart.

    .venv/bin/python bench/bench_labs.py [--home H] [--only 01-clusterip ...]

Without --home temporary clusters are started and removed afterwards (--home: the IPVS-mode cluster to use).
The machine is shared: say what else ran when you quote the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import notebooks
from labkit.backends import embedded

TARGET_SECONDS = 60.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", type=Path, help="use the embedded cluster at this LABKIT_HOME (default: a temporary one)")
    p.add_argument("--only", nargs="*", help="lab names (file stems) to run")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="labkit-bench-labs-"))
    homes: dict[str, Path] = {}  # one cluster per proxy mode, as the test suite runs them

    def home_for(mode: str) -> Path:
        if mode not in homes:
            home = (args.home if args.home and mode == "ipvs" else tmp / f"home-{mode}").absolute()
            t0 = time.monotonic()
            paths, started = embedded.up(home, timeout=60, proxy_mode=mode)
            embedded.wait_usable(paths, timeout=120)
            print(f"{mode} cluster {'started' if started else 'reused'} and usable in {time.monotonic() - t0:.1f} s "
                  "(not counted in the labs' time)")
            homes[mode] = home
        return homes[mode]

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    labs = [s for s in notebooks.sources() if not args.only or s.stem in args.only]
    total, failed = 0.0, 0
    try:
        for path in labs:
            home = home_for(notebooks.proxy_mode(path))
            result = notebooks.run(path, env={"LABKIT_HOME": str(home), "LABKIT_BACKEND": "embedded"})
            total += result.seconds
            status = "ok" if result.failure is None else f"FAILED at {str(result.failure).splitlines()[0]}"
            failed += result.failure is not None
            print(f"  {path.stem:<30} {result.seconds:6.1f} s  {status}", flush=True)
    finally:
        for home in homes.values():
            if home.parent == tmp:
                embedded.down(home)
        shutil.rmtree(tmp, ignore_errors=True)
    verdict = "within" if total <= TARGET_SECONDS else "OVER"
    print(f"all {len(labs)} labs: {total:.1f} s ({verdict} the {TARGET_SECONDS:.0f} s target), {failed} failed")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
