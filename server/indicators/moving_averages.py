"""Moving averages of the close: SMA, EMA, WMA (TA-Lib definitions).

* SMA(n): mean of the last n closes. Warm-up n-1.
* EMA(n): k = 2/(n+1), seeded with the SMA of the first n closes (TA-Lib's default
  compatibility mode; not the first close, as MetaStock does). Warm-up n-1.
* WMA(n): linearly weighted, the newest close weighs n, the oldest 1, divided by
  n(n+1)/2. Warm-up n-1.

The arithmetic follows TA-Lib operation for operation (same running sums, same
order), so the values agree with TA-Lib to the last bit or two; the difference is
that our running sums are recomputed exactly every ``resum_every(n)`` bars, where
TA-Lib lets them drift over the whole series.
"""

from __future__ import annotations

import math
from collections import deque

from server.indicators.base import (
    DEFAULT_MAX_ROLLBACK,
    Indicator,
    resum_every,
    tail,
    tail_fsum,
)
from server.market.timeframes import OHLCV


class SMA(Indicator):
    __slots__ = ("_hist", "_p", "_resum", "_ring", "_s", "_v", "_x")

    outputs = ("sma",)

    def __init__(self, period: int, *, max_rollback: int = DEFAULT_MAX_ROLLBACK) -> None:
        super().__init__(period - 1, max_rollback)
        self._p = period
        self._resum = resum_every(period)
        #: Committed closes (the forming one is ``_x``).
        self._ring: deque[float] = deque(maxlen=period + max_rollback)
        #: Sum of the last period-1 committed closes (TA-Lib's ``periodTotal``).
        self._s = 0.0
        self._x = 0.0
        self._v = 0.0
        self._hist: deque[tuple[float, float, float]] = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        if not self._n:
            raise self._update_empty()
        x = bar.close
        self._x = x
        self._v = (self._s + x) / self._p

    def add(self, bar: OHLCV) -> None:
        n = self._n
        self._hist.append((self._s, self._x, self._v))
        if n:
            x = self._x
            ring = self._ring
            ring.append(x)
            p = self._p
            if n % self._resum == 0:
                self._s = tail_fsum(ring, p - 1)
            elif n >= p:
                self._s = self._s + x - ring[-p]
            else:
                self._s += x
        self._n = n + 1
        x = bar.close
        self._x = x
        self._v = (self._s + x) / self._p

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        self._s, self._x, self._v = self._hist.pop()
        self._n -= 1
        if self._n:
            self._ring.pop()

    @property
    def value(self) -> tuple[float] | None:
        return (self._v,) if self._n > self.warmup else None


class EMA(Indicator):
    __slots__ = ("_e", "_hist", "_k", "_p", "_v")

    outputs = ("ema",)

    def __init__(self, period: int, *, max_rollback: int = DEFAULT_MAX_ROLLBACK) -> None:
        super().__init__(period - 1, max_rollback)
        self._p = period
        self._k = 2.0 / (period + 1)
        #: Committed state: the sum of the closes while warming up, then the EMA.
        self._e = 0.0
        #: The state the forming bar leads to (= the EMA once warmed up).
        self._v = 0.0
        self._hist: deque[tuple[float, float]] = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        x = bar.close
        n = self._n
        if n > self._p:
            e = self._e
            self._v = (x - e) * self._k + e
        elif n == self._p:
            self._v = (self._e + x) / n
        elif n:
            self._v = self._e + x
        else:
            raise self._update_empty()

    def add(self, bar: OHLCV) -> None:
        self._hist.append((self._e, self._v))
        if self._n:
            self._e = self._v
        self._n += 1
        self.update(bar)

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        self._e, self._v = self._hist.pop()
        self._n -= 1

    @property
    def value(self) -> tuple[float] | None:
        return (self._v,) if self._n > self.warmup else None


class WMA(Indicator):
    __slots__ = ("_div", "_hist", "_p", "_resum", "_ring", "_sub", "_v", "_w", "_x")

    outputs = ("wma",)

    def __init__(self, period: int, *, max_rollback: int = DEFAULT_MAX_ROLLBACK) -> None:
        super().__init__(period - 1, max_rollback)
        self._p = period
        self._div = float(period * (period + 1) // 2)
        self._resum = resum_every(period)
        self._ring: deque[float] = deque(maxlen=period + 1 + max_rollback)
        #: Sum of the last ``period`` committed closes (TA-Lib's ``periodSub``).
        self._sub = 0.0
        #: The weighted sum of the last period-1 committed closes, weights 1..period-1
        #: (TA-Lib's ``periodSum`` after its subtraction).
        self._w = 0.0
        self._x = 0.0
        self._v = 0.0
        self._hist: deque[tuple[float, float, float, float]] = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        if not self._n:
            raise self._update_empty()
        x = bar.close
        self._x = x
        self._v = (self._w + x * self._p) / self._div

    def add(self, bar: OHLCV) -> None:
        n = self._n
        self._hist.append((self._sub, self._w, self._x, self._v))
        if n:
            x = self._x
            ring = self._ring
            ring.append(x)
            p = self._p
            j = n - 1  # index of the close being committed
            if n % self._resum == 0:
                self._sub = tail_fsum(ring, p)
                k = min(p - 1, len(ring))
                self._w = math.fsum(w * v for w, v in enumerate(tail(ring, k), p - k))
            elif j >= p:
                self._sub = self._sub + x - ring[-p - 1]
                self._w = (self._w + x * p) - self._sub
            elif j == p - 1:
                self._sub = self._sub + x
                self._w = (self._w + x * p) - self._sub
            else:
                self._sub += x
                self._w += x * (j + 1)
        self._n = n + 1
        x = bar.close
        self._x = x
        self._v = (self._w + x * self._p) / self._div

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        self._sub, self._w, self._x, self._v = self._hist.pop()
        self._n -= 1
        if self._n:
            self._ring.pop()

    @property
    def value(self) -> tuple[float] | None:
        return (self._v,) if self._n > self.warmup else None
