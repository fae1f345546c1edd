"""Historical bars: indicator warm-up and backfill of gaps in the live bars.

A ``HistoryProvider`` answers two questions about closed bars:

- ``bars(symbol, tf, end_ms=..., count=...)``: the ``count`` most recent bars that
  closed at or before ``end_ms`` (``bar.end_ms <= end_ms``), oldest first. Fewer when
  the source has fewer (a new listing, a thin symbol, a young database).
- ``range(symbol, tf, start_ms, end_ms)``: every bar lying wholly inside
  ``[start_ms, end_ms)``, oldest first, for filling a gap (bars cut by either edge are
  left out: the caller aligns the gap to buckets or gets the partial bars live).

- ``trades(symbol, start_ms, end_ms)``: every print in ``[start_ms, end_ms)``, oldest
  first, for re-evaluating alerts over a window the server missed (a crash); ``None``
  when the source keeps no prints (only Polygon does).

Every bar returned is ``final=True``, carries ``Timeframe.bucket`` boundaries (the same
ones the live ``BarBuilder`` uses, so history and live bars line up) and is at most
``MAX_BARS`` long per call. Failures of the source raise ``HistoryUnavailable``.

Implementations (one module each):

- ``server.history.polygon.PolygonHistory``: Polygon's aggregates REST endpoint
  through polygon-api-client.
- ``server.history.simulated.SimulatedHistory``: deterministic synthetic bars that end
  at the simulated market's start price, for the embedded default.
- ``server.history.stored.StoredHistory``: the ``bars`` table (1m and 1d rows;
  5m/15m/1h merged from 1m).
- ``ChainedHistory`` (here): asks several providers in order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Final, Protocol, TypeVar

from server.errors import LimitExceeded, Unavailable
from server.market.timeframes import Bar, Timeframe
from streams.events import Trade

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Most bars one call may return or cover; a request for more is a caller bug (or an
#: abuse), not something to page through silently.
MAX_BARS: Final = 50_000
_DAY_MS: Final = 86_400_000


class HistoryUnavailable(Unavailable):
    """The history source failed (refused, rate limited, timed out, sent garbage)."""

    code = "HISTORY_UNAVAILABLE"


class HistoryProvider(Protocol):
    async def bars(
        self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int
    ) -> list[Bar]: ...

    async def range(
        self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int
    ) -> list[Bar]: ...

    async def trades(self, symbol: str, start_ms: int, end_ms: int) -> list[Trade] | None: ...


#: Most prints one ``trades`` call returns; a longer window is not re-evaluated.
MAX_TRADES: Final = 1_000_000


def check_count(count: int) -> int:
    if count > MAX_BARS:
        raise LimitExceeded(f"at most {MAX_BARS} bars per request, asked for {count}")
    return max(0, count)


def check_range(timeframe: Timeframe, start_ms: int, end_ms: int) -> bool:
    """False for an empty range; raises ``LimitExceeded`` for one holding too many bars."""
    if end_ms <= start_ms:
        return False
    size = timeframe.millis or _DAY_MS
    if (end_ms - start_ms) // size > MAX_BARS:
        raise LimitExceeded(f"at most {MAX_BARS} bars per request")
    return True


def last_closed_start(timeframe: Timeframe, end_ms: int) -> int:
    """Start of the newest bucket that ends at or before ``end_ms``."""
    start, end = timeframe.bucket(end_ms - 1)
    return start if end <= end_ms else timeframe.bucket(start - 1)[0]


def first_inside_start(timeframe: Timeframe, start_ms: int) -> int:
    """Start of the oldest bucket that begins at or after ``start_ms``."""
    start, end = timeframe.bucket(start_ms)
    return start if start == start_ms else end


def merge_bars(timeframe: Timeframe, parts: Sequence[Bar]) -> Bar:
    """One ``timeframe`` bar from consecutive shorter bars of its bucket (oldest first):
    first open, highest high, lowest low, last close, summed volume and trades, volume-
    weighted VWAP (the plain mean when nothing traded), the highest part revision."""
    first = parts[0]
    start, end = timeframe.bucket(first.start_ms)
    volume = sum(p.volume for p in parts)
    if volume > 0:
        vwap = sum(p.vwap * p.volume for p in parts) / volume
    else:
        vwap = sum(p.vwap for p in parts) / len(parts)
    return Bar(
        symbol=first.symbol,
        timeframe=timeframe,
        start_ms=start,
        end_ms=end,
        open=first.open,
        high=max(p.high for p in parts),
        low=min(p.low for p in parts),
        close=parts[-1].close,
        volume=volume,
        vwap=vwap,
        trades=sum(p.trades for p in parts),
        final=True,
        revision=max(p.revision for p in parts),
    )


def merge_into(timeframe: Timeframe, minutes: Iterable[Bar]) -> list[Bar]:
    """``minutes`` (1m bars, oldest first) merged per ``timeframe`` bucket."""
    size = timeframe.millis
    assert size is not None  # only fixed-size timeframes are derived from minutes
    out: list[Bar] = []
    group: list[Bar] = []
    for bar in minutes:
        if group and bar.start_ms - bar.start_ms % size != group[0].start_ms - (
            group[0].start_ms % size
        ):
            out.append(merge_bars(timeframe, group))
            group = []
        group.append(bar)
    if group:
        out.append(merge_bars(timeframe, group))
    return out


class ChainedHistory:
    """Asks ``providers`` in order (e.g. the database first, then Polygon).

    ``bars``: the first provider that returns ``count`` bars wins and later ones are not
    asked. When none has enough, the answers are merged by bucket, earlier providers
    winning a bucket both have, and the newest ``count`` are returned: e.g. the database's
    recent bars completed by older bars from Polygon.

    ``range``: the first provider with a non-empty answer wins; answers are not spliced,
    since a gap filled half from one source and half from another could show a seam in
    the middle of the range.

    A provider raising ``HistoryUnavailable`` is skipped (and logged). When every
    provider failed, or some failed and the others had nothing, ``HistoryUnavailable``
    is raised naming each failure; when all answered but had nothing, the answer is [].
    """

    def __init__(self, *providers: HistoryProvider) -> None:
        if not providers:
            raise ValueError("ChainedHistory needs at least one provider")
        self.providers = providers

    async def bars(
        self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int
    ) -> list[Bar]:
        count = check_count(count)
        if count == 0:
            return []
        merged: dict[int, Bar] = {}
        failures: list[str] = []
        for provider in self.providers:
            try:
                got = await provider.bars(symbol, timeframe, end_ms=end_ms, count=count)
            except HistoryUnavailable as exc:
                failures.append(self._failed(provider, exc))
                continue
            if len(got) >= count:
                return got[-count:]
            for bar in got:
                merged.setdefault(bar.start_ms, bar)
        if not merged and failures:
            raise HistoryUnavailable("; ".join(failures))
        return [merged[s] for s in sorted(merged)][-count:]

    async def range(
        self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int
    ) -> list[Bar]:
        failures: list[str] = []
        for provider in self.providers:
            try:
                got = await provider.range(symbol, timeframe, start_ms, end_ms)
            except HistoryUnavailable as exc:
                failures.append(self._failed(provider, exc))
                continue
            if got:
                return got
        if failures:
            raise HistoryUnavailable("; ".join(failures))
        return []

    async def trades(self, symbol: str, start_ms: int, end_ms: int) -> list[Trade] | None:
        """The first provider that keeps prints answers (its failure is raised: a
        window half from one source and half from another is no re-evaluation)."""
        for provider in self.providers:
            got = await provider.trades(symbol, start_ms, end_ms)
            if got is not None:
                return got
        return None

    @staticmethod
    def _failed(provider: HistoryProvider, exc: HistoryUnavailable) -> str:
        name = type(provider).__name__
        logger.warning("history provider %s failed: %s", name, exc.message)
        return f"{name}: {exc.message}"


__all__ = [
    "MAX_BARS",
    "MAX_TRADES",
    "ChainedHistory",
    "HistoryProvider",
    "HistoryUnavailable",
    "check_count",
    "check_range",
    "first_inside_start",
    "last_closed_start",
    "merge_bars",
    "merge_into",
]
