"""Trend strength: ADX with +DI and -DI (TA-Lib ADX, PLUS_DI, MINUS_DI).

Wilder's definitions as TA-Lib implements them, operation for operation:

* +DM = high - prev high when it is positive and larger than prev low - low,
  -DM = prev low - low when it is positive and larger than the former; else 0.
  TR is the true range.
* The smoothed sums start as the plain sums of the first n-1 values (bars 1..n-1),
  then ``s = s - s/n + x`` from bar n on. +DI = 100*(+DM sum)/(TR sum), likewise -DI.
* DX = 100*|+DI - -DI|/(+DI + -DI); the first ADX is the mean of the DX of bars
  n..2n-1, then ``adx = (adx*(n-1) + dx)/n``.
* "adx" starts at bar 2n-1 (warm-up 2n-1 = 27 for n = 14), as TA-Lib's ADX; "plus_di"
  and "minus_di" start at bar n, as TA-Lib's PLUS_DI and MINUS_DI: from bar n to 2n-2
  the value is ``(nan, +DI, -DI)`` (``ready`` stays false until the ADX is there).
* Where the TR sum is zero the DIs are 0 and the ADX carries over unchanged (no DX
  that bar); likewise when +DI + -DI is zero. "Zero" means exactly zero, as in
  TA-Lib 0.8 (classic TA-Lib C releases, <= 0.6, tested |x| < 1e-8, which misfires
  on assets priced in fractions of a cent).
"""

from __future__ import annotations

from collections import deque

from server.indicators.base import DEFAULT_MAX_ROLLBACK, Indicator
from server.market.timeframes import OHLCV

_NAN = float("nan")
_State = tuple[float, float, float, float, float, float, float, float]
_Forming = tuple[float, float, float, float, float, float]


class ADX(Indicator):
    __slots__ = (
        "_c",
        "_dmm_d",
        "_dmp_d",
        "_h",
        "_hist",
        "_l",
        "_mdi",
        "_p",
        "_pdi",
        "_pm1",
        "_steady",
        "_tr_d",
        "_x",
        "_x1",
        "_xc",
        "_xh",
        "_xl",
        "_xm",
    )

    outputs = ("adx", "plus_di", "minus_di")

    def __init__(self, period: int = 14, *, max_rollback: int = DEFAULT_MAX_ROLLBACK) -> None:
        super().__init__(2 * period - 1, max_rollback)
        self._p = period
        self._pm1 = float(period - 1)
        #: From this many bars on, the ADX itself is Wilder-smoothed.
        self._steady = 2 * period
        # Committed: the last committed bar; the +DM, -DM and TR sums as the forming
        # bar will start from them (already decayed by s/p once smoothing has begun);
        # the DX sum or ADX, and that times period-1 (once smoothing has begun).
        # The decays are computed once per bar, with exactly TA-Lib's operations.
        self._h = 0.0
        self._l = 0.0
        self._c = 0.0
        self._dmp_d = 0.0
        self._dmm_d = 0.0
        self._tr_d = 0.0
        self._x = 0.0
        self._xm = 0.0
        # Forming bar and its outputs.
        self._xh = 0.0
        self._xl = 0.0
        self._xc = 0.0
        self._x1 = 0.0
        self._pdi = 0.0
        self._mdi = 0.0
        self._hist: deque[tuple[_State, _Forming]] = deque(maxlen=max_rollback)

    def update(self, bar: OHLCV) -> None:
        h = bar.high
        lo = bar.low
        c = bar.close
        if self._n > self._steady:
            diff_p = h - self._h
            diff_m = self._l - lo
            c0 = self._c
            tr = h - lo
            t = c0 - h if c0 > h else h - c0
            tr = t if t > tr else tr
            t = c0 - lo if c0 > lo else lo - c0
            tr = t if t > tr else tr
            s = self._tr_d + tr
            if s != 0.0:
                if diff_m > 0 and diff_p < diff_m:
                    mdi = 100.0 * ((self._dmm_d + diff_m) / s)
                    pdi = 100.0 * (self._dmp_d / s)
                elif diff_p > 0 and diff_p > diff_m:
                    mdi = 100.0 * (self._dmm_d / s)
                    pdi = 100.0 * ((self._dmp_d + diff_p) / s)
                else:
                    mdi = 100.0 * (self._dmm_d / s)
                    pdi = 100.0 * (self._dmp_d / s)
                t = mdi + pdi
                if t != 0.0:
                    dx = 100.0 * ((mdi - pdi if mdi > pdi else pdi - mdi) / t)
                    self._x1 = (self._xm + dx) / self._p
                else:
                    self._x1 = self._x
                self._pdi = pdi
                self._mdi = mdi
            else:
                self._x1 = self._x
                self._pdi = self._mdi = 0.0
        elif self._n:
            (_, _, _, self._x1, self._pdi, self._mdi) = self._step(h, lo, c, self._n - 1)
        else:
            raise self._update_empty()
        self._xh = h
        self._xl = lo
        self._xc = c

    def _step(self, h: float, lo: float, c: float, i: int) -> _Forming:
        """(+DM sum, -DM sum, TR sum, DX sum or ADX, +DI, -DI) after bar ``i`` = h/lo/c.

        The same expressions as ``update``'s fast path, so both agree to the bit.
        """
        if i == 0:
            return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        diff_p = h - self._h
        diff_m = self._l - lo
        c0 = self._c
        tr = h - lo
        t = c0 - h if c0 > h else h - c0
        tr = t if t > tr else tr
        t = c0 - lo if c0 > lo else lo - c0
        tr = t if t > tr else tr
        dmm = self._dmm_d
        dmp = self._dmp_d
        if diff_m > 0 and diff_p < diff_m:
            dmm = dmm + diff_m
        elif diff_p > 0 and diff_p > diff_m:
            dmp = dmp + diff_p
        s = self._tr_d + tr
        p = self._p
        x = self._x
        pdi = mdi = 0.0
        if i >= p:
            # A DX (unless the ranges are all zero); ADX = mean of the first p DX,
            # then Wilder-smoothed.
            if s != 0.0:
                mdi = 100.0 * (dmm / s)
                pdi = 100.0 * (dmp / s)
                t = mdi + pdi
                if t != 0.0:
                    dx = 100.0 * ((mdi - pdi if mdi > pdi else pdi - mdi) / t)
                    x = (self._xm + dx) / p if i >= 2 * p - 1 else self._xm + dx
                elif i == 2 * p - 1:
                    x = x / p
            elif i == 2 * p - 1:
                x = x / p
        return dmp, dmm, s, x, pdi, mdi

    def add(self, bar: OHLCV) -> None:
        self._hist.append(
            (
                (
                    self._h,
                    self._l,
                    self._c,
                    self._dmp_d,
                    self._dmm_d,
                    self._tr_d,
                    self._x,
                    self._xm,
                ),
                (self._xh, self._xl, self._xc, self._x1, self._pdi, self._mdi),
            )
        )
        n = self._n
        if n:
            # Commit bar n-1; the next forming bar is bar n.
            h = self._xh
            lo = self._xl
            c = self._xc
            dmp, dmm, s, x, _, _ = self._step(h, lo, c, n - 1)
            self._h = h
            self._l = lo
            self._c = c
            p = self._p
            if n >= p:
                # Bar n is smoothed: decay the sums once, now.
                self._dmp_d = dmp - dmp / p
                self._dmm_d = dmm - dmm / p
                self._tr_d = s - s / p
            else:
                self._dmp_d = dmp
                self._dmm_d = dmm
                self._tr_d = s
            self._x = x
            self._xm = x * self._pm1 if n >= 2 * p else x
        self._n = n + 1
        self.update(bar)

    def remove(self) -> None:
        if not self._hist:
            raise self._remove_error()
        committed, forming = self._hist.pop()
        (
            self._h,
            self._l,
            self._c,
            self._dmp_d,
            self._dmm_d,
            self._tr_d,
            self._x,
            self._xm,
        ) = committed
        (self._xh, self._xl, self._xc, self._x1, self._pdi, self._mdi) = forming
        self._n -= 1

    @property
    def value(self) -> tuple[float, float, float] | None:
        n = self._n
        if n > self.warmup:
            return (self._x1, self._pdi, self._mdi)
        if n > self._p:
            return (_NAN, self._pdi, self._mdi)  # the DIs are there before the ADX
        return None
