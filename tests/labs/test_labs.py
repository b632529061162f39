"""Every lab, executed top to bottom in a fresh kernel against the session's cluster: one test per lab.

A failing lab names the lab, the code cell and the assertion's message (the hint the learner would see).
The cluster (tests/conftest.py `lab_clusters`: a private embedded cluster unless `pytest --backend kind|kubeconfig`)
lives in a LABKIT_HOME of the session's own, never the user's; each lab makes and deletes a
namespace of its own, so the labs run in any order against one cluster.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labkit import exercises, handout, notebooks
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
        assert 1 <= len(found) <= 3, (
            f"{path.name}: {len(found)} exercises, a lab ends with one to three (labkit/exercises.py says how)")
        code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        if found:
            assert found[-1].checks[-1] == code[-2], f"{path.name}: the exercises come last, before the clean-up"
        student = exercises.build(nb, "student")
        sources = [c.source for c in student.cells]
        for e in found:
            assert sources[e.solution] == exercises.PLACEHOLDER, f"{path.name}: solution in cell {e.solution} kept"
            assert all(sources[c] == nb.cells[c].source for c in e.checks), f"{path.name}: a check was changed"
        assert exercises.build(nb, "instructor").cells == nb.cells


def test_the_index_lists_every_lab_in_order() -> None:
    """labs/README.md, the first page JupyterLab opens, links every lab by its title, in the labs' order."""
    index = (notebooks.LABS_DIR / "README.md").read_text()
    links = re.findall(r"\[([^\]]+)\]\((\d\d-[^)]+\.md)\)", index)
    expected = [(handout.lab_title(notebooks.read(p)), p.name) for p in LABS]
    assert links == expected, "labs/README.md must link each lab by its `# ` title, in order"


def test_saving_a_lab_in_jupyterlab_keeps_its_source() -> None:
    """JupyterLab saves a lab through jupytext with the running kernel's spec, in its own key order, and jupytext
    adds version lines unless labs/jupytext.toml filters them: each header must already be what a save writes, or
    a learner's Ctrl-S rewrites every lab (tests/browser saves lab 1 to check the whole round trip)."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    want = f"kernelspec:\n  name: python3\n  display_name: {spec.display_name}\n  language: {spec.language}\n"
    config = (notebooks.LABS_DIR / "jupytext.toml").read_text()
    assert "-jupytext.text_representation.jupytext_version" in config
    for path in [*LABS, notebooks.LABS_DIR / "README.md"]:
        header = path.read_text().split("\n---\n", 1)[0]
        assert want in header + "\n", f"{path.name}: its header's kernelspec must read\n{want}"
