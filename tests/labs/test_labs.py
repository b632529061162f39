"""Every lab, executed top to bottom in a fresh kernel against the session's cluster: one test per lab.

A failing lab names the lab, the code cell and the assertion's message (the hint the learner would see).
The cluster (tests/conftest.py `lab_clusters`: a private embedded cluster unless `pytest --backend kind|kubeconfig`)
lives in a LABKIT_HOME of the session's own, never the user's; each lab makes and deletes a
namespace of its own, so the labs run in any order against one cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import exercises, notebooks
from tests.conftest import LabClusters

LABS = notebooks.sources()


@pytest.mark.integration
@pytest.mark.parametrize("path", LABS, ids=[p.stem for p in LABS])
def test_lab(path: Path, lab_clusters: LabClusters) -> None:
    """The instructor build top to bottom, every check passing after its solution; and before each solution, the
    student's placeholder and a copy of the exercise's checks, which must fail with their hint (exercises.trial).
    Against a cluster in the proxy mode the lab asks for, of the backend `pytest --backend` names (embedded by
    default)."""
    cluster = lab_clusters.get(notebooks.proxy_mode(path))
    trial = exercises.trial(notebooks.read(path))
    result = notebooks.run(path, timeout=180 if cluster.backend.name == "embedded" else 600, nb=trial,
                           env=cluster.env)
    if result.failure is not None:
        pytest.fail(f"lab {path.name} failed at {result.failure}", pytrace=False)
    problems = exercises.trial_failures(result.notebook)
    assert not problems, f"lab {path.name}, student build:\n" + "\n".join(problems)


def test_every_lab_is_a_clean_source() -> None:
    """Sources hold no outputs, and each opens and closes its own namespace."""
    assert LABS, "no labs found under labs/"
    for path in LABS:
        nb = notebooks.read(path)
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        assert any("fresh_namespace(" in c for c in code[:3]), f"{path.name}: no lab.fresh_namespace() at the top"
        assert "delete_namespace(" in code[-1], f"{path.name}: the last cell must delete the lab's namespace"


def test_every_lab_ends_with_exercises() -> None:
    """One to three exercises per lab, after the walk-through and before the clean-up: a `solution` cell followed by
    `check` cells; the student build keeps every check and no solution."""
    for path in LABS:
        nb = notebooks.read(path)
        found = exercises.exercises(nb)
        assert len(found) <= 3, f"{path.name}: {len(found)} exercises, a lab ends with one to three"
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        if found:
            assert found[-1].checks[-1] == code[-2], f"{path.name}: the exercises come last, before the clean-up"
        student = exercises.build(nb, "student")
        sources = [c.source for c in student.cells]
        for e in found:
            assert sources[e.solution] == exercises.PLACEHOLDER, f"{path.name}: solution in cell {e.solution} kept"
            assert all(sources[c] == nb.cells[c].source for c in e.checks), f"{path.name}: a check was changed"
        assert exercises.build(nb, "instructor").cells == nb.cells
