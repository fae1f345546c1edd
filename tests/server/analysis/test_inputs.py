"""Where a snapshot's bars come from: the bars built in memory, completed from history."""

from __future__ import annotations

from typing import Any

from server.analysis.inputs import NO_HOLDINGS, LiveMarket
from server.history.provider import HistoryUnavailable
from server.history.simulated import SimulatedHistory
from server.market.bars import BarBook
from server.market.state import MarketState
from server.market.timeframes import Timeframe
from tests.server.analysis.helpers import NOW_MS

HOUR = 3_600_000


def book_with_hours(hours: int) -> BarBook:
    """Trades every ten minutes for ``hours`` hours ending at NOW_MS (the last hour forms)."""
    book = BarBook([Timeframe.M1, Timeframe.H1])
    start = Timeframe.H1.bucket(NOW_MS)[0] - hours * HOUR
    for i in range(hours * 6 + 1):
        book.on_trade("NVDA", start + i * 600_000, 100.0 + i * 0.1, 10)
    return book


async def test_memory_first_then_history_for_the_older_bars() -> None:
    book = book_with_hours(5)
    market = LiveMarket(MarketState(), book, SimulatedHistory())
    bars, note = await market.closed_bars("NVDA", Timeframe.H1, 50, end_ms=NOW_MS)
    assert note is None and len(bars) == 50
    starts = [b.start_ms for b in bars]
    assert starts == sorted(starts) and len(set(starts)) == 50
    assert all(b.final for b in bars)
    live = [b for b in book.builder("NVDA").recent(Timeframe.H1) if b.final]
    assert bars[-len(live) :] == live  # the newest are the ones built here
    assert bars[-len(live) - 1].end_ms <= live[0].start_ms


async def test_enough_in_memory_asks_no_history() -> None:
    class Refuses:
        async def bars(self, *a: Any, **k: Any) -> list[Any]:
            raise AssertionError("history was asked")

        async def range(self, *a: Any, **k: Any) -> list[Any]:
            raise AssertionError("history was asked")

    market = LiveMarket(MarketState(), book_with_hours(5), Refuses())
    bars, note = await market.closed_bars("NVDA", Timeframe.H1, 3, end_ms=NOW_MS)
    assert len(bars) == 3 and note is None


async def test_history_failure_is_a_note() -> None:
    class Down:
        async def bars(self, *a: Any, **k: Any) -> list[Any]:
            raise HistoryUnavailable("Polygon history for NVDA 1h: rate limited (HTTP 429)")

        async def range(self, *a: Any, **k: Any) -> list[Any]:
            return []

    market = LiveMarket(MarketState(), book_with_hours(3), Down())
    bars, note = await market.closed_bars("NVDA", Timeframe.H1, 50, end_ms=NOW_MS)
    assert len(bars) == 3
    assert note == (
        "no 1h history (Polygon history for NVDA 1h: rate limited (HTTP 429)): "
        "indicators from fewer bars"
    )
    empty = LiveMarket(MarketState(), None, Down())
    assert (await empty.closed_bars("AMZN", Timeframe.D1, 5, end_ms=NOW_MS))[0] == []


async def test_no_broker_holds_nothing() -> None:
    import uuid

    user = uuid.uuid4()
    assert await NO_HOLDINGS.position(user, "NVDA") is None
    assert await NO_HOLDINGS.open_orders(user, "NVDA") == ()
    assert await NO_HOLDINGS.positions(user) == ()
    assert await NO_HOLDINGS.account(user) is None
