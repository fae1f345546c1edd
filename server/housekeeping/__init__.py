"""Scheduled housekeeping: periodic jobs run once per deployment (docs/operations.md)."""

from server.housekeeping.job import Job, JobContext, Outcome, RoundResult
from server.housekeeping.jobs import JOB_NAMES, JOBS, job_named
from server.housekeeping.rounds import run_round
from server.housekeeping.scheduler import Housekeeping

__all__ = [
    "JOBS",
    "JOB_NAMES",
    "Housekeeping",
    "Job",
    "JobContext",
    "Outcome",
    "RoundResult",
    "job_named",
    "run_round",
]
