"""Headless Chromium, for printing handouts to PDF and for the browser tests: the system's own browser (Debian's
`chromium`, which `./run` installs), driven by Playwright — which could not download a browser of its own offline,
so it is always given the executable's path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labkit import errors

CHROMIUM_ENV = "LABKIT_CHROMIUM"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Root cannot use Chromium's sandbox; nothing else is needed headless on a machine without a GPU.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]


def find_chromium() -> Path:
    """The Chromium to run: $LABKIT_CHROMIUM, else the first of CANDIDATES on PATH; a clear error when none."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        if not os.access(given, os.X_OK):
            raise errors.Unavailable(f"{CHROMIUM_ENV}={given} is not an executable")
        return Path(given)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise errors.Unavailable(
        f"printing to PDF needs Chromium, and none was found (looked for {', '.join(CANDIDATES)} on PATH): install "
        f"Debian's `chromium` package (`./run setup` does), or set {CHROMIUM_ENV} to a Chromium executable")


@contextmanager
def chromium(executable: Path | None = None) -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser), closed on exit."""
    from playwright.sync_api import sync_playwright

    path = executable or find_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(path), args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def local_only(page: Any) -> list[str]:
    """Refuse every request `page` makes that is not to a local file or inline data; return the list the refused
    URLs are appended to (a handout must not need the network)."""
    refused: list[str] = []

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith(("file:", "data:", "blob:", "about:")):
            r.continue_()
        else:
            refused.append(url)
            r.abort()

    page.route("**/*", route)
    return refused
