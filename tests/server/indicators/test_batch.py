"""The incremental indicators equal the independent numpy batch recomputation."""

from __future__ import annotations

import numpy as np
import pytest

from server.indicators import IndicatorSpec
from server.indicators.batch import compute
from tests.server.indicators.bars import SYMBOLS, assert_close, daily, feed, hourly

KEYS = (
    "SMA(20)",
    "SMA(1)",
    "EMA(20)",
    "EMA(1)",
    "WMA(20)",
    "RSI(14)",
    "MACD(12,26,9)",
    "MACD(1,2,1)",
    "BBANDS(20,2)",
    "BBANDS(1,2)",
    "ATR(14)",
    "ATR(1)",
    "STOCH(14,3,3)",
    "STOCH(1,1,1)",
    "VWAP",
    "OBV",
    "ADX(14)",
    "ADX(1)",
    "DONCHIAN(20)",
    "DONCHIAN(1)",
)


def _check(key: str, bars: tuple, label: str) -> None:  # type: ignore[type-arg]
    spec = IndicatorSpec.parse(key)
    got = feed(spec.create(), bars)
    expected = compute(spec, bars)
    w = spec.warmup
    for name, g, e in zip(spec.outputs, got, expected, strict=True):
        assert np.isnan(e[:w]).all(), f"{key}.{name}: batch warm-up differs"
        assert_close(g[w:], e[w:], f"{label} {key}.{name}")


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("key", KEYS)
def test_incremental_equals_batch_daily(symbol: str, key: str) -> None:
    _check(key, daily(symbol).bars, symbol)


@pytest.mark.parametrize("key", KEYS)
def test_incremental_equals_batch_intraday(key: str) -> None:
    """Several bars per New York day (VWAP resets), zero-volume bars."""
    _check(key, hourly("ORCL").bars[:8000], "ORCL hourly")


@pytest.mark.parametrize("key", ["VWAP", "VWAP_HLC3"])
def test_vwap_resets_every_new_york_day(key: str) -> None:
    """VWAP weighs each bar at its own trade-weighted price, VWAP_HLC3 at its typical
    price; both reset at New York midnight."""
    bars = hourly("NVDA", per_day=4).bars[:40]  # 4 bars a day, some with no volume
    vwap = feed(IndicatorSpec.parse(key).create(), bars)[0]
    for day in range(10):
        session = bars[4 * day : 4 * day + 4]
        pv = v = 0.0
        for j, bar in enumerate(session):
            price = bar.vwap if key == "VWAP" else (bar.high + bar.low + bar.close) / 3.0
            pv += price * bar.volume
            v += bar.volume
            expected = pv / v if v else price
            assert vwap[4 * day + j] == pytest.approx(expected, rel=1e-15)


def test_obv_anchored_starts_afresh_each_day_and_year() -> None:
    from server.market.timeframes import Timeframe

    bars = hourly("NVDA", per_day=4).bars[:40]
    anchored = feed(IndicatorSpec.parse("OBV").create(timeframe=Timeframe.H1), bars)[0]
    for day in range(10):
        session = bars[4 * day : 4 * day + 4]
        plain = feed(IndicatorSpec.parse("OBV").create(), session)[0]
        assert list(anchored[4 * day : 4 * day + 4]) == list(plain)
    yearly = daily("NVDA").bars
    obv = feed(IndicatorSpec.parse("OBV").create(timeframe=Timeframe.D1), yearly)[0]
    firsts = [i for i in range(1, len(yearly)) if _year(yearly[i]) != _year(yearly[i - 1])]
    assert firsts and all(obv[i] == yearly[i].volume for i in firsts)


def _year(bar: object) -> int:
    from datetime import datetime

    from server.market.trading_day import NEW_YORK

    return datetime.fromtimestamp(bar.start_ms / 1000, tz=NEW_YORK).year  # type: ignore[attr-defined]
