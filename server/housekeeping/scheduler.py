"""Housekeeping inside the server: each job's rounds on a timer, in every process.

Every process runs the timers; ``run_round`` makes sure each round runs in one process
of the deployment only. A process checks a job every interval, but at least once a
``POLL_MAX_S`` (so a long interval is still kept within a minute when the process that
usually runs it has stopped), with a little jitter so that processes started together
do not all ask at the same moment.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

from server.housekeeping.job import Job, JobContext, Outcome
from server.housekeeping.rounds import run_round

log = logging.getLogger(__name__)

POLL_MAX_S = 60.0
JITTER = 0.1


class Housekeeping:
    def __init__(self, ctx: JobContext, jobs: Sequence[Job], *, poll_max_s: float = POLL_MAX_S):
        self.ctx = ctx
        self.jobs = [job for job in jobs if job.off(ctx.settings) is None]
        self.poll_max_s = poll_max_s
        #: Rounds this process ran, by job (for tests and the curious).
        self.rounds: dict[str, int] = {job.name: 0 for job in self.jobs}

    def start(self) -> list[asyncio.Task[None]]:
        for job in self.jobs:
            log.debug("housekeeping: %s every %g s", job.name, job.interval_s(self.ctx.settings))
        return [
            asyncio.create_task(self._loop(job), name=f"housekeeping-{job.name}")
            for job in self.jobs
        ]

    def _pause(self, job: Job) -> float:
        base = min(job.interval_s(self.ctx.settings), self.poll_max_s)
        return base * random.uniform(1.0 - JITTER, 1.0)

    async def _loop(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self._pause(job))
            try:
                result = await run_round(job, self.ctx)
            except Exception as exc:
                # The database is down or restarting: try again next time.
                log.warning("housekeeping: could not run %s: %s", job.name, exc)
                continue
            if result.ran:
                self.rounds[job.name] += 1
            if result.outcome is Outcome.OK:
                log.info("housekeeping: %s: %s", job.name, result.detail)
            elif result.outcome is not Outcome.FAILED:  # a failure was logged by the round
                log.debug("housekeeping: %s: %s", job.name, result.detail)
