"""Momentum oscillators: RSI, MACD, Stochastic (TA-Lib definitions).

* RSI(n), Wilder: the first average gain/loss is the plain mean of the first n
  changes; then ``avg = (avg*(n-1) + change)/n``. RSI = 100*gain/(gain+loss).
  Warm-up n. When gain+loss is exactly zero (a flat window) RSI is 0, as in TA-Lib
  0.8 (classic TA-Lib C releases, <= 0.6, also returned 0 when |gain+loss| < 1e-8,
  i.e. for average moves below 1e-8 price units; the exact test is scale-free).
* MACD(fast, slow, signal): EMA(fast) - EMA(slow), the signal line is an EMA of
  that, histogram = macd - signal. Seeding follows TA-Lib's MACD exactly: both EMAs
  start on the same bar, slow-1, so the slow EMA is seeded with the SMA of closes
  0..slow-1 and the fast EMA with the SMA of closes slow-fast..slow-1 (not of the
  first ``fast`` closes, which is what a standalone EMA(fast) would use). The signal
  EMA is seeded with the SMA of the first ``signal`` MACD values. Warm-up
  slow+signal-2 (33 for 12/26/9); all three outputs start together.
* Stochastic(k, k_smooth, d) = TA-Lib STOCH with SMA smoothing ("slow" stochastic):
  fast %K = 100*(close - lowest low)/(highest high - lowest low) over k bars (0 when
  the range is 0), %K = SMA(k_smooth) of fast %K, %D = SMA(d) of %K.
  Warm-up k+k_smooth+d-3.
"""

from __future__ import annotations

from collections import deque

from server.indicators.base import (
    DEFAULT_MAX_ROLLBACK,
    Indicator,
    MonotonicWindow,
    resum_every,
    tail_fsum,
)
from server.market.timeframes import OHLCV


class RSI(Indicator):
    __slots__ = (
        "_c",
        "_g0",
        "_g1",
        "_gm",
        "_hist",
        "_l0",
        "_l1",
        "_lm",
        "_p",
        "_pm1",
        "_steady",
        "_x",
    )

    outputs = ("rsi",)

    def __init__(self, period: int = 14, *, max_rollback: int = DEFAULT_MAX_ROLLBACK) -> None:
        super().__init__(period, max_rollback)
        self._p = period
        self._pm1 = float(period - 1)
        #: From this many bars on, the forming bar is past the seed (Wilder smoothing).
        self._steady = period + 1
        # Committed: the previous close; while seeding, the sums of gains and losses
        # (``_gm``, ``_lm``); then the averages times period-1 (``_gm``, ``_lm``) and
        # divided by period again (``_g0``, ``_l0``: the next averages when the
        # forming bar adds nothing to them). Precomputed once per bar, with exactly
        # TA-Lib's operations.
        self._c = 0.0
        self._gm = 0.0
        self._lm = 0.0
        self._g0 = 0.0
        self._l0 = 0.0
        # Forming bar: close, next average gain and loss.
        self._x = 0.0
        self._g1 = 0.0
        self._l1 = 0.0
        self._hist: deque[tuple[float, float, float, float, float, float, float, float]]
        self._hist = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        x = bar.close
        if self._n > self._steady:
            d = x - self._c
            if d < 0:
                self._g1 = self._g0
                self._l1 = (self._lm - d) / self._p
            else:
                self._g1 = (self._gm + d) / self._p
                self._l1 = self._l0
            self._x = x
        else:
            self._seeding(x)

    def _seeding(self, x: float) -> None:
        n = self._n
        if not n:
            raise self._update_empty()
        g = self._gm
        loss = self._lm
        if n > 1:
            d = x - self._c
            if d < 0:
                loss -= d
            else:
                g += d
            if n == self._steady:
                g /= self._p
                loss /= self._p
        self._x = x
        self._g1 = g
        self._l1 = loss

    def add(self, bar: OHLCV) -> None:
        self._hist.append(
            (self._c, self._gm, self._lm, self._g0, self._l0, self._x, self._g1, self._l1)
        )
        n = self._n
        if n:
            self._c = self._x
            if n >= self._steady:
                # The next forming bar is smoothed: precompute its constant parts.
                p = self._p
                gm = self._g1 * self._pm1
                lm = self._l1 * self._pm1
                self._gm = gm
                self._lm = lm
                self._g0 = gm / p
                self._l0 = lm / p
            else:
                self._gm = self._g1
                self._lm = self._l1
        self._n = n + 1
        self.update(bar)

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        (self._c, self._gm, self._lm, self._g0, self._l0, self._x, self._g1, self._l1) = (
            self._hist.pop()
        )
        self._n -= 1

    @property
    def value(self) -> tuple[float] | None:
        if self._n > self.warmup:
            g = self._g1
            s = g + self._l1
            return (100.0 * (g / s) if s != 0.0 else 0.0,)
        return None


class MACD(Indicator):
    __slots__ = (
        "_f",
        "_fast",
        "_fast_start",
        "_hist",
        "_kf",
        "_kg",
        "_ks",
        "_m",
        "_s",
        "_sig",
        "_signal",
        "_slow",
        "_steady",
        "_v",
        "_x",
    )

    outputs = ("macd", "signal", "hist")

    def __init__(
        self,
        fast: int = 12,
        slow: int = 26,
        signal: int = 9,
        *,
        max_rollback: int = DEFAULT_MAX_ROLLBACK,
    ) -> None:
        if fast >= slow:
            raise ValueError(f"MACD needs fast < slow, got fast={fast} slow={slow}")
        super().__init__(slow + signal - 2, max_rollback)
        self._fast = fast
        self._slow = slow
        self._signal = signal
        self._kf = 2.0 / (fast + 1)
        self._ks = 2.0 / (slow + 1)
        self._kg = 2.0 / (signal + 1)
        #: The fast EMA's seed window starts here (TA-Lib aligns it on the slow one).
        self._fast_start = slow - fast
        #: From this many bars on, all three EMAs are past their seeds.
        self._steady = slow + signal - 1
        # Committed: slow EMA, fast EMA, signal EMA (each a running sum while seeding).
        self._s = 0.0
        self._f = 0.0
        self._sig = 0.0
        # Forming bar: close, MACD line, next signal state (= the signal line).
        self._x = 0.0
        self._m = 0.0
        self._v = 0.0
        self._hist: deque[tuple[float, float, float, float, float, float]]
        self._hist = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        x = bar.close
        if self._n > self._steady:
            s = self._s
            f = self._f
            m = ((x - f) * self._kf + f) - ((x - s) * self._ks + s)
            g = self._sig
            self._v = (m - g) * self._kg + g
            self._m = m
            self._x = x
        elif self._n:
            self._x = x
            _, _, self._m, self._v = self._step(x, self._n - 1)
        else:
            raise self._update_empty()

    def _step(self, x: float, i: int) -> tuple[float, float, float, float]:
        """The next (slow, fast, macd, signal) states when bar ``i`` closes at ``x``.

        The same expressions as ``update``'s fast path, so both agree to the bit.
        """
        slow = self._slow
        s = self._s
        f = self._f
        g = self._sig
        if i < slow - 1:
            return s + x, (f + x if i >= self._fast_start else f), 0.0, g
        if i == slow - 1:
            s1 = (s + x) / slow
            f1 = (f + x) / self._fast
        else:
            s1 = (x - s) * self._ks + s
            f1 = (x - f) * self._kf + f
        m = f1 - s1
        j = i - (slow - 1)  # index in the MACD-line series
        signal = self._signal
        if j < signal - 1:
            g1 = g + m
        elif j == signal - 1:
            g1 = (g + m) / signal
        else:
            g1 = (m - g) * self._kg + g
        return s1, f1, m, g1

    def add(self, bar: OHLCV) -> None:
        self._hist.append((self._s, self._f, self._sig, self._x, self._m, self._v))
        n = self._n
        if n:
            self._s, self._f, _, self._sig = self._step(self._x, n - 1)
        self._n = n + 1
        self.update(bar)

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        self._s, self._f, self._sig, self._x, self._m, self._v = self._hist.pop()
        self._n -= 1

    @property
    def value(self) -> tuple[float, float, float] | None:
        if self._n > self.warmup:
            m = self._m
            return (m, self._v, m - self._v)
        return None


class Stochastic(Indicator):
    __slots__ = (
        "_bottom",
        "_dp",
        "_dsum",
        "_fk",
        "_fk_ring",
        "_h",
        "_hi",
        "_hist",
        "_kp",
        "_ks",
        "_ksum",
        "_l",
        "_lo",
        "_resum_d",
        "_resum_k",
        "_sd",
        "_sk",
        "_sk_ring",
        "_top",
    )

    outputs = ("k", "d")

    def __init__(
        self,
        k_period: int = 14,
        k_smooth: int = 3,
        d_period: int = 3,
        *,
        max_rollback: int = DEFAULT_MAX_ROLLBACK,
    ) -> None:
        super().__init__(k_period + k_smooth + d_period - 3, max_rollback)
        self._kp = k_period
        self._ks = k_smooth
        self._dp = d_period
        self._resum_k = resum_every(k_smooth)
        self._resum_d = resum_every(d_period)
        # Committed: the highs/lows of the last k_period-1 bars, the fast %K of the last
        # bars and the sum of the last k_smooth-1 of them, the slow %K likewise.
        self._hi = MonotonicWindow(k_period - 1, max_rollback)
        self._lo = MonotonicWindow(k_period - 1, max_rollback)
        self._fk_ring: deque[float] = deque(maxlen=k_smooth + max_rollback)
        self._sk_ring: deque[float] = deque(maxlen=d_period + max_rollback)
        self._ksum = 0.0
        self._dsum = 0.0
        #: The committed windows' extremes (+/-inf while empty).
        self._top = float("-inf")
        self._bottom = float("inf")
        # Forming bar: its high/low (for the windows), its fast %K, %K (slow) and %D.
        self._h = 0.0
        self._l = 0.0
        self._fk = 0.0
        self._sk = 0.0
        self._sd = 0.0
        self._hist: deque[tuple[float, float, float, float, float, float, float]]
        self._hist = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        if not self._n:
            raise self._update_empty()
        h = bar.high
        lo = bar.low
        c = bar.close
        top = self._top
        top = h if h > top else top
        bottom = self._bottom
        bottom = lo if lo < bottom else bottom
        diff = (top - bottom) / 100.0
        fk = (c - bottom) / diff if diff != 0.0 else 0.0
        sk = (self._ksum + fk) / self._ks
        self._h = h
        self._l = lo
        self._fk = fk
        self._sk = sk
        self._sd = (self._dsum + sk) / self._dp

    def add(self, bar: OHLCV) -> None:
        n = self._n
        self._hist.append((self._ksum, self._dsum, self._h, self._l, self._fk, self._sk, self._sd))
        if n:
            self._commit(n - 1)
        self._n = n + 1
        self.update(bar)

    def _commit(self, i: int) -> None:
        """Fold the forming bar ``i`` into the committed state."""
        self._hi.push(self._h)
        self._lo.push(-self._l)
        self._top = self._hi.best
        self._bottom = -self._lo.best
        kp = self._kp
        if i < kp - 1:
            return
        ks = self._ks
        ring = self._fk_ring
        ring.append(self._fk)
        m = i - (kp - 1) + 1  # committed fast %K values
        if m % self._resum_k == 0:
            self._ksum = tail_fsum(ring, ks - 1)
        elif m >= ks:
            self._ksum = self._ksum + self._fk - ring[-ks]
        else:
            self._ksum += self._fk
        m -= ks - 1  # committed slow %K values
        if m <= 0:
            return
        d = self._dp
        ring = self._sk_ring
        ring.append(self._sk)
        if m % self._resum_d == 0:
            self._dsum = tail_fsum(ring, d - 1)
        elif m >= d:
            self._dsum = self._dsum + self._sk - ring[-d]
        else:
            self._dsum += self._sk

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        (self._ksum, self._dsum, self._h, self._l, self._fk, self._sk, self._sd) = self._hist.pop()
        n = self._n - 1
        self._n = n
        if n:
            # Undo the commit of bar n-1 done by the add being undone.
            i = n - 1
            self._hi.undo()
            self._lo.undo()
            self._top = self._hi.best
            self._bottom = -self._lo.best
            kp = self._kp
            if i >= kp - 1:
                self._fk_ring.pop()
                if i - (kp - 1) + 1 - (self._ks - 1) > 0:
                    self._sk_ring.pop()

    @property
    def value(self) -> tuple[float, float] | None:
        return (self._sk, self._sd) if self._n > self.warmup else None
