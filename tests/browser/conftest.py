"""The browser tests' fixtures: the system's Chromium driven by Playwright, and where screenshots are kept.

Screenshots are test artifacts a person looks at: they are written under `test-artifacts/browser/` in the
checkout (or `$LABKIT_TEST_ARTIFACTS/browser/`), and kept after the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit import browser

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(os.environ.get("LABKIT_TEST_ARTIFACTS", REPO / "test-artifacts")) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's chromium (./run installs it): a missing browser fails the test, it is not skipped.

    Module-scoped, not session-scoped: while Playwright's sync API runs, this thread has a running event loop, and
    the tests after these would find `asyncio.run()` refused."""
    with browser.chromium() as b:
        yield b


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()
