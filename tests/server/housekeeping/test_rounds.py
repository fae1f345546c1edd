"""One round per deployment: real PostgreSQL, several runners (separate pools, as
separate processes have) against one database."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from server.housekeeping import Housekeeping, Job, JobContext, Outcome, run_round
from server.storage.database import Database
from tests.support.postgres import settings_for
from tests.support.server_process import until
from tests.support.timing import TIMEOUT


@pytest_asyncio.fixture
async def two_databases(
    fresh_database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Database, Database]]:
    settings = settings_for(fresh_database_url, tmp_path)
    first = await Database.open(settings)
    second = await Database.open(settings)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def counting_job(interval_s: float, started: list[float], gate: asyncio.Event | None = None) -> Job:
    async def run(ctx: JobContext) -> str:
        started.append(time.monotonic())
        if gate is not None:
            await gate.wait()
        return f"round {len(started)}"

    return Job("test-counting", "counts its rounds", lambda _s: interval_s, run)


def contexts(dbs: tuple[Database, Database], tmp_path: Path) -> tuple[JobContext, JobContext]:
    settings = settings_for("postgresql://unused", tmp_path)
    return JobContext(settings, dbs[0].pool), JobContext(settings, dbs[1].pool)


async def test_two_runners_at_once_one_runs_the_round(
    two_databases: tuple[Database, Database], tmp_path: Path
) -> None:
    started: list[float] = []
    gate = asyncio.Event()
    job = counting_job(3600.0, started, gate)
    a, b = contexts(two_databases, tmp_path)
    first = asyncio.create_task(run_round(job, a))
    await until(lambda: asyncio.sleep(0.01, started), bool, "the first round", TIMEOUT)
    # While the first holds the job's lock, the second gets no round.
    busy = await run_round(job, b)
    assert busy.outcome is Outcome.BUSY
    gate.set()
    done = await first
    assert (done.outcome, done.detail) == (Outcome.OK, "round 1")
    # After it, the round is done for the deployment: not due for the second either.
    later = await run_round(job, b)
    assert later.outcome is Outcome.NOT_DUE
    assert len(started) == 1
    row = await two_databases[1].pool.fetchrow(
        "SELECT outcome, detail, runner, finished_at >= started_at AS ordered "
        "FROM housekeeping_runs WHERE job = $1",
        job.name,
    )
    assert (row["outcome"], row["detail"], row["ordered"]) == ("ok", "round 1", True)
    assert row["runner"].endswith(f":{os.getpid()}")
    # Forced (the CLI), it runs whatever the schedule says.
    forced = await run_round(job, b, force=True)
    assert forced.outcome is Outcome.OK and len(started) == 2


async def test_schedulers_out_of_phase_run_each_round_once(
    two_databases: tuple[Database, Database], tmp_path: Path
) -> None:
    """Two processes' timers, each checking every interval (but out of phase): the job
    runs about once per interval in all, never twice within one."""
    interval = 0.5
    stamps: list[float] = []  # each round's start as the database recorded it

    async def run(ctx: JobContext) -> str:
        stamps.append(
            await ctx.pool.fetchval(
                "SELECT extract(epoch FROM started_at)::float8 FROM housekeeping_runs "
                "WHERE job = 'test-phases'"
            )
        )
        return "done"

    job = Job("test-phases", "records its rounds", lambda _s: interval, run)
    a, b = contexts(two_databases, tmp_path)
    runners = [Housekeeping(a, [job]), Housekeeping(b, [job])]
    tasks = runners[0].start()
    await asyncio.sleep(interval / 2)  # out of phase
    tasks += runners[1].start()
    try:
        await until(
            lambda: asyncio.sleep(0.05, stamps), lambda s: len(s) >= 6, "6 rounds", TIMEOUT * 2
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= interval, gaps
    # Every round is counted by the process that ran it, except one cancelled at the
    # end while its outcome was being written (in ``stamps``, not yet counted).
    counted = sum(r.rounds["test-phases"] for r in runners)
    assert len(stamps) - 1 <= counted <= len(stamps)


async def test_a_failing_round_is_recorded_and_not_retried_until_due(
    two_databases: tuple[Database, Database], tmp_path: Path
) -> None:
    async def broken(ctx: JobContext) -> str:
        raise RuntimeError("disk full")

    job = Job("test-broken", "fails", lambda _s: 3600.0, broken)
    a, b = contexts(two_databases, tmp_path)
    result = await run_round(job, a)
    assert (result.outcome, result.detail) == (Outcome.FAILED, "RuntimeError: disk full")
    row = await two_databases[0].pool.fetchrow(
        "SELECT outcome, detail FROM housekeeping_runs WHERE job = 'test-broken'"
    )
    assert tuple(row) == ("failed", "RuntimeError: disk full")
    assert (await run_round(job, b)).outcome is Outcome.NOT_DUE


async def test_a_job_off_for_the_configuration_never_runs(
    two_databases: tuple[Database, Database], tmp_path: Path
) -> None:
    started: list[float] = []
    job = dataclasses.replace(counting_job(1.0, started), off=lambda _s: "not here")
    a, _ = contexts(two_databases, tmp_path)
    result = await run_round(job, a, force=True)
    assert (result.outcome, result.detail, started) == (Outcome.OFF, "not here", [])
    assert Housekeeping(a, [job]).jobs == []
