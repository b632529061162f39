"""`labkit handout --pdf`, as an instructor uses it, and its pages as a reader sees them.

Runs the command (it executes every lab on clusters of its own), then opens each HTML page in Chromium with the
network refused: nothing may be requested from outside, every image must load, and the page's screenshot must
not be blank (its pixels are counted). In print media, every table, picture and output is kept off page breaks
and fits on a page. The PDFs: one or more pages per lab, and the workshop PDF's text (pdftotext) holds every lab's
title. Screenshots: test-artifacts/browser/handout-*.png.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labkit import browser, exercises, handout, notebooks

pytestmark = pytest.mark.integration

# CSS pixels of an A4 page's printable height at the handout's scale (297 mm less 26 mm of margins, 96 px/inch).
PRINTABLE_HEIGHT = (297 - 26) / 25.4 * 96 / handout.PDF_SCALE


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("handout") / "student"
    proc = subprocess.run([sys.executable, "-m", "labkit", "handout", "--student", "--pdf", "-o", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"labkit handout failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    assert "stages: " in proc.stdout and "pdf " in proc.stdout, proc.stdout
    assert f"lab {len(notebooks.sources())} of {len(notebooks.sources())}" in proc.stderr, proc.stderr[-2000:]
    return out


def test_each_page_stands_alone_offline(made: Path, page: Any, artifacts: Path) -> None:
    from PIL import Image

    for src in notebooks.sources():
        html = made / f"{src.stem}.html"
        refused = browser.local_only(page)
        page.goto(html.as_uri(), wait_until="load")
        assert refused == [], f"{html.name} asked the network for {refused}"
        images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete && i.naturalWidth > 0, "
                                                   "i.src.slice(0, 40)])")
        assert all(ok for ok, _ in images), f"{html.name}: images that did not load: {images}"
        assert page.locator("script[src], link[href^='http']").count() == 0, f"{html.name} links outside"
        title = handout.lab_title(notebooks.read(src))
        assert page.title() == title and page.locator("h1", has_text=title).count() == 1
        shot = artifacts / f"handout-{src.stem}.png"
        page.screenshot(path=str(shot), full_page=False)
        pixels = Image.open(shot).convert("L")
        dark = sum(pixels.histogram()[:160]) / (pixels.width * pixels.height)
        assert dark > 0.01, f"{shot.name} is nearly blank: {dark:.2%} of its pixels are dark"
        page.unroute("**/*")


def test_the_student_build_has_no_solution(made: Path, page: Any) -> None:
    for src in notebooks.sources():
        nb = notebooks.read(src)
        page.goto((made / f"{src.stem}.html").as_uri())
        solutions = page.locator(".celltag_solution")
        assert solutions.count() == len(exercises.exercises(nb))
        shown = [t.strip() for t in solutions.locator(".jp-InputArea-editor").all_inner_texts()]
        assert all(t == exercises.PLACEHOLDER.strip() for t in shown), f"{src.name}: a solution shows: {shown}"
        checks = page.locator(".celltag_check")
        assert checks.count() == sum(len(e.checks) for e in exercises.exercises(nb))
        assert checks.locator(".jp-OutputArea-output").count() == 0, f"{src.name}: a check kept its output"


def test_print_keeps_tables_and_pictures_whole(made: Path, page: Any) -> None:
    """In print media every table, picture and output avoids a page break inside it, and is short enough to fit
    on one page, so Chromium can honour that."""
    page.emulate_media(media="print")
    for src in notebooks.sources():
        page.goto((made / f"{src.stem}.html").as_uri())
        blocks = page.eval_on_selector_all(
            "table, img, svg, .jp-OutputArea-output",
            "els => els.map(e => [e.tagName + '.' + e.className, getComputedStyle(e).breakInside,"
            " e.getBoundingClientRect().height])")
        assert blocks, src.name
        split = [b for b in blocks if b[1] != "avoid"]
        assert not split, f"{src.name}: may be cut by a page break: {split[:3]}"
        too_tall = [b for b in blocks if b[2] > PRINTABLE_HEIGHT and not b[0].startswith("DIV")]
        assert not too_tall, f"{src.name}: taller than a printed page: {too_tall[:3]}"


def test_the_pdfs_hold_every_lab(made: Path) -> None:
    from pypdf import PdfReader

    sources = notebooks.sources()
    for src in sources:
        assert len(PdfReader(made / f"{src.stem}.pdf").pages) >= 1, src.name
    workshop = made / "workshop.pdf"
    reader = PdfReader(workshop)
    assert len(reader.pages) >= len(sources) + 1  # the contents, then each lab from a page of its own
    text = " ".join(subprocess.run(["pdftotext", "-layout", str(workshop), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    for src in sources:
        title = handout.lab_title(notebooks.read(src))
        assert text.count(title) >= 2, f"the workshop PDF's text lacks {title!r} (contents and the lab itself)"
    assert [o.title for o in reader.outline] == ["Contents", *(handout.lab_title(notebooks.read(s))
                                                               for s in sources)]
