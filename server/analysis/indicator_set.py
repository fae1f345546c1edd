"""The standard indicator set of a snapshot, computed from closed bars with the same
incremental indicators the live path uses (``server.indicators``), so a value in an
analysis equals what a subscriber to that indicator sees for the same bars.

Only the last value is wanted, so each indicator is fed only the bars its last value
depends on: a window indicator (SMA, Bollinger, Donchian) its period, the session VWAP
the bars of the last bar's New York day, and a recursive one (EMA, RSI, MACD, ATR) all of
them (its start still weighs a little after 250 bars). Same values, half the work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from server.analysis.snapshot import Indicators
from server.indicators import IndicatorKind, IndicatorSpec
from server.indicators.volume import ny_session
from server.market.timeframes import OHLCV

#: (field names, spec) in the order of ``Indicators``.
_SET: tuple[tuple[tuple[str, ...], IndicatorSpec], ...] = (
    (("ema20",), IndicatorSpec.parse("EMA(20)")),
    (("sma50",), IndicatorSpec.parse("SMA(50)")),
    (("sma200",), IndicatorSpec.parse("SMA(200)")),
    (("rsi14",), IndicatorSpec.parse("RSI(14)")),
    (("macd", "macd_signal", "macd_hist"), IndicatorSpec.parse("MACD(12,26,9)")),
    (("atr14",), IndicatorSpec.parse("ATR(14)")),
    (("bb_upper", "bb_middle", "bb_lower"), IndicatorSpec.parse("BBANDS(20,2)")),
    (("donchian_upper", "_donchian_middle", "donchian_lower"), IndicatorSpec.parse("DONCHIAN(20)")),
)
_VWAP = IndicatorSpec.parse("VWAP")

#: Enough bars for SMA(200) plus the convergence of the recursive ones (EMA, RSI, MACD).
BARS_NEEDED = 250

#: Decimals kept per field (prices 4; RSI 2, as it is quoted).
_DECIMALS = {"rsi14": 2}


def _rounded(name: str, value: float) -> float | None:
    if not math.isfinite(value):
        return None
    return round(value, _DECIMALS.get(name, 4))


_WINDOWED = frozenset({IndicatorKind.SMA, IndicatorKind.BBANDS, IndicatorKind.DONCHIAN})


def _needed(spec: IndicatorSpec, bars: Sequence[OHLCV]) -> Sequence[OHLCV]:
    """The bars the last value of ``spec`` depends on."""
    if spec.kind in _WINDOWED:
        return bars[-int(spec.params[0]) :]
    if spec.kind is IndicatorKind.VWAP and bars:
        session_start = ny_session(bars[-1].start_ms)[0]
        first = len(bars)
        while first > 0 and bars[first - 1].start_ms >= session_start:
            first -= 1
        return bars[first:]
    return bars


def compute(bars: Sequence[OHLCV], *, intraday: bool) -> Indicators:
    """Every indicator of the set over ``bars`` (oldest first). The session VWAP only for
    intraday bars: on daily bars it would be each day's typical price."""
    values: dict[str, float | None] = {}
    specs = list(_SET)
    if intraday:
        specs.append((("vwap",), _VWAP))
    for names, spec in specs:
        indicator = spec.create(max_rollback=0)
        for bar in _needed(spec, bars):
            indicator.add(bar)
        outputs = indicator.value
        for i, name in enumerate(names):
            if not name.startswith("_"):
                values[name] = None if outputs is None else _rounded(name, outputs[i])
    return Indicators(**values)
