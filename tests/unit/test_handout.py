"""Handout pages without a cluster: HTML that needs no network, tags that remove cells, the index, the PDF join,
the progress line, and the message when Chromium is missing."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labkit import browser, cli, errors, handout

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")).decode()


def _lab() -> object:
    def code(source: str, *tags: str, text: str = "") -> object:
        cell = new_code_cell(source, metadata={"tags": list(tags)})
        cell.outputs = [new_output("stream", name="stdout", text=text)] if text else []
        return cell

    plot = new_code_cell("plot()")
    plot.outputs = [new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]
    return new_notebook(cells=[
        new_markdown_cell("# Lab 7 — DNS in depth\n\n**Goal.** See `ndots:5` at *work*.\n\n![a picture](pic.png)"),
        code("print('shown')", text="shown-output"),
        code("secret_setup()", "remove-cell", text="removed-cell-output"),
        code("hidden_input()", "remove-input", text="kept-output"),
        code("noisy()", "remove-output", text="removed-output"),
        code("answer()", "solution"),
        plot,
    ])


def test_a_page_needs_no_network_and_honours_removal_tags(tmp_path: Path) -> None:
    (tmp_path / "pic.png").write_bytes(base64.b64decode(PNG))
    page = handout.to_html(_lab(), "Lab 7 — DNS in depth", tmp_path, nav='<a href="index.html">index</a>')
    assert "<title>Lab 7 — DNS in depth</title>" in page
    assert not re.search(r"<script[^>]+src=", page), "a script loaded from somewhere"
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", page), "something fetched from the network"
    assert f'src="data:image/png;base64,{PNG}"' in page, "the plot is inline"
    assert 'alt="a picture" src="data:image/png;base64,' in page and "pic.png" not in page, "so is the picture"
    assert "shown-output" in page and "kept-output" in page
    for gone in ("secret_setup", "removed-cell-output", "hidden_input", "removed-output"):
        assert gone not in page, gone
    assert "celltag_solution" in page and '<nav class="handout"><a href="index.html">index</a></nav>' in page
    assert "break-inside: avoid" in page


def test_title_goal_and_index() -> None:
    nb = _lab()
    assert handout.lab_title(nb) == "Lab 7 — DNS in depth"
    assert handout.lab_goal(nb) == "See `ndots:5` at *work*."
    pages = [handout.Page(Path("07-dns.md"), "Lab 7 — DNS in depth", handout.lab_goal(nb), Path("/o/07-dns.html"))]
    index = handout.index_html(pages, "student", pdf=True)
    assert '<a href="07-dns.html">Lab 7 — DNS in depth</a> (<a href="07-dns.pdf">PDF</a>)' in index
    assert "See <code>ndots:5</code> at <i>work</i>." in index and 'href="workshop.pdf"' in index
    assert "student handout" in index
    assert "PDF" not in handout.index_html(pages, "instructor", pdf=False)


def test_join_pdfs_keeps_order_and_bookmarks(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    parts = []
    for name, pages in (("a", 1), ("b", 2)):
        w = PdfWriter()
        for _ in range(pages):
            w.add_blank_page(width=200, height=200)
        w.write(tmp_path / f"{name}.pdf")
        parts.append((tmp_path / f"{name}.pdf", f"Part {name}"))
    handout.join_pdfs(parts, tmp_path / "all.pdf")
    reader = PdfReader(tmp_path / "all.pdf")
    assert len(reader.pages) == 3
    assert [(o.title, reader.get_destination_page_number(o)) for o in reader.outline] == [("Part a", 0),
                                                                                          ("Part b", 1)]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_rewrites_itself_on_a_terminal_and_logs_stages_elsewhere() -> None:
    tty = _Terminal()
    p = handout.Progress(tty)
    p.lab(2, 9, "02-cluster-dns")
    p.cell(7, 19)
    p.stage("html", 1.25)
    out = tty.getvalue()
    assert "\r\033[Khandout: lab 2 of 9 (02-cluster-dns) · cell 7 of 19 · " in out
    assert out.endswith("s in all\n") and "handout: html · 1.2s" in out
    log = io.StringIO()
    p = handout.Progress(log)
    p.lab(1, 9, "01-clusterip")
    p.cell(1, 30)
    p.stage("lab 1 of 9 (01-clusterip) executed", 3.0)
    assert log.getvalue().count("\n") == 1 and log.getvalue().startswith("handout: lab 1 of 9 (01-clusterip)")


def test_missing_chromium_is_said_before_any_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(browser.CHROMIUM_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(errors.Unavailable, match="install Debian's `chromium` package"):
        browser.find_chromium()
    assert cli.main(["handout", "--pdf", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("labkit: printing to PDF needs Chromium") and err.count("\n") == 1
    assert not (tmp_path / "out").exists(), "nothing is made when the PDF cannot be"
    monkeypatch.setenv(browser.CHROMIUM_ENV, str(tmp_path / "nope"))
    with pytest.raises(errors.Unavailable, match="is not an executable"):
        browser.find_chromium()
