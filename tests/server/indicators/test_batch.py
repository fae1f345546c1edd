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


def test_vwap_resets_every_new_york_day() -> None:
    bars = hourly("NVDA", per_day=4).bars[:40]  # 4 bars a day, some with no volume
    vwap = feed(IndicatorSpec.parse("VWAP").create(), bars)[0]
    for day in range(10):
        session = bars[4 * day : 4 * day + 4]
        pv = v = 0.0
        for j, bar in enumerate(session):
            tp = (bar.high + bar.low + bar.close) / 3.0
            pv += tp * bar.volume
            v += bar.volume
            expected = pv / v if v else tp
            assert vwap[4 * day + j] == pytest.approx(expected, rel=1e-15)
