"""Volume indicators: session VWAP (trade-weighted, or on the typical price) and OBV.

* VWAP (no TA-Lib function), anchored to the New York trading day: the volume-weighted
  average price of the session's prints, ``Σ bar.vwap * volume / Σ volume`` over the
  bars of the session so far. A bar's ``vwap`` is its own trade-weighted price, so this
  is exactly the session VWAP of the prints, the same on every timeframe and the same
  as the day's ``vwap`` in the snapshot (bars without volume add nothing). While the
  session's volume is zero it is the current bar's ``vwap`` (its close). Warm-up 0.
* VWAP_HLC3, the same anchoring on each bar's typical price (H+L+C)/3 (TA-Lib
  TYPPRICE), as charting packages compute it when only bars are at hand (TradingView's
  default ``ta.vwap(hlc3)``): an approximation that depends on the timeframe. While the
  session's volume is zero it is the current bar's typical price.

  For both, the session is the New York calendar day (midnight to midnight, via
  ``ny_session``, the same as ``server.market.trading_day.day_window``) holding the
  bar's ``start_ms``; the sums reset at the first bar of each day. Pre- and post-market
  bars belong to their day's session. Bars must come in time order.
* OBV = TA-Lib OBV: starts at the first bar's volume, then adds the volume on an up
  close, subtracts it on a down close, keeps it on an unchanged close. Warm-up 0. A
  cumulative sum depends on where it starts, so the server anchors it: it starts
  afresh at the first bar of each New York day on intraday timeframes, and of each
  New York calendar year on daily bars (``anchor``), which is what lets a restarted
  server compute exactly the value it had. Unanchored (``anchor=None``) it is TA-Lib's,
  from the first bar it was given.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
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


class VWAPTypical(Indicator):
    """Session VWAP of the typical price (H+L+C)/3 (``VWAP_HLC3``)."""

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

    @staticmethod
    def _price(bar: OHLCV) -> float:
        return (bar.high + bar.low + bar.close) / 3.0

    def update(self, bar: OHLCV) -> None:
        if not self._n:
            raise self._update_empty()
        t = bar.start_ms
        vol = bar.volume
        tp = self._price(bar)
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


class VWAP(VWAPTypical):
    """Session VWAP of the prints: each bar weighs in at its own trade-weighted price
    (``bar.vwap``; bars without one, such as plain OHLCV records, at their typical
    price)."""

    __slots__ = ()

    @staticmethod
    def _price(bar: OHLCV) -> float:
        vwap = getattr(bar, "vwap", None)
        return (bar.high + bar.low + bar.close) / 3.0 if vwap is None else float(vwap)


#: Where a cumulative indicator starts afresh: ``(start, end)`` of the window holding a
#: time (epoch ms), or ``None`` for never.
Anchor = Callable[[int], tuple[int, int]]


def ny_year(t_ms: int) -> tuple[int, int]:
    """``(start_ms, end_ms)`` of the New York calendar year holding ``t_ms``."""
    year = datetime.fromtimestamp(t_ms / 1000, tz=NEW_YORK).year
    start = datetime(year, 1, 1, tzinfo=NEW_YORK)
    end = datetime(year + 1, 1, 1, tzinfo=NEW_YORK)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


class OBV(Indicator):
    __slots__ = ("_anchor", "_c", "_hist", "_o", "_t", "_v", "_we", "_ws", "_x")

    outputs = ("obv",)

    def __init__(
        self, *, max_rollback: int = DEFAULT_MAX_ROLLBACK, anchor: Anchor | None = None
    ) -> None:
        super().__init__(0, max_rollback)
        self._anchor = anchor
        self._o = 0.0  # committed OBV
        self._c = 0.0  # committed close
        self._x = 0.0  # forming close
        self._v = 0.0  # forming OBV
        self._t = 0  # forming bar's start
        # The anchor window of the last committed bar (never ends: no anchor).
        self._ws = 0
        self._we = 2**62
        self._hist: deque[tuple[float, float, float, float, int, int, int]]
        self._hist = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        n = self._n
        x = bar.close
        if n > 1 and self._ws <= bar.start_ms < self._we:
            c = self._c
            if x > c:
                self._v = self._o + bar.volume
            elif x < c:
                self._v = self._o - bar.volume
            else:
                self._v = self._o
        elif n:
            self._v = 0.0 + bar.volume  # the first bar, or the first of a new anchor window
        else:
            raise self._update_empty()
        self._x = x
        self._t = bar.start_ms

    def add(self, bar: OHLCV) -> None:
        self._hist.append((self._o, self._c, self._x, self._v, self._t, self._ws, self._we))
        if self._n:
            self._o = self._v
            self._c = self._x
            anchor = self._anchor
            if anchor is not None and not self._ws <= self._t < self._we:
                self._ws, self._we = anchor(self._t)
        elif self._anchor is not None:
            self._ws, self._we = self._anchor(bar.start_ms)
        self._n += 1
        self.update(bar)

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        self._o, self._c, self._x, self._v, self._t, self._ws, self._we = self._hist.pop()
        self._n -= 1

    @property
    def value(self) -> tuple[float] | None:
        return (self._v,) if self._n else None
