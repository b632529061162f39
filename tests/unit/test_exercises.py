"""Exercises in a lab: finding them, the student and instructor builds, the trial notebook the lab tests run."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labkit import exercises


def lab(*cells: object) -> nbformat.NotebookNode:
    return new_notebook(cells=list(cells))


def code(source: str, *tags: str, outputs: list | None = None) -> nbformat.NotebookNode:
    cell = new_code_cell(source, metadata={"tags": list(tags)} if tags else {})
    cell.outputs = outputs or []
    return cell


def test_exercises_pair_each_solution_with_the_checks_after_it() -> None:
    nb = lab(code("x = 1"), new_markdown_cell("### Exercise 1"), code("a = 1", "solution"), code("assert a", "check"),
             code("assert a > 0", "check"), code("b = 2", "solution"), code("assert b", "check"), code("cleanup()"))
    assert exercises.exercises(nb) == [exercises.Exercise(2, (3, 4)), exercises.Exercise(5, (6,))]


@pytest.mark.parametrize("cells, message", [
    ([code("assert a", "check")], "no 'solution' cell comes before it"),
    ([code("a = 1", "solution"), code("x")], "has no cell tagged 'check'"),
    ([code("a = 1", "solution", "check")], "tagged both"),
])
def test_a_malformed_exercise_is_refused(cells: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        exercises.build(lab(*cells), "student")


def test_student_build_replaces_solutions_and_keeps_checks_without_their_outputs() -> None:
    shown = new_output("stream", name="stdout", text="ok\n")
    nb = lab(code("x = 1", outputs=[shown]), code("a = 1", "solution", outputs=[shown]),
             code("assert a", "check", outputs=[shown]))
    student = exercises.build(nb, "student")
    assert [c.source for c in student.cells] == ["x = 1", exercises.PLACEHOLDER, "assert a"]
    assert [len(c.outputs) for c in student.cells] == [1, 0, 0]
    assert student.cells[1].metadata["tags"] == ["solution"]
    assert nb.cells[1].source == "a = 1", "the build must not change the notebook it was given"
    assert exercises.build(nb, "instructor") == nb
    with pytest.raises(ValueError, match="unknown build"):
        exercises.build(nb, "teacher")  # type: ignore[arg-type]


def test_trial_runs_the_checks_on_the_placeholder_before_the_solution() -> None:
    nb = lab(code("x = 1"), code("a = 1", "solution"), code("assert a", "check"), code("cleanup()"))
    trial = exercises.trial(nb)
    assert [c.source for c in trial.cells] == ["x = 1", exercises.PLACEHOLDER, "assert a", "a = 1", "assert a",
                                               "cleanup()"]
    assert set(trial.cells[2].metadata["tags"]) == {"check", exercises.CHECK_TRIAL, exercises.RAISES}
    assert exercises.RAISES not in trial.cells[4].metadata["tags"]


def _ran(trial: nbformat.NotebookNode, error: tuple[str, str] | None) -> nbformat.NotebookNode:
    copy = next(c for c in trial.cells if exercises.CHECK_TRIAL in c.metadata["tags"])
    if error:
        copy.outputs = [new_output("error", ename=error[0], evalue=error[1], traceback=[])]
    return trial


@pytest.mark.parametrize("error, complaint", [
    (None, "passes on the student's placeholder"),
    (("NameError", "name 'a' is not defined"), "fails on the placeholder with NameError"),
    (("AssertionError", ""), "without a message"),
    (("AssertionError", "no Service shop yet"), None),
])
def test_trial_failures_name_a_check_that_cannot_fail_or_fails_without_a_hint(error: tuple | None,
                                                                               complaint: str | None) -> None:
    trial = _ran(exercises.trial(lab(code("a = 1", "solution"), code("assert a", "check"))), error)
    problems = exercises.trial_failures(trial)
    if complaint is None:
        assert problems == []
    else:
        assert len(problems) == 1 and complaint in problems[0], problems
