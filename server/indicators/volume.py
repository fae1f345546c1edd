"""Volume indicators: session VWAP and OBV.

* VWAP (no TA-Lib function), anchored to the New York trading day:
  ``VWAP = Σ typical*volume / Σ volume`` over the bars of the current session,
  where a bar's typical price is (high + low + close)/3 (TA-Lib TYPPRICE) and the
  session is the New York calendar day (midnight to midnight, via
  ``server.market.trading_day.day_window``) holding the bar's ``start_ms``; the sums reset
  at the first bar of each day. Pre- and post-market bars belong to their day's
  session. It is a bar-level approximation: it uses the typical price, not the
  bar's own trade VWAP. While the session's volume is zero the VWAP is the current
  bar's typical price. Warm-up 0. Bars must come in time order.
* OBV = TA-Lib OBV: starts at the first bar's volume, then adds the volume on an
  up close, subtracts it on a down close, keeps it on an unchanged close. Warm-up 0.
"""

from __future__ import annotations

from collections import deque
from datetime import date, datetime, timedelta

from server.indicators.base import DEFAULT_MAX_ROLLBACK, Indicator
from server.market.timeframes import OHLCV
from server.market.trading_day import NEW_YORK

_DAY_MS = 86_400_000
_EST_MS = 5 * 3_600_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_ZERO = timedelta()
_MIDNIGHTS: dict[int, int] = {}
_MIDNIGHTS_MAX = 4096


def _midnight_ms(day: int) -> int:
    """Epoch ms of New York midnight starting the ``day``-th calendar day after 1970-01-01.

    Memoised (process-wide, bounded): every symbol crosses the same midnights.
    """
    ms = _MIDNIGHTS.get(day)
    if ms is None:
        offset = NEW_YORK.utcoffset(datetime.fromordinal(_EPOCH_ORDINAL + day)) or _ZERO
        ms = day * _DAY_MS - (offset.days * 86_400 + offset.seconds) * 1000
        if len(_MIDNIGHTS) >= _MIDNIGHTS_MAX:
            _MIDNIGHTS.clear()
        _MIDNIGHTS[day] = ms
    return ms


def clear_session_cache() -> None:
    """Forget the memoised midnights (benchmarks use it to measure cold costs)."""
    _MIDNIGHTS.clear()


def ny_session(t_ms: int) -> tuple[int, int]:
    """``(start_ms, end_ms)`` of the New York calendar day holding ``t_ms``.

    The same as ``server.market.trading_day.day_window`` (tested against it), several times
    faster: New York midnight is 04:00 or 05:00 UTC, so the day is the one starting
    at the EST-day number of ``t_ms`` or the next.
    """
    k = (t_ms - _EST_MS) // _DAY_MS
    nxt = _midnight_ms(k + 1)
    if t_ms >= nxt:
        return nxt, _midnight_ms(k + 2)
    return _midnight_ms(k), nxt


class VWAP(Indicator):
    __slots__ = (
        "_fwe",
        "_fws",
        "_hist",
        "_pv",
        "_pv1",
        "_t",
        "_tp",
        "_v1",
        "_vol",
        "_we",
        "_ws",
    )

    outputs = ("vwap",)

    def __init__(self, *, max_rollback: int = DEFAULT_MAX_ROLLBACK) -> None:
        super().__init__(0, max_rollback)
        # Committed: the session of the last committed bar [ws, we) and its sums.
        self._ws = 0
        self._we = 0
        self._pv = 0.0
        self._vol = 0.0
        # Forming bar: its start, the session holding it (cached), the sums including
        # it, its typical price (the VWAP while the session has no volume).
        self._t = 0
        self._fws = 0
        self._fwe = 0
        self._pv1 = 0.0
        self._v1 = 0.0
        self._tp = 0.0
        self._hist: deque[tuple[int, int, float, float, int, int, int, float, float, float]]
        self._hist = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        if not self._n:
            raise self._update_empty()
        t = bar.start_ms
        vol = bar.volume
        tp = (bar.high + bar.low + bar.close) / 3.0
        if self._ws <= t < self._we:
            self._pv1 = self._pv + tp * vol
            self._v1 = self._vol + vol
        else:
            if not self._fws <= t < self._fwe:
                self._fws, self._fwe = ny_session(t)
            self._pv1 = tp * vol
            self._v1 = 0.0 + vol
        self._t = t
        self._tp = tp

    def add(self, bar: OHLCV) -> None:
        self._hist.append(
            (
                self._ws,
                self._we,
                self._pv,
                self._vol,
                self._t,
                self._fws,
                self._fwe,
                self._pv1,
                self._v1,
                self._tp,
            )
        )
        if self._n:
            t = self._t
            if not self._ws <= t < self._we:
                self._ws = self._fws
                self._we = self._fwe
            self._pv = self._pv1
            self._vol = self._v1
        self._n += 1
        self.update(bar)

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        (
            self._ws,
            self._we,
            self._pv,
            self._vol,
            self._t,
            self._fws,
            self._fwe,
            self._pv1,
            self._v1,
            self._tp,
        ) = self._hist.pop()
        self._n -= 1

    @property
    def value(self) -> tuple[float] | None:
        if self._n:
            v = self._v1
            return (self._pv1 / v if v else self._tp,)
        return None


class OBV(Indicator):
    __slots__ = ("_c", "_hist", "_o", "_v", "_x")

    outputs = ("obv",)

    def __init__(self, *, max_rollback: int = DEFAULT_MAX_ROLLBACK) -> None:
        super().__init__(0, max_rollback)
        self._o = 0.0  # committed OBV
        self._c = 0.0  # committed close
        self._x = 0.0  # forming close
        self._v = 0.0  # forming OBV
        self._hist: deque[tuple[float, float, float, float]] = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        n = self._n
        x = bar.close
        if n > 1:
            c = self._c
            if x > c:
                self._v = self._o + bar.volume
            elif x < c:
                self._v = self._o - bar.volume
            else:
                self._v = self._o
        elif n:
            self._v = 0.0 + bar.volume
        else:
            raise self._update_empty()
        self._x = x

    def add(self, bar: OHLCV) -> None:
        self._hist.append((self._o, self._c, self._x, self._v))
        if self._n:
            self._o = self._v
            self._c = self._x
        self._n += 1
        self.update(bar)

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        self._o, self._c, self._x, self._v = self._hist.pop()
        self._n -= 1

    @property
    def value(self) -> tuple[float] | None:
        return (self._v,) if self._n else None
