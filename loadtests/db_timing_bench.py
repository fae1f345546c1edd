"""What timing every query costs: asyncpg statements with no timing, with asyncpg's
``add_query_logger``, and with ``server.storage.timing.TimedConnection`` (what the pool
uses), on the same PostgreSQL in the same run.

    python -m loadtests.db_timing_bench [--rounds 15] [--queries 3000] [--loop uvloop]

Each round runs ``--queries`` sequential ``SELECT $1::int`` through a one-connection
pool per variant, in turn; prints one JSON object with the median µs per query of each
and the ratios to no timing. PostgreSQL: ``--database-url``, else a pgserver in a
temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg

from server.observability.histogram import LatencyHistogram
from server.storage.timing import QueryStats, timed_connection_class

VARIANTS = ("none", "query_logger", "timed_connection")


async def _per_query_us(url: str, variant: str, n: int) -> float:
    logged = LatencyHistogram()

    def on_query(record: Any) -> None:
        logged.record_us(int(record.elapsed * 1e6))

    async def init(con: Any) -> None:
        if variant == "query_logger":
            con.add_query_logger(on_query)

    extra: dict[str, Any] = {}
    if variant == "timed_connection":
        extra["connection_class"] = timed_connection_class(QueryStats())
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1, init=init, **extra)
    try:
        for _ in range(200):
            await pool.fetchval("SELECT 1")
        started = time.perf_counter()
        for _ in range(n):
            await pool.fetchval("SELECT $1::int", 1)
        return (time.perf_counter() - started) / n * 1e6
    finally:
        await pool.close()


async def measure(url: str, rounds: int, n: int) -> dict[str, Any]:
    runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            runs[variant].append(await _per_query_us(url, variant, n))
    medians = {v: statistics.median(xs) for v, xs in runs.items()}
    return {
        "rounds": rounds,
        "queries_per_round": n,
        "us_per_query": {v: round(m, 1) for v, m in medians.items()},
        "ratio_to_none": {v: round(m / medians["none"], 4) for v, m in medians.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    workdir: Path | None = None
    server: Any = None
    url = args.database_url
    if url is None:
        workdir = Path(tempfile.mkdtemp(prefix="tickgraph-dbbench-"))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            from pgserver.postgres_server import get_server
        server = get_server(workdir / "pgdata", cleanup_mode="delete")
        url = str(server.get_uri())
    run: Callable[[Any], Any] = asyncio.run
    if args.loop == "uvloop":
        import uvloop

        run = uvloop.run
    try:
        result = run(measure(url, args.rounds, args.queries))
    finally:
        if server is not None:
            server.cleanup()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps({"loop": args.loop, **result}, indent=2))


if __name__ == "__main__":
    main()
