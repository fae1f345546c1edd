"""Query latency for ``/metrics``: every statement the pool runs, timed where it is made.

How: the pool's connections are of a subclass of ``asyncpg.Connection``
(``create_pool(connection_class=...)``, a documented parameter) whose query methods
time the awaited call with two ``monotonic_ns`` reads and add it to a
``LatencyHistogram``. asyncpg's own ``add_query_logger`` was measured first and is
not used: it builds a record and schedules a loop callback per query, which cost
+11% per query on uvloop (``loadtests/db_timing_bench.py``; this subclass is within
noise of no timing at all).

A statement that raises is timed too and counted in ``errors`` (constraint
violations the code expects included: the count says how often PostgreSQL said no,
not how often something broke). A cancelled one is neither: its time is the
caller's, not the database's. ``COPY`` is timed like a query; cursors are not.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from server.observability.histogram import LatencyHistogram


class QueryStats:
    __slots__ = ("errors", "latency")

    def __init__(self) -> None:
        self.latency = LatencyHistogram()
        self.errors = 0


class TimedConnection(asyncpg.Connection):  # type: ignore[misc]
    """A connection whose query methods report to ``query_stats`` (set per pool by
    ``timed_connection_class``)."""

    query_stats: QueryStats = QueryStats()

    async def _timed(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        stats = self.query_stats
        started = time.monotonic_ns()
        try:
            result = await call(*args, **kwargs)
        except asyncio.CancelledError:
            raise
        except BaseException:
            stats.errors += 1
            stats.latency.record_ns(time.monotonic_ns() - started)
            raise
        stats.latency.record_ns(time.monotonic_ns() - started)
        return result

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().execute, *args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().executemany, *args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().fetch, *args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().fetchval, *args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().fetchrow, *args, **kwargs)

    async def fetchmany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().fetchmany, *args, **kwargs)

    async def copy_records_to_table(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().copy_records_to_table, *args, **kwargs)

    async def copy_to_table(self, *args: Any, **kwargs: Any) -> Any:
        return await self._timed(super().copy_to_table, *args, **kwargs)


def timed_connection_class(stats: QueryStats) -> type[TimedConnection]:
    """A connection class reporting to ``stats`` (one per pool: several pools in one
    process, as in tests, keep their figures apart)."""
    return type("TimedConnection", (TimedConnection,), {"query_stats": stats})
