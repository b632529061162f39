"""The front door: `labkit lab` (and `./run lab`) leaves a learner in JupyterLab with the labs open and a cluster
behind them.

It starts the embedded cluster (or reuses the running one), then JupyterLab on the labs' folder, bound to
127.0.0.1 with a token, and prints the URL to open once JupyterLab answers. Kernels inherit LABKIT_HOME, so
`Lab.up()` in a lab reaches this very cluster. A browser is opened only where there is a display.

JupyterLab must open a lab's `.md` source as a notebook on a double click: jupytext's viewer is made the default
for Markdown through an overrides file of labkit's own in JupyterLab's application settings (overrides.d), which
leaves a user's own overrides.json alone; the same file turns off the news and update checks (offline workshops).

Two ways to serve the labs:

    instructor (default)  the sources in `labs/`, solutions under each exercise; saving a lab writes its source
    student (--student)   a copy of the labs of the learner's own (default `student-labs/`): each exercise's
                          solution replaced by a placeholder, its checks kept (labkit.exercises' student build, the
                          one the student handout prints), written once and then the learner's

The student copy is never overwritten under a learner: a file they edited is kept as it is. A file still as labkit
wrote it is brought up to date with the labs (after a `git pull`), which the manifest `.labkit-student.json` (each
file's digest as written) tells apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from labkit import errors

DEFAULT_PORT = 8888
INDEX = "README.md"  # the labs' index, opened first
OVERRIDES = {
    "@jupyterlab/docmanager-extension:plugin": {
        "defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


STUDENT_DIR = Path("student-labs")  # the student copy's default folder, relative to where `labkit lab` runs
STUDENT_MANIFEST = ".labkit-student.json"
JUPYTEXT_CONFIG = "jupytext.toml"  # how the labs are saved; the student copy is written and saved the same way


def settings_dir() -> Path:
    """JupyterLab's application settings folder of this Python environment."""
    return Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings"


def install_overrides(folder: Path | None = None) -> Path | None:
    """Write labkit's JupyterLab overrides (idempotent); None when the folder cannot be written."""
    path = (folder or settings_dir()) / "overrides.d" / "labkit.json"
    text = json.dumps(OVERRIDES, indent=2) + "\n"
    try:
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except OSError:
        return None
    return path


def free_port(preferred: int) -> int:
    """`preferred` if nothing listens on it on 127.0.0.1, else a free port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Jupyter's server binds: TIME_WAIT is no use
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise errors.LabkitError("no free TCP port on 127.0.0.1")


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def jupyter_command(labs: Path, port: int, token: str, *, browser: bool, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={labs}", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--LabApp.default_url=/lab/tree/{INDEX}", "--ServerApp.log_level=WARN"]
    if not browser:
        cmd.append("--no-browser")
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # ./run runs as root (the cluster needs it); Jupyter refuses root without this
    return cmd + extra


def wait_answering(url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Until JupyterLab answers `url` (its status API); an error if it exits first or stays silent."""
    from labkit.lab.waiting import Check, wait

    def probe() -> tuple[bool, str, None]:
        if proc.poll() is not None:
            return True, f"exited with status {proc.returncode}", None
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.status == 200, f"HTTP {reply.status}", None
        except (urllib.error.URLError, OSError) as exc:
            return False, str(exc), None

    wait(Check(f"JupyterLab to answer {url.split('?')[0]}", probe), timeout)
    if proc.poll() is not None:
        raise errors.LabkitError(f"JupyterLab exited with status {proc.returncode} before answering "
                                 "(its messages are above)")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def serve(labs: Path, home: Path, *, port: int = DEFAULT_PORT, browser: bool | None = None,
          extra: list[str] | None = None, timeout: float = 120.0) -> int:
    """Run JupyterLab on `labs` for the cluster under `home` until it exits; its exit status."""
    if not (labs / INDEX).exists():
        raise errors.LabkitError(f"no labs at {labs} (no {INDEX}): run `labkit lab` from a clone of labkit")
    if install_overrides() is None:
        print(f"labkit: cannot write {settings_dir()}: double-clicking a lab opens it as Markdown; "
              "open it with right-click → Open With → Jupytext Notebook", file=sys.stderr)
    port = free_port(port)
    token = secrets.token_hex(24)
    # Kernels and JupyterLab's terminals reach this cluster, and find `labkit` and `kubectl` on PATH.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "LABKIT_HOME": str(home), "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    cmd = jupyter_command(labs, port, token, browser=has_display() if browser is None else browser,
                          extra=extra or [])
    proc = subprocess.Popen(cmd, env=env)
    with contextlib.suppress(ValueError):  # not the main thread: the caller handles its signals
        signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so `kill` stops JupyterLab (and its kernels) too
    try:
        wait_answering(f"http://127.0.0.1:{port}/api/status?token={token}", proc, timeout)
        print(f"\nlabkit: JupyterLab is ready, with the labs and the cluster ({home}):\n\n"
              f"    http://127.0.0.1:{port}/lab/tree/{INDEX}?token={token}\n\n"
              f"Open that URL in a browser (on another machine: ssh -L {port}:127.0.0.1:{port} …). "
              "Ctrl-C stops JupyterLab; the cluster keeps running until `labkit down`.\n", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait()
        raise


@dataclass
class StudentCopy:
    """What `student_labs` did: files written (new or brought up to date), and files kept (the learner's edits)."""

    folder: Path
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def student_texts(labs: Path) -> dict[str, str]:
    """The student copy's files: each lab's student build as MyST Markdown (written as JupyterLab saves it, with
    the labs' jupytext configuration), the labs' index and that configuration, by file name."""
    import jupytext
    from jupytext.config import load_jupytext_configuration_file

    from labkit import exercises, notebooks

    config = load_jupytext_configuration_file(str(labs / JUPYTEXT_CONFIG))
    texts = {src.name: jupytext.writes(exercises.build(notebooks.read(src), "student"), fmt="md:myst", config=config)
             for src in notebooks.sources(labs)}
    for name in (INDEX, JUPYTEXT_CONFIG):
        texts[name] = (labs / name).read_text()
    return texts


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def student_labs(dest: Path, labs: Path) -> StudentCopy:
    """Write the student copy of `labs` into `dest` (made if missing), keeping every file the learner edited."""
    if not (labs / INDEX).exists():
        raise errors.LabkitError(f"no labs at {labs} (no {INDEX}): run `labkit lab` from a clone of labkit")
    if dest.resolve() == labs.resolve():
        raise errors.LabkitError(f"the student copy cannot be written over the labs' sources ({labs})")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        manifest_path = dest / STUDENT_MANIFEST
        written_before: dict[str, str] = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        copy = StudentCopy(dest)
        manifest: dict[str, str] = {}
        for name, text in student_texts(labs).items():
            path = dest / name
            on_disk = path.read_text() if path.exists() else None
            if on_disk is not None and _digest(on_disk) != written_before.get(name):
                copy.kept.append(name)  # the learner's (edited, or not labkit's): left as it is
                continue
            if on_disk != text:
                path.write_text(text)
                copy.written.append(name)
            manifest[name] = _digest(text)
        manifest_path.write_text(json.dumps({**{k: v for k, v in written_before.items() if k in copy.kept},
                                             **manifest}, indent=2, sort_keys=True) + "\n")
    except (OSError, ValueError) as exc:
        raise errors.LabkitError(f"cannot write the student copy of the labs into {dest}: {exc}") from exc
    return copy
