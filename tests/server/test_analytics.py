"""The analytics layer: shared indicators, late-trade revisions that leave indicators
exactly as a recomputation would, and the cross-check against Polygon's aggregates."""

from __future__ import annotations

from server.alerts import AlertEngine
from server.analytics import Analytics, IndicatorUpdate
from server.delivery.bus import InProcessBus
from server.history.simulated import SimulatedHistory
from server.indicators import IndicatorSpec
from server.market.timeframes import Timeframe
from server.services.alerts import output_index
from streams.events import MinuteAggregate, Received, Trade

T0 = 1_340_285_400_000  # 2012-06-21 09:30 New York


class NoHistory:
    async def bars(self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int) -> list:  # type: ignore[type-arg]
        return []

    async def range(self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int) -> list:  # type: ignore[type-arg]
        return []


def make(history: object = None) -> tuple[Analytics, InProcessBus]:
    bus = InProcessBus()
    analytics = Analytics(
        bus=bus,
        history=history or NoHistory(),  # type: ignore[arg-type]
        writer=None,
        engine=AlertEngine(outputs=output_index),
        delivery=None,
    )
    return analytics, bus


def trade(t: int, p: float, s: int = 100, q: int = 0) -> Received:
    return Received(Trade(sym="AMZN", p=p, s=s, t=t, q=q), 0)


async def test_indicators_are_shared_and_dropped_with_their_last_user() -> None:
    analytics, _ = make()
    spec = IndicatorSpec.parse("sma(3)")
    a = await analytics.acquire("AMZN", Timeframe.S1, spec)
    b = await analytics.acquire("AMZN", Timeframe.S1, IndicatorSpec.parse("SMA(3)"))
    assert a is b and a.refs == 2
    analytics.release(a)
    assert analytics._slots
    analytics.release(b)
    assert not analytics._slots and not analytics._watch


async def test_late_trade_revision_leaves_indicators_as_a_recomputation() -> None:
    analytics, bus = make()
    slot = await analytics.acquire("AMZN", Timeframe.S1, IndicatorSpec.parse("SMA(3)"))
    seen: list[IndicatorUpdate] = []
    bus.subscribe(slot.topic, seen.append)
    prices = [10.0, 11.0, 12.0, 13.0, 14.0]
    for i, p in enumerate(prices):
        analytics.on_event(trade(T0 + i * 1000 + 10, p))
    # A late print for second 3 (already closed): its bar's close becomes 20.
    analytics.on_event(trade(T0 + 3 * 1000 + 900, 20.0))
    closes = [b.close for b in analytics.book.builder("AMZN").recent(Timeframe.S1)]
    forming = analytics.book.builder("AMZN").forming(Timeframe.S1)
    assert forming is not None
    series = [*closes, forming.close]
    assert series == [10.0, 11.0, 12.0, 20.0, 14.0]
    fresh = IndicatorSpec.parse("SMA(3)").create()
    for b in [*analytics.book.builder("AMZN").recent(Timeframe.S1), forming]:
        fresh.add(b)
    assert slot.indicator.value == fresh.value == ((12.0 + 20.0 + 14.0) / 3,)
    assert seen[-1].values == fresh.value


async def test_warm_up_comes_from_history_before_live_bars() -> None:
    analytics, _ = make(SimulatedHistory(seed=1))
    for i in range(3):
        analytics.on_event(trade(T0 + i * 60_000, 100.0 + i))
    slot = await analytics.acquire("AMZN", Timeframe.M1, IndicatorSpec.parse("EMA(10)"))
    assert slot.indicator.ready and not slot.cold
    assert slot.indicator.count >= 50  # history bars, then the two closed and the forming


def test_polygon_aggregates_are_checked_against_our_bars() -> None:
    analytics, _ = make()
    for i, p in enumerate([10.0, 12.0, 9.0, 11.0]):
        analytics.on_event(trade(T0 + i * 1000, p, s=10))
    analytics.on_event(trade(T0 + 60_000, 11.5))  # closes the first minute
    same = MinuteAggregate(
        sym="AMZN", o=10.0, h=12.0, l=9.0, c=11.0, v=40, s=T0, e=T0 + 60_000, vw=10.5
    )
    other = MinuteAggregate(
        sym="AMZN", o=10.0, h=12.5, l=9.0, c=11.0, v=41, s=T0, e=T0 + 60_000, vw=10.5
    )
    analytics.on_event(Received(same, 0))
    analytics.on_event(Received(other, 0))
    assert (analytics.aggregates_checked, analytics.aggregate_mismatches) == (2, 1)


async def test_a_revision_of_the_first_bar_an_indicator_saw_is_applied() -> None:
    """SMA(2) acquired before any bar: its first bar is revised by a late print, and the
    value follows the bars (it read 50.055 where the bars gave 50.105)."""
    analytics, _ = make()
    slot = await analytics.acquire("AMZN", Timeframe.S1, IndicatorSpec.parse("SMA(2)"))
    analytics.on_event(trade(T0 + 10, 50.01))
    analytics.on_event(trade(T0 + 1_010, 50.10))  # closes the first second
    analytics.on_event(trade(T0 + 900, 50.11))  # late: the first bar's close is 50.11
    builder = analytics.book.builder("AMZN")
    (first,) = builder.recent(Timeframe.S1)
    assert first.close == 50.11 and first.revision == 1
    assert slot.last is not None and slot.last.values is not None
    assert slot.last.values[0] == (50.11 + 50.10) / 2


async def test_a_day_not_seen_from_its_start_is_announced() -> None:
    """A server that starts mid-day (or lost what it had) says its day's bars begin at
    its first trade: a GAP from New York midnight, unfilled without history."""
    from server.market.trading_day import day_window

    analytics, bus = make()
    seen: list[object] = []
    bus.subscribe("G.AMZN", seen.append)
    analytics.on_event(trade(T0 + 5_000, 223.0))
    analytics.on_event(trade(T0 + 6_000, 223.1))
    await analytics.recovery.wait()
    (gap,) = analytics.recovery.gaps("AMZN")
    assert seen == [gap]
    assert (gap.from_ms, gap.to_ms, gap.reason) == (day_window(T0).start_ms, T0 + 5_000, "start")
    assert not gap.filled and gap.bars == 0
