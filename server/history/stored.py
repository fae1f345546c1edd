"""Historical bars from our own ``bars`` table: 1s, 1m and 1d as stored, 5m/15m/1h merged
from 1m rows, the newest revision of each bar.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import asyncpg

from server.history.provider import (
    HistoryUnavailable,
    check_count,
    check_range,
    first_inside_start,
    merge_into,
)
from server.market.timeframes import Bar, Timeframe
from streams.events import Trade

_T = TypeVar("_T")


_MINUTE_MS: Final = 60_000


_STORED: Final = frozenset({Timeframe.S1, Timeframe.M1, Timeframe.D1})
_DERIVED_FROM_MINUTES: Final = frozenset({Timeframe.M5, Timeframe.M15, Timeframe.H1})

# DISTINCT ON keeps the highest revision should a writer ever keep several per bucket;
# the casts accept numeric as well as double precision columns.
_COLUMNS: Final = """DISTINCT ON (start_ms) start_ms, end_ms, open::float8 AS open,
    high::float8 AS high, low::float8 AS low, close::float8 AS close,
    volume::int8 AS volume, vwap::float8 AS vwap, trades::int8 AS trades,
    revision::int8 AS revision"""

_SQL_LATEST: Final = f"""
SELECT {_COLUMNS}
FROM bars
WHERE symbol = $1 AND timeframe = $2 AND start_ms < $3 AND end_ms <= $3
ORDER BY start_ms DESC, revision DESC
LIMIT $4
"""

_SQL_RANGE: Final = f"""
SELECT {_COLUMNS}
FROM bars
WHERE symbol = $1 AND timeframe = $2 AND start_ms >= $3 AND start_ms < $4 AND end_ms <= $4
ORDER BY start_ms ASC, revision DESC
"""


class StoredHistory:
    """Bars from the ``bars`` table, which holds 1s (recent days), 1m and 1d rows.

    5m, 15m and 1h bars are merged from the stored 1m rows (``merge_bars``); a bucket
    with missing minutes is merged from the minutes it has, as Polygon does for minutes
    without trades.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def bars(
        self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int
    ) -> list[Bar]:
        count = check_count(count)
        if count == 0:
            return []
        if timeframe in _STORED:
            rows = await self._fetch(_SQL_LATEST, symbol, timeframe.value, end_ms, count)
            return [_row_bar(symbol, timeframe, r) for r in reversed(rows)]
        size = timeframe.millis
        assert size is not None and timeframe in _DERIVED_FROM_MINUTES
        aligned_end = end_ms - end_ms % size
        # A bucket holds at most size/1m minutes, so the newest count*ratio minutes span
        # at least `count` buckets, and all but possibly the oldest of them completely.
        rows = await self._fetch(
            _SQL_LATEST, symbol, Timeframe.M1.value, aligned_end, count * (size // _MINUTE_MS)
        )
        minutes = [_row_bar(symbol, Timeframe.M1, r) for r in reversed(rows)]
        return merge_into(timeframe, minutes)[-count:]

    async def range(
        self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int
    ) -> list[Bar]:
        if not check_range(timeframe, start_ms, end_ms):
            return []
        if timeframe in _STORED:
            rows = await self._fetch(_SQL_RANGE, symbol, timeframe.value, start_ms, end_ms)
            return [_row_bar(symbol, timeframe, r) for r in rows]
        size = timeframe.millis
        assert size is not None and timeframe in _DERIVED_FROM_MINUTES
        lo = first_inside_start(timeframe, start_ms)
        hi = end_ms - end_ms % size
        if hi <= lo:
            return []
        rows = await self._fetch(_SQL_RANGE, symbol, Timeframe.M1.value, lo, hi)
        return merge_into(timeframe, [_row_bar(symbol, Timeframe.M1, r) for r in rows])

    async def trades(self, symbol: str, start_ms: int, end_ms: int) -> list[Trade] | None:
        """Prints are not stored, only bars."""
        return None

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        try:
            rows: list[Any] = await self._pool.fetch(sql, *args)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise HistoryUnavailable(
                f"stored history unavailable: {type(exc).__name__}: {exc}", provider="database"
            ) from None
        return rows


def _row_bar(symbol: str, timeframe: Timeframe, row: Any) -> Bar:
    o, h, low, c = row["open"], row["high"], row["low"], row["close"]
    vwap = row["vwap"]
    return Bar(
        symbol=symbol,
        timeframe=timeframe,
        start_ms=int(row["start_ms"]),
        end_ms=int(row["end_ms"]),
        open=o,
        high=h,
        low=low,
        close=c,
        volume=int(row["volume"] or 0),
        vwap=(h + low + c) / 3 if vwap is None else vwap,
        trades=int(row["trades"] or 0),
        final=True,
        revision=int(row["revision"] or 0),
    )
