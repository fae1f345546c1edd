"""How much history a new indicator needs so that its value equals the one a server
running all along computes (to ``TOLERANCE``, relative).

* Windowed indicators (SMA, WMA, BBANDS, DONCHIAN, STOCH) depend on their last few
  bars only: the window is enough, exactly.
* Recursive ones (EMA, MACD, RSI, ATR, ADX) forget their start geometrically: an error
  in the seed shrinks by a factor ``r`` per bar (EMA(n): ``1 - 2/(n+1)``; Wilder's
  smoothing of RSI, ATR and ADX: ``1 - 1/n``). After ``k`` bars it is ``r**k`` of
  what it was, so ``k = log(TOLERANCE) / log(r)`` bars bring two series seeded at
  different points within the tolerance of each other. Stacked smoothings add up
  (MACD's signal EMA runs on the slow EMA; ADX smooths DX, which comes from smoothed
  sums: ``k`` is then found for ``k * r**k``). Beyond ``MAX_WARMUP`` bars (very long
  periods) the value is as good as the history allows.
* Anchored ones (VWAP, VWAP_HLC3, OBV) depend on every bar since their anchor: they are
  warmed up from the anchor (``anchor_start``), the start of the New York day, or of the
  year for OBV on daily bars.

Pure: no I/O.
"""

from __future__ import annotations

import math
from typing import Final

from server.indicators.spec import IndicatorKind, IndicatorSpec
from server.indicators.volume import ny_session, ny_year
from server.market.timeframes import Timeframe

#: Two values warmed from different starts agree to this (relative) after warm-up:
#: well inside the 1e-9 promised, with room for float rounding.
TOLERANCE: Final = 1e-12
#: Most bars fetched for a warm-up (the history providers' per-request cap).
MAX_WARMUP: Final = 50_000

_ANCHORED: Final = frozenset({IndicatorKind.VWAP, IndicatorKind.VWAP_HLC3, IndicatorKind.OBV})


def _forgetting(rate: float, stacked: bool = False) -> int:
    """Bars for an error shrinking by ``rate`` per bar to fall below ``TOLERANCE``
    (``stacked``: two smoothings in a row, ``k * rate**k``)."""
    if rate <= 0.0:
        return 1
    k = math.ceil(math.log(TOLERANCE) / math.log(rate))
    if stacked:
        while k * rate**k > TOLERANCE:
            k += max(1, k // 20)
    return k


def _ema_rate(period: int) -> float:
    return 1.0 - 2.0 / (period + 1)


def _wilder_rate(period: int) -> float:
    return 1.0 - 1.0 / period


def bars_needed(spec: IndicatorSpec) -> int | None:
    """Closed bars to feed before the live ones, or ``None`` for an anchored indicator
    (warm it from ``anchor_start`` instead)."""
    kind, p = spec.kind, spec.params
    if kind in _ANCHORED:
        return None
    warmup = spec.warmup
    extra: int
    match kind:
        case IndicatorKind.EMA:
            extra = _forgetting(_ema_rate(int(p[0])))
        case IndicatorKind.MACD:
            extra = _forgetting(_ema_rate(int(p[1]))) + _forgetting(_ema_rate(int(p[2])))
        case IndicatorKind.RSI | IndicatorKind.ATR:
            extra = _forgetting(_wilder_rate(int(p[0])))
        case IndicatorKind.ADX:
            extra = _forgetting(_wilder_rate(int(p[0])), stacked=True)
        case _:
            extra = 1  # windowed: the window (the warm-up) and the bar itself
    return min(MAX_WARMUP, warmup + extra)


def anchor_start(spec: IndicatorSpec, timeframe: Timeframe, t_ms: int) -> int | None:
    """Where an anchored indicator holding a bar that starts at ``t_ms`` starts afresh;
    ``None`` for the others."""
    if spec.kind not in _ANCHORED:
        return None
    if spec.kind is IndicatorKind.OBV and timeframe is Timeframe.D1:
        return ny_year(t_ms)[0]
    return ny_session(t_ms)[0]


__all__ = ["MAX_WARMUP", "TOLERANCE", "anchor_start", "bars_needed"]
