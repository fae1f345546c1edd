"""Batch recomputation of every indicator over whole numpy arrays.

An independent code path from the incremental indicators, for tests: windowed
quantities come from ``sliding_window_view`` (every window summed afresh, no
running sums), and only the inherently recursive smoothings (EMA, Wilder) loop.
Definitions are those documented in the incremental modules. Each function returns
float64 arrays as long as its input, NaN during warm-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from server.indicators.spec import IndicatorKind, IndicatorSpec
from server.market.timeframes import OHLCV
from server.market.trading_day import NEW_YORK

Array = npt.NDArray[np.float64]


def _nan(n: int) -> Array:
    return np.full(n, np.nan)


def _windows(x: Array, period: int) -> npt.NDArray[np.float64]:
    return sliding_window_view(x, period)


def _rolling_mean(x: Array, period: int) -> Array:
    out = _nan(len(x))
    if len(x) >= period:
        out[period - 1 :] = _windows(x, period).mean(axis=1)
    return out


def _ema_from(x: Array, period: int, start: int) -> Array:
    """EMA seeded with the mean of ``x[start:start+period]``; first value there."""
    out = _nan(len(x))
    first = start + period - 1
    if len(x) <= first:
        return out
    k = 2.0 / (period + 1)
    e = float(np.mean(x[start : first + 1]))
    out[first] = e
    values = x.tolist()
    for i in range(first + 1, len(x)):
        e = e + k * (values[i] - e)
        out[i] = e
    return out


def sma(close: Array, period: int) -> Array:
    return _rolling_mean(close, period)


def ema(close: Array, period: int) -> Array:
    return _ema_from(close, period, 0)


def wma(close: Array, period: int) -> Array:
    out = _nan(len(close))
    if len(close) >= period:
        weights = np.arange(1, period + 1, dtype=np.float64)
        out[period - 1 :] = _windows(close, period) @ weights / weights.sum()
    return out


def _wilder(values: Array, period: int, first: int) -> Array:
    """Wilder smoothing: mean of ``values[first-period+1 : first+1]``, then recursive."""
    out = _nan(len(values))
    if len(values) <= first:
        return out
    a = float(np.mean(values[first - period + 1 : first + 1]))
    out[first] = a
    v = values.tolist()
    for i in range(first + 1, len(values)):
        a = (a * (period - 1) + v[i]) / period
        out[i] = a
    return out


def rsi(close: Array, period: int = 14) -> Array:
    change = np.diff(close, prepend=np.nan)
    gain = _wilder(np.where(change > 0, change, 0.0), period, period)
    loss = _wilder(np.where(change < 0, -change, 0.0), period, period)
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total == 0.0, 0.0, 100.0 * gain / total)


def macd(
    close: Array, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[Array, Array, Array]:
    # TA-Lib aligns both EMAs on bar slow-1: the fast one is seeded with the mean of
    # the ``fast`` closes ending there.
    line = _ema_from(close, fast, slow - fast) - _ema_from(close, slow, 0)
    sig = _nan(len(close))
    if len(close) >= slow:
        sig[slow - 1 :] = _ema_from(line[slow - 1 :], signal, 0)
    line = np.where(np.isnan(sig), np.nan, line)
    return line, sig, line - sig


def bbands(close: Array, period: int = 20, std_dev: float = 2.0) -> tuple[Array, Array, Array]:
    mid = _nan(len(close))
    sd = _nan(len(close))
    if len(close) >= period:
        w = _windows(close, period)
        mid[period - 1 :] = w.mean(axis=1)
        sd[period - 1 :] = w.std(axis=1)  # population (ddof=0)
    return mid + std_dev * sd, mid, mid - std_dev * sd


def true_range(high: Array, low: Array, close: Array) -> Array:
    prev = np.concatenate(([np.nan], close[:-1]))
    tr: Array = np.maximum(high - low, np.maximum(np.abs(high - prev), np.abs(low - prev)))
    tr[0] = np.nan
    return tr


def atr(high: Array, low: Array, close: Array, period: int = 14) -> Array:
    return _wilder(true_range(high, low, close), period, period)


def stoch(
    high: Array,
    low: Array,
    close: Array,
    *,
    k_period: int = 14,
    k_smooth: int = 3,
    d_period: int = 3,
) -> tuple[Array, Array]:
    n = len(close)
    fast = _nan(n)
    if n >= k_period:
        hh = _windows(high, k_period).max(axis=1)
        ll = _windows(low, k_period).min(axis=1)
        rng = hh - ll
        c = close[k_period - 1 :]
        with np.errstate(invalid="ignore", divide="ignore"):
            fast[k_period - 1 :] = np.where(rng == 0.0, 0.0, (c - ll) / rng * 100.0)
    k = _nan(n)
    start = k_period - 1
    if n - start >= k_smooth:
        k[start:] = _rolling_mean(fast[start:], k_smooth)
    d = _nan(n)
    start += k_smooth - 1
    if n - start >= d_period:
        d[start:] = _rolling_mean(k[start:], d_period)
    k = np.where(np.isnan(d), np.nan, k)
    return k, d


def _session_ids(start_ms: Sequence[int]) -> npt.NDArray[np.int64]:
    days = [
        datetime.fromtimestamp(t / 1000, tz=UTC).astimezone(NEW_YORK).date().toordinal()
        for t in start_ms
    ]
    return np.asarray(days, dtype=np.int64)


def vwap(start_ms: Sequence[int], price: Array, volume: Array) -> Array:
    """Session VWAP of ``price`` (the bars' trade-weighted ``vwap`` for VWAP, the typical
    price for VWAP_HLC3), reset every New York day."""
    session = _session_ids(start_ms)
    out = _nan(len(price))
    for day in np.unique(session):
        idx = np.flatnonzero(session == day)
        pv = np.cumsum(price[idx] * volume[idx])
        v = np.cumsum(volume[idx])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[idx] = np.where(v == 0.0, price[idx], pv / v)
    return out


def obv(close: Array, volume: Array) -> Array:
    signed = np.sign(np.diff(close)) * volume[1:]
    return np.concatenate(([volume[0]], volume[0] + np.cumsum(signed)))


def adx(high: Array, low: Array, close: Array, period: int = 14) -> tuple[Array, Array, Array]:
    n = len(close)
    p = period
    out = (_nan(n), _nan(n), _nan(n))
    if n < 2 * p:
        return out
    up = np.diff(high, prepend=np.nan)
    down = -np.diff(low, prepend=np.nan)
    plus_dm = np.where((up > 0) & (up > down), up, 0.0)
    minus_dm = np.where((down > 0) & (up < down), down, 0.0)
    tr = true_range(high, low, close)
    # Wilder sums: plain sums of bars 1..p-1, then s - s/p + x.
    sp = float(np.sum(plus_dm[1:p]))
    sm = float(np.sum(minus_dm[1:p]))
    st = float(np.sum(tr[1:p]))
    pdm, mdm, trs = plus_dm.tolist(), minus_dm.tolist(), tr.tolist()
    adx_value = 0.0
    dx_sum = 0.0
    for i in range(p, n):
        sp = sp - sp / p + pdm[i]
        sm = sm - sm / p + mdm[i]
        st = st - st / p + trs[i]
        pdi = 100.0 * sp / st if st != 0.0 else 0.0
        mdi = 100.0 * sm / st if st != 0.0 else 0.0
        dx = 100.0 * abs(pdi - mdi) / (pdi + mdi) if st != 0.0 and pdi + mdi != 0.0 else None
        if i < 2 * p - 1:
            dx_sum += dx or 0.0
            continue
        if i == 2 * p - 1:
            adx_value = (dx_sum + (dx or 0.0)) / p
        elif dx is not None:
            adx_value = (adx_value * (p - 1) + dx) / p
        out[0][i], out[1][i], out[2][i] = adx_value, pdi, mdi
    return out


def donchian(high: Array, low: Array, period: int = 20) -> tuple[Array, Array, Array]:
    upper = _nan(len(high))
    lower = _nan(len(low))
    if len(high) >= period:
        upper[period - 1 :] = _windows(high, period).max(axis=1)
        lower[period - 1 :] = _windows(low, period).min(axis=1)
    return upper, (upper + lower) / 2.0, lower


def compute(spec: IndicatorSpec, bars: Sequence[OHLCV]) -> tuple[Array, ...]:
    """Every output of ``spec`` over ``bars``, in ``spec.outputs`` order."""
    high = np.array([b.high for b in bars], dtype=np.float64)
    low = np.array([b.low for b in bars], dtype=np.float64)
    close = np.array([b.close for b in bars], dtype=np.float64)
    volume = np.array([b.volume for b in bars], dtype=np.float64)
    p = spec.params
    match spec.kind:
        case IndicatorKind.SMA:
            return (sma(close, int(p[0])),)
        case IndicatorKind.EMA:
            return (ema(close, int(p[0])),)
        case IndicatorKind.WMA:
            return (wma(close, int(p[0])),)
        case IndicatorKind.RSI:
            return (rsi(close, int(p[0])),)
        case IndicatorKind.MACD:
            return macd(close, int(p[0]), int(p[1]), int(p[2]))
        case IndicatorKind.BBANDS:
            return bbands(close, int(p[0]), float(p[1]))
        case IndicatorKind.ATR:
            return (atr(high, low, close, int(p[0])),)
        case IndicatorKind.STOCH:
            return stoch(
                high, low, close, k_period=int(p[0]), k_smooth=int(p[1]), d_period=int(p[2])
            )
        case IndicatorKind.VWAP:
            traded = np.array(
                [getattr(b, "vwap", (b.high + b.low + b.close) / 3.0) for b in bars],
                dtype=np.float64,
            )
            return (vwap([b.start_ms for b in bars], traded, volume),)
        case IndicatorKind.VWAP_HLC3:
            return (vwap([b.start_ms for b in bars], (high + low + close) / 3.0, volume),)
        case IndicatorKind.OBV:
            return (obv(close, volume),)
        case IndicatorKind.ADX:
            return adx(high, low, close, int(p[0]))
        case IndicatorKind.DONCHIAN:
            return donchian(high, low, int(p[0]))
    raise AssertionError(spec.kind)  # pragma: no cover
