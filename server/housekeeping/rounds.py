"""One round of a job, run once per deployment.

A round takes the job's session-level advisory lock with ``pg_try_advisory_lock`` (a
process that does not get it skips: another is running the job right now), then reads
the job's row in ``housekeeping_runs``: if another process ran the round less than an
interval ago, it is not due. Otherwise the row is stamped with the start, the job runs,
and the row gets its outcome. The lock makes "check, then run" atomic across processes;
the row makes processes whose timers are out of phase run each round once, not once
each.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import asyncpg

from server.housekeeping.job import Job, JobContext, Outcome, RoundResult

log = logging.getLogger(__name__)

#: The class half of every housekeeping lock key (b"tkhk" as a signed int32), so the
#: keys do not collide with other two-key advisory locks of the application.
LOCK_CLASS = int.from_bytes(b"tkhk", "big", signed=True)

_AGE = """
SELECT extract(epoch FROM clock_timestamp() - started_at)::float8
FROM housekeeping_runs WHERE job = $1
"""
_START = """
INSERT INTO housekeeping_runs (job, started_at, runner) VALUES ($1, clock_timestamp(), $2)
ON CONFLICT (job) DO UPDATE SET started_at = excluded.started_at, finished_at = NULL,
    outcome = NULL, detail = NULL, runner = excluded.runner
"""
_FINISH = """
UPDATE housekeeping_runs SET finished_at = clock_timestamp(), outcome = $2, detail = $3
WHERE job = $1
"""
#: What is kept of a failure's message in the table.
DETAIL_MAX = 500


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def run_round(job: Job, ctx: JobContext, *, force: bool = False) -> RoundResult:
    """Run one round of ``job`` if it is due (always with ``force``, e.g. from the CLI)
    and no other process is running it. Never raises for the job's own failure: that is
    ``Outcome.FAILED`` with the reason (and logged with its traceback)."""
    reason = job.off(ctx.settings)
    if reason is not None:
        return RoundResult(job.name, Outcome.OFF, reason)
    async with ctx.pool.acquire() as conn:
        locked = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, job.lock_id)
        if not locked:
            return RoundResult(job.name, Outcome.BUSY, "another process is running it")
        try:
            age = await conn.fetchval(_AGE, job.name)
            if not force and not await job.is_due(ctx, age):
                last = "never" if age is None else f"{age:.0f} s ago"
                return RoundResult(job.name, Outcome.NOT_DUE, f"not due (last round {last})")
            await conn.execute(_START, job.name, runner_name())
            try:
                detail = await job.run(ctx)
            except Exception as exc:
                log.warning("housekeeping job %s failed", job.name, exc_info=True)
                detail = f"{type(exc).__name__}: {exc}"[:DETAIL_MAX]
                await conn.execute(_FINISH, job.name, Outcome.FAILED.value, detail)
                return RoundResult(job.name, Outcome.FAILED, detail)
            await conn.execute(_FINISH, job.name, Outcome.OK.value, detail)
            return RoundResult(job.name, Outcome.OK, detail)
        finally:
            await _unlock(conn, job)


async def _unlock(conn: Any, job: Job) -> None:
    try:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, job.lock_id)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # On a broken connection the lock went with the session, and asyncpg's reset of a
        # connection given back to the pool unlocks everything: nothing stays locked.
        log.debug("could not release the lock of %s: %s", job.name, exc)
