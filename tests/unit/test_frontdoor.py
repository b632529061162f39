"""`labkit lab`'s pieces that need no cluster: JupyterLab's overrides, its command line, the port, the student copy
of the labs, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import jupytext
import pytest

from labkit import cli, errors, exercises, frontdoor, notebooks
from labkit.backends import embedded


def test_overrides_make_markdown_open_as_a_notebook_and_leave_the_users_alone(tmp_path: Path) -> None:
    (tmp_path / "overrides.json").write_text('{"mine": {}}')
    path = frontdoor.install_overrides(tmp_path)
    assert path == tmp_path / "overrides.d" / "labkit.json"
    written = json.loads(path.read_text())
    viewers = written["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers == {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}
    assert written["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    assert (tmp_path / "overrides.json").read_text() == '{"mine": {}}'
    mtime = path.stat().st_mtime_ns
    assert frontdoor.install_overrides(tmp_path) == path and path.stat().st_mtime_ns == mtime
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    assert frontdoor.install_overrides(blocked) is None


def test_jupyterlab_binds_loopback_with_a_token_and_opens_no_browser_unless_asked(tmp_path: Path) -> None:
    cmd = frontdoor.jupyter_command(tmp_path, 18888, "t0k", browser=False, extra=["--x=1"])
    assert "--ServerApp.ip=127.0.0.1" in cmd and "--IdentityProvider.token=t0k" in cmd
    assert f"--ServerApp.root_dir={tmp_path}" in cmd and "--ServerApp.port=18888" in cmd
    assert "--no-browser" in cmd and cmd[-1] == "--x=1"
    assert ("--allow-root" in cmd) == (os.geteuid() == 0)
    assert "--no-browser" not in frontdoor.jupyter_command(tmp_path, 1, "t", browser=True, extra=[])


def test_a_busy_port_gives_another(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = frontdoor.free_port(port)
        assert other != port and other > 0
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not frontdoor.has_display()
    monkeypatch.setenv("DISPLAY", ":0")
    assert frontdoor.has_display()


def test_no_labs_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(errors.LabkitError, match="no labs at"):
        frontdoor.serve(tmp_path, tmp_path / "home")


def test_jupyterlab_arguments_come_after_a_double_dash(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["lab", "--LabApp.x=1"])
    assert exc.value.code == 2 and "unrecognized arguments: --LabApp.x=1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- the student copy

def _labs_copy(tmp_path: Path) -> Path:
    """The labs' sources, index and jupytext configuration, copied where a test may change them."""
    labs = tmp_path / "labs"
    labs.mkdir()
    for src in [*notebooks.sources(), notebooks.LABS_DIR / frontdoor.INDEX, notebooks.LABS_DIR / "jupytext.toml"]:
        shutil.copyfile(src, labs / src.name)
    return labs


def test_the_student_copy_strips_every_solution_and_keeps_every_check() -> None:
    texts = frontdoor.student_texts(notebooks.LABS_DIR)
    assert set(texts) == {p.name for p in notebooks.sources()} | {frontdoor.INDEX, "jupytext.toml"}
    assert texts[frontdoor.INDEX] == (notebooks.LABS_DIR / frontdoor.INDEX).read_text()
    for src in notebooks.sources():
        lab = notebooks.read(src)
        found = exercises.exercises(lab)
        assert found, f"{src.name} has no exercise"
        student = jupytext.reads(texts[src.name], fmt="md:myst")
        # as JupyterLab saves it: the header is the source's, no jupytext version lines added
        assert texts[src.name].split("\n---\n", 1)[0] == src.read_text().split("\n---\n", 1)[0]
        assert len(student.cells) == len(lab.cells)
        for ex in found:
            solution = lab.cells[ex.solution].source.strip()
            assert solution and solution not in texts[src.name], f"{src.name}: a solution is in the student copy"
            assert student.cells[ex.solution].source == exercises.PLACEHOLDER.rstrip("\n")
            assert exercises.SOLUTION in exercises.tags(student.cells[ex.solution])
            for c in ex.checks:
                assert student.cells[c].source == lab.cells[c].source
                assert exercises.CHECK in exercises.tags(student.cells[c])
        untouched = set(range(len(lab.cells))) - {e.solution for e in found}
        assert all(student.cells[i].source == lab.cells[i].source for i in untouched)


def test_the_student_copy_is_the_learners_once_written(tmp_path: Path) -> None:
    labs, dest = _labs_copy(tmp_path), tmp_path / "student"
    first = frontdoor.student_labs(dest, labs)
    names = sorted(frontdoor.student_texts(labs))
    assert sorted(first.written) == names and first.kept == []
    assert sorted(p.name for p in dest.iterdir()) == sorted([*names, frontdoor.STUDENT_MANIFEST])
    again = frontdoor.student_labs(dest, labs)
    assert again.written == [] and again.kept == []

    lab1, lab2, lab3 = (p.name for p in notebooks.sources()[:3])
    (dest / lab1).write_text((dest / lab1).read_text().replace(exercises.PLACEHOLDER.strip(), "print('mine')"))
    (dest / lab2).unlink()
    source = labs / lab3
    source.write_text(source.read_text() + "\nA paragraph added upstream.\n")  # after a `git pull`
    mine = (dest / lab1).read_text()

    third = frontdoor.student_labs(dest, labs)
    assert third.kept == [lab1] and sorted(third.written) == sorted([lab2, lab3])
    assert (dest / lab1).read_text() == mine  # the learner's answer is never overwritten
    assert (dest / lab2).read_text() == frontdoor.student_texts(labs)[lab2]
    assert (dest / lab3).read_text().endswith("A paragraph added upstream.\n")
    assert frontdoor.student_labs(dest, labs).kept == [lab1]  # and stays the learner's


def test_the_student_copy_is_never_written_over_the_sources(tmp_path: Path) -> None:
    labs = _labs_copy(tmp_path)
    before = {p.name: p.read_text() for p in labs.iterdir()}
    with pytest.raises(errors.LabkitError, match="cannot be written over the labs' sources"):
        frontdoor.student_labs(labs, labs)
    assert {p.name: p.read_text() for p in labs.iterdir()} == before
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(errors.LabkitError, match="cannot write the student copy"):
        frontdoor.student_labs(blocked, labs)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """`labkit lab` with the cluster and JupyterLab stood in for: the folders it would serve."""
    folders: list[Path] = []
    monkeypatch.setattr(embedded, "up", lambda home, timeout: (embedded.Paths(tmp_path / "home"), False))
    monkeypatch.setattr(embedded, "wait_usable", lambda paths, timeout: None)

    def serve(labs: Path, home: Path, **_: object) -> int:
        folders.append(labs)
        return 0

    monkeypatch.setattr(frontdoor, "serve", serve)
    return folders


def test_cli_lab_serves_the_sources_by_default_and_a_student_copy_when_asked(
        served: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lab", "--no-browser"]) == 0
    assert served == [notebooks.LABS_DIR]

    monkeypatch.chdir(tmp_path)
    assert cli.main(["lab", "--student", "--no-browser"]) == 0
    dest = tmp_path / "student-labs"
    assert served[-1] == dest
    out = capsys.readouterr().out
    files = len(notebooks.sources()) + 2  # the labs, their index and jupytext.toml
    assert f"student copy of the labs (solutions removed) in {dest}: {files} files written" in out
    assert f"starting JupyterLab on {dest}" in out
    for src in notebooks.sources():
        assert exercises.PLACEHOLDER.strip() in (dest / src.name).read_text()
    assert (dest / frontdoor.INDEX).exists() and (dest / "jupytext.toml").exists()

    other = tmp_path / "elsewhere"
    assert cli.main(["lab", "--student", "--dir", str(other)]) == 0
    assert served[-1] == other and f"{files} files written" in capsys.readouterr().out
    assert cli.main(["lab", "--student", "--dir", str(other)]) == 0
    assert "in " + str(other) + ": up to date" in capsys.readouterr().out

    assert cli.main(["lab", "--dir", str(other)]) == 1
    assert capsys.readouterr().err == "labkit: --dir names the student copy's folder: use it with --student\n"
    assert len(served) == 4
