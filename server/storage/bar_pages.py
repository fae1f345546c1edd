"""Stored bars a page at a time: any range, of any timeframe, in pieces of a bounded size.

The ``bars`` table holds 1s, 1m and 1d bars; 5m, 15m and 1h bars are merged from the 1m
rows (``history.provider.merge_into``). A page is the ``count`` bars nearest to one end
of ``[start_ms, end_ms)``: the oldest (``newest=False``, for walking forward with a
cursor) or the newest (``newest=True``). The size of the range never matters, only the
size of the page: each page is one indexed query of at most ``count`` rows (times the
minutes in a bucket, for merged timeframes).
"""

from __future__ import annotations

from typing import Any, Final

from server.history.provider import first_inside_start, merge_into
from server.market.timeframes import Bar, Timeframe
from server.storage.bars import COLUMN_LIST, bar_of_row

#: A bound that no bar reaches (the extremes of bigint).
OPEN_START: Final = -(2**63)
OPEN_END: Final = 2**63 - 1
_STORED: Final = frozenset({Timeframe.S1, Timeframe.M1, Timeframe.D1})
_MINUTE_MS: Final = 60_000


def _query(newest: bool) -> str:
    order = "DESC" if newest else "ASC"
    return (
        f"SELECT {COLUMN_LIST} FROM bars WHERE symbol = $1 AND timeframe = $2 "
        f"AND start_ms >= $3 AND start_ms < $4 ORDER BY start_ms {order} LIMIT $5"
    )


async def stored_page(
    db: Any,
    symbol: str,
    timeframe: Timeframe,
    *,
    start_ms: int,
    end_ms: int,
    count: int,
    newest: bool = False,
) -> list[Bar]:
    """At most ``count`` stored bars starting in ``[start_ms, end_ms)``: the oldest, or
    with ``newest`` the newest; oldest first either way."""
    if count < 1 or end_ms <= start_ms:
        return []
    if timeframe in _STORED:
        rows = await db.fetch(_query(newest), symbol, timeframe.value, start_ms, end_ms, count)
        bars = [bar_of_row(r) for r in rows]
        return bars[::-1] if newest else bars
    size = timeframe.millis
    assert size is not None  # 5m, 15m, 1h
    lo = first_inside_start(timeframe, start_ms) if start_ms > OPEN_START else start_ms
    hi = end_ms if end_ms >= OPEN_END else end_ms - end_ms % size + (size if end_ms % size else 0)
    # One bucket more than asked: the far one may be cut by the LIMIT and is dropped.
    limit = (count + 1) * (size // _MINUTE_MS)
    rows = await db.fetch(_query(newest), symbol, Timeframe.M1.value, lo, hi, limit)
    minutes = [bar_of_row(r) for r in rows]
    if newest:
        minutes.reverse()
    merged = [b for b in merge_into(timeframe, minutes) if start_ms <= b.start_ms < end_ms]
    if len(rows) == limit and merged:
        # The LIMIT may have cut the bucket at the far end: it belongs to the next page.
        merged = merged[1:] if newest else merged[:-1]
    return merged[-count:] if newest else merged[:count]


__all__ = ["OPEN_END", "OPEN_START", "stored_page"]
