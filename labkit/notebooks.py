"""The labs as notebooks: their sources (MyST Markdown under `labs/`), building them into `.ipynb`, running them.

A lab's source is a jupytext MyST Markdown file (`labs/NN-name.md`): reviewable text in git, no outputs. JupyterLab
opens it as a notebook (jupytext), `build()` writes plain `.ipynb` files, and `run()` executes one top to bottom in
a fresh kernel — what the test suite (tests/labs) and the benchmark (bench/bench_labs.py) do.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABS_DIR = Path(__file__).resolve().parent.parent / "labs"


def sources(folder: Path = LABS_DIR) -> list[Path]:
    """The labs, in order (`NN-*.md`)."""
    return sorted(p for p in folder.glob("[0-9][0-9]-*.md"))


def proxy_mode(path: Path) -> str:
    """The kube-proxy mode a lab asks for (`Lab.up(proxy_mode="nftables")`); the others run in IPVS mode."""
    return "nftables" if 'proxy_mode="nftables"' in path.read_text() else "ipvs"


def read(path: Path) -> Any:
    import jupytext

    return jupytext.read(path)


def build(dest: Path, folder: Path = LABS_DIR) -> list[Path]:
    """Write every lab as a `.ipynb` (no outputs) into `dest`."""
    import nbformat

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sources(folder):
        target = dest / (src.stem + ".ipynb")
        nbformat.write(read(src), target)
        out.append(target)
    return out


@dataclass
class Failure:
    """Where a lab failed: the cell (1-based among code cells), its source, and the error as the kernel gave it."""

    cell: int
    source: str
    ename: str
    evalue: str

    def __str__(self) -> str:
        src = "\n".join("    " + line for line in self.source.strip().splitlines())
        return f"code cell {self.cell}:\n{src}\n{self.ename}: {self.evalue}"


@dataclass
class Result:
    path: Path
    seconds: float
    failure: Failure | None = None
    notebook: Any = None


def run(path: Path, *, timeout: float = 300.0, env: dict[str, str] | None = None, nb: Any = None,
        on_cell: Callable[[int, int], None] | None = None,
        after_cell: Callable[[int], None] | None = None) -> Result:
    """Execute the lab at `path` top to bottom in a fresh python3 kernel (cwd: the lab's folder).

    `env` is added to the kernel's environment (e.g. LABKIT_HOME, so the lab uses a private cluster). `nb` runs
    that notebook (a build of the lab, labkit.exercises) instead of the source as written. `on_cell(n, total)` is
    called as the n-th of the notebook's `total` code cells starts; `after_cell(n)` after it ran (tests use it to
    break the cluster mid-lab).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = read(path) if nb is None else nb
    code_index = {i: n for n, i in enumerate((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), 1)}

    def cell_started(cell: Any, cell_index: int, **_: Any) -> None:
        if on_cell is not None and cell_index in code_index:
            on_cell(code_index[cell_index], len(code_index))

    def cell_ran(cell: Any, cell_index: int, **_: Any) -> None:
        if after_cell is not None and cell_index in code_index:
            after_cell(code_index[cell_index])

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", on_cell_execute=cell_started,
                            on_cell_executed=cell_ran,
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.monotonic()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})  # the kernel inherits this process's environment
    try:
        # The kernel process's own stderr holds only ipykernel's start-up chatter ("running over TCP without
        # encryption"); what a cell writes to stderr arrives as its output either way.
        client.execute(stderr=subprocess.DEVNULL)
        failure = None
    except (CellExecutionError, CellTimeoutError) as exc:
        failure = _failure(nb, exc)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Result(path, time.monotonic() - t0, failure, nb)


def _failure(nb: Any, exc: Exception) -> Failure:
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for n, cell in enumerate(code_cells, 1):
        if "raises-exception" in cell.get("metadata", {}).get("tags", []):
            continue  # allowed to fail (nbclient's tag): not what stopped the run
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return Failure(n, cell.source, out.get("ename", ""), out.get("evalue", ""))
    # A timeout leaves no error output: the cell that ran last is the one without an execution count after one.
    ran = [n for n, c in enumerate(code_cells, 1) if c.get("execution_count")]
    n = (ran[-1] + 1) if ran and ran[-1] < len(code_cells) else (ran[-1] if ran else 1)
    return Failure(n, code_cells[n - 1].source if code_cells else "", type(exc).__name__, str(exc).splitlines()[-1])
