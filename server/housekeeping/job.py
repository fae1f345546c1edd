"""What a housekeeping job is, and what one round of it came to."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from server.auth.tokens import KeyRing
from server.settings import Settings


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job may use: the settings, the database pool, and this process's key ring
    (None outside a server: the CLI has no ring to refresh)."""

    settings: Settings
    pool: Any
    keyring: KeyRing | None = None


class Outcome(StrEnum):
    OK = "ok"  # the round ran and did its work
    FAILED = "failed"  # the round ran and raised
    NOT_DUE = "not-due"  # the last round (any process's) is recent enough
    BUSY = "busy"  # another process holds the job's lock right now
    OFF = "off"  # the job does not apply to this configuration


@dataclass(frozen=True, slots=True)
class RoundResult:
    job: str
    outcome: Outcome
    #: One line: what was done, or why nothing was.
    detail: str

    @property
    def ran(self) -> bool:
        return self.outcome in (Outcome.OK, Outcome.FAILED)


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic job.

    ``run`` does one round and returns a one-line summary (it raises on failure).
    ``off`` says why the job does not apply to a configuration (None: it does).
    ``due`` decides from the age of the last round run by any process (None: never
    run) whether this round is due; the default is "one interval has passed".
    """

    name: str
    description: str
    interval_s: Callable[[Settings], float]
    run: Callable[[JobContext], Awaitable[str]]
    off: Callable[[Settings], str | None] = lambda _settings: None
    due: Callable[[JobContext, float | None], Awaitable[bool]] | None = None

    @property
    def lock_id(self) -> int:
        """The job's half of its advisory-lock key: a stable signed 32-bit hash of its
        name (the same in every process and release)."""
        value = zlib.crc32(self.name.encode())
        return value - (1 << 32) if value >= 1 << 31 else value

    async def is_due(self, ctx: JobContext, age_s: float | None) -> bool:
        if self.due is not None:
            return await self.due(ctx, age_s)
        return age_s is None or age_s >= self.interval_s(ctx.settings)
