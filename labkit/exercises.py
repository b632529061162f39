"""A lab's exercises, and the student and instructor builds of a lab.

Each lab ends with one to three exercises. An exercise is a Markdown cell that asks for something, a code cell
tagged `solution` (the answer: the YAML applied or the command run), and one or more code cells tagged `check`
that assert the outcome on the cluster, with a message that hints without giving the answer.

    instructor build   the lab as written: solutions kept
    student build      every solution replaced by a placeholder (a comment: running it changes nothing), every
                       check kept — so a student who runs the checks before answering sees the hints

A check that passes without its solution teaches nothing: `trial()` builds the notebook the test suite runs to
prove each check fails on the student's placeholder and passes with the solution (see tests/labs).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

SOLUTION = "solution"
CHECK = "check"
# nbclient lets a cell tagged so raise without stopping the run; the trial's copies of the checks carry it.
RAISES = "raises-exception"
PLACEHOLDER_TRIAL = "student-placeholder"  # the trial's copies, told apart from the lab's own cells
CHECK_TRIAL = "student-check"
PLACEHOLDER = "# Your answer here. Run it, then run the check below.\n"

Build = Literal["student", "instructor"]
BUILDS: tuple[Build, ...] = ("student", "instructor")


def tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


@dataclass(frozen=True)
class Exercise:
    """One exercise: the index of its solution cell and of the check cells that follow it."""

    solution: int
    checks: tuple[int, ...]


def exercises(nb: Any) -> list[Exercise]:
    """The notebook's exercises, in order: each solution cell with the check cells after it (up to the next
    solution). A check with no solution before it, or a solution with no check after it, is an error."""
    found: list[Exercise] = []
    solution: int | None = None
    checks: list[int] = []
    for i, cell in enumerate(nb.cells):
        t = tags(cell)
        if SOLUTION in t and CHECK in t:
            raise ValueError(f"cell {i} is tagged both {SOLUTION!r} and {CHECK!r}")
        if SOLUTION in t:
            if solution is not None:
                found.append(_exercise(solution, checks))
            solution, checks = i, []
        elif CHECK in t:
            if solution is None:
                raise ValueError(f"cell {i} is tagged {CHECK!r} but no {SOLUTION!r} cell comes before it")
            checks.append(i)
    if solution is not None:
        found.append(_exercise(solution, checks))
    return found


def _exercise(solution: int, checks: list[int]) -> Exercise:
    if not checks:
        raise ValueError(f"the solution in cell {solution} has no cell tagged {CHECK!r} after it")
    return Exercise(solution, tuple(checks))


def placeholder(cell: Any) -> Any:
    """The student's cell in place of a solution: the placeholder, no outputs, the solution's tags."""
    out = copy.deepcopy(cell)
    out.source = PLACEHOLDER
    out.outputs = []
    out.execution_count = None
    return out


def build(nb: Any, which: Build) -> Any:
    """The student or the instructor build of a lab (a new notebook; `nb` is left as it is).

    Works on an executed notebook too (handouts): the student build then also drops the checks' outputs, which
    were produced with the solution the student does not see."""
    if which not in BUILDS:
        raise ValueError(f"unknown build {which!r}: {' or '.join(BUILDS)}")
    out = copy.deepcopy(nb)
    exercises(out)  # refuse a malformed lab in either build
    if which == "student":
        for i, cell in enumerate(out.cells):
            if SOLUTION in tags(cell):
                out.cells[i] = placeholder(cell)
            elif CHECK in tags(cell):
                cell.outputs, cell.execution_count = [], None
    return out


def trial(nb: Any) -> Any:
    """The notebook the test suite runs: the instructor build with, before each solution, the student's
    placeholder and a copy of every check of that exercise, tagged to raise. Run top to bottom, each copied check
    must fail (`trial_failures` says which did not) and each real check must pass after the solution."""
    out = copy.deepcopy(nb)
    cells = []
    by_solution = {e.solution: e for e in exercises(nb)}
    for i, cell in enumerate(nb.cells):
        ex = by_solution.get(i)
        if ex is not None:
            cells.append(_trial_copy(placeholder(cell), PLACEHOLDER_TRIAL))
            cells += [_trial_copy(nb.cells[c], CHECK_TRIAL, RAISES) for c in ex.checks]
        cells.append(copy.deepcopy(cell))
    out.cells = cells
    return out


def _trial_copy(cell: Any, *extra_tags: str) -> Any:
    out = copy.deepcopy(cell)
    out.metadata["tags"] = [*tags(cell), *extra_tags]
    out.pop("id", None)  # nbformat ids must be unique: a copy gets none (nbformat fills one in when it validates)
    return out


def trial_failures(executed: Any) -> list[str]:
    """After running `trial(nb)`: what is wrong with its checks — each copied check must have raised
    AssertionError on the placeholder (its message is the hint the student sees)."""
    problems = []
    code = [c for c in executed.cells if c.cell_type == "code"]
    for n, cell in enumerate(code, 1):
        if CHECK_TRIAL not in tags(cell):
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
        if not errors:
            problems.append(f"the check in code cell {n} ({first_line}) passes on the student's placeholder: "
                            "it cannot tell an answer from none")
        elif errors[0].get("ename") != "AssertionError":
            problems.append(f"the check in code cell {n} ({first_line}) fails on the placeholder with "
                            f"{errors[0].get('ename')}: {errors[0].get('evalue')} — a check should fail with an "
                            "assertion whose message hints at the answer")
        elif not errors[0].get("evalue", "").strip():
            problems.append(f"the check in code cell {n} ({first_line}) fails on the placeholder without a message: "
                            "give its assert a hint")
    return problems
