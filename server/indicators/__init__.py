"""Incremental technical indicators (pure: no I/O, no asyncio).

Every indicator implements ``Indicator``: ``add(bar)`` appends a bar, ``update(bar)``
replaces the forming bar, ``remove()`` rolls back (up to ``max_rollback`` bars),
``value`` is the latest outputs (a tuple named by ``outputs``) or ``None`` during
the ``warmup`` bars. All operations are O(1) (amortised) and memory is
O(period + max_rollback). See ``server.indicators.base`` for how.

Values agree with TA-Lib 0.8 to ~1e-12 relative (ADX, +DI/-DI, OBV, Donchian bit for
bit) with these deliberate differences, each documented in its module:

* ADX's +DI/-DI outputs start with the ADX (bar 2n-1), not at bar n.
* "Is zero" tests are exact, as in TA-Lib 0.8 (classic TA-Lib <= 0.6 used |x| < 1e-8,
  and computed Bollinger sigma^2 as mean(x^2) - mean(x)^2; we are as accurate as
  TA-Lib 0.8 there).
* VWAP (session-anchored on the New York day, typical price * volume) and the
  Donchian channel have no TA-Lib counterpart.
* Running window sums are re-summed exactly every ``max(256, period)`` bars, so
  float drift stays bounded on endless streams.

``server.indicators.batch`` recomputes everything over numpy arrays, independently,
for tests; it is not imported here.
"""

from server.indicators.base import (
    DEFAULT_MAX_ROLLBACK,
    Indicator,
    IndicatorStateError,
    RollbackLimitExceeded,
)
from server.indicators.moving_averages import EMA, SMA, WMA
from server.indicators.oscillators import MACD, RSI, Stochastic
from server.indicators.spec import IndicatorKind, IndicatorSpec, InvalidIndicator
from server.indicators.trend import ADX
from server.indicators.volatility import ATR, BollingerBands, DonchianChannel
from server.indicators.volume import OBV, VWAP

__all__ = [
    "ADX",
    "ATR",
    "DEFAULT_MAX_ROLLBACK",
    "EMA",
    "MACD",
    "OBV",
    "RSI",
    "SMA",
    "VWAP",
    "WMA",
    "BollingerBands",
    "DonchianChannel",
    "Indicator",
    "IndicatorKind",
    "IndicatorSpec",
    "IndicatorStateError",
    "InvalidIndicator",
    "RollbackLimitExceeded",
    "Stochastic",
]
