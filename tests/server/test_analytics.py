"""The analytics layer: shared indicators, late-trade revisions that leave indicators
exactly as a recomputation would, and the cross-check against Polygon's aggregates."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- provisional values once per flush ---------------------------------------------------

SPECS = ("SMA(3)", "EMA(4)", "MACD(3,5,2)", "BBANDS(3,2)", "VWAP")


async def watched(
    settle: bool, timeframe: Timeframe = Timeframe.S1
) -> tuple[Analytics, list[Analytics], dict[str, list[IndicatorUpdate]], list[object]]:
    """Analytics with SPECS and a bar subscriber on ``timeframe``; with ``settle``, the
    flush is whoever calls ``prepare`` on what asked for it (returned list)."""
    analytics, bus = make()
    asked: list[Analytics] = []
    if settle:
        analytics.settle_with(asked.append)
    published: dict[str, list[IndicatorUpdate]] = {}
    for key in SPECS:
        slot = await analytics.acquire("AMZN", timeframe, IndicatorSpec.parse(key))
        bus.subscribe(slot.topic, published.setdefault(slot.key, []).append)
    bars: list[object] = []
    analytics.watch_bars("AMZN", timeframe)
    bus.subscribe(f"B.{timeframe.value}.AMZN", bars.append)
    return analytics, asked, published, bars


def flush(asked: list[Analytics]) -> None:
    while asked:
        asked.pop(0).prepare()


async def test_subscriber_only_indicators_follow_the_forming_bar_once_per_flush() -> None:
    analytics, asked, published, bars = await watched(settle=True)
    for i, p in enumerate([10.0, 11.0, 12.5, 11.5]):
        analytics.on_event(trade(T0 + 10 + i, p))
    # Nothing provisional is computed or published before the flush; it was asked once.
    assert len(asked) == 1 and all(not v for v in published.values()) and bars == []
    flush(asked)
    assert all(len(v) == 1 and not v[0].final for v in published.values())
    assert [b.bar.close for b in bars] == [11.5]  # type: ignore[attr-defined]
    # The same values as feeding every trade.
    eager, _, eager_published, _ = await watched(settle=False)
    for i, p in enumerate([10.0, 11.0, 12.5, 11.5]):
        eager.on_event(trade(T0 + 10 + i, p))
    assert {k: v[-1].values for k, v in published.items()} == {
        k: v[-1].values for k, v in eager_published.items()
    }
    flush(asked)  # nothing changed since: nothing more
    assert all(len(v) == 1 for v in published.values())


async def test_closes_are_immediate_and_the_next_forming_bar_waits_for_the_flush() -> None:
    analytics, asked, published, bars = await watched(settle=True)
    analytics.on_event(trade(T0 + 10, 10.0))
    analytics.on_event(trade(T0 + 1_010, 11.0))  # closes second 0, opens second 1
    # The close went out at once (final values of second 0), before any flush...
    finals = {k: [u for u in v if u.final] for k, v in published.items()}
    assert all(len(v) == 1 and v[0].bar_start_ms == T0 for v in finals.values())
    assert [(b.kind.value, b.bar.start_ms) for b in bars] == [("close", T0)]  # type: ignore[attr-defined]
    # ... and second 1's provisional values at the flush.
    flush(asked)
    assert all(v[-1].bar_start_ms == T0 + 1_000 and not v[-1].final for v in published.values())
    assert bars[-1].kind.value == "update"  # type: ignore[attr-defined]


async def test_a_bar_closed_by_the_clock_before_the_flush_is_not_sent_again() -> None:
    analytics, asked, published, bars = await watched(settle=True)
    analytics.on_event(trade(T0 + 10, 10.0))
    # The feed's clock (as the screen notes it) moves on 5 s with no trade.
    analytics.clock.note(T0, 1_000)
    analytics.clock.note(T0 + 10, 1_000)
    analytics._wall_ms = lambda: 6_000
    analytics.on_clock()
    assert [(b.kind.value, b.bar.start_ms) for b in bars] == [("close", T0)]  # type: ignore[attr-defined]
    flush(asked)
    assert len(bars) == 1 and all(u.final for v in published.values() for u in v)


async def test_indicators_alerts_read_follow_every_trade() -> None:
    from server.alerts import validate

    analytics, asked, published, _ = await watched(settle=True)
    alert = validate(
        {
            "symbol": "AMZN",
            "conditions": [
                {"left": {"indicator": "SMA(3)", "timeframe": "1s"}, "op": "greaterThan",
                 "value": 1e9}
            ],
            "trigger": {"mode": "everyTime", "cooldownMs": 0},
        },
        alert_id="00000000-0000-0000-0000-000000000001",
        owner="u1",
        now_ms=0,
        max_per_user=10,
    )  # fmt: skip
    analytics.engine.add(alert)
    await analytics.sync_alert_indicators()
    for i, p in enumerate([10.0, 11.0, 12.0]):
        analytics.on_event(trade(T0 + 10 + i, p))
    assert len(published["SMA(3)"]) == 3  # every trade
    assert all(not v for k, v in published.items() if k != "SMA(3)")  # at the flush
    flush(asked)
    others = [v for k, v in published.items() if k != "SMA(3)"]
    assert len(published["SMA(3)"]) == 3 and all(len(v) == 1 for v in others)


@st.composite
def tape(draw: st.DrawFn) -> list[tuple[int, float, bool]]:
    """Trades (time, price) with a flush after some of them; now and then a late print
    into a bar that already closed (a revision)."""
    t = T0
    out: list[tuple[int, float, bool]] = []
    for _ in range(draw(st.integers(1, 40))):
        step = draw(st.sampled_from([0, 1, 150, 400, 999, 1_000, 2_500]))
        t += step
        late = draw(st.integers(0, 9)) == 0
        at = t - draw(st.integers(1_000, 2_500)) if late else t
        price = draw(st.floats(90.0, 110.0, allow_nan=False).map(lambda p: round(p, 2)))
        out.append((max(T0, at), price, draw(st.booleans())))
    return out


@settings(max_examples=60, deadline=None)
@given(tape())
def test_flushing_provisional_values_leaves_every_value_as_feeding_every_trade(
    trades: list[tuple[int, float, bool]],
) -> None:
    async def run() -> None:
        lazy, asked, lazy_published, lazy_bars = await watched(settle=True)
        eager, _, eager_published, eager_bars = await watched(settle=False)
        for t, price, then_flush in [*trades, (trades[-1][0], trades[-1][1], True)]:
            lazy.on_event(trade(t, price))
            eager.on_event(trade(t, price))
            if then_flush:
                flush(asked)
                for key in SPECS:
                    a = lazy._slots[("AMZN", Timeframe.S1, IndicatorSpec.parse(key).key)]
                    b = eager._slots[("AMZN", Timeframe.S1, IndicatorSpec.parse(key).key)]
                    assert a.indicator.value == b.indicator.value
                    assert a.last is not None and b.last is not None
                    assert (a.last.values, a.last.bar_start_ms, a.last.final) == (
                        b.last.values, b.last.bar_start_ms, b.last.final,
                    )  # fmt: skip
                assert lazy_bars[-1] == eager_bars[-1]

        # Every close and revision went out, the same, in the same order.
        def finals(published: dict[str, list[IndicatorUpdate]]) -> dict[str, list[object]]:
            return {
                k: [(u.bar_start_ms, u.values) for u in v if u.final] for k, v in published.items()
            }

        assert finals(lazy_published) == finals(eager_published)
        assert [b for b in lazy_bars if b.kind.value != "update"] == [  # type: ignore[attr-defined]
            b
            for b in eager_bars
            if b.kind.value != "update"  # type: ignore[attr-defined]
        ]

    asyncio.run(run())
