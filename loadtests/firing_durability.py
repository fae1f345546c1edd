"""Durability lag of fired alerts: from the engine's decision to the commit that makes it
durable, with the group-commit writer, against a real PostgreSQL.

    python -m loadtests.firing_durability [--rates 200,2000,5000] [--seconds 10] [--busy 0.7]

Firings are submitted at a steady rate (1 ms ticks) for ``--seconds`` at each rate; 200/s
is the most one elite user's alerts may fire together (the highest per-user rate the
tiers allow), 2,000/s ten such users at once. ``--busy`` keeps the event loop that
busy with other work between ticks (a fraction of each 10 ms), as the ingest keeps it
during a max-speed replay. The baseline, measured in the same run on the same
database, is the previous design: one transaction per firing, written one after the
other. Prints one JSON object (lags in ms: p50, p99, max; commits and mean batch).

Uses ``DATABASE_URL`` when set, otherwise a temporary PostgreSQL from pgserver.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtests.processes import bench_database
from server.delivery.bus import InProcessBus
from server.delivery.firings import AlertDelivery, Firing, LagStats
from server.settings import Secret, Settings
from server.storage.alert_events import record_firing
from server.storage.database import Database

ALERTS = 200
PAYLOAD = {
    "symbol": "AMZN",
    "revision": 0,
    "mode": "everyTime",
    "done": False,
    "conditions": [{"left": 223.45, "right": 1.0}],
}


async def _alerts(db: Database) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(ALERTS)]
    await db.pool.executemany(
        "INSERT INTO alerts (id, owner, symbol, definition) VALUES ($1, $2, 'AMZN', '{}')",
        [(i, f"u{n % 10}") for n, i in enumerate(ids)],
    )
    return ids


async def _produce(
    rate: float,
    seconds: float,
    busy: float,
    submit: Callable[[int], None],
) -> int:
    """Call ``submit(n)`` for ``rate`` firings a second, paced in 1 ms ticks; keep the
    loop ``busy`` (a fraction of every 10 ms) doing nothing useful in between."""
    start = time.perf_counter()
    sent = 0
    next_busy = start
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * rate)
        if due > sent:
            submit(due - sent)
            sent = due
        if busy and now >= next_busy:
            spin_until = now + 0.010 * busy
            while time.perf_counter() < spin_until:
                pass
            next_busy = now + 0.010
        await asyncio.sleep(0.001)
    return sent


def _firing(ids: list[uuid.UUID], n: int, t_ms: int) -> Firing:
    return Firing(
        alert_id=ids[n % len(ids)],
        owner=f"u{n % 10}",
        symbol="AMZN",
        dedup_key=f"bench:{n}",
        fired_at_ms=t_ms + n,
        payload=PAYLOAD,
        done=False,
    )


async def group_commit(
    db: Database, ids: list[uuid.UUID], rate: float, args: Any
) -> dict[str, Any]:
    counter = iter(range(10**12))
    t0 = int(time.time() * 1000)
    delivery = AlertDelivery(db.pool, InProcessBus(), take_evaluated=lambda: {"AMZN": t0})
    delivery.start()
    batches = 0
    original = delivery._write

    async def counting(*a: Any) -> bool:
        nonlocal batches
        batches += 1
        return await original(*a)

    delivery._write = counting  # type: ignore[method-assign]

    def submit(n: int) -> None:
        for _ in range(n):
            delivery.submit(_firing(ids, next(counter), t0))

    sent = await _produce(rate, args.seconds, args.busy, submit)
    await delivery.close()
    return _report(delivery.lag, sent, batches)


async def one_by_one(db: Database, ids: list[uuid.UUID], rate: float, args: Any) -> dict[str, Any]:
    """The previous design: a queue, one writer, one transaction per firing."""
    counter = iter(range(10**12))
    t0 = int(time.time() * 1000)
    queue: asyncio.Queue[tuple[Firing, int]] = asyncio.Queue()
    lag = LagStats()

    async def writer() -> None:
        while True:
            f, at = await queue.get()
            await record_firing(
                db.pool,
                alert_id=f.alert_id,
                owner=f.owner,
                symbol=f.symbol,
                dedup_key=f"one:{f.dedup_key}",
                fired_at=datetime.fromtimestamp(f.fired_at_ms / 1000, tz=UTC),
                payload=f.payload,
                done=False,
            )
            lag.record((time.monotonic_ns() - at) // 1000)
            queue.task_done()

    task = asyncio.create_task(writer())

    def submit(n: int) -> None:
        for _ in range(n):
            queue.put_nowait((_firing(ids, next(counter), t0), time.monotonic_ns()))

    sent = await _produce(rate, args.seconds, args.busy, submit)
    # Drain at most 30 s: at high rates the backlog is the point being made.
    with suppress(TimeoutError):
        async with asyncio.timeout(30):
            await queue.join()
    backlog = queue.qsize()
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
    return {**_report(lag, sent, lag.count), "left_unwritten_after_30s": backlog}


def _report(lag: LagStats, sent: int, commits: int) -> dict[str, Any]:
    return {
        "firings": sent,
        "lag_p50_ms": round(lag.percentile(50), 2),
        "lag_p99_ms": round(lag.percentile(99), 2),
        "lag_max_ms": round(lag.max_us / 1000, 2),
        "commits": commits,
        "mean_batch": round(sent / commits, 1) if commits else None,
    }


async def run(args: Any, url: str) -> dict[str, Any]:
    settings = dataclasses.replace(
        Settings(), database_url=Secret(url), data_dir=Path(tempfile.mkdtemp())
    )
    db = await Database.open(settings)
    try:
        ids = await _alerts(db)
        out: dict[str, Any] = {}
        for rate in args.rates:
            runs: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
                "group_commit": group_commit,
                "one_commit_per_firing": one_by_one,
            }
            out[f"{rate:g}/s"] = {name: await fn(db, ids, rate, args) for name, fn in runs.items()}
        return out
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", type=lambda s: [float(x) for x in s.split(",")], default=[200, 2000, 5000]
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--busy", type=float, default=0.0)
    args = parser.parse_args(argv)
    with bench_database("tickgraph-bench-pg-") as url:
        results = asyncio.run(run(args, url))
    print(
        json.dumps(
            {
                "benchmark": "firing_durability",
                "seconds": args.seconds,
                "busy": args.busy,
                "target": "p99 <= 50 ms at 200/s (one elite user's maximum)",
                "rates": results,
                "python": sys.version.split()[0],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
