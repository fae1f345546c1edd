"""Driving the board's page in tests: signing up or in through its form, waiting for
what it shows (with the suite's scaled timeout, and the page's own messages in the
failure), and reading its chart's canvas."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.accounts import PASSWORD
from tests.support.browser import screenshot
from tests.support.timing import TIMEOUT

#: AAPL's bid in the watchlist.
BID = '#watch-table tr[data-symbol="AAPL"] td:nth-child(5)'

#: Every status line of the board, for failure messages.
_STATUS = """() => Object.fromEntries(
    ['banner', 'conn', 'feed', 'auth-status', 'watch-status', 'chart-status', 'ticket-status',
     'alert-status', 'blotter-status', 'analysis-status', 'toasts']
    .map((id) => [id, document.getElementById(id)?.textContent.trim() ?? null]))"""


async def status_texts(page: Any) -> dict[str, str]:
    shown: dict[str, str] = await page.evaluate(_STATUS)
    return shown


async def wait_until(page: Any, expression: str, arg: Any = None, factor: float = 1.0) -> None:
    """Wait until ``expression`` (a JS function of ``arg``) is truthy in the page."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await page.wait_for_function(expression, arg=arg, timeout=TIMEOUT * factor * 1000)
    except PlaywrightTimeout:
        shown = await status_texts(page)
        raise AssertionError(f"the board never showed: {expression}\nit shows: {shown}") from None


async def _submit(page: Any, origin: str, email: str, password: str, button: str) -> None:
    await page.goto(f"{origin}/", wait_until="load")
    await page.wait_for_selector("#auth:not([hidden])", timeout=TIMEOUT * 1000)
    await page.fill("#auth-form [name=email]", email)
    await page.fill("#auth-form [name=password]", password)
    await page.click(button)
    await wait_until(page, "() => !document.getElementById('board').hidden")
    await wait_until(page, "() => document.querySelector('#conn').dataset.level === 'ok'")


async def register(page: Any, origin: str) -> str:
    """A new account, through the page's Register button; returns its email."""
    email = f"board-{uuid.uuid4().hex[:10]}@example.com"
    await _submit(page, origin, email, PASSWORD, "#register-button")
    return email


async def sign_in(page: Any, origin: str, email: str, password: str) -> None:
    await _submit(page, origin, email, password, "#login-button")


_CANDLE_PIXELS = """() => {
    // The chart's main pane is its largest canvas; count the pixels in the candles'
    // colours, and in how many rows they are (the last-price line is one row of them).
    const canvases = [...document.querySelectorAll('#chart canvas')];
    const pane = canvases.sort((a, b) => b.width * b.height - a.width * a.height)[0];
    const data = pane.getContext('2d').getImageData(0, 0, pane.width, pane.height).data;
    const near = (i, r, g, b) => Math.abs(data[i] - r) < 10 && Math.abs(data[i + 1] - g) < 10
        && Math.abs(data[i + 2] - b) < 10 && data[i + 3] > 200;
    const rows = new Map();
    for (let i = 0; i < data.length; i += 4) {
        if (near(i, 38, 166, 154) || near(i, 239, 83, 80)) {
            const y = Math.floor(i / 4 / pane.width);
            rows.set(y, (rows.get(y) || 0) + 1);
        }
    }
    const total = [...rows.values()].reduce((a, b) => a + b, 0);
    const busiest = Math.max(0, ...rows.values());
    return { rows: rows.size, total, offLine: total - busiest };
}"""


async def candle_pixels(page: Any) -> dict[str, int]:
    """How much of the chart's pane is painted in the candles' colours."""
    counted: dict[str, int] = await page.evaluate(_CANDLE_PIXELS)
    return counted


async def board_screenshot(page: Any, name: str) -> None:
    """A screenshot with the pointer off the chart (no crosshair over it)."""
    await page.mouse.move(1, 1)
    await screenshot(page, name)
