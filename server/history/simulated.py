"""Deterministic synthetic history for the simulated market: bars that end at its start
price, so indicators warmed from them continue smoothly into the live ticks.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from server.history.provider import (
    check_count,
    check_range,
    first_inside_start,
    last_closed_start,
)
from server.market.timeframes import Bar, Timeframe
from server.market.trading_day import day_window
from streams.events import Trade
from streams.simulated_market import MIN_PRICE, start_price

_T = TypeVar("_T")


#: Bars generated inline; more go to a worker thread so the event loop keeps moving.
_SIM_INLINE_MAX: Final = 2_000
#: Regular session length: intraday volatility and volume are scaled to it.
_SESSION_MS: Final = 23_400_000


def _uniforms(key: bytes, n: int) -> list[float]:
    """``n`` uniforms in (0, 1) from a hash: stateless, so any bar can be generated alone."""
    d = hashlib.blake2b(key, digest_size=8 * n).digest()
    return [(int.from_bytes(d[8 * i : 8 * i + 8], "big") + 0.5) / 2**64 for i in range(n)]


@dataclass(frozen=True, slots=True)
class _SymbolModel:
    sigma_day: float  # daily log-return volatility
    day_volume: float  # shares per day
    trade_size: float  # mean shares per trade


def _symbol_model(symbol: str) -> _SymbolModel:
    u = _uniforms(b"history-model|" + symbol.encode(), 3)
    price = start_price(symbol)
    # 1.2-3.5 % daily volatility and $50M-$2B a day (log-uniform): ordinary large caps.
    notional = math.exp(math.log(5e7) + u[1] * (math.log(2e9) - math.log(5e7)))
    return _SymbolModel(
        sigma_day=0.012 + u[0] * 0.023,
        day_volume=notional / price,
        trade_size=80.0 + u[2] * 120.0,
    )


def _cents_up(x: float) -> float:
    return math.ceil(round(x * 100, 6)) / 100


def _cents_down(x: float) -> float:
    return math.floor(round(x * 100, 6)) / 100


class SimulatedHistory:
    """Deterministic synthetic history for any symbol, timeframe and time range.

    The path is a random walk taken backwards from the simulated market's start price:
    the newest bar of every answer closes at ``start_price(symbol)``, where the live
    simulated market begins, so indicators warmed from it run smoothly into live ticks.
    Each bar's return, wicks and volume are drawn from a hash of (seed, symbol,
    timeframe, bucket start), so the same inputs always give the same bars, and two
    answers with different ``end_ms`` share the shape of their overlap (their levels
    differ by the walk in between, since each is anchored at its own end).

    Intraday bars cover the whole clock (no session hours); daily bars skip weekends.
    ``seed=None`` means seed 0: history stays reproducible even when the live market is
    seeded randomly.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = 0 if seed is None else seed

    async def bars(
        self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int
    ) -> list[Bar]:
        count = check_count(count)
        starts = self._starts_back(timeframe, last_closed_start(timeframe, end_ms), count)
        return await self._generate(symbol, timeframe, starts)

    async def range(
        self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int
    ) -> list[Bar]:
        if not check_range(timeframe, start_ms, end_ms):
            return []
        first = first_inside_start(timeframe, start_ms)
        starts: list[int] = []
        s = last_closed_start(timeframe, end_ms)
        while s >= first:
            if not self._skipped(timeframe, s):
                starts.append(s)
            s = timeframe.bucket(s - 1)[0]
        return await self._generate(symbol, timeframe, starts)

    def generate(self, symbol: str, timeframe: Timeframe, starts: Sequence[int]) -> list[Bar]:
        """Bars for the bucket ``starts`` (newest first), oldest first; the newest closes
        at ``start_price(symbol)``. Pure and synchronous."""
        model = _symbol_model(symbol)
        size = timeframe.millis
        fraction = 1.0 if size is None else size / _SESSION_MS
        sigma = model.sigma_day * math.sqrt(fraction)
        bar_volume = model.day_volume * fraction
        prefix = f"{self.seed}|{symbol}|{timeframe.value}|".encode()
        out: list[Bar] = []
        close = start_price(symbol)
        for start in starts:
            u = _uniforms(prefix + str(start).encode(), 5)
            radius = math.sqrt(-2.0 * math.log(u[0]))
            z_return = radius * math.cos(2.0 * math.pi * u[1])
            z_volume = radius * math.sin(2.0 * math.pi * u[1])
            open_ = max(MIN_PRICE, close * math.exp(-sigma * z_return))
            o, c = round(open_, 2), round(close, 2)
            # Wicks: exponential excursions beyond the body, about half a sigma on average.
            high = _cents_up(max(o, c) * math.exp(-0.5 * sigma * math.log(u[2])))
            low = max(0.01, _cents_down(min(o, c) * math.exp(0.5 * sigma * math.log(u[3]))))
            # Busier on big moves, log-normal otherwise.
            volume = max(
                1, round(bar_volume * (0.5 + abs(z_return)) * math.exp(0.4 * z_volume - 0.08))
            )
            trades = max(1, round(volume / model.trade_size))
            vwap = round((o + high + low + c) / 4, 4)
            if size is None:
                bar_start, bar_end = timeframe.bucket(start)
            else:
                bar_start, bar_end = start, start + size
            out.append(
                Bar(
                    symbol=symbol,
                    timeframe=timeframe,
                    start_ms=bar_start,
                    end_ms=bar_end,
                    open=o,
                    high=high,
                    low=low,
                    close=c,
                    volume=volume,
                    vwap=vwap,
                    trades=trades,
                    final=True,
                )
            )
            close = open_  # walking backwards: this bar's open is the previous bar's close
        out.reverse()
        return out

    async def trades(self, symbol: str, start_ms: int, end_ms: int) -> list[Trade] | None:
        """The simulated market keeps no prints of its past."""
        return None

    async def _generate(self, symbol: str, timeframe: Timeframe, starts: list[int]) -> list[Bar]:
        if len(starts) <= _SIM_INLINE_MAX:
            return self.generate(symbol, timeframe, starts)
        return await asyncio.to_thread(self.generate, symbol, timeframe, starts)

    @staticmethod
    def _skipped(timeframe: Timeframe, start_ms: int) -> bool:
        return timeframe is Timeframe.D1 and day_window(start_ms).day.weekday() >= 5

    def _starts_back(self, timeframe: Timeframe, newest: int, count: int) -> list[int]:
        starts: list[int] = []
        s = newest
        size = timeframe.millis
        while len(starts) < count:
            if not self._skipped(timeframe, s):
                starts.append(s)
            s = s - size if size is not None else timeframe.bucket(s - 1)[0]
        return starts
