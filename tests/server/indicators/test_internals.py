"""The building blocks: the undoable monotonic window, the New York session clock,
and bounded float drift over long streams."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from server.indicators import WMA, BollingerBands, IndicatorSpec, Stochastic
from server.indicators.base import MonotonicWindow
from server.indicators.volume import clear_session_cache, ny_session
from server.market.timeframes import Bar, Timeframe
from server.market.trading_day import NEW_YORK, day_window


@pytest.mark.parametrize("size", [0, 1, 2, 5, 17])
def test_monotonic_window_push_undo(size: int) -> None:
    rng = random.Random(size)
    window = MonotonicWindow(size, max_rollback=10)
    values: list[float] = []
    depth = 0
    for _ in range(5000):
        if depth and rng.random() < 0.4:
            window.undo()
            values.pop()
            depth -= 1
        else:
            v = float(rng.randrange(20))  # many ties
            window.push(v)
            values.append(v)
            depth = min(depth + 1, 10)
        expected = max(values[-size:]) if size and values else float("-inf")
        assert window.best == expected


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def test_ny_session_equals_day_window() -> None:
    rng = random.Random(7)
    times = [rng.randrange(0, 2_200_000_000_000) for _ in range(20_000)]
    for year in (1999, 2007, 2012, 2024, 2040):  # DST rule change in 2007; past 2037
        for month in (3, 4, 10, 11):
            for day in range(1, 31):
                midnight = _ms(datetime(year, month, day, tzinfo=NEW_YORK))
                times += [midnight - 1, midnight, midnight + 1, midnight + 7_200_000]
    clear_session_cache()
    for t in times:
        window = day_window(t)
        assert ny_session(t) == (window.start_ms, window.end_ms), t


def _bar(t: datetime, price: float, volume: int) -> Bar:
    start = _ms(t)
    return Bar(
        symbol="X",
        timeframe=Timeframe.H1,
        start_ms=start,
        end_ms=start + 3_600_000,
        open=price,
        high=price,
        low=price,
        close=price,
        volume=volume,
        vwap=price,
        trades=1,
        final=True,
    )


def test_vwap_session_follows_new_york_midnight_across_dst() -> None:
    # 2024-03-10: clocks go forward in New York (a 23-hour day).
    ny = NEW_YORK
    bars = [
        _bar(datetime(2024, 3, 9, 23, 0, tzinfo=ny), 10.0, 100),
        _bar(datetime(2024, 3, 10, 0, 0, tzinfo=ny), 20.0, 100),  # new session
        _bar(datetime(2024, 3, 10, 23, 0, tzinfo=ny), 30.0, 100),  # same (23h day)
        _bar(datetime(2024, 3, 11, 4, 0, tzinfo=UTC), 40.0, 100),  # 00:00 EDT: new
    ]
    ind = IndicatorSpec.parse("VWAP").create()
    got = []
    for bar in bars:
        ind.add(bar)
        got.append(ind.value)
    assert got == [(10.0,), (20.0,), (25.0,), (40.0,)]


def _walk(n: int, seed: int, level: float, step: float) -> list[Bar]:
    rng = random.Random(seed)
    t0 = _ms(datetime(2024, 1, 2, 9, 30, tzinfo=NEW_YORK))
    bars = []
    price = level
    for i in range(n):
        price += rng.gauss(0.0, step)
        hi = price + abs(rng.gauss(0.0, step))
        lo = price - abs(rng.gauss(0.0, step))
        start = t0 + i * 1000
        bars.append(
            Bar("X", Timeframe.S1, start, start + 1000, price, hi, lo, price, 100, price, 1, True)
        )
    return bars


def test_running_sums_do_not_drift() -> None:
    """100,000 one-second bars of a 50,000-dollar asset moving by cents: the window
    sums are re-summed exactly, so the last values are as good as a fresh computation
    (TA-Lib's never-re-summed running sums drift here)."""
    bars = _walk(100_000, seed=3, level=50_000.0, step=0.01)
    closes = [b.close for b in bars]
    tail = closes[-20:]
    mean = math.fsum(tail) / 20
    sigma = math.sqrt(math.fsum((x - mean) ** 2 for x in tail) / 20)

    bb = BollingerBands(20, 2.0)
    wma = WMA(20)
    stoch = Stochastic(14, 3, 3)
    for bar in bars:
        bb.add(bar)
        wma.add(bar)
        stoch.add(bar)
    upper, middle, lower = bb.value or (0.0, 0.0, 0.0)
    assert middle == pytest.approx(mean, rel=1e-13)
    # The band width is 4 sigma (~0.1 on a 50,000 price): relative to it, 1e-9.
    assert upper - middle == pytest.approx(2 * sigma, rel=1e-9)
    assert middle - lower == pytest.approx(2 * sigma, rel=1e-9)
    expected_wma = math.fsum(w * x for w, x in zip(range(1, 21), tail, strict=True)) / 210
    assert (wma.value or (0.0,))[0] == pytest.approx(expected_wma, rel=1e-13)
    fast = []
    for i in range(len(bars) - 5, len(bars)):
        window = bars[i - 13 : i + 1]
        hh = max(b.high for b in window)
        ll = min(b.low for b in window)
        fast.append(100.0 * (bars[i].close - ll) / (hh - ll))
    k = [math.fsum(fast[j : j + 3]) / 3 for j in range(3)]
    assert (stoch.value or (0.0, 0.0)) == pytest.approx((k[2], math.fsum(k) / 3), rel=1e-12)


def test_bounded_memory() -> None:
    """History is bounded by period + max_rollback, however long the stream."""
    ind = IndicatorSpec.parse("BBANDS(20,2)").create(max_rollback=64)
    for bar in _walk(5_000, seed=1, level=100.0, step=0.1):
        ind.add(bar)
    assert isinstance(ind, BollingerBands)
    assert len(ind._ring) <= 20 + 64
    assert len(ind._hist) <= 64
    assert np.isfinite(ind.value or ()).all()


def test_zero_range_windows() -> None:
    """Flat prices: Bollinger sigma 0, stochastic 0 (TA-Lib), RSI 0 (TA-Lib), ADX holds."""
    t0 = datetime(2024, 1, 2, 10, tzinfo=NEW_YORK)
    flat = [_bar(t0 + timedelta(minutes=i), 5.0, 10) for i in range(60)]
    values = {}
    for key in ("BBANDS(20,2)", "STOCH(14,3,3)", "RSI(14)", "ADX(14)", "ATR(14)"):
        ind = IndicatorSpec.parse(key).create()
        for bar in flat:
            ind.add(bar)
        values[key] = ind.value
    assert values["BBANDS(20,2)"] == (5.0, 5.0, 5.0)
    assert values["STOCH(14,3,3)"] == (0.0, 0.0)
    assert values["RSI(14)"] == (0.0,)
    assert values["ADX(14)"] == (0.0, 0.0, 0.0)
    assert values["ATR(14)"] == (0.0,)
