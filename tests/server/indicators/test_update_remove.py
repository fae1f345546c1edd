"""talipp semantics: ``update`` replaces the forming bar without a trace, ``remove``
rolls back, and any mix of the three equals a fresh run over the resulting bars."""

from __future__ import annotations

import random

import msgspec
import pytest

from server.indicators import (
    SMA,
    IndicatorSpec,
    IndicatorStateError,
    RollbackLimitExceeded,
)
from server.indicators.base import Indicator
from server.market.timeframes import Bar
from tests.server.indicators.bars import SYMBOLS, daily, hourly, partials

KEYS = (
    "SMA(20)",
    "EMA(20)",
    "WMA(20)",
    "RSI(14)",
    "MACD(12,26,9)",
    "BBANDS(20,2)",
    "ATR(14)",
    "STOCH(14,3,3)",
    "VWAP",
    "OBV",
    "ADX(14)",
    "DONCHIAN(20)",
    # Small periods: every phase boundary is hit early and often.
    "SMA(2)",
    "MACD(2,3,2)",
    "STOCH(3,2,2)",
    "ADX(2)",
    "RSI(1)",
    "DONCHIAN(1)",
)


def _fresh(key: str, bars: list[Bar]) -> Indicator:
    ind = IndicatorSpec.parse(key).create()
    for bar in bars:
        ind.add(bar)
    return ind


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("key", KEYS)
def test_updates_of_the_forming_bar_leave_no_trace(symbol: str, key: str) -> None:
    spec = IndicatorSpec.parse(key)
    live = spec.create()  # add(first tick), update(...), update(final bar)
    closed = spec.create()  # add(final bar) only
    for bar in daily(symbol).bars[:800]:
        ticks = partials(bar, 5)
        live.add(ticks[0])
        closed.add(ticks[0])
        assert live.value == closed.value
        for tick in ticks[1:]:
            live.update(tick)
            # The provisional value is what a closed bar equal to the tick would give.
            closed.remove()
            closed.add(tick)
            assert live.value == closed.value
    assert live.count == closed.count == 800


@pytest.mark.parametrize("key", KEYS)
def test_random_add_update_remove_equals_a_fresh_run(key: str) -> None:
    rng = random.Random(f"indicators-{key}")
    source = hourly("YHOO", per_day=3).bars  # several bars a day: VWAP sessions too
    max_rollback = 8
    ind = IndicatorSpec.parse(key).create(max_rollback=max_rollback)
    bars: list[Bar] = []
    removed: list[Bar] = []  # most recent last: re-added as revisions
    depth = 0  # removes available in a row
    nxt = 0
    for step in range(2500):
        r = rng.random()
        if r < 0.2 and depth > 0:
            ind.remove()
            removed.append(bars.pop())
            depth -= 1
        elif r < 0.45 and bars:
            last = bars[-1]
            tick = msgspec.structs.replace(
                last,
                close=last.close * rng.uniform(0.97, 1.03),
                high=last.high * rng.uniform(1.0, 1.03),
                volume=last.volume + rng.randrange(0, 10_000),
            )
            ind.update(tick)
            bars[-1] = tick
        else:
            if removed and rng.random() < 0.5:
                old = removed.pop()  # a closed bar revised by a late trade, re-added
                bar = msgspec.structs.replace(old, close=old.close * 1.001, revision=1)
            else:
                removed.clear()
                bar = source[nxt]
                nxt += 1
            ind.add(bar)
            bars.append(bar)
            depth = min(depth + 1, max_rollback)
        if step % 97 == 0 or step == 2499:
            fresh = _fresh(key, bars)
            assert ind.count == fresh.count == len(bars)
            assert ind.value == fresh.value, f"step {step}, {len(bars)} bars"
    assert len(bars) > 600  # past the exact re-summations (every 256 bars)


@pytest.mark.parametrize("key", KEYS)
def test_rolling_back_a_revised_closed_bar(key: str) -> None:
    bars = list(daily("ORCL").bars[:300])
    ind = _fresh(key, bars)
    for _ in range(3):
        ind.remove()
    revised = [msgspec.structs.replace(b, close=b.low, revision=1) for b in bars[-3:]]
    for bar in revised:
        ind.add(bar)
    assert ind.value == _fresh(key, bars[:-3] + revised).value


@pytest.mark.parametrize("key", KEYS)
def test_rollback_limit(key: str) -> None:
    bars = daily("NVDA").bars[:50]
    ind = IndicatorSpec.parse(key).create(max_rollback=5)
    for bar in bars:
        ind.add(bar)
    for _ in range(5):
        ind.remove()
    with pytest.raises(RollbackLimitExceeded, match="max_rollback=5"):
        ind.remove()
    assert ind.value == _fresh(key, list(bars[:45])).value
    ind.add(bars[45])  # usable again, one more remove allowed
    ind.remove()
    assert ind.value == _fresh(key, list(bars[:45])).value


@pytest.mark.parametrize("key", KEYS)
def test_misuse_on_an_empty_series(key: str) -> None:
    ind = IndicatorSpec.parse(key).create()
    bar = daily("NVDA").bars[0]
    assert ind.value is None and not ind.ready and ind.count == 0
    with pytest.raises(IndicatorStateError, match="before add"):
        ind.update(bar)
    with pytest.raises(IndicatorStateError, match="empty"):
        ind.remove()
    ind.add(bar)
    ind.remove()  # back to empty, like new
    assert ind.value is None and ind.count == 0
    with pytest.raises(IndicatorStateError):
        ind.remove()


def test_remove_down_to_empty_and_rebuild() -> None:
    bars = daily("YHOO").bars[:40]
    ind = SMA(5)
    for bar in bars:
        ind.add(bar)
    for _ in range(40):
        ind.remove()
    assert ind.count == 0 and ind.value is None
    for bar in bars:
        ind.add(bar)
    assert ind.value == _fresh("SMA(5)", list(bars)).value
