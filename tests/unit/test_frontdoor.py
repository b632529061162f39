"""`labkit lab`'s pieces that need no cluster: JupyterLab's overrides, its command line, the port, the CLI."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from labkit import cli, errors, frontdoor


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
