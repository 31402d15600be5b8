"""Headless Chromium for the report tests and benchmarks/report_render.py: Debian's /usr/bin/chromium driven
by Playwright's Python package (no browser download). `open_page` records console messages, page errors
and every request, so a test can say that a page made no network request and logged no error."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("BODYCAPTURE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# WebGL without a GPU: SwiftShader, which Chromium only uses when asked. The rest keeps a headless Chromium
# from reaching for the network (this machine has none) at start.
FLAGS = ["--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic"]


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'Playwright is not installed (pip install -e ".[test]")'
    if not Path(CHROMIUM).is_file():
        return "Chromium is not installed (Debian: apt-get install chromium)"
    return None


@dataclass
class PageLog:
    console: list[tuple[str, str]] = field(default_factory=list)  # (type, text)
    errors: list[str] = field(default_factory=list)  # uncaught exceptions in the page
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def console_errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"] + self.errors


@contextmanager
def browser(width: int = 1280, height: int = 1000):
    """Yield a function that opens a file in a new page: open(path) -> (page, PageLog)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            def open_page(path: Path, wait_for: str | None = None, timeout_ms: float = 20000):
                page = chromium.new_page(viewport={"width": width, "height": height})
                log = PageLog()
                page.on("console", lambda m: log.console.append((m.type, m.text)))
                page.on("pageerror", lambda e: log.errors.append(str(e)))
                page.on("request", lambda r: log.requests.append(r.url))
                page.on("requestfailed", lambda r: log.failed.append(r.url))
                page.goto(Path(path).resolve().as_uri())
                if wait_for:
                    page.wait_for_selector(wait_for, timeout=timeout_ms)
                return page, log

            yield open_page
        finally:
            chromium.close()
