"""Bar timeframes and the bar record shared by bars, indicators, alerts and the API.

Intraday buckets are aligned to the Unix epoch (every New York hour boundary is a UTC
hour boundary, so 1h bars line up with the exchange clock). Daily buckets are New
York calendar days, as Polygon's daily aggregates are.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

import msgspec

from server.market.trading_day import DayWindow, day_window


class Timeframe(StrEnum):
    S1 = "1s"
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    D1 = "1d"

    @property
    def millis(self) -> int | None:
        """Fixed bucket length, or ``None`` for daily bars (23-25 h New York days)."""
        return _MILLIS[self]

    def bucket(self, t_ms: int) -> tuple[int, int]:
        """``(start_ms, end_ms)`` of the bucket holding ``t_ms`` (end exclusive)."""
        size = _MILLIS[self]
        if size is None:
            window: DayWindow = day_window(t_ms)
            return window.start_ms, window.end_ms
        start = t_ms - t_ms % size
        return start, start + size


_MILLIS: dict[Timeframe, int | None] = {
    Timeframe.S1: 1_000,
    Timeframe.M1: 60_000,
    Timeframe.M5: 300_000,
    Timeframe.M15: 900_000,
    Timeframe.H1: 3_600_000,
    Timeframe.D1: None,
}

ALL_TIMEFRAMES: tuple[Timeframe, ...] = tuple(Timeframe)


class Bar(msgspec.Struct, frozen=True, gc=False):
    """One OHLCV bar. ``final`` is false while the interval runs; a closed bar that a
    late trade changes is re-emitted with ``revision`` incremented."""

    symbol: str
    timeframe: Timeframe
    start_ms: int
    end_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: int
    vwap: float
    trades: int
    final: bool = False
    revision: int = 0


class OHLCV(Protocol):
    """What an indicator reads from a bar (``Bar`` satisfies it; so do test rows)."""

    @property
    def start_ms(self) -> int: ...

    @property
    def open(self) -> float: ...

    @property
    def high(self) -> float: ...

    @property
    def low(self) -> float: ...

    @property
    def close(self) -> float: ...

    @property
    def volume(self) -> int | float: ...
