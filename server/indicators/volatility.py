"""Volatility: Bollinger Bands, ATR, Donchian channel.

* BollingerBands(n, k) = TA-Lib BBANDS with an SMA middle band and equal up/down
  multipliers: middle = SMA(n), upper/lower = middle +/- k*sigma where sigma is the
  *population* standard deviation of the last n closes. Warm-up n-1.
  sigma^2 is computed from the moments of the closes minus a reference close (one
  of the window's closes, re-chosen whenever the sums are recomputed exactly), not
  as mean(x^2) - mean(x)^2 of the raw closes as classic TA-Lib (<= 0.6) did, which
  cancels catastrophically when sigma is tiny next to the price. TA-Lib 0.8 is
  accurate there too and the two agree to ~1e-12. sigma^2 <= 0 (rounding on a flat
  window) is clamped to 0; classic TA-Lib also zeroed sigma^2 < 1e-8, TA-Lib 0.8 and
  we do not.
* ATR(n), Wilder: true range = max(high-low, |high-prev close|, |low-prev close|)
  from the second bar on; the first ATR is the mean of the first n true ranges,
  then ``atr = (atr*(n-1) + tr)/n``. Warm-up n.
* DonchianChannel(n) (no TA-Lib function): upper = highest high of the last n
  bars (TA-Lib MAX(high, n)), lower = lowest low (MIN(low, n)), middle = their
  mean. Warm-up n-1.
"""

from __future__ import annotations

import math
from collections import deque
from math import sqrt

from server.indicators.base import (
    DEFAULT_MAX_ROLLBACK,
    Indicator,
    MonotonicWindow,
    resum_every,
    tail,
    tail_fsum,
)
from server.market.timeframes import OHLCV


class BollingerBands(Indicator):
    __slots__ = (
        "_dev",
        "_hist",
        "_mid",
        "_p",
        "_q",
        "_ref",
        "_resum",
        "_ring",
        "_s",
        "_u",
        "_var",
        "_x",
    )

    outputs = ("upper", "middle", "lower")

    def __init__(
        self,
        period: int = 20,
        std_dev: float = 2.0,
        *,
        max_rollback: int = DEFAULT_MAX_ROLLBACK,
    ) -> None:
        super().__init__(period - 1, max_rollback)
        self._p = period
        self._dev = float(std_dev)
        self._resum = resum_every(period)
        self._ring: deque[float] = deque(maxlen=period + max_rollback)
        # Committed, over the last period-1 closes: their sum (for the middle band,
        # exactly as SMA), and the sum and sum of squares of their distances to the
        # reference close ``_ref`` (for sigma, free of cancellation).
        self._s = 0.0
        self._u = 0.0
        self._q = 0.0
        self._ref = 0.0
        # Forming bar: close, middle band, sigma^2 (the bands are derived when read).
        self._x = 0.0
        self._mid = 0.0
        self._var = 0.0
        self._hist: deque[tuple[float, float, float, float, float, float, float]]
        self._hist = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        if not self._n:
            raise self._update_empty()
        x = bar.close
        p = self._p
        d = x - self._ref
        u = (self._u + d) / p
        self._var = (self._q + d * d) / p - u * u
        self._x = x
        self._mid = (self._s + x) / p

    def add(self, bar: OHLCV) -> None:
        n = self._n
        self._hist.append((self._s, self._u, self._q, self._ref, self._x, self._mid, self._var))
        if n:
            x = self._x
            ring = self._ring
            ring.append(x)
            p = self._p
            if n == 1 or n % self._resum == 0:
                # Exact sums, and a new reference: the close just committed.
                k = p - 1
                self._ref = x
                self._s = tail_fsum(ring, k)
                self._u = math.fsum(v - x for v in tail(ring, k))
                self._q = math.fsum((v - x) * (v - x) for v in tail(ring, k))
            else:
                d = x - self._ref
                if n >= p:
                    old = ring[-p]
                    e = old - self._ref
                    self._s = self._s + x - old
                    self._u = self._u + d - e
                    self._q = self._q + d * d - e * e
                else:
                    self._s += x
                    self._u += d
                    self._q += d * d
        self._n = n + 1
        self.update(bar)

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        (self._s, self._u, self._q, self._ref, self._x, self._mid, self._var) = self._hist.pop()
        self._n -= 1
        if self._n:
            self._ring.pop()

    @property
    def value(self) -> tuple[float, float, float] | None:
        if self._n > self.warmup:
            mid = self._mid
            var = self._var
            half = sqrt(var) * self._dev if var > 0.0 else 0.0
            return (mid + half, mid, mid - half)
        return None


class ATR(Indicator):
    __slots__ = ("_a1", "_am", "_c", "_hist", "_p", "_pm1", "_steady", "_x")

    outputs = ("atr",)

    def __init__(self, period: int = 14, *, max_rollback: int = DEFAULT_MAX_ROLLBACK) -> None:
        super().__init__(period, max_rollback)
        self._p = period
        self._pm1 = float(period - 1)
        self._steady = period + 1
        # Committed: previous close; the true-range sum while seeding, then the ATR
        # times period-1 (precomputed once per bar, as TA-Lib computes it).
        self._c = 0.0
        self._am = 0.0
        # Forming bar: close, next state (= the ATR once warmed up).
        self._x = 0.0
        self._a1 = 0.0
        self._hist: deque[tuple[float, float, float, float]] = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        n = self._n
        if n > 1:
            h = bar.high
            lo = bar.low
            c0 = self._c
            tr = h - lo
            t = c0 - h if c0 > h else h - c0
            tr = t if t > tr else tr
            t = c0 - lo if c0 > lo else lo - c0
            tr = t if t > tr else tr
            if n >= self._steady:
                # Seeding bar: the mean of the true ranges; then Wilder smoothing.
                self._a1 = (self._am + tr) / self._p
            else:
                self._a1 = self._am + tr
        elif n:
            self._a1 = 0.0
        else:
            raise self._update_empty()
        self._x = bar.close

    def add(self, bar: OHLCV) -> None:
        self._hist.append((self._c, self._am, self._x, self._a1))
        n = self._n
        if n:
            self._c = self._x
            self._am = self._a1 * self._pm1 if n >= self._steady else self._a1
        self._n = n + 1
        self.update(bar)

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        self._c, self._am, self._x, self._a1 = self._hist.pop()
        self._n -= 1

    @property
    def value(self) -> tuple[float] | None:
        return (self._a1,) if self._n > self.warmup else None


class DonchianChannel(Indicator):
    __slots__ = ("_h", "_hi", "_hist", "_l", "_lo", "_lower", "_upper")

    outputs = ("upper", "middle", "lower")

    def __init__(self, period: int = 20, *, max_rollback: int = DEFAULT_MAX_ROLLBACK) -> None:
        super().__init__(period - 1, max_rollback)
        # Committed: the highs and lows of the last period-1 bars.
        self._hi = MonotonicWindow(period - 1, max_rollback)
        self._lo = MonotonicWindow(period - 1, max_rollback)
        self._h = 0.0
        self._l = 0.0
        self._upper = 0.0
        self._lower = 0.0
        self._hist: deque[tuple[float, float, float, float]] = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        if not self._n:
            raise self._update_empty()
        h = bar.high
        lo = bar.low
        top = self._hi.best
        bottom = -self._lo.best
        self._upper = h if h > top else top
        self._lower = lo if lo < bottom else bottom
        self._h = h
        self._l = lo

    def add(self, bar: OHLCV) -> None:
        self._hist.append((self._h, self._l, self._upper, self._lower))
        if self._n:
            self._hi.push(self._h)
            self._lo.push(-self._l)
        self._n += 1
        self.update(bar)

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        self._h, self._l, self._upper, self._lower = self._hist.pop()
        self._n -= 1
        if self._n:
            self._hi.undo()
            self._lo.undo()

    @property
    def value(self) -> tuple[float, float, float] | None:
        if self._n > self.warmup:
            return (self._upper, (self._upper + self._lower) / 2.0, self._lower)
        return None
