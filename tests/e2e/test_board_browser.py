"""The live trading board at ``/`` in a real browser, offline (tests.support.browser:
Debian's Chromium driven by Playwright, every request to anything but the server under
test refused, every page and console error recorded, so a Content-Security-Policy
violation fails the test). The server runs on its simulated market (with the market's
history, as ``./dev serve`` does), or on a simulated Polygon-protocol upstream the test
can take away; each test signs a new user up or in through the page, uses the board
as a person would, and keeps a screenshot in tests/artifacts/.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.settings import MarketSource
from streams.polygon_server import PolygonProtocolServer, start_simulated_server
from tests.e2e.board_page import (
    BID,
    board_screenshot,
    candle_pixels,
    register,
    sign_in,
    status_texts,
    wait_until,
)
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.accounts import PASSWORD, bearer, sign_up
from tests.support.browser import offline_page
from tests.support.postgres import settings_for
from tests.support.server import RunningServer, running_server

SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY")


@dataclass
class Market:
    server: RunningServer
    upstream: PolygonProtocolServer | None = None

    @property
    def origin(self) -> str:
        return self.server.http


@pytest.fixture
async def market(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Market]:
    """The server's own simulated market, with its history (bars before now)."""
    settings = dataclasses.replace(
        settings_for(fresh_database_url, tmp_path),
        market_source=MarketSource.SIMULATED,
        symbols=SYMBOLS,
        simulated_seed=7,
        simulated_rate=10.0,
    )
    async with running_server(settings) as srv:
        yield Market(srv)


@pytest.fixture
async def upstream_market(make_settings: SettingsFactory) -> AsyncIterator[Market]:
    """A simulated Polygon-protocol upstream that the test can stop."""
    async with await start_simulated_server(["AAPL", "MSFT"], seed=7, rate=40.0) as upstream:
        async with running_server(make_settings(upstream, symbols=("AAPL", "MSFT"))) as srv:
            yield Market(srv, upstream)


async def test_a_new_user_registers_and_watches_quotes_and_candles_live(
    browser: Any, market: Market
) -> None:
    async with offline_page(browser, market.origin) as offline:
        page = offline.page
        email = await register(page, market.origin)
        assert await page.text_content("#who") == email

        # A quote changes on screen.
        await wait_until(page, "(s) => /\\d/.test(document.querySelector(s)?.textContent)", BID)
        first = await page.text_content(BID)
        await wait_until(
            page, "([s, t]) => document.querySelector(s).textContent !== t", [BID, first]
        )

        # Candles of 1-minute bars (the market's history, then live): drawn on the
        # canvas, the series holds the API's bars, and the newest one moves with trades.
        await wait_until(page, "() => window.tickgraph.chart.candles().length >= 100")
        pixels = await candle_pixels(page)
        assert pixels["rows"] >= 50 and pixels["offLine"] >= 500, pixels
        candles = await page.evaluate("window.tickgraph.chart.candles()")
        newest = candles[-1]
        await wait_until(
            page,
            """(old) => { const c = window.tickgraph.chart.candles().at(-1);
                          return c.time !== old.time || c.close !== old.close
                              || c.volume !== old.volume; }""",
            newest,
        )
        await board_screenshot(page, "board-market")

    times = [c["time"] for c in candles]
    assert times == sorted(set(times))
    assert all(
        c["low"] <= min(c["open"], c["close"]) <= max(c["open"], c["close"]) <= c["high"]
        for c in candles
    )
    # The same bars as the API's (the forming one may have moved on since).
    async with httpx.AsyncClient(base_url=market.origin) as http:
        stored = await http.post(
            "/graphql",
            json={
                "query": '{ bars(symbol: "AAPL", timeframe: M1, limit: 700) '
                "{ start open high low close final } }"
            },
        )
    api = {int(b["start"] // 1000): b for b in stored.json()["data"]["bars"] if b["final"]}
    shared = [c for c in candles[:-1] if c["time"] in api]
    assert len(shared) == len(candles) - 1, (len(shared), len(candles))
    for c in shared:
        bar = api[c["time"]]
        assert (c["open"], c["high"], c["low"], c["close"]) == (
            bar["open"],
            bar["high"],
            bar["low"],
            bar["close"],
        )
    assert offline.refused == [], "the board asked for something other than this server"
    assert offline.problems == []


async def test_a_limit_order_fills_and_an_alert_fires(browser: Any, market: Market) -> None:
    async with offline_page(browser, market.origin) as offline:
        page = offline.page
        await register(page, market.origin)

        # A buy limit a little above the ask, typed as a person would: it fills.
        await wait_until(page, "() => document.querySelector('#ticket-quote .px.up') !== null")
        ask = Decimal((await page.text_content("#ticket-quote .px.up") or "").split(" ")[0])
        limit = str(ask + Decimal("0.25"))
        await page.fill("#ticket [name=qty]", "5")
        await page.fill("#ticket [name=limitPrice]", limit)
        await page.click("#ticket-submit")
        await wait_until(
            page, "() => document.querySelector('#ticket-status').textContent.includes(': FILLED')"
        )
        await wait_until(page, "() => document.querySelectorAll('#fills-table tbody tr').length")
        await wait_until(
            page,
            "() => [...document.querySelectorAll('#positions-table tbody tr')].some("
            "(r) => r.dataset.symbol === 'AAPL' && r.cells[2].textContent === '5')",
        )
        await wait_until(page, "() => /\\d/.test(document.querySelector('#acct-upnl').textContent)")

        # An alert that is true at once: it fires, on screen.
        await page.fill("#alert-form [name=value]", "1")
        await page.select_option("#alert-form [name=condition]", "LAST GREATER_THAN")
        await page.click("#alert-form button[type=submit]")
        await wait_until(
            page,
            "() => [...document.querySelectorAll('#alert-log li.fired')].some("
            "(li) => li.textContent.includes('AAPL last > 1 fired'))",
        )
        await wait_until(
            page, "() => document.querySelector('#alert-table tbody tr')?.dataset.status === 'DONE'"
        )
        await page.click(".blotter button[data-tab=fills]")
        await board_screenshot(page, "board-trading")
        token = await page.evaluate("window.tickgraph.session.access")

    # The API has the order as typed: a decimal string, never a float's rounding.
    async with httpx.AsyncClient(base_url=market.origin) as http:
        orders = await http.post(
            "/graphql",
            headers=bearer(token),
            json={"query": "{ orders { edges { node { status qty limitPrice filledQty } } } }"},
        )
    [order] = [e["node"] for e in orders.json()["data"]["orders"]["edges"]]
    assert order == {"status": "FILLED", "qty": "5", "limitPrice": limit, "filledQty": "5"}
    assert offline.refused == [] and offline.problems == []


async def test_analyze_streams_the_analysis_into_the_panel(browser: Any, market: Market) -> None:
    async with offline_page(browser, market.origin) as offline:
        page = offline.page
        await register(page, market.origin)
        await wait_until(page, "(s) => /\\d/.test(document.querySelector(s)?.textContent)", BID)
        # Count the pieces of prose as they are added to the panel.
        await page.evaluate(
            """() => {
                window.analysisPieces = 0;
                new MutationObserver((records) => { window.analysisPieces += records.length; })
                    .observe(document.getElementById('analysis-text'),
                             { subtree: true, childList: true, characterData: true });
            }"""
        )
        await page.click("#analyze")
        await wait_until(page, "() => document.querySelector('#analysis-result .badge') !== null")
        await wait_until(
            page, "() => document.querySelector('#analysis-status').dataset.kind === 'ok'"
        )
        text = await page.text_content("#analysis-text") or ""
        pieces = await page.evaluate("window.analysisPieces")
        stance = await page.text_content("#analysis-result .badge")
        await board_screenshot(page, "board-analysis")

    assert text.startswith("Rule-based read of AAPL"), text[:80]
    assert pieces >= 3, f"the prose arrived in {pieces} piece(s), not streamed"
    assert stance in ("BULLISH", "NEUTRAL", "BEARISH")
    assert offline.refused == [] and offline.problems == []


async def test_a_pro_user_streams_everything_and_the_board_says_when_the_feed_drops(
    browser: Any, upstream_market: Market
) -> None:
    market = upstream_market
    assert market.upstream is not None
    async with httpx.AsyncClient(base_url=market.origin) as http:
        user = await sign_up(http, f"pro-{uuid.uuid4().hex[:8]}@example.com")
    await market.server.runtime.database.pool.execute(
        "UPDATE users SET tier = 'pro' WHERE id = $1", uuid.UUID(user["id"])
    )
    async with offline_page(browser, market.origin) as offline:
        page = offline.page
        await sign_in(page, market.origin, user["email"], PASSWORD)
        # A pro tier's quota streams the account, the feed, trades and the server's
        # indicator values, instead of polling them.
        assert await page.evaluate(
            "['account', 'feed', 'trades', 'indicators']"
            ".every((n) => window.tickgraph.ctx.canStream(n))"
        )
        quota = market.server.runtime.services.access.quota  # type: ignore[union-attr]
        # quotes, trades, bars, indicators, orderUpdates, alertEvents, account, feedStatus
        await eventually(
            lambda: quota.usage(user["id"]).subscriptions == 8, "the pro user's eight streams"
        )
        await wait_until(page, "() => document.querySelector('#feed').dataset.level === 'ok'")

        # The WebSocket drops: the board connects again and every subscription resumes.
        await wait_until(page, "(s) => /\\d/.test(document.querySelector(s)?.textContent)", BID)
        await page.evaluate("window.tickgraph.ctx.socket.ws.close(4000, 'dropped by the test')")
        await wait_until(page, "() => window.tickgraph.ctx.socket.connections === 2")
        before = await page.text_content(BID)
        await wait_until(
            page, "([s, t]) => document.querySelector(s).textContent !== t", [BID, before]
        )

        # The market-data feed goes away: a banner says so, the prices are marked stale.
        await market.upstream.close()
        await wait_until(
            page,
            "() => !document.querySelector('#banner').hidden && "
            "document.querySelector('#banner').textContent.includes('market-data feed')",
        )
        assert await page.get_attribute("#feed", "data-level") == "bad"
        assert "stale" in (await page.get_attribute("#board", "class") or "")
        await board_screenshot(page, "board-feed-down")
        shown = await status_texts(page)

    assert "out of date" in shown["banner"], shown
    assert offline.refused == [] and offline.problems == []
