"""The housekeeping jobs: functions that exist elsewhere, run on a schedule.

- ``purge-refresh-tokens``: refresh tokens that expired over a week ago
  (``server.auth.refresh.purge_expired_refresh_tokens``; the week keeps a reused,
  recently expired token recognisable as reuse).
- ``rotate-signing-key``: a new active key in the JWT key file of the data directory
  once the current one is ``TICKGRAPH_KEY_ROTATION_INTERVAL`` old
  (``server.auth.tokens.rotate_key_file``; the previous keys stay for verification).
  Keys given in ``TICKGRAPH_JWT_PRIVATE_KEYS`` are the deployment's to rotate.
- ``prune-second-bars``: 1-second bars older than ``TICKGRAPH_SECOND_BARS_DAYS``,
  counted back from the newest stored one (a replayed past is kept like a live present).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from server.auth.refresh import purge_expired_refresh_tokens
from server.auth.tokens import DEFAULT_KEEP_PREVIOUS, KEY_FILE_NAME, rotate_key_file
from server.housekeeping.job import Job, JobContext
from server.settings import Settings
from server.storage.bars import prune_seconds

#: Expired refresh tokens are kept this long before they are deleted.
EXPIRED_TOKENS_KEPT = timedelta(days=7)


async def _purge_tokens(ctx: JobContext) -> str:
    gone = await purge_expired_refresh_tokens(ctx.pool, older_than=EXPIRED_TOKENS_KEPT)
    return f"deleted {gone} refresh token(s) expired over {EXPIRED_TOKENS_KEPT.days} days ago"


def _key_file_off(settings: Settings) -> str | None:
    if settings.jwt_private_keys is not None:
        return "the keys come from TICKGRAPH_JWT_PRIVATE_KEYS: rotate them where they are kept"
    if not settings.key_rotation_interval_s:
        return "TICKGRAPH_KEY_ROTATION_INTERVAL is 0"
    return None


async def _key_due(ctx: JobContext, _age_s: float | None) -> bool:
    """Due when the active key is an interval old: the file is rewritten only when it is
    created or rotated, so its modification time is the active key's age (a fresh
    install does not rotate its brand-new key)."""
    path = ctx.settings.data_dir / KEY_FILE_NAME
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return False  # created by the server at start-up; nothing to rotate yet
    return time.time() - modified >= ctx.settings.key_rotation_interval_s


async def _rotate_key(ctx: JobContext) -> str:
    path = ctx.settings.data_dir / KEY_FILE_NAME
    if not path.exists():
        raise FileNotFoundError(f"no key file {path} yet: the server creates it at first start")
    ring = await asyncio.to_thread(rotate_key_file, path)
    if ctx.keyring is not None:
        # This process signs with the new key at once; the others follow the file
        # (server.auth.tokens.KeyRing.signing_key).
        await asyncio.to_thread(ctx.keyring.reload)
    kept = min(DEFAULT_KEEP_PREVIOUS, len(ring.kids) - 1)
    return f"new active key {ring.active_kid}; {kept} previous key(s) still verify"


def _bars_off(settings: Settings) -> str | None:
    return (
        "TICKGRAPH_SECOND_BARS_DAYS is 0 (1-second bars are not stored)"
        if (not settings.second_bars_days)
        else None
    )


async def _prune_bars(ctx: JobContext) -> str:
    days = ctx.settings.second_bars_days
    newest = await ctx.pool.fetchval("SELECT max(start_ms) FROM bars WHERE timeframe = '1s'")
    if newest is None:
        return "no 1-second bars stored"
    gone = await prune_seconds(ctx.pool, newest - days * 86_400_000)
    return f"deleted {gone} 1-second bar(s) older than {days} days"


JOBS: tuple[Job, ...] = (
    Job(
        "purge-refresh-tokens",
        "delete refresh tokens that expired over a week ago",
        lambda s: s.token_purge_interval_s,
        _purge_tokens,
    ),
    Job(
        "rotate-signing-key",
        "a new active JWT signing key in the key file (on schedule: once the active "
        "key is TICKGRAPH_KEY_ROTATION_INTERVAL old)",
        # How often to look at the key's age; rotation itself follows the file (above).
        lambda s: min(s.key_rotation_interval_s, 3600.0) or 3600.0,
        _rotate_key,
        off=_key_file_off,
        due=_key_due,
    ),
    Job(
        "prune-second-bars",
        "delete 1-second bars older than TICKGRAPH_SECOND_BARS_DAYS",
        lambda s: s.bar_prune_interval_s,
        _prune_bars,
        off=_bars_off,
    ),
)

JOB_NAMES = tuple(job.name for job in JOBS)


def job_named(name: str) -> Job:
    for job in JOBS:
        if job.name == name:
            return job
    raise KeyError(name)
