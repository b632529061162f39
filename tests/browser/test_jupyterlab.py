"""The front door, as a learner uses it: `labkit lab`, then the labs' index and lab 1 in a real browser.

Starts `labkit lab` on the session's private cluster, opens the URL it prints (the labs' index), double-clicks
lab 1 in the file browser (it must open as a notebook, through jupytext), runs every cell from JupyterLab's Run
menu, waits until the kernel is idle with every cell run, and asserts that no cell shows an error and that every
asserting cell ran. Screenshots: test-artifacts/browser/jupyterlab-*.png.

JupyterLab's state is read from its application object (`window.jupyterapp`, exposed by
`--LabApp.expose_app_in_browser`): the notebook model, not the DOM, since off-screen cells are not rendered.
"""

from __future__ import annotations

import difflib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit import handout, notebooks

pytestmark = pytest.mark.integration

LAB = "01-clusterip.md"
URL = re.compile(r"(http://127\.0\.0\.1:\d+/lab/tree/README\.md\?token=\w+)")


@pytest.fixture
def jupyterlab(cluster: Any, tmp_path: Path) -> Iterator[str]:
    """`labkit lab` on the session cluster, in a JupyterLab of the test's own (settings, workspaces, runtime
    files under tmp_path; autosave off, so the lab sources are never written); yields the URL it printed."""
    settings = tmp_path / "settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    cmd = [sys.executable, "-m", "labkit", "--home", str(cluster.home), "lab", "--port", "18888", "--no-browser",
           "--", "--LabApp.expose_app_in_browser=True"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []

    def read() -> None:
        for line in proc.stdout or []:
            log.append(line)
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        url = None
        while url is None:
            try:
                line = lines.get(timeout=120)
            except queue.Empty:
                pytest.fail("labkit lab printed no URL within 120 s:\n" + "".join(log))
            m = URL.search(line)
            url = m.group(1) if m else None
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("labkit lab did not stop within 60 s of SIGTERM:\n" + "".join(log[-30:]))
    assert proc.returncode in (0, 128 + signal.SIGTERM, -signal.SIGTERM), "".join(log[-30:])


READY = """async () => {
  await window.jupyterapp.started;
  await window.jupyterapp.restored;
  return true;
}"""

# The current document: its path, whether it is a notebook, its kernel's status, and each code cell's state.
STATE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (!w || !w.context) return null;
  const nb = w.content && w.content.model ? w.content : null;
  const kernel = w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  const cells = [];
  if (nb) {
    for (let i = 0; i < nb.model.cells.length; i++) {
      const c = nb.model.cells.get(i);
      if (c.type !== 'code') continue;
      const outputs = c.outputs.toJSON();
      cells.push({source: c.sharedModel.getSource(), count: c.executionCount,
                  errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)});
    }
  }
  return {path: w.context.path, notebook: w.node.classList.contains('jp-NotebookPanel'),
          dirty: w.context.model.dirty, kernel: kernel ? kernel.status : null, cells: cells};
}"""


def state(page: Any) -> dict:
    return page.evaluate(STATE)


def wait_state(page: Any, predicate: str, timeout_s: float) -> dict:
    """Wait (in the page, on each animation frame) until `predicate(state)` holds; the state then."""
    page.wait_for_function(f"() => {{ const s = ({STATE})(); return s && ({predicate})(s); }}",
                           timeout=timeout_s * 1000)
    return state(page)


@pytest.fixture
def sources() -> Iterator[dict[Path, bytes]]:
    """The labs' files as they are; put back afterwards whatever a failing test's save changed."""
    kept = {p: p.read_bytes() for p in notebooks.LABS_DIR.iterdir() if p.is_file()}
    yield kept
    for path, data in kept.items():
        if path.read_bytes() != data:
            path.write_bytes(data)


def test_a_learner_opens_the_index_and_runs_lab_1(jupyterlab: str, page: Any, artifacts: Path,
                                                  sources: dict[Path, bytes], cluster: Any) -> None:
    cluster_home = cluster.home
    page.goto(jupyterlab)
    page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=120_000)
    page.evaluate(READY)

    # The index opens first, as a notebook of Markdown cells that says what each lab teaches.
    index = wait_state(page, "s => s.path === 'README.md' && s.notebook && s.kernel === 'idle'", 120)
    assert not [c for c in index["cells"] if c["source"].strip()], "the index holds no code"
    page.locator(".jp-MarkdownOutput h2", has_text="The labs, in order").wait_for(timeout=30_000)
    for p in notebooks.sources():  # every lab is listed, as a link to it
        title = handout.lab_title(notebooks.read(p))
        link = page.locator(".jp-MarkdownOutput a", has_text=title)
        link.wait_for(timeout=10_000)
        assert p.name in (link.get_attribute("href") or ""), f"the index's link to {title} goes elsewhere"
    page.screenshot(path=str(artifacts / "jupyterlab-index.png"))

    # Lab 1 from the file browser, by a double click: a notebook (jupytext), with a kernel.
    item = page.locator(".jp-DirListing-item", has_text=LAB)
    if not item.first.is_visible():
        page.locator('.jp-SideBar [data-id="filebrowser"]').click()
    item.first.dblclick()
    lab = wait_state(page, f"s => s.path === '{LAB}' && s.notebook && s.kernel === 'idle'", 120)
    assert lab["cells"] and all(c["count"] is None for c in lab["cells"]), "a fresh lab has no outputs"

    # Run → Run All, as a learner would.
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    done = wait_state(page, "s => s.kernel === 'idle' && s.cells.every(c => c.count !== null || !c.source.trim())"
                            " || s.cells.some(c => c.errors.length)", 600)
    page.screenshot(path=str(artifacts / "jupyterlab-lab1.png"))

    errors = [(n, c["errors"]) for n, c in enumerate(done["cells"], 1) if c["errors"]]
    assert not errors, f"cells of {LAB} show errors in JupyterLab: {errors}"
    asserting = [c for c in done["cells"] if "assert " in c["source"]]
    assert len(asserting) >= 5 and all(c["count"] for c in asserting), (
        f"{len(asserting)} asserting cells, not all run: {[c['count'] for c in asserting]}")
    counts = [c["count"] for c in done["cells"]]
    assert counts == list(range(1, len(counts) + 1)), f"cells ran out of order: {counts}"

    # The first cell shows the cluster the lab talks to, and its state.
    page.evaluate("async () => { const nb = window.jupyterapp.shell.currentWidget.content;"
                  " nb.activeCellIndex = 0; await nb.scrollToItem(0, 'start'); }")
    first = page.locator(".jp-Notebook .jp-CodeCell").first.locator(".jp-OutputArea-output")
    first.wait_for(timeout=30_000)
    shown = first.inner_text()
    assert "API server" in shown and "labkit-control-plane Ready" in shown and str(cluster_home) in shown, shown
    page.screenshot(path=str(artifacts / "jupyterlab-lab1-top.png"))

    # Scroll to the requests plot (an SVG) and keep that view too: what a learner looks at.
    plot = next(n for n, c in enumerate(done["cells"]) if ".plot()" in c["source"])
    page.evaluate("""async (n) => {
      const nb = window.jupyterapp.shell.currentWidget.content;
      const code = nb.widgets.map((w, i) => [w, i]).filter(([w]) => w.model.type === 'code');
      const index = code[n][1];
      nb.activeCellIndex = index;
      await nb.scrollToItem(index, 'start');
    }""", plot)
    plot_img = page.locator(".jp-Notebook .jp-Cell.jp-mod-active .jp-RenderedSVG img")  # SVG output, as an <img>
    plot_img.wait_for(timeout=30_000)
    width = plot_img.evaluate("img => img.complete ? img.naturalWidth : 0")
    box = plot_img.bounding_box()
    assert width > 0 and box and box["width"] > 200 and box["height"] > 100, f"the plot is not drawn: {box}"
    page.screenshot(path=str(artifacts / "jupyterlab-lab1-plot.png"))

    # File → Save, as a learner would: jupytext writes the source back as it was (no outputs, no header churn).
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^File$")).click()
    page.locator('.lm-Menu-item[data-command="docmanager:save"]').click()
    wait_state(page, f"s => s.path === '{LAB}' && !s.dirty", 60)
    changed = {p.name: "".join(difflib.unified_diff(data.decode().splitlines(True), p.read_text().splitlines(True),
                                                   n=1)) for p, data in sources.items() if p.read_bytes() != data}
    assert not changed, "saving a lab in JupyterLab changed its source:\n" + "\n".join(changed.values())[:3000]
