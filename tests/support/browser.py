"""Headless Chromium for page tests: Debian's ``chromium`` driven by Playwright for
Python (browsers cannot be downloaded here), with every request to anything but the
server under test refused and every page error and console error recorded.

A missing Chromium or Playwright fails the test, saying why: ./dev test installs both,
so a run without them is a broken set-up, never a pass.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Screenshots kept for people to look at (ignored by git).
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _unavailable(reason: str) -> None:
    pytest.fail(
        f"{reason}; ./dev test installs it (apt-get install chromium, pip playwright)",
        pytrace=False,
    )


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """The distribution's Chromium, never a downloaded one."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    if shutil.which(CHROMIUM) is None:
        _unavailable(f"Debian's chromium is not installed ({CHROMIUM})")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class OfflinePage:
    page: Any
    #: URLs the page asked for that are not the server under test (all refused).
    refused: list[str] = field(default_factory=list)
    #: Uncaught page errors and console errors (a CSP violation is one).
    problems: list[str] = field(default_factory=list)


@asynccontextmanager
async def offline_page(
    browser: Any, origin: str, *, width: int = 1400, height: int = 900
) -> AsyncIterator[OfflinePage]:
    """A new page (own storage) that may reach ``origin`` only."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    result = OfflinePage(page=None)

    async def only_this_server(route: Any) -> None:
        if route.request.url.startswith(origin + "/"):
            await route.continue_()
        else:
            result.refused.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_this_server)
    page = await context.new_page()
    page.on("pageerror", lambda error: result.problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda m: result.problems.append(f"console: {m.text}") if m.type == "error" else None,
    )
    result.page = page
    try:
        yield result
    finally:
        await context.close()


async def screenshot(page: Any, name: str) -> Path:
    """Keep what the page shows now as ``tests/artifacts/<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    return shot
