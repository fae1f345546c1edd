"""The ``bars`` table: closed 1-second, 1-minute and daily bars, written in batches off the
hot path. 1-second bars are kept ``TICKGRAPH_SECOND_BARS_DAYS`` days (``prune_seconds``).

Writing: the ingest hands every closed or revised bar to ``BarWriter.submit``, which only
puts it in an in-memory buffer and returns; a background task writes the buffer every
``flush_interval_s`` (sooner when ``batch_size`` bars are waiting) with ``COPY`` into a
temporary table and one ``INSERT ... ON CONFLICT DO UPDATE``, in one transaction.

The buffer is a dict keyed by the table's primary key, so it holds at most one version
of each bar: a revision submitted before the previous version was written replaces it
(the database only ever needs the newest). It is bounded by ``max_pending`` distinct
bars; when full, the oldest pending bar is dropped and counted. While PostgreSQL is
unavailable the writer keeps the buffer (within that bound), retries with backoff and
writes everything once the database answers again; ``submit`` is never affected.

Reading: ``load_bars``/``page_bars`` for the bars queries, ``load_session`` for rebuilding
a session at start-up (``server.bar_recovery``).

Call ``submit`` from the event loop's thread (it wakes the writer task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterable
from itertools import islice
from typing import Any, Final, TypeAlias

import asyncpg

from server.errors import InvalidInput, LimitExceeded
from server.market.symbols import is_valid_symbol
from server.market.timeframes import Bar, Timeframe
from streams.backoff import Backoff

logger = logging.getLogger(__name__)

#: An asyncpg pool or connection; asyncpg ships no type information.
Executor: TypeAlias = Any

#: The timeframes the table stores (see migrations/0002_bars.sql and 0006).
STORED_TIMEFRAMES: Final = frozenset({Timeframe.S1, Timeframe.M1, Timeframe.D1})

DEFAULT_FLUSH_INTERVAL_S = 1.0
DEFAULT_BATCH_SIZE = 5_000
DEFAULT_MAX_PENDING = 200_000
#: One write attempt (connect, COPY, upsert) may take this long before it is retried.
DEFAULT_WRITE_TIMEOUT_S = 30.0
DEFAULT_CLOSE_TIMEOUT_S = 10.0
DEFAULT_LOAD_LIMIT = 500
MAX_LOAD_LIMIT = 10_000

_BIGINT_MIN = -(2**63)
_BIGINT_MAX = 2**63 - 1

_Key: TypeAlias = tuple[str, str, int]

_COLUMNS: Final = (
    "symbol",
    "timeframe",
    "start_ms",
    "end_ms",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trades",
    "revision",
)
COLUMN_LIST: Final = ", ".join(_COLUMNS)

# Per session, reused by every flush on that connection: ON COMMIT DELETE ROWS empties it
# at the end of each transaction, and keeping it (rather than ON COMMIT DROP) spares the
# catalog a create and drop per flush. LIKE copies the column types and NOT NULLs only.
_CREATE_STAGING: Final = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS bars_staging (LIKE bars) ON COMMIT DELETE ROWS"
)

# The WHERE keeps a stale version (a retried or reordered batch) from overwriting a newer
# revision; the same revision is rewritten, so replaying a batch is harmless.
_UPSERT: Final = f"""
INSERT INTO bars AS b ({COLUMN_LIST})
SELECT {COLUMN_LIST} FROM bars_staging
ON CONFLICT (symbol, timeframe, start_ms) DO UPDATE SET
    end_ms = EXCLUDED.end_ms,
    open = EXCLUDED.open,
    high = EXCLUDED.high,
    low = EXCLUDED.low,
    close = EXCLUDED.close,
    volume = EXCLUDED.volume,
    vwap = EXCLUDED.vwap,
    trades = EXCLUDED.trades,
    revision = EXCLUDED.revision
WHERE b.revision <= EXCLUDED.revision
"""

# The most recent $5 bars in the range, re-sorted oldest first. Absent bounds are passed as
# the bigint extremes (not NULL) so that the bounds are always an index range.
_LOAD: Final = f"""
SELECT * FROM (
    SELECT {COLUMN_LIST} FROM bars
    WHERE symbol = $1 AND timeframe = $2 AND start_ms >= $3 AND start_ms < $4
    ORDER BY start_ms DESC
    LIMIT $5
) recent
ORDER BY start_ms
"""

# SQLSTATE classes of errors that retrying the same rows cannot fix: data exceptions (22)
# and integrity constraint violations (23).
_PERMANENT_CLASSES: Final = ("22", "23")


def _key(bar: Bar) -> _Key:
    return (bar.symbol, bar.timeframe.value, bar.start_ms)


def _record(
    bar: Bar,
) -> tuple[str, str, int, int, float, float, float, float, int, float, int, int]:
    return (
        bar.symbol,
        bar.timeframe.value,
        bar.start_ms,
        bar.end_ms,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.vwap,
        bar.trades,
        bar.revision,
    )


def invalid_reason(bar: Bar) -> str | None:
    """Why the table's constraints would reject ``bar``, or ``None`` if they accept it.
    Checked before buffering, so one bad bar can never fail a whole batch."""
    if not is_valid_symbol(bar.symbol):
        return f"invalid symbol {bar.symbol!r}"
    prices = (bar.open, bar.high, bar.low, bar.close, bar.vwap)
    if not all(math.isfinite(p) for p in prices):
        return "non-finite price"
    if not (bar.low <= bar.open <= bar.high and bar.low <= bar.close <= bar.high):
        return "open/close outside low..high"
    if bar.end_ms <= bar.start_ms or bar.volume < 0 or bar.trades <= 0 or bar.revision < 0:
        return "empty interval, negative volume, no trades, or negative revision"
    if not (bar.volume <= _BIGINT_MAX and bar.trades <= _BIGINT_MAX and bar.revision < 2**31):
        return "volume, trades or revision out of range"
    return None


async def write_bars(db: Executor, bars: Iterable[Bar]) -> int:
    """Upsert ``bars`` in one transaction (COPY into a staging table, then one INSERT);
    return how many rows were inserted or changed. A bar whose stored revision is newer
    is left alone. ``db`` is a pool or a connection."""
    # Latest version per key: PostgreSQL refuses to update one row twice in a statement.
    batch: dict[_Key, Bar] = {}
    for bar in bars:
        key = _key(bar)
        old = batch.get(key)
        if old is None or bar.revision >= old.revision:
            batch[key] = bar
    if not batch:
        return 0
    records = [_record(bar) for bar in batch.values()]
    if hasattr(db, "acquire"):
        async with db.acquire() as conn:
            return await _copy_and_upsert(conn, records)
    return await _copy_and_upsert(db, records)


async def _copy_and_upsert(conn: Any, records: list[tuple[Any, ...]]) -> int:
    async with conn.transaction():
        await conn.execute(_CREATE_STAGING)
        await conn.copy_records_to_table("bars_staging", records=records, columns=_COLUMNS)
        status: str = await conn.execute(_UPSERT)
    return int(status.rsplit(" ", 1)[1])  # "INSERT 0 <rows>"


async def load_bars(
    db: Executor,
    symbol: str,
    timeframe: Timeframe,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    limit: int = DEFAULT_LOAD_LIMIT,
) -> list[Bar]:
    """The most recent ``limit`` stored bars of ``symbol`` whose start is in
    ``[start_ms, end_ms)`` (either bound optional), oldest first.

    Raises ``InvalidInput`` for a timeframe the table does not store or a limit below 1,
    ``LimitExceeded`` above ``MAX_LOAD_LIMIT``.
    """
    timeframe = Timeframe(timeframe)
    if timeframe not in STORED_TIMEFRAMES:
        raise InvalidInput(
            f"{timeframe} bars are not stored (stored: 1s, 1m, 1d)", timeframe=timeframe.value
        )
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, got {limit}", limit=limit)
    if limit > MAX_LOAD_LIMIT:
        raise LimitExceeded(
            f"limit {limit} is above the maximum of {MAX_LOAD_LIMIT}", limit=MAX_LOAD_LIMIT
        )
    rows = await db.fetch(
        _LOAD,
        symbol,
        timeframe.value,
        _BIGINT_MIN if start_ms is None else start_ms,
        _BIGINT_MAX if end_ms is None else end_ms,
        limit,
    )
    return [bar_of_row(row) for row in rows]


# The newest day with 1m bars, and whether its day bar is stored (then it closed).
_LATEST_SESSION: Final = """
SELECT m.start_ms,
       EXISTS (SELECT 1 FROM bars d WHERE d.symbol = $1 AND d.timeframe = '1d'
               AND d.start_ms <= m.start_ms AND m.start_ms < d.end_ms) AS closed
FROM bars m WHERE m.symbol = $1 AND m.timeframe = '1m'
ORDER BY m.start_ms DESC LIMIT 1
"""

_SESSION: Final = f"""
SELECT {COLUMN_LIST} FROM bars
WHERE symbol = $1 AND timeframe IN ('1s', '1m') AND start_ms >= $2 AND start_ms < $3
ORDER BY timeframe, start_ms
"""


async def load_session(db: Executor, symbol: str) -> list[Bar]:
    """The stored 1s and 1m bars of ``symbol``'s latest session, if that session did not
    close (its day bar is not stored: the server stopped during it); else nothing."""
    row = await db.fetchrow(_LATEST_SESSION, symbol)
    if row is None or row["closed"]:
        return []
    start, end = Timeframe.D1.bucket(row["start_ms"])
    return [bar_of_row(r) for r in await db.fetch(_SESSION, symbol, start, end)]


async def prune_seconds(db: Executor, before_ms: int, batch: int = 50_000) -> int:
    """Delete 1-second bars that started before ``before_ms`` (in batches, so a large
    backlog never holds long locks); how many were deleted."""
    deleted = 0
    while True:
        status: str = await db.execute(
            "DELETE FROM bars WHERE ctid IN (SELECT ctid FROM bars WHERE timeframe = '1s' "
            "AND start_ms < $1 LIMIT $2)",
            before_ms,
            batch,
        )
        n = int(status.rsplit(" ", 1)[1])
        deleted += n
        if n < batch:
            return deleted


def bar_of_row(row: Any) -> Bar:
    """A ``bars`` row (all of ``COLUMN_LIST``) as a final ``Bar``."""
    return Bar(
        row["symbol"],
        Timeframe(row["timeframe"]),
        row["start_ms"],
        row["end_ms"],
        row["open"],
        row["high"],
        row["low"],
        row["close"],
        row["volume"],
        row["vwap"],
        row["trades"],
        True,
        row["revision"],
    )


def _is_permanent(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(exc, asyncpg.PostgresError) and str(sqlstate)[:2] in _PERMANENT_CLASSES


class BarWriter:
    """Buffers closed bars and writes them to PostgreSQL in the background.

    Counters: ``written`` (bars the database accepted), ``dropped`` (lost to the
    ``max_pending`` bound, or still pending when ``close`` gave up), ``failures`` (write
    attempts that failed and will be retried), ``rejected`` (bars the table cannot take),
    ``coalesced`` (submits that replaced a pending older version), ``batches``.
    """

    def __init__(
        self,
        pool: Executor,
        *,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_pending: int = DEFAULT_MAX_PENDING,
        write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
        backoff: Backoff | None = None,
        timeframes: frozenset[Timeframe] = STORED_TIMEFRAMES,
    ) -> None:
        if flush_interval_s <= 0 or batch_size < 1 or max_pending < batch_size:
            raise ValueError("need flush_interval_s > 0 and 1 <= batch_size <= max_pending")
        self._pool = pool
        #: What is stored (1s bars only while TICKGRAPH_SECOND_BARS_DAYS > 0).
        self.timeframes = timeframes & STORED_TIMEFRAMES
        self._flush_interval_s = flush_interval_s
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._write_timeout_s = write_timeout_s
        self._backoff = backoff if backoff is not None else Backoff(0.1, 5.0)
        #: Newest version of each bar not yet written, oldest submission first.
        self._pending: dict[_Key, Bar] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failing_since: int | None = None  # failures count when the outage began
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self.rejected = 0
        self.coalesced = 0
        self.batches = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, bar: Bar) -> bool:
        """Queue a closed (or revised) bar for writing; never blocks, never raises.

        Returns ``False`` for bars the table does not take: not final, a timeframe not
        stored (so callers can pass every bar event), or invalid (counted in
        ``rejected``), and after ``close``.
        """
        if not bar.final or bar.timeframe not in self.timeframes or self._closing:
            return False
        reason = invalid_reason(bar)
        if reason is not None:
            self.rejected += 1
            logger.error("bar not stored (%s): %r", reason, bar)
            return False
        pending = self._pending
        key = (bar.symbol, bar.timeframe.value, bar.start_ms)
        old = pending.get(key)
        if old is not None:
            if bar.revision >= old.revision:
                pending[key] = bar  # keeps the key's place in the order
                self.coalesced += 1
            return True
        if len(pending) >= self._max_pending:
            del pending[next(iter(pending))]
            self.dropped += 1
        pending[key] = bar
        if len(pending) >= self._batch_size:
            self._wakeup.set()
        return True

    def start(self) -> None:
        """Start the background task (call from within the running event loop)."""
        if self._task is not None:
            raise RuntimeError("BarWriter already started")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="bar-writer")

    async def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Write what is pending (retrying within ``timeout``) and stop. Bars still
        pending after that are counted as dropped. Idempotent."""
        self._closing = True
        task = self._task
        if task is None:
            return
        self._wakeup.set()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pending:
            logger.error(
                "bar writer closed with %d bars unwritten (database unavailable?)",
                len(self._pending),
            )
            self.dropped += len(self._pending)
            self._pending.clear()

    async def _run(self) -> None:
        try:
            while True:
                if not self._closing and len(self._pending) < self._batch_size:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._flush_interval_s):
                            await self._wakeup.wait()
                self._wakeup.clear()
                if not await self._write_pending():
                    await asyncio.sleep(self._backoff.next_delay())
                    continue
                if self._closing and not self._pending:
                    return
        except Exception:
            # A bug, not an outage (those are retried): make it visible; bars submitted
            # from now on stay pending until close() counts them as dropped.
            logger.exception("bar writer stopped")

    async def _write_pending(self) -> bool:
        """Write everything pending, batch by batch; ``False`` if an attempt failed."""
        while self._pending:
            batch = list(islice(self._pending.values(), self._batch_size))
            try:
                async with asyncio.timeout(self._write_timeout_s):
                    await write_bars(self._pool, batch)
            except Exception as exc:
                if _is_permanent(exc):
                    # invalid_reason() should have caught it; don't retry it forever.
                    logger.exception("bar batch of %d rejected by the database", len(batch))
                    self.rejected += len(batch)
                    self._forget(batch)
                    continue
                self._note_failure(exc)
                return False
            self._forget(batch)
            self.written += len(batch)
            self.batches += 1
            self._note_success()
        return True

    def _forget(self, batch: list[Bar]) -> None:
        """Remove written bars from the buffer, except those a newer version replaced
        meanwhile (those still need writing)."""
        pending = self._pending
        for bar in batch:
            key = (bar.symbol, bar.timeframe.value, bar.start_ms)
            if pending.get(key) is bar:
                del pending[key]

    def _note_failure(self, exc: BaseException) -> None:
        self.failures += 1
        if self._failing_since is None:
            self._failing_since = self.failures - 1
            logger.warning(
                "writing bars failed (%s: %s); keeping up to %d bars and retrying",
                type(exc).__name__,
                exc,
                self._max_pending,
            )

    def _note_success(self) -> None:
        self._backoff.reset()
        if self._failing_since is not None:
            logger.info(
                "writing bars works again after %d failed attempts",
                self.failures - self._failing_since,
            )
            self._failing_since = None


__all__ = [
    "DEFAULT_LOAD_LIMIT",
    "MAX_LOAD_LIMIT",
    "STORED_TIMEFRAMES",
    "BarWriter",
    "invalid_reason",
    "load_bars",
    "load_session",
    "prune_seconds",
    "write_bars",
]
