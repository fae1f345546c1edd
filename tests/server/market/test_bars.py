"""server.market.bars: incremental bars against direct recomputations, plain function calls."""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import msgspec
import pytest

from server.market.bars import (
    DEFAULT_REVISION_WINDOW,
    BarBook,
    BarBuilder,
    BarEvent,
    BarEventKind,
    compare_with_aggregate,
)
from server.market.timeframes import ALL_TIMEFRAMES, Bar, Timeframe
from server.market.trading_day import NEW_YORK
from streams.events import Aggregate, MinuteAggregate, Trade
from streams.recording import load_events
from tests.support.data import AMZN_REPLAY, require

S1, M1, M5, M15, H1, D1 = (
    Timeframe.S1,
    Timeframe.M1,
    Timeframe.M5,
    Timeframe.M15,
    Timeframe.H1,
    Timeframe.D1,
)
AMZN_TRADE_VOLUME = 810_755  # from the data README

Print = tuple[int, float, int]  # (t_ms, price, size)


def ny_ms(day: str, hh: int = 0, mm: int = 0, ss: int = 0, ms: int = 0) -> int:
    """Epoch ms of a New York wall-clock time on ``day`` (YYYY-MM-DD)."""
    wall = datetime.fromisoformat(day).replace(hour=hh, minute=mm, second=ss, tzinfo=NEW_YORK)
    return int(wall.timestamp()) * 1000 + ms


# A regular Friday session in winter time; minute N of the session starts at T0 + N * MIN.
T0 = ny_ms("2024-03-08", 9, 30)
SEC = 1_000
MIN = 60_000


@cache
def amzn_trades() -> tuple[Print, ...]:
    events = load_events(require(AMZN_REPLAY))
    return tuple((ev.t, ev.p, ev.s) for ev in events if isinstance(ev, Trade))


# -- the reference: a direct recomputation from the prints of each interval -------------


@dataclass
class Expected:
    start: int
    end: int
    open: float
    high: float
    low: float
    close: float
    volume: int
    notional: float
    trades: int
    first_t: int
    last_t: int


def summarize(prints: Sequence[Print], start: int, end: int) -> Expected:
    """The bar of ``prints`` (all in ``[start, end)``): open and close are the earliest and
    latest prints by time, arrival order breaking ties, as the module defines them."""
    t, p, s = prints[0]
    e = Expected(start, end, p, p, p, p, s, p * s, 1, t, t)
    for t, p, s in prints[1:]:
        e.high, e.low = max(e.high, p), min(e.low, p)
        if t < e.first_t:
            e.first_t, e.open = t, p
        if t >= e.last_t:
            e.last_t, e.close = t, p
        e.volume += s
        e.notional += p * s
        e.trades += 1
    return e


def recompute(prints: Iterable[Print], tf: Timeframe) -> dict[int, Expected]:
    """The bars of ``prints`` by start, each from the prints of its interval."""
    groups: dict[tuple[int, int], list[Print]] = {}
    for x in prints:
        groups.setdefault(tf.bucket(x[0]), []).append(x)
    return {start: summarize(group, start, end) for (start, end), group in sorted(groups.items())}


def assert_bar_is(bar: Bar, expected: Expected) -> None:
    assert (bar.start_ms, bar.end_ms) == (expected.start, expected.end)
    assert (bar.open, bar.high, bar.low, bar.close) == (
        expected.open,
        expected.high,
        expected.low,
        expected.close,
    ), bar
    assert (bar.volume, bar.trades) == (expected.volume, expected.trades), bar
    # Sums in another order (per second, then per minute...): equal up to rounding.
    assert bar.vwap == pytest.approx(expected.notional / expected.volume, rel=1e-12, abs=0)


def feed(builder: BarBuilder, prints: Iterable[Print]) -> list[BarEvent]:
    events: list[BarEvent] = []
    for t, p, s in prints:
        events.extend(builder.on_trade(t, p, s))
    return events


def closes(events: Sequence[BarEvent], tf: Timeframe) -> list[Bar]:
    return [e.bar for e in events if e.kind is BarEventKind.CLOSE and e.bar.timeframe is tf]


def replay_all_timeframes() -> tuple[BarBuilder, list[BarEvent]]:
    builder = BarBuilder("AMZN", ALL_TIMEFRAMES, history=100_000)
    events = feed(builder, amzn_trades())
    events += builder.on_clock(amzn_trades()[-1][0] + 2 * 86_400_000)  # close everything
    return builder, events


# -- the AMZN session --------------------------------------------------------------------


def test_replay_bars_match_a_recomputation_for_every_timeframe() -> None:
    trades = amzn_trades()
    assert sum(s for _, _, s in trades) == AMZN_TRADE_VOLUME
    builder, events = replay_all_timeframes()

    assert {e.kind for e in events} == {BarEventKind.CLOSE}  # in order: no revision
    assert all(e.bar.final and e.bar.revision == 0 for e in events)
    assert builder.late_dropped == dict.fromkeys(ALL_TIMEFRAMES, 0)
    assert builder.ignored == 0
    for tf in ALL_TIMEFRAMES:
        bars = closes(events, tf)
        expected = recompute(trades, tf)
        # Intervals without trades have no bar; the others have exactly one, in order.
        assert [b.start_ms for b in bars] == list(expected), tf
        for bar in bars:
            assert_bar_is(bar, expected[bar.start_ms])
        assert builder.recent(tf) == bars
        assert builder.forming(tf) is None
        assert sum(b.volume for b in bars) == AMZN_TRADE_VOLUME
        assert sum(b.trades for b in bars) == len(trades)

    assert len(closes(events, M1)) == 387  # 6.5 hours, 3 quiet minutes
    (day,) = closes(events, D1)
    assert (day.start_ms, day.end_ms) == (ny_ms("2012-06-21"), ny_ms("2012-06-22"))
    assert (day.open, day.close) == (trades[0][1], trades[-1][1])
    assert (day.low, day.high) == (220.51, 226.03)


def merge(parts: Sequence[Bar]) -> tuple[float, float, float, float, int, float, int]:
    volume = sum(b.volume for b in parts)
    return (
        parts[0].open,
        max(b.high for b in parts),
        min(b.low for b in parts),
        parts[-1].close,
        volume,
        sum(b.vwap * b.volume for b in parts) / volume,
        sum(b.trades for b in parts),
    )


@pytest.mark.parametrize(("fine", "coarse"), [(S1, M1), (M1, M5), (M5, M15), (M15, H1), (H1, D1)])
def test_each_coarser_bar_is_the_merge_of_the_finer_bars_inside_it(
    fine: Timeframe, coarse: Timeframe
) -> None:
    _, events = replay_all_timeframes()
    fine_bars = closes(events, fine)
    for bar in closes(events, coarse):
        inside = [b for b in fine_bars if bar.start_ms <= b.start_ms < bar.end_ms]
        assert inside and all(b.end_ms <= bar.end_ms for b in inside)
        o, h, lo, c, volume, vwap, trades = merge(inside)
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trades) == (
            o,
            h,
            lo,
            c,
            volume,
            trades,
        )
        assert bar.vwap == pytest.approx(vwap, rel=1e-12)
    assert sum(b.volume for b in fine_bars) == sum(b.volume for b in closes(events, coarse))


def test_forming_bars_hold_the_trades_of_their_interval_so_far() -> None:
    trades = amzn_trades()
    buckets = {tf: [tf.bucket(t) for t, _, _ in trades] for tf in ALL_TIMEFRAMES}
    builder = BarBuilder("AMZN")
    checkpoints = set(random.Random(7).sample(range(len(trades)), 200)) | {0, len(trades) - 1}
    for i, (t, p, s) in enumerate(trades):
        builder.on_trade(t, p, s)
        if i not in checkpoints:
            continue
        for tf in ALL_TIMEFRAMES:
            # The file is in time order: the interval's prints so far end at print i.
            first = bisect_left(buckets[tf], buckets[tf][i])
            forming = builder.forming(tf)
            assert forming is not None and not forming.final
            assert_bar_is(forming, summarize(trades[first : i + 1], *buckets[tf][i]))


def test_update_events_snapshot_every_forming_bar_a_trade_changes() -> None:
    trades = amzn_trades()[:3_000]
    quiet = BarBuilder("AMZN")
    chatty = BarBuilder("AMZN", emit_updates=True)
    close_events: list[BarEvent] = []
    for t, p, s in trades:
        expected_closes = quiet.on_trade(t, p, s)
        events = chatty.on_trade(t, p, s)
        updates = [e for e in events if e.kind is BarEventKind.UPDATE]
        assert [e.bar.timeframe for e in updates] == list(ALL_TIMEFRAMES)
        for update in updates:
            assert update.bar == chatty.forming(update.bar.timeframe)
            assert not update.bar.final
        close_events += [e for e in events if e.kind is not BarEventKind.UPDATE]
        assert [e for e in events if e.kind is not BarEventKind.UPDATE] == expected_closes
    assert close_events  # the comparison above was not vacuous


# -- interval boundaries and the clock ---------------------------------------------------


def test_a_trade_exactly_at_the_bucket_start_belongs_to_the_new_bar() -> None:
    builder = BarBuilder("AAPL", [M1])
    assert builder.on_trade(T0 + MIN - 1, 10.0, 100) == []
    (event,) = builder.on_trade(T0 + MIN, 11.0, 200)

    assert event.kind is BarEventKind.CLOSE
    assert event.bar == Bar("AAPL", M1, T0, T0 + MIN, 10.0, 10.0, 10.0, 10.0, 100, 10.0, 1, True)
    forming = builder.forming(M1)
    assert forming == Bar("AAPL", M1, T0 + MIN, T0 + 2 * MIN, 11.0, 11.0, 11.0, 11.0, 200, 11.0, 1)


def test_a_trade_driven_close_is_immediate_whatever_the_grace() -> None:
    builder = BarBuilder("AAPL", [S1, M1], close_delay_ms=30_000)
    builder.on_trade(T0 + 500, 10.0, 1)
    events = builder.on_trade(T0 + SEC, 10.5, 1)
    assert [(e.kind, e.bar.timeframe, e.bar.start_ms) for e in events] == [
        (BarEventKind.CLOSE, S1, T0)
    ]


def test_intervals_without_trades_produce_no_bar() -> None:
    builder = BarBuilder("AAPL", [M1, M5])
    builder.on_trade(T0 + 5 * SEC, 10.0, 100)
    events = builder.on_trade(T0 + 3 * MIN + 5 * SEC, 12.0, 100)  # minutes 1 and 2: nothing

    assert [e.bar.start_ms for e in events] == [T0]
    builder.on_clock(T0 + 10 * MIN)
    assert [b.start_ms for b in builder.recent(M1)] == [T0, T0 + 3 * MIN]
    assert [b.start_ms for b in builder.recent(M5)] == [T0]
    assert builder.recent(M5)[0].volume == 200


def test_on_clock_closes_quiet_bars_once_the_grace_has_passed() -> None:
    builder = BarBuilder("AAPL", [S1, M1, D1], close_delay_ms=500)
    builder.on_trade(T0 + 10 * SEC + 250, 10.0, 100)
    builder.on_trade(T0 + 10 * SEC + 750, 10.2, 50)

    assert builder.on_clock(T0 + 11 * SEC + 499) == []
    (second,) = builder.on_clock(T0 + 11 * SEC + 500)
    assert (second.kind, second.bar.timeframe, second.bar.volume) == (BarEventKind.CLOSE, S1, 150)
    assert builder.forming(S1) is None
    assert builder.forming(M1) == Bar(
        "AAPL", M1, T0, T0 + MIN, 10.0, 10.2, 10.0, 10.2, 150, (1000 + 510) / 150, 2
    )

    assert builder.on_clock(T0 + MIN + 499) == []
    (minute,) = builder.on_clock(T0 + MIN + 500)
    assert (minute.kind, minute.bar.timeframe, minute.bar.start_ms) == (BarEventKind.CLOSE, M1, T0)
    assert minute.bar.final and minute.bar.volume == 150
    assert builder.on_clock(T0 + MIN + 600) == []  # nothing twice
    assert builder.forming(M1) is None
    assert builder.forming(D1) is not None  # the day goes on

    (day,) = builder.on_clock(ny_ms("2024-03-09") + 500)
    assert (day.bar.timeframe, day.bar.start_ms) == (D1, ny_ms("2024-03-08"))


def test_clock_closes_the_finer_bar_before_the_coarser_one_that_holds_it() -> None:
    builder = BarBuilder("AAPL", ALL_TIMEFRAMES, close_delay_ms=0)
    builder.on_trade(T0 + MIN - 1, 10.0, 100)  # last ms of the first minute
    events = builder.on_clock(T0 + MIN)
    assert [e.bar.timeframe for e in events] == [S1, M1]
    assert all(e.bar.volume == 100 for e in events)


# -- late trades -------------------------------------------------------------------------


def three_minutes(revision_window: int = DEFAULT_REVISION_WINDOW) -> BarBuilder:
    """Minutes 0, 1 and 2 with two prints each; minute 2 is still forming."""
    builder = BarBuilder("AAPL", [M1], revision_window=revision_window)
    for minute in range(3):
        builder.on_trade(T0 + minute * MIN + 10 * SEC, 100.0 + minute, 10)
        builder.on_trade(T0 + minute * MIN + 20 * SEC, 100.5 + minute, 10)
    return builder


def test_a_late_trade_revises_the_bar_of_its_time() -> None:
    builder = three_minutes()
    (first,) = builder.on_trade(T0 + MIN + 5 * SEC, 103.0, 20)  # before minute 1's first print

    assert first.kind is BarEventKind.REVISION
    revised = first.bar
    assert (revised.start_ms, revised.final, revised.revision) == (T0 + MIN, True, 1)
    assert (revised.open, revised.high, revised.low, revised.close) == (103.0, 103.0, 101.0, 101.5)
    assert (revised.volume, revised.trades) == (40, 3)
    assert revised.vwap == pytest.approx((1010 + 1015 + 2060) / 40)

    (second,) = builder.on_trade(T0 + MIN + 59 * SEC, 99.0, 10)  # after its last print
    assert second.bar.revision == 2
    assert (second.bar.open, second.bar.low, second.bar.close) == (103.0, 99.0, 99.0)
    assert (second.bar.volume, second.bar.trades) == (50, 4)

    # The history shows the newest version in place; the other bars are untouched.
    assert [b.revision for b in builder.recent(M1)] == [0, 2]
    assert builder.recent(M1)[1] == second.bar
    forming = builder.forming(M1)
    assert forming is not None and (forming.start_ms, forming.volume) == (T0 + 2 * MIN, 20)


def test_a_late_trade_in_an_interval_without_bar_creates_it_as_a_revision() -> None:
    builder = BarBuilder("AAPL", [M1])
    builder.on_trade(T0 + 10 * SEC, 100.0, 10)
    builder.on_trade(T0 + 3 * MIN, 100.0, 10)  # closes minute 0; minutes 1-2 had nothing

    (event,) = builder.on_trade(T0 + 2 * MIN + 1, 99.0, 7)
    assert event.kind is BarEventKind.REVISION
    assert event.bar == Bar(
        "AAPL", M1, T0 + 2 * MIN, T0 + 3 * MIN, 99.0, 99.0, 99.0, 99.0, 7, 99.0, 1, True, 1
    )
    assert [b.start_ms for b in builder.recent(M1)] == [T0, T0 + 2 * MIN]  # in time order

    (again,) = builder.on_trade(T0 + 2 * MIN + 2, 98.0, 3)
    assert (again.bar.revision, again.bar.volume, again.bar.close) == (2, 10, 98.0)


def test_a_trade_older_than_the_revision_window_is_dropped_and_counted() -> None:
    builder = three_minutes(revision_window=1)
    assert builder.on_trade(T0 + 30 * SEC, 200.0, 1_000) == []  # minute 0: outside
    assert builder.late_dropped[M1] == 1
    assert [b.revision for b in builder.recent(M1)] == [0, 0]
    assert builder.recent(M1)[0].high == 100.5

    (event,) = builder.on_trade(T0 + MIN + 30 * SEC, 101.0, 1)  # minute 1: the last closed
    assert event.bar.revision == 1

    no_window = three_minutes(revision_window=0)
    assert no_window.on_trade(T0 + MIN + 30 * SEC, 101.0, 1) == []
    assert no_window.late_dropped[M1] == 1


def test_gaps_inside_the_window_are_filled_and_push_the_oldest_bar_out() -> None:
    builder = BarBuilder("AAPL", [M1], revision_window=2)
    for minute in (0, 5, 7, 8):
        builder.on_trade(T0 + minute * MIN, 100.0, 1)
    # Closed: minutes 0, 5, 7; the window is 5 and 7. Minute 4 (a gap) is too old.
    assert builder.on_trade(T0 + 4 * MIN, 100.0, 1) == []
    assert builder.late_dropped[M1] == 1

    (gap,) = builder.on_trade(T0 + 6 * MIN, 101.0, 1)  # a gap inside the window
    assert (gap.bar.start_ms, gap.bar.revision) == (T0 + 6 * MIN, 1)
    # It took minute 5's place in the window: the window is now 6 and 7.
    assert builder.on_trade(T0 + 5 * MIN + 1, 100.0, 1) == []
    assert builder.late_dropped[M1] == 2
    (seven,) = builder.on_trade(T0 + 7 * MIN + 1, 102.0, 1)
    (six,) = builder.on_trade(T0 + 6 * MIN + 1, 103.0, 1)
    assert [(e.bar.start_ms, e.bar.revision, e.bar.trades) for e in (seven, six)] == [
        (T0 + 7 * MIN, 1, 2),
        (T0 + 6 * MIN, 2, 2),
    ]
    assert [((b.start_ms - T0) // MIN, b.revision, b.trades) for b in builder.recent(M1)] == [
        (0, 0, 1),
        (5, 0, 1),
        (6, 2, 2),
        (7, 1, 2),
    ]


def test_a_print_too_late_for_its_second_still_counts_in_the_forming_minute() -> None:
    builder = BarBuilder("AAPL", [S1, M1], revision_window=0)
    builder.on_trade(T0 + 1 * SEC, 100.0, 10)
    builder.on_trade(T0 + 5 * SEC, 100.0, 10)  # closes second 1
    assert builder.on_trade(T0 + 1 * SEC + 500, 90.0, 5) == []

    assert builder.late_dropped == {S1: 1, M1: 0}
    forming = builder.forming(M1)
    assert forming is not None and (forming.volume, forming.low, forming.trades) == (25, 90.0, 3)
    builder.on_trade(T0 + 5 * SEC + 1, 100.0, 10)
    (second, minute) = builder.on_clock(T0 + 2 * MIN)
    assert (second.bar.timeframe, second.bar.volume) == (S1, 20)
    assert (minute.bar.timeframe, minute.bar.volume, minute.bar.open) == (M1, 35, 100.0)


def test_a_trade_for_an_interval_the_clock_has_sealed_is_late() -> None:
    builder = BarBuilder("AAPL", [M1], close_delay_ms=500)
    builder.on_trade(T0 + 10 * SEC, 100.0, 10)
    builder.on_clock(T0 + 2 * MIN + 500)  # closes minute 0; minute 1 is final and empty

    (event,) = builder.on_trade(T0 + MIN + 59 * SEC, 101.0, 1)
    assert (event.kind, event.bar.start_ms, event.bar.revision) == (
        BarEventKind.REVISION,
        T0 + MIN,
        1,
    )
    assert builder.forming(M1) is None
    # Minute 2 is not final yet (its end + grace is still ahead): a normal forming bar.
    assert builder.on_trade(T0 + 2 * MIN + 1, 102.0, 1) == []
    forming = builder.forming(M1)
    assert forming is not None and forming.start_ms == T0 + 2 * MIN


def test_open_and_close_follow_trade_times_not_arrival_order() -> None:
    builder = BarBuilder("AAPL", [S1, M1])
    builder.on_trade(T0 + 2 * SEC + 10, 10.0, 1)
    builder.on_trade(T0 + 2 * SEC + 5, 9.0, 1)  # earlier print, arriving later
    builder.on_trade(T0 + 2 * SEC + 10, 11.0, 1)  # same ms as the last: arrival decides
    for tf in (S1, M1):
        forming = builder.forming(tf)
        assert forming is not None and (forming.open, forming.close) == (9.0, 11.0)


def test_randomly_reordered_prints_give_the_same_bars_as_a_recomputation() -> None:
    rng = random.Random(20240308)
    times = sorted(rng.sample(range(T0, T0 + 3 * 3_600_000), 4_000))  # unique milliseconds
    prints = [(t, round(rng.uniform(99, 101), 2), rng.randint(1, 500)) for t in times]
    # Every print arrives up to 90 s late (the first stays first, so nothing precedes the
    # first bar); the clock follows the arrivals with a grace of 1 s.
    arrival = [prints[0], *sorted(prints[1:], key=lambda x: x[0] + rng.uniform(0, 90_000))]
    builder = BarBuilder("AAPL", revision_window=100_000, history=100_000, close_delay_ms=1_000)
    events: list[BarEvent] = []
    newest = 0
    for t, p, s in arrival:
        events += builder.on_trade(t, p, s)
        newest = max(newest, t)
        if rng.random() < 0.1:
            events += builder.on_clock(newest)
    events += builder.on_clock(newest + 2 * 86_400_000)

    assert sum(e.kind is BarEventKind.REVISION for e in events) > 100  # the test bites
    assert builder.late_dropped == dict.fromkeys(ALL_TIMEFRAMES, 0)
    for tf in ALL_TIMEFRAMES:
        expected = recompute(prints, tf)
        bars = builder.recent(tf)
        assert [b.start_ms for b in bars] == list(expected), tf
        for bar in bars:
            assert_bar_is(bar, expected[bar.start_ms])
        # Each bar's last event carries its final state; closes come in time order.
        last: dict[int, Bar] = {}
        close_starts = []
        for e in events:
            if e.bar.timeframe is tf:
                last[e.bar.start_ms] = e.bar
                assert (e.kind is BarEventKind.CLOSE) == (e.bar.revision == 0)
                if e.kind is BarEventKind.CLOSE:
                    close_starts.append(e.bar.start_ms)
        assert sorted(last.values(), key=lambda b: b.start_ms) == bars
        assert close_starts == sorted(close_starts)


# -- daylight saving time ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("day_before", "day", "next_day", "hours"),
    [
        ("2024-03-09", "2024-03-10", "2024-03-11", 23),  # clocks go forward at 02:00
        ("2024-11-02", "2024-11-03", "2024-11-04", 25),  # clocks go back at 02:00
    ],
)
def test_daily_bars_span_the_new_york_day_on_dst_changes(
    day_before: str, day: str, next_day: str, hours: int
) -> None:
    start, end = ny_ms(day), ny_ms(next_day)
    assert end - start == hours * 3_600_000
    builder = BarBuilder("AAPL", [M1, H1, D1])
    builder.on_trade(start - 1, 50.0, 1)  # the last millisecond of the day before
    hourly = [(start + h * 3_600_000 + 7, 100.0 + h, 10) for h in range(hours)]
    events = feed(builder, [*hourly, (end - 1, 200.0, 1), (end, 300.0, 1)])

    days = closes(events, D1)
    assert [(b.start_ms, b.end_ms) for b in days] == [(ny_ms(day_before), start), (start, end)]
    the_day = days[-1]
    assert (the_day.start_ms, the_day.end_ms) == (start, end)
    assert (the_day.open, the_day.close, the_day.high) == (100.0, 200.0, 200.0)
    assert (the_day.volume, the_day.trades) == (10 * hours + 1, hours + 1)
    hours_inside = [b for b in closes(events, H1) if start <= b.start_ms < end]
    assert len(hours_inside) == hours


# -- input hygiene, API edges ------------------------------------------------------------


def test_zero_or_negative_sizes_and_non_positive_or_non_finite_prices_are_ignored() -> None:
    builder = BarBuilder("AAPL", [S1, M1])
    builder.on_trade(T0, 10.0, 5)
    for t, p, s in [
        (T0 + 1, 11.0, 0),
        (T0 + 2, 11.0, -5),
        (T0 + 3, 0.0, 5),
        (T0 + 4, -1.0, 5),
        (T0 + 5, float("nan"), 5),
        (T0 + 6, float("inf"), 5),
        (T0 + MIN, 12.0, 0),  # would otherwise close the minute
    ]:
        assert builder.on_trade(t, p, s) == []
    assert builder.ignored == 7
    assert builder.forming(M1) == Bar("AAPL", M1, T0, T0 + MIN, 10.0, 10.0, 10.0, 10.0, 5, 10.0, 1)


def test_recent_returns_the_newest_bars_oldest_first_within_the_history_bound() -> None:
    builder = BarBuilder("AAPL", [M1], history=3)
    for minute in range(6):
        builder.on_trade(T0 + minute * MIN, 100.0 + minute, 1)
    assert [b.open for b in builder.recent(M1)] == [102.0, 103.0, 104.0]
    assert [b.open for b in builder.recent(M1, 2)] == [103.0, 104.0]
    assert builder.recent(M1, 0) == []
    assert builder.recent(M1, 100) == builder.recent(M1)


def test_asking_for_a_timeframe_not_built_or_bad_options_is_an_error() -> None:
    builder = BarBuilder("AAPL", [M1, M5])
    assert builder.timeframes == (M1, M5)
    with pytest.raises(ValueError, match="no 1h bars"):
        builder.recent(H1)
    with pytest.raises(ValueError, match="no 1s bars"):
        builder.forming(S1)
    with pytest.raises(ValueError):
        BarBuilder("AAPL", [])
    with pytest.raises(ValueError):
        BarBuilder("AAPL", [M1], history=0)
    with pytest.raises(ValueError):
        BarBuilder("AAPL", [M1], revision_window=-1)


def test_bar_book_keeps_symbols_apart_and_closes_all_on_the_clock() -> None:
    book = BarBook([M1], close_delay_ms=0)
    book.on_trade("AAPL", T0 + 1, 10.0, 1)
    book.on_trade("MSFT", T0 + 2, 20.0, 2)
    book.on_trade("AAPL", T0 + 3, 11.0, 3)
    assert len(book) == 2 and book.get("TSLA") is None

    events = book.on_clock(T0 + MIN)
    assert sorted((e.bar.symbol, e.bar.volume) for e in events) == [("AAPL", 4), ("MSFT", 2)]
    builder = book.get("AAPL")
    assert builder is not None and builder.recent(M1)[0].close == 11.0


# -- cross-checking with Polygon's aggregates --------------------------------------------


def test_compare_with_aggregate_accepts_a_match_and_names_each_difference() -> None:
    builder = BarBuilder("AAPL", [S1, M1], close_delay_ms=0)
    builder.on_trade(T0 + 100, 10.0, 100)
    builder.on_trade(T0 + 200, 10.2, 300)
    builder.on_trade(T0 + 300, 10.1, 100)
    second, minute = (e.bar for e in builder.on_clock(T0 + MIN))
    vwap = round(minute.vwap, 4)  # Polygon rounds vw to four decimals

    am = MinuteAggregate(
        sym="AAPL", o=10.0, h=10.2, l=10.0, c=10.1, v=500, s=T0, e=T0 + MIN, vw=vwap
    )
    assert compare_with_aggregate(minute, am) == []
    a = Aggregate(sym="AAPL", o=10.0, h=10.2, l=10.0, c=10.1, v=500, s=T0, e=T0 + SEC, vw=vwap)
    assert compare_with_aggregate(second, a) == []
    assert compare_with_aggregate(second, msgspec.structs.replace(a, vw=0.0)) == []  # no vw

    off = MinuteAggregate(
        sym="AAPL", o=10.0, h=10.25, l=10.0, c=10.1, v=480, s=T0, e=T0 + MIN, vw=vwap + 0.01
    )
    diffs = compare_with_aggregate(minute, off)
    assert [d.split(":")[0] for d in diffs] == ["high", "vwap", "volume"]
    assert compare_with_aggregate(minute, off, price_tolerance=0.1, volume_tolerance=20) == []

    wrong = compare_with_aggregate(second, am)  # a minute aggregate for a 1s bar
    assert [d.split(":")[0] for d in wrong] == ["timeframe", "window"]


# -- which prints count: the consolidated tape's condition rules -------------------------


def test_conditions_decide_what_a_print_updates() -> None:
    from streams.conditions import flags_for

    b = BarBuilder("X", [M1, D1])
    b.on_trade(T0, 100.0, 100)
    b.on_trade(T0 + 1, 100.2, 100)
    b.on_trade(T0 + 2, 10_000.0, 5, flags_for((37,)))  # odd lot: volume only
    b.on_trade(T0 + 3, 1.0, 500, flags_for((2,)))  # average price: volume only
    b.on_trade(T0 + 4, 100.5, 10, flags_for((10,)))  # derivatively priced: no last
    b.on_trade(T0 + 5, 99.0, 0)  # a size-0 marker: nothing
    b.on_trade(T0 + 6, 98.0, 100, 0)  # no flags at all: nothing
    (day,) = [x for x in [b.forming(D1)] if x is not None]
    assert (day.open, day.high, day.low, day.close) == (100.0, 100.5, 100.0, 100.2)
    assert day.volume == 100 + 100 + 5 + 500 + 10
    assert day.trades == 5 and b.ignored == 2
    assert day.vwap == pytest.approx(
        (100.0 * 100 + 100.2 * 100 + 10_000.0 * 5 + 1.0 * 500 + 100.5 * 10) / 715
    )


def test_a_bucket_of_volume_only_prints_has_no_bar_but_its_volume_counts() -> None:
    from streams.conditions import VOLUME

    b = BarBuilder("X", [M1, M5])
    b.on_trade(T0, 10.0, 100)
    events = b.on_trade(T0 + MIN + 5, 11.0, 7, VOLUME)  # minute 1: odd lots only
    events += b.on_trade(T0 + 2 * MIN, 10.5, 100)
    closes = [e.bar for e in events if e.kind is BarEventKind.CLOSE]
    assert [c.start_ms for c in closes] == [T0]  # no bar for minute 1
    five = b.forming(M5)
    assert five is not None and five.volume == 207 and five.high == 10.5


def test_high_low_prints_alone_make_a_well_formed_bar() -> None:
    from streams.conditions import HIGH_LOW, VOLUME

    b = BarBuilder("X", [S1, M1])
    b.on_trade(T0, 10.0, 100, HIGH_LOW | VOLUME)
    b.on_trade(T0 + 10, 10.4, 100, HIGH_LOW | VOLUME)
    one = b.forming(S1)
    assert one is not None and (one.open, one.high, one.low, one.close) == (10.0, 10.4, 10.0, 10.4)
    b.on_trade(T0 + 20, 10.2, 100)  # a last-price print: the open and close are its own
    one = b.forming(S1)
    assert one is not None and (one.open, one.high, one.low, one.close) == (10.2, 10.4, 10.0, 10.2)


def test_a_late_odd_lot_revises_volume_only() -> None:
    from streams.conditions import VOLUME

    b = BarBuilder("X", [M1])
    b.on_trade(T0, 10.0, 100)
    b.on_trade(T0 + MIN, 10.1, 100)  # closes minute 0
    (rev,) = b.on_trade(T0 + 30, 50.0, 3, VOLUME)
    assert rev.kind is BarEventKind.REVISION
    assert (rev.bar.high, rev.bar.close, rev.bar.volume, rev.bar.revision) == (10.0, 10.0, 103, 1)


# -- restart and backfill ----------------------------------------------------------------

CUT = ny_ms("2012-06-21", 10, 12, 30)


def _replay(builder: BarBuilder, prints: Iterable[Print]) -> list[BarEvent]:
    out: list[BarEvent] = []
    for t, p, s in prints:
        out += builder.on_trade(t, p, s)
    return out


def _same(a: Bar, b: Bar) -> bool:
    exact = (a.start_ms, a.end_ms, a.open, a.high, a.low, a.close, a.volume, a.trades)
    return exact == (b.start_ms, b.end_ms, b.open, b.high, b.low, b.close, b.volume, b.trades) and (
        abs(a.vwap - b.vwap) <= 1e-9 * a.vwap
    )


def test_a_builder_restored_from_stored_bars_goes_on_as_if_never_stopped() -> None:
    prints = amzn_trades()
    before = [x for x in prints if x[0] < CUT]
    after = [x for x in prints if x[0] >= CUT]
    reference = BarBuilder("AMZN")
    stored = [e.bar for e in _replay(reference, before) if e.bar.timeframe in (S1, M1)]
    stored += [e.bar for e in reference.on_clock(CUT + 500) if e.bar.timeframe in (S1, M1)]
    restored = BarBuilder("AMZN")
    assert restored.restore(stored) == []
    assert _same(restored.forming(D1), reference.forming(D1))  # type: ignore[arg-type]
    for tf in (M1, M5, M15, H1):
        assert _same(restored.forming(tf), reference.forming(tf)), tf  # type: ignore[arg-type]
        ours, theirs = restored.recent(tf), reference.recent(tf)
        assert len(ours) == len(theirs) and all(map(_same, ours, theirs)), tf
    ref_events = _replay(reference, after) + reference.on_clock(ny_ms("2012-06-22", 1))
    new_events = _replay(restored, after) + restored.on_clock(ny_ms("2012-06-22", 1))
    assert len(ref_events) == len(new_events)
    for a, b in zip(ref_events, new_events, strict=True):
        assert a.kind is b.kind and _same(a.bar, b.bar), (a, b)
    (day,) = [e.bar for e in new_events if e.bar.timeframe is D1]
    assert day.volume == AMZN_TRADE_VOLUME


def test_backfilled_bars_complete_the_day_and_revise_what_they_touch() -> None:
    prints = amzn_trades()
    gap_from, gap_to = ny_ms("2012-06-21", 10, 12), ny_ms("2012-06-21", 10, 20)
    reference = BarBuilder("AMZN")
    events = _replay(reference, prints) + reference.on_clock(ny_ms("2012-06-22"))
    minutes = [e.bar for e in events if e.bar.timeframe is M1]
    stored = [b for b in minutes if b.end_ms <= gap_from]
    restored = BarBuilder("AMZN", [M1, M5, H1, D1])
    restored.restore(stored)
    # The feed is back at 10:20; the backfill of 10:12-10:20 comes in a little later.
    resumed = gap_to + 90_000
    live = _replay(restored, [x for x in prints if gap_to <= x[0] < resumed])
    missed = [b for b in minutes if gap_from <= b.start_ms < gap_to]
    revisions = [e for b in missed for e in restored.insert_bar(b) or ()]
    assert restored.insert_bar(missed[0]) is None  # once is enough
    live += _replay(restored, [x for x in prints if x[0] >= resumed])
    live += restored.on_clock(ny_ms("2012-06-22", 1))
    (day,) = [e.bar for e in live if e.bar.timeframe is D1]
    assert day.volume == AMZN_TRADE_VOLUME and day.trades == len(prints)
    assert {e.bar.start_ms for e in revisions if e.bar.timeframe is M1} == {
        b.start_ms for b in missed
    }
    # The 10:15 five-minute bar had closed with nothing (a gap); the backfill made it.
    five = [e.bar for e in revisions if e.bar.timeframe is M5]
    assert five and all(e.revision >= 1 for e in five)
    hour = restored.recent(H1)
    assert [b.volume for b in hour] == [
        b.volume for b in reference.recent(H1)
    ]  # the 10:00 hour is whole again
