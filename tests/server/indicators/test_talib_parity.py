"""Every indicator, fed the daily bars one at a time, equals TA-Lib after its warm-up."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
import talib
from talib import abstract

from server.indicators import IndicatorSpec
from server.market.timeframes import Bar, Timeframe
from tests.server.indicators.bars import SYMBOLS, assert_close, daily, feed

A = npt.NDArray[np.float64]
_SMA = talib.MA_Type.SMA  # type: ignore[attr-defined]  # (matype=0)
Reference = Callable[[A, A, A, A], tuple[A, ...]]


def _donchian(h: A, lo: A, p: int) -> tuple[A, A, A]:
    upper, lower = talib.MAX(h, p), talib.MIN(lo, p)
    return upper, (upper + lower) / 2.0, lower


def _stoch(h: A, lo: A, c: A, periods: tuple[int, int, int]) -> tuple[A, A]:
    k, ks, d = periods
    slow_k, slow_d = talib.STOCH(
        h,
        lo,
        c,
        fastk_period=k,
        slowk_period=ks,
        slowk_matype=_SMA,
        slowd_period=d,
        slowd_matype=_SMA,
    )
    return slow_k, slow_d


# key -> (TA-Lib reference, TA-Lib function name and parameters for its lookback)
CASES: dict[str, tuple[Reference, str, dict[str, float]]] = {
    "SMA(20)": (lambda h, lo, c, v: (talib.SMA(c, 20),), "SMA", {"timeperiod": 20}),
    "SMA(3)": (lambda h, lo, c, v: (talib.SMA(c, 3),), "SMA", {"timeperiod": 3}),
    "EMA(20)": (lambda h, lo, c, v: (talib.EMA(c, 20),), "EMA", {"timeperiod": 20}),
    "EMA(200)": (lambda h, lo, c, v: (talib.EMA(c, 200),), "EMA", {"timeperiod": 200}),
    "WMA(20)": (lambda h, lo, c, v: (talib.WMA(c, 20),), "WMA", {"timeperiod": 20}),
    "WMA(7)": (lambda h, lo, c, v: (talib.WMA(c, 7),), "WMA", {"timeperiod": 7}),
    "RSI(14)": (lambda h, lo, c, v: (talib.RSI(c, 14),), "RSI", {"timeperiod": 14}),
    "RSI(2)": (lambda h, lo, c, v: (talib.RSI(c, 2),), "RSI", {"timeperiod": 2}),
    "MACD(12,26,9)": (
        lambda h, lo, c, v: talib.MACD(c, 12, 26, 9),
        "MACD",
        {"fastperiod": 12, "slowperiod": 26, "signalperiod": 9},
    ),
    "MACD(5,35,5)": (
        lambda h, lo, c, v: talib.MACD(c, 5, 35, 5),
        "MACD",
        {"fastperiod": 5, "slowperiod": 35, "signalperiod": 5},
    ),
    "BBANDS(20,2)": (
        lambda h, lo, c, v: talib.BBANDS(c, 20, nbdevup=2, nbdevdn=2, matype=_SMA),
        "BBANDS",
        {"timeperiod": 20},
    ),
    "BBANDS(10,1.5)": (
        lambda h, lo, c, v: talib.BBANDS(c, 10, nbdevup=1.5, nbdevdn=1.5, matype=_SMA),
        "BBANDS",
        {"timeperiod": 10},
    ),
    "ATR(14)": (lambda h, lo, c, v: (talib.ATR(h, lo, c, 14),), "ATR", {"timeperiod": 14}),
    "ATR(5)": (lambda h, lo, c, v: (talib.ATR(h, lo, c, 5),), "ATR", {"timeperiod": 5}),
    "STOCH(14,3,3)": (
        lambda h, lo, c, v: _stoch(h, lo, c, (14, 3, 3)),
        "STOCH",
        {"fastk_period": 14, "slowk_period": 3, "slowd_period": 3},
    ),
    "STOCH(5,1,4)": (
        lambda h, lo, c, v: _stoch(h, lo, c, (5, 1, 4)),
        "STOCH",
        {"fastk_period": 5, "slowk_period": 1, "slowd_period": 4},
    ),
    "OBV": (lambda h, lo, c, v: (talib.OBV(c, v),), "OBV", {}),
    "ADX(14)": (
        lambda h, lo, c, v: (
            talib.ADX(h, lo, c, 14),
            talib.PLUS_DI(h, lo, c, 14),
            talib.MINUS_DI(h, lo, c, 14),
        ),
        "ADX",
        {"timeperiod": 14},
    ),
    "ADX(5)": (
        lambda h, lo, c, v: (
            talib.ADX(h, lo, c, 5),
            talib.PLUS_DI(h, lo, c, 5),
            talib.MINUS_DI(h, lo, c, 5),
        ),
        "ADX",
        {"timeperiod": 5},
    ),
    "DONCHIAN(20)": (lambda h, lo, c, v: _donchian(h, lo, 20), "MAX", {"timeperiod": 20}),
    "DONCHIAN(55)": (lambda h, lo, c, v: _donchian(h, lo, 55), "MAX", {"timeperiod": 55}),
}


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("key", CASES)
def test_incremental_equals_talib(symbol: str, key: str) -> None:
    reference, _, _ = CASES[key]
    series = daily(symbol)
    h, lo, c, v = (series.array(f) for f in ("high", "low", "close", "volume"))
    spec = IndicatorSpec.parse(key)
    got = feed(spec.create(), series.bars)
    expected = reference(h, lo, c, v)
    for name, g, e in zip(spec.outputs, got, expected, strict=True):
        # Each output starts where TA-Lib's does (ADX's DIs at bar n, before the ADX).
        w = spec.warmup if not (spec.kind == "ADX" and name != "adx") else int(spec.params[0])
        assert np.isnan(g[:w]).all() and np.isnan(e[:w]).all(), f"{key}.{name} starts early"
        assert_close(g[w:], e[w:], f"{symbol} {key}.{name}")


@pytest.mark.parametrize("key", CASES)
def test_warmup_is_talib_lookback(key: str) -> None:
    _, function, params = CASES[key]
    ta = abstract.Function(function)  # type: ignore[attr-defined]
    ta.parameters = params
    assert IndicatorSpec.parse(key).warmup == ta.lookback
    assert IndicatorSpec.parse(key).create().warmup == ta.lookback


def test_macd_seeds_its_fast_ema_like_talib() -> None:
    """TA-Lib starts both MACD EMAs on bar slow-1, so the fast EMA is NOT the
    standalone EMA(fast) seeded on bar fast-1; the two differ measurably."""
    c = daily("NVDA").array("close")
    macd, _, _ = talib.MACD(c, 12, 26, 9)
    standalone = talib.EMA(c, 12) - talib.EMA(c, 26)
    assert abs(macd[33] - standalone[33]) > 1e-6
    got = feed(IndicatorSpec.parse("MACD(12,26,9)").create(), daily("NVDA").bars)
    assert got[0][33] == pytest.approx(macd[33], rel=1e-12)


def _tiny_moves() -> tuple[list[Bar], A, A, A]:
    """200 bars around 5.0 moving by ~1e-10: below classic TA-Lib's 1e-8 'zero'."""
    rng = np.random.default_rng(2)
    c = 5.0 + np.cumsum(rng.normal(0.0, 1e-10, 200))
    h = c + np.abs(rng.normal(0.0, 1e-10, 200))
    lo = c - np.abs(rng.normal(0.0, 1e-10, 200))
    bars = [
        Bar("X", Timeframe.M1, i * 60_000, (i + 1) * 60_000, c[i], h[i], lo[i], c[i], 1, c[i], 1)
        for i in range(200)
    ]
    return bars, h, lo, c


def test_no_absolute_zero_thresholds() -> None:
    """Scale-free zero tests, like TA-Lib 0.8: tiny moves still give ADX, DI, RSI."""
    bars, h, lo, c = _tiny_moves()
    adx = feed(IndicatorSpec.parse("ADX(14)").create(), bars)
    expected = (talib.ADX(h, lo, c, 14), talib.PLUS_DI(h, lo, c, 14), talib.MINUS_DI(h, lo, c, 14))
    for g, e in zip(adx, expected, strict=True):
        assert_close(g[27:], e[27:], "ADX on tiny moves")
    rsi = feed(IndicatorSpec.parse("RSI(14)").create(), bars)
    assert_close(rsi[0][14:], talib.RSI(c, 14)[14:], "RSI on tiny moves")
    assert 0.0 < rsi[0][-1] < 100.0


def test_bollinger_sigma_keeps_its_digits_on_tiny_moves() -> None:
    """sigma ~ 2e-11 of the price, where mean(x^2) - mean(x)^2 (classic TA-Lib) would
    be pure rounding noise: the bands still match a two-pass standard deviation."""
    bars, _, _, c = _tiny_moves()
    got = feed(IndicatorSpec.parse("BBANDS(20,2)").create(), bars)
    sigma = np.lib.stride_tricks.sliding_window_view(c, 20).std(axis=1)
    half = got[0][19:] - got[1][19:]
    # The half-width is the difference of two numbers near 5: ~1e-15 absolute noise.
    np.testing.assert_allclose(half, 2 * sigma, rtol=0, atol=5e-15)
    np.testing.assert_allclose(got[1][19:], talib.SMA(c, 20)[19:], rtol=1e-14)
