"""Workshop handouts: the labs executed against a cluster, as self-contained HTML pages and PDFs.

    labkit handout [--student | --instructor] [--pdf] [-o DIR]

Stages, each timed (`Handout.stages`) and shown on a progress line: a fresh cluster of the handout's own for each
kube-proxy mode the labs ask for; each lab executed top to bottom in a fresh kernel, so every output is real; each
page written by nbconvert's lab template without its CDN scripts (labkit/templates/handout), images inline; an
index; and with `--pdf`, every page printed by headless Chromium (labkit.browser) and the pages joined into one PDF
for the whole workshop, with a bookmark per lab.

The student build replaces each exercise's solution with a placeholder and keeps its checks, without the outputs
they had with the solution (labkit.exercises). Cells tagged `remove-cell`, `remove-input` or `remove-output` lose
that part in both builds.
"""

from __future__ import annotations

import html
import logging
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from labkit import errors, exercises, notebooks

TEMPLATES = Path(__file__).resolve().parent / "templates"
REMOVE_CELL, REMOVE_INPUT, REMOVE_OUTPUT = {"remove-cell"}, {"remove-input"}, {"remove-output"}


@dataclass
class Page:
    """One lab's handout page."""

    source: Path
    title: str
    goal: str
    html: Path
    pdf: Path | None = None
    seconds: float = 0.0  # executing it


@dataclass
class Handout:
    out: Path
    build: exercises.Build
    pages: list[Page]
    index: Path
    workshop_pdf: Path | None = None
    stages: dict[str, float] = field(default_factory=dict)


class Progress:
    """The progress line: which lab of how many, which cell, time since the start. On a terminal it is one line
    rewritten in place; elsewhere (a log, CI) a line per lab and per stage."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()
        self._lab = ""

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.t0:.1f}s"

    def show(self, text: str, *, final: bool = False) -> None:
        if self.tty:
            self.stream.write(f"\r\033[K{text}" + ("\n" if final else ""))
            self.stream.flush()
        elif final:
            print(text, file=self.stream, flush=True)

    def lab(self, n: int, total: int, name: str) -> None:
        self._lab = f"lab {n} of {total} ({name})"
        self.show(f"handout: {self._lab} · starting · {self.elapsed()}")

    def cell(self, n: int, total: int) -> None:
        self.show(f"handout: {self._lab} · cell {n} of {total} · {self.elapsed()}")

    def stage(self, name: str, seconds: float) -> None:
        self.show(f"handout: {name} · {seconds:.1f}s · {self.elapsed()} in all", final=True)


@contextmanager
def _timed(stages: dict[str, float], name: str, progress: Progress) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    stages[name] = time.monotonic() - t0
    progress.stage(name, stages[name])


def make(out: Path, *, build: exercises.Build = "student", pdf: bool = False, labs: list[Path] | None = None,
         timeout: float = 300.0, progress: Progress | None = None) -> Handout:
    """Execute the labs and write the handout into `out`: one HTML page per lab, `index.html`, and with `pdf` one
    PDF per lab and `workshop.pdf`.

    The labs run on clusters of the handout's own (one per kube-proxy mode the labs ask for, each started when its
    first lab comes and deleted after its last), never on a learner's: the outputs are those of a fresh cluster,
    and a running workshop is left alone."""
    progress = progress or Progress()
    sources = labs if labs is not None else notebooks.sources()
    if not sources:
        raise errors.LabkitError(f"no labs found under {notebooks.LABS_DIR}")
    chromium = None
    if pdf:
        from labkit.browser import find_chromium

        chromium = find_chromium()  # before a minute of work, not after
    out.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {}
    modes = [notebooks.proxy_mode(src) for src in sources]
    pages, executed = [], []
    with Clusters(stages, progress) as clusters:
        for n, (src, mode) in enumerate(zip(sources, modes, strict=True), 1):
            home = clusters.home(mode)
            progress.lab(n, len(sources), src.stem)
            with _timed(stages, f"lab {n} of {len(sources)} ({src.stem}) executed", progress):
                result = notebooks.run(src, timeout=timeout, on_cell=progress.cell,
                                       env={"LABKIT_HOME": str(home), "LABKIT_BACKEND": "embedded"})
            failed = result.failure
            if failed is not None:
                evalue = (failed.evalue.strip().splitlines() or [""])[0]
                raise errors.LabkitError(f"lab {src.name} failed at code cell {failed.cell} ({failed.ename}: "
                                         f"{evalue}), so its handout would show an error; run it in `labkit lab`")
            if mode not in modes[n:]:
                clusters.done(mode)
            nb = result.notebook
            pages.append(Page(src, lab_title(nb), lab_goal(nb), out / f"{src.stem}.html", seconds=result.seconds))
            executed.append(nb)

    with _timed(stages, "html", progress):
        for i, (page, nb) in enumerate(zip(pages, executed, strict=True)):
            page.html.write_text(to_html(exercises.build(nb, build), page.title, page.source.parent,
                                         nav=_nav(pages, i)))
        index = out / "index.html"
        index.write_text(index_html(pages, build, pdf=pdf))

    handout = Handout(out, build, pages, index, stages=stages)
    if chromium is not None:
        from labkit.browser import chromium as launch

        with _timed(stages, "pdf", progress), launch(chromium) as browser:
            for page in pages:
                page.pdf = page.html.with_suffix(".pdf")
                print_pdf(browser, page.html, page.pdf, page.title)
            cover = out / "index.pdf"
            print_pdf(browser, index, cover, "Workshop")
            handout.workshop_pdf = out / "workshop.pdf"
            join_pdfs([(cover, "Contents"), *((p.pdf, p.title) for p in pages if p.pdf)], handout.workshop_pdf)
            cover.unlink()
    return handout


class Clusters:
    """The handout's own embedded clusters, one per proxy mode, in a temporary folder; all deleted on exit."""

    def __init__(self, stages: dict[str, float], progress: Progress) -> None:
        self.stages, self.progress = stages, progress
        self.homes: dict[str, Path] = {}
        self.base: Path | None = None

    def __enter__(self) -> Clusters:
        self.base = Path(tempfile.mkdtemp(prefix="labkit-handout-"))
        return self

    def home(self, mode: str) -> Path:
        from labkit.backends import embedded

        if mode not in self.homes:
            assert self.base is not None
            home = self.homes[mode] = self.base / mode
            with _timed(self.stages, f"cluster ({mode})", self.progress):
                paths, _ = embedded.up(home, timeout=120, proxy_mode=mode)
                embedded.wait_usable(paths, timeout=120)
        return self.homes[mode]

    def done(self, mode: str) -> None:
        from labkit.backends import embedded

        home = self.homes.pop(mode, None)
        if home is not None:
            with _timed(self.stages, f"cluster ({mode}) deleted", self.progress):
                embedded.down(home)

    def __exit__(self, *exc: object) -> None:
        for mode in list(self.homes):
            self.done(mode)
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)


# -- what a lab says about itself -------------------------------------------------------------------------------


def lab_title(nb: Any) -> str:
    """The lab's `# ` heading (its first Markdown cell)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return "Untitled lab"


def lab_goal(nb: Any) -> str:
    """The paragraph that opens with **Goal.** (Markdown, one line), or ''."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for para in re.split(r"\n\s*\n", cell.source):
                if para.lstrip().startswith("**Goal.**"):
                    return " ".join(para.replace("**Goal.**", "").split())
    return ""


def _inline_markdown(text: str) -> str:
    """`code` and *emphasis* of a one-line Markdown text as HTML; everything else escaped."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    return re.sub(r"\*([^*]+)\*", r"<i>\1</i>", out)


# -- HTML -------------------------------------------------------------------------------------------------------


def to_html(nb: Any, title: str, folder: Path, *, nav: str = "") -> str:
    """One self-contained page: nbconvert's lab template without CDN scripts, Markdown images inline, cells
    tagged remove-* removed."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    c = Config()
    c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES)]
    c.HTMLExporter.template_name = "handout"
    c.HTMLExporter.embed_images = True
    c.TagRemovePreprocessor.enabled = True
    c.TagRemovePreprocessor.remove_cell_tags = REMOVE_CELL
    c.TagRemovePreprocessor.remove_input_tags = REMOVE_INPUT
    c.TagRemovePreprocessor.remove_all_outputs_tags = REMOVE_OUTPUT
    exporter = HTMLExporter(config=c)
    exporter.log.setLevel(logging.ERROR)  # "alternative text is missing" for every plot: a plot has no alt text
    nb = nb.copy()
    nb.metadata = {**nb.metadata, "title": title}
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title, "path": str(folder)},
                                                         "handout_nav": nav})
    return body


def _nav(pages: list[Page], i: int) -> str:
    links = ['<a href="index.html">Workshop index</a>']
    if i > 0:
        links.append(f'<a href="{pages[i - 1].html.name}">← {html.escape(pages[i - 1].title)}</a>')
    if i + 1 < len(pages):
        links.append(f'<a href="{pages[i + 1].html.name}">{html.escape(pages[i + 1].title)} →</a>')
    return " · ".join(links)


INDEX_CSS = """
body { font: 15px/1.5 "DejaVu Sans", sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
.meta { color: #666; font-size: 0.85rem; margin-bottom: 1.5rem; }
ol { padding-left: 1.4rem; } li { margin-bottom: 0.9rem; break-inside: avoid; }
li a { font-weight: bold; } code { font-family: "DejaVu Sans Mono", monospace; font-size: 0.9em; }
"""


def index_html(pages: list[Page], build: exercises.Build, *, pdf: bool) -> str:
    """The workshop's index: each lab's title (a link to its page, and to its PDF), and its goal."""
    items = []
    for page in pages:
        pdf_link = f' (<a href="{page.html.with_suffix(".pdf").name}">PDF</a>)' if pdf else ""
        items.append(f'<li><a href="{page.html.name}">{html.escape(page.title)}</a>{pdf_link}'
                     f"<br>{_inline_markdown(page.goal)}</li>")
    whole = ' · <a href="workshop.pdf">the whole workshop as one PDF</a>' if pdf else ""
    made = time.strftime("%Y-%m-%d %H:%M")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>labkit workshop</title>'
            f"<style>{INDEX_CSS}</style></head><body>\n<h1>labkit workshop: what a Kubernetes Service configures</h1>"
            f'<div class="meta">{build} handout · {len(pages)} labs, executed on {made}{whole}</div>\n'
            f"<p>Do the labs in this order: each builds on the ideas of the one before.</p>\n"
            f"<ol>\n{chr(10).join(items)}\n</ol>\n</body></html>\n")


# -- PDF --------------------------------------------------------------------------------------------------------

PDF_SCALE = 0.8  # an A4 page then lays out ~880 CSS pixels: kubectl's wide tables and 100-column code fit
FOOTER = ('<div style="font: 8px sans-serif; color: #666; width: 100%; padding: 0 12mm; display: flex; '
          'justify-content: space-between"><span>{title}</span>'
          '<span><span class="pageNumber"></span> / <span class="totalPages"></span></span></div>')


def print_pdf(browser: Any, page_html: Path, pdf: Path, title: str) -> None:
    """Print one page with Chromium (A4, backgrounds, the title and page number in the footer), the network
    refused: what prints is what the page holds."""
    from labkit.browser import local_only

    page = browser.new_page()
    try:
        refused = local_only(page)
        page.goto(page_html.absolute().as_uri(), wait_until="load")
        if refused:
            raise errors.LabkitError(f"{page_html.name} asked the network for {refused[0]}: a handout must not")
        page.pdf(path=str(pdf), format="A4", scale=PDF_SCALE, print_background=True, display_header_footer=True,
                 header_template="<span></span>", footer_template=FOOTER.format(title=html.escape(title)),
                 margin={"top": "12mm", "bottom": "14mm", "left": "12mm", "right": "12mm"})
    finally:
        page.close()


def join_pdfs(parts: list[tuple[Path, str]], out: Path) -> None:
    """One PDF of `parts`, in order, each a bookmark with its title."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for path, title in parts:
        writer.append(str(path), outline_item=title)
    with open(out, "wb") as f:
        writer.write(f)
    writer.close()

