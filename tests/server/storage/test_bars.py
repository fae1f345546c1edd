"""The bars table and BarWriter, on a freshly migrated real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
import pytest

from server.errors import InvalidInput, LimitExceeded
from server.market.timeframes import Bar, Timeframe
from server.storage.bars import BarWriter, load_bars, write_bars
from server.storage.database import Database
from streams.backoff import Backoff
from tests.support.timing import TIMEOUT, timeout

M1, D1 = Timeframe.M1, Timeframe.D1
T0 = 1_709_908_200_000  # 2024-03-08 09:30 New York
MIN = 60_000
DAY = 86_400_000


def bar(
    symbol: str = "AAPL",
    i: int = 0,
    timeframe: Timeframe = M1,
    *,
    revision: int = 0,
    price: float = 100.0,
    final: bool = True,
) -> Bar:
    """The ``i``-th bar of ``timeframe`` from T0, with prices around ``price``."""
    size = MIN if timeframe is M1 else DAY
    start = T0 + i * size
    return Bar(
        symbol,
        timeframe,
        start,
        start + size,
        price,
        price + 1.0,
        price - 1.0,
        price + 0.5,
        1_000 + i,
        price + 0.25,
        10 + i,
        final,
        revision,
    )


def fast_backoff() -> Backoff:
    return Backoff(0.02, 0.1)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def count_rows(db: Database) -> int:
    return int(await db.pool.fetchval("SELECT count(*) FROM bars"))


@asynccontextmanager
async def running(writer: BarWriter) -> AsyncIterator[BarWriter]:
    writer.start()
    try:
        yield writer
    finally:
        await writer.close(timeout=TIMEOUT)


# -- reading and writing -----------------------------------------------------------------


async def test_round_trip_and_range_queries(database: Database) -> None:
    minutes = [bar(i=i, price=100.0 + i) for i in range(5)]
    days = [bar(i=i, timeframe=D1) for i in range(2)]
    other = [bar("MSFT", i=i) for i in range(2)]
    assert await write_bars(database.pool, [*minutes, *days, *other]) == 9

    pool = database.pool
    assert await load_bars(pool, "AAPL", M1) == minutes  # oldest first, final, exact floats
    assert await load_bars(pool, "AAPL", D1) == days
    assert await load_bars(pool, "AAPL", M1, limit=2) == minutes[3:]  # the most recent
    assert await load_bars(pool, "AAPL", M1, start_ms=T0 + MIN) == minutes[1:]
    assert await load_bars(pool, "AAPL", M1, end_ms=T0 + 2 * MIN) == minutes[:2]  # exclusive
    assert (
        await load_bars(pool, "AAPL", M1, start_ms=T0 + MIN, end_ms=T0 + 4 * MIN, limit=2)
        == minutes[2:4]
    )
    assert await load_bars(pool, "MSFT", M1) == other
    assert await load_bars(pool, "TSLA", M1) == []
    async with pool.acquire() as conn:  # a connection works as well as the pool
        assert await write_bars(conn, []) == 0
        assert await load_bars(conn, "AAPL", D1, limit=1) == days[1:]


async def test_load_rejects_unstored_timeframes_and_bad_limits(database: Database) -> None:
    with pytest.raises(InvalidInput, match="5m bars are not stored"):
        await load_bars(database.pool, "AAPL", Timeframe.M5)
    with pytest.raises(InvalidInput):
        await load_bars(database.pool, "AAPL", M1, limit=0)
    with pytest.raises(LimitExceeded):
        await load_bars(database.pool, "AAPL", M1, limit=10_001)


async def test_a_newer_revision_overwrites_and_an_older_one_does_not(database: Database) -> None:
    pool = database.pool
    await write_bars(pool, [bar(price=100.0)])
    assert await write_bars(pool, [bar(revision=1, price=101.0)]) == 1
    assert await load_bars(pool, "AAPL", M1) == [bar(revision=1, price=101.0)]

    # A stale version (a retried or reordered batch) leaves the newer one alone...
    assert await write_bars(pool, [bar(revision=0, price=99.0)]) == 0
    # ...the same revision is rewritten, and within a batch the newest version wins.
    assert await write_bars(pool, [bar(revision=3, price=103.0), bar(revision=2)]) == 1
    assert await load_bars(pool, "AAPL", M1) == [bar(revision=3, price=103.0)]


async def test_the_table_refuses_what_the_writer_would_never_send(database: Database) -> None:
    good = {
        "symbol": "AAPL",
        "timeframe": "1m",
        "start_ms": T0,
        "end_ms": T0 + MIN,
        "open": 100.0,
        "high": 101.0,
        "low": 99.0,
        "close": 100.5,
        "volume": 1_000,
        "vwap": 100.2,
        "trades": 10,
        "revision": 0,
    }
    columns = ", ".join(good)
    placeholders = ", ".join(f"${n}" for n in range(1, len(good) + 1))
    insert = f"INSERT INTO bars ({columns}) VALUES ({placeholders})"
    for change in (
        {"timeframe": "5m"},
        {"symbol": "aapl"},
        {"end_ms": T0},
        {"low": 100.8},  # above the open
        {"close": 101.5},  # above the high
        {"volume": -1},
        {"trades": 0},
        {"revision": -1},
    ):
        with pytest.raises(asyncpg.CheckViolationError):
            await database.pool.execute(insert, *{**good, **change}.values())
    await database.pool.execute(insert, *good.values())
    assert await count_rows(database) == 1


# -- the writer --------------------------------------------------------------------------


async def test_submit_takes_only_final_stored_valid_bars_and_coalesces_versions(
    database: Database,
) -> None:
    writer = BarWriter(database.pool, flush_interval_s=60)
    assert writer.submit(bar(revision=0))
    assert writer.submit(bar(revision=2, price=102.0))
    assert writer.submit(bar(revision=1))  # older than the pending version: ignored
    assert (writer.pending, writer.coalesced) == (1, 1)

    assert not writer.submit(bar(i=1, final=False))  # still forming
    assert not writer.submit(msgspec.structs.replace(bar(i=1), timeframe=Timeframe.M5))
    assert writer.rejected == 0
    assert not writer.submit(bar("not a symbol", i=1))
    assert not writer.submit(bar(i=1, price=float("nan")))
    assert writer.rejected == 2
    assert writer.pending == 1

    async with running(writer):
        pass  # close() writes what is pending
    assert await load_bars(database.pool, "AAPL", M1) == [bar(revision=2, price=102.0)]
    assert (writer.written, writer.batches, writer.dropped) == (1, 1, 0)
    assert not writer.submit(bar(i=5))  # closed


async def test_the_writer_flushes_every_interval(database: Database) -> None:
    async with running(BarWriter(database.pool, flush_interval_s=0.05)) as writer:
        for i in range(3):
            writer.submit(bar(i=i))
        await wait_until(lambda: writer.written == 3, "the interval flush")
        assert await count_rows(database) == 3
        writer.submit(bar(i=0, revision=1, price=150.0))
        await wait_until(lambda: writer.written == 4, "the revision")
        assert (await load_bars(database.pool, "AAPL", M1, limit=3))[0].revision == 1
    assert writer.batches == 2


async def test_ten_thousand_bars_go_in_one_copy_batch(database: Database) -> None:
    bars = [bar(f"S{i % 100}", i // 100) for i in range(10_000)]
    writer = BarWriter(database.pool, flush_interval_s=60, batch_size=10_000)
    async with running(writer):
        started = time.perf_counter()
        for b in bars:
            assert writer.submit(b)
        submit_s = time.perf_counter() - started
        # The batch is full: the writer does not wait for the (60 s) interval.
        await wait_until(lambda: writer.written == 10_000, "the full batch")
    assert (writer.batches, writer.failures, writer.dropped) == (1, 0, 0)
    assert await count_rows(database) == 10_000
    assert await load_bars(database.pool, "S42", M1, limit=100) == [
        b for b in bars if b.symbol == "S42"
    ]
    assert submit_s < timeout(0.1)  # a few µs each; generous for loaded machines


async def test_a_full_buffer_drops_the_oldest_bars(database: Database) -> None:
    writer = BarWriter(database.pool, flush_interval_s=60, batch_size=3, max_pending=3)
    for i in range(5):  # not started: nothing drains the buffer
        assert writer.submit(bar(i=i))
    assert (writer.pending, writer.dropped) == (3, 2)
    async with running(writer):
        await wait_until(lambda: writer.written == 3, "the flush")
    assert [b.start_ms for b in await load_bars(database.pool, "AAPL", M1)] == [
        T0 + i * MIN for i in (2, 3, 4)
    ]


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


@asynccontextmanager
async def refusing_connections(postgres_url: str, name: str) -> AsyncIterator[None]:
    """The database accepts no connection and loses the ones it had (like a restart that
    takes a while), until the block ends."""
    admin: Any = await asyncpg.connect(postgres_url, timeout=TIMEOUT)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        try:
            yield
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()


async def test_bars_wait_out_an_unavailable_database_and_are_written_after(
    database: Database, fresh_database_url: str, postgres_url: str
) -> None:
    writer = BarWriter(database.pool, flush_interval_s=0.02, backoff=fast_backoff())
    async with running(writer):
        writer.submit(bar(i=0))
        await wait_until(lambda: writer.written == 1, "the first write")

        async with refusing_connections(postgres_url, database_name(fresh_database_url)):
            for i in range(1, 201):
                writer.submit(bar(i=i))
            await wait_until(lambda: writer.failures >= 3, "failed attempts")
            assert (writer.written, writer.pending, writer.dropped) == (1, 200, 0)
            writer.submit(bar(i=1, revision=1))  # revisions still coalesce meanwhile
            assert writer.pending == 200

        await wait_until(lambda: writer.pending == 0, "the retry after the outage")
    assert (writer.written, writer.dropped) == (201, 0)
    stored = await load_bars(database.pool, "AAPL", M1, limit=1_000)
    assert len(stored) == 201 and stored[1].revision == 1


async def test_close_gives_up_after_its_timeout_and_counts_what_is_lost(
    database: Database, fresh_database_url: str, postgres_url: str
) -> None:
    writer = BarWriter(database.pool, flush_interval_s=60, backoff=fast_backoff())
    writer.start()
    async with refusing_connections(postgres_url, database_name(fresh_database_url)):
        for i in range(5):
            writer.submit(bar(i=i))
        started = time.monotonic()
        await writer.close(timeout=0.3)
        assert time.monotonic() - started < TIMEOUT / 2
    assert (writer.dropped, writer.pending, writer.written) == (5, 0, 0)
    assert writer.failures >= 1


async def test_submit_does_not_wait_for_a_write_stuck_on_a_lock(
    database: Database, fresh_database_url: str
) -> None:
    writer = BarWriter(database.pool, flush_interval_s=0.02)
    blocker: Any = await asyncpg.connect(fresh_database_url, timeout=TIMEOUT)
    try:
        async with running(writer):
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE bars IN ACCESS EXCLUSIVE MODE")
            writer.submit(bar(i=0))
            await wait_until_blocked(database)  # the writer's flush waits for the lock

            slowest = 0.0
            for i in range(1, 1_001):
                started = time.perf_counter()
                assert writer.submit(bar(i=i))
                slowest = max(slowest, time.perf_counter() - started)
            # A newer version of the bar in the stuck batch must not be lost when that
            # batch completes.
            assert writer.submit(bar(i=0, revision=1, price=110.0))
            assert slowest < 0.05
            assert writer.written == 0

            await transaction.rollback()
            await wait_until(lambda: writer.pending == 0, "the writes after the lock")
    finally:
        await blocker.close()
    stored = await load_bars(database.pool, "AAPL", M1, limit=2_000)
    assert len(stored) == 1_001
    assert stored[0] == bar(i=0, revision=1, price=110.0)


async def wait_until_blocked(database: Database) -> None:
    deadline = time.monotonic() + TIMEOUT
    async with database.pool.acquire() as conn:
        while not await conn.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"):
            assert time.monotonic() < deadline, "the writer never waited for the lock"
            await asyncio.sleep(0.01)
