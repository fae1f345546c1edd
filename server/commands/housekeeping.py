"""``tickgraph housekeeping``: run the scheduled jobs now, from cron or by hand.

Each job runs under the same advisory lock as the servers' schedules, so it never runs
twice at once in a deployment; a job another process is running right now is reported
as busy. The round is recorded like a scheduled one (the servers' next round then waits
a full interval).
"""

from __future__ import annotations

import argparse
import asyncio
import os

from server.housekeeping import JOB_NAMES, JOBS, JobContext, Outcome, job_named, run_round
from server.settings import Settings


def add_housekeeping_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lines = "\n".join(f"  {job.name}\n      {job.description}" for job in JOBS)
    p = sub.add_parser(
        "housekeeping",
        help="run the scheduled housekeeping jobs now (purges, key rotation)",
        description="Run housekeeping jobs now, whatever their schedule. The server runs\n"
        "them by itself (TICKGRAPH_HOUSEKEEPING); this is for cron or an operator.\n\n"
        f"jobs:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Exit status 1 when a job failed, or the job named with --job did not run.",
    )
    p.add_argument("--job", choices=JOB_NAMES, metavar="NAME", help="only this job")
    p.add_argument("--data-dir", help="local state, embedded database [TICKGRAPH_DATA_DIR]")
    p.set_defaults(handler=_housekeeping)


def _housekeeping(args: argparse.Namespace) -> int:
    overrides = {"TICKGRAPH_DATA_DIR": args.data_dir} if args.data_dir else {}
    settings = Settings.from_env(os.environ, overrides)
    from server.logging_setup import configure

    configure(settings.log_level, json=settings.log_json, secrets=settings.secret_values())
    jobs = [job_named(args.job)] if args.job else list(JOBS)

    async def run() -> int:
        from server.storage.database import Database

        status = 0
        async with await Database.open(settings) as db:
            ctx = JobContext(settings, db.pool)
            for job in jobs:
                result = await run_round(job, ctx, force=True)
                print(f"{result.outcome.value:<7} {job.name:<22} {result.detail}", flush=True)
                if result.outcome is Outcome.FAILED or (args.job and not result.ran):
                    status = 1
        return status

    return asyncio.run(run())
