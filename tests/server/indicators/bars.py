"""The daily bars of the shared CSV files, as ``Bar`` records and numpy arrays."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import cache

import msgspec
import numpy as np
import numpy.typing as npt

from server.indicators import Indicator
from server.market.timeframes import OHLCV, Bar, Timeframe
from server.market.trading_day import NEW_YORK
from tests.support.data import SHARED_DATA, require

SYMBOLS = ("NVDA", "ORCL", "YHOO")


@dataclass(frozen=True)
class Series:
    symbol: str
    bars: tuple[Bar, ...]

    def array(self, field: str) -> npt.NDArray[np.float64]:
        return np.array([getattr(b, field) for b in self.bars], dtype=np.float64)


def _midnight_ms(day: date) -> int:
    return int(datetime.combine(day, time(0), tzinfo=NEW_YORK).timestamp() * 1000)


@cache
def daily(symbol: str) -> Series:
    path = require(SHARED_DATA / f"bars-daily-{symbol}.csv")
    bars = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            day = date.fromisoformat(row["date"])
            start = _midnight_ms(day)
            close = float(row["close"])
            bars.append(
                Bar(
                    symbol=symbol,
                    timeframe=Timeframe.D1,
                    start_ms=start,
                    end_ms=start + 86_400_000,
                    open=float(row["open"]),
                    high=float(row["high"]),
                    low=float(row["low"]),
                    close=close,
                    volume=int(row["volume"]),
                    vwap=close,
                    trades=0,
                    final=True,
                )
            )
    return Series(symbol, tuple(bars))


def hourly(symbol: str, per_day: int = 7) -> Series:
    """Synthetic intraday bars: each daily bar spread over ``per_day`` hourly bars from
    09:00 New York, so a session holds several bars (for the session-anchored VWAP)."""
    out = []
    for i, b in enumerate(daily(symbol).bars):
        for j in range(per_day):
            start = b.start_ms + (9 + j) * 3_600_000
            w = (j + 1) / per_day
            mid = b.open + (b.close - b.open) * w
            spread = (b.high - b.low) * (0.3 + 0.1 * ((i + j) % 5))
            out.append(
                Bar(
                    symbol=symbol,
                    timeframe=Timeframe.H1,
                    start_ms=start,
                    end_ms=start + 3_600_000,
                    open=mid,
                    high=mid + spread / 2,
                    low=mid - spread / 2,
                    close=mid + spread * (0.25 - 0.05 * ((i * 7 + j) % 10)),
                    volume=(b.volume // per_day) * ((i + j) % 4),  # some zero volumes
                    vwap=mid,
                    trades=0,
                    final=True,
                )
            )
    return Series(symbol, tuple(out))


def feed(ind: Indicator, bars: Sequence[OHLCV]) -> npt.NDArray[np.float64]:
    """Add ``bars`` one at a time; the value after each, shape (outputs, bars), NaN
    while warming up."""
    out = np.full((len(ind.outputs), len(bars)), np.nan)
    for i, bar in enumerate(bars):
        ind.add(bar)
        value = ind.value
        assert ind.ready == (i >= ind.warmup)
        assert value is not None or not ind.ready
        if value is not None:
            assert len(value) == len(ind.outputs)
            out[:, i] = value
    return out


def assert_close(
    got: npt.NDArray[np.float64], expected: npt.NDArray[np.float64], what: str
) -> None:
    """Equal to 1e-9 relative. Near zero (MACD histogram, oscillators at 0) relative
    error is meaningless, so the floor is 1e-12 of the series' largest magnitude."""
    assert got.shape == expected.shape, what
    assert not np.isnan(expected).any(), f"{what}: reference has NaN"
    assert not np.isnan(got).any(), f"{what}: NaN"
    floor = 1e-12 * float(np.max(np.abs(expected)))
    err = np.abs(got - expected)
    bound = 1e-9 * np.abs(expected) + floor
    worst = int(np.argmax(err - bound))
    assert (err <= bound).all(), (
        f"{what}: at {worst} got {got[worst]!r}, expected {expected[worst]!r} "
        f"(relative error {err[worst] / max(abs(expected[worst]), 1e-300):.2e})"
    )


def partials(bar: Bar, n: int) -> list[Bar]:
    """``n`` successive states of ``bar`` while it forms (the last one is ``bar``)."""
    out = []
    high = low = bar.open
    for j in range(1, n + 1):
        if j == n:
            out.append(bar)
            break
        u = j / n
        price = bar.open + (bar.close - bar.open) * u
        high = max(high, price, bar.open + (bar.high - bar.open) * u)
        low = min(low, price, bar.open + (bar.low - bar.open) * u)
        out.append(
            msgspec.structs.replace(
                bar, high=high, low=low, close=price, volume=bar.volume * j // n, final=False
            )
        )
    return out
