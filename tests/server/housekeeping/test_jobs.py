"""Each housekeeping job against real PostgreSQL and a real key file."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from server.auth.tokens import KEY_FILE_NAME, KeyRing, rotate_key_file
from server.housekeeping import JobContext, Outcome, job_named, run_round
from server.market.bars import Bar
from server.market.timeframes import Timeframe
from server.settings import Secret
from server.storage.bars import write_bars
from server.storage.database import Database
from tests.server.housekeeping.support import insert_refresh_token, token_exists
from tests.support.postgres import settings_for


async def test_purge_refresh_tokens_deletes_only_long_expired(
    database: Database, tmp_path: Path
) -> None:
    old = await insert_refresh_token(database.pool, expired_days_ago=8)
    recent = await insert_refresh_token(database.pool, expired_days_ago=1)
    valid = await insert_refresh_token(database.pool, expired_days_ago=-1)
    ctx = JobContext(settings_for("postgresql://unused", tmp_path), database.pool)
    result = await run_round(job_named("purge-refresh-tokens"), ctx)
    assert result.outcome is Outcome.OK
    assert result.detail == "deleted 1 refresh token(s) expired over 7 days ago"
    assert [await token_exists(database.pool, t) for t in (old, recent, valid)] == [
        False,
        True,
        True,
    ]


async def test_rotation_waits_for_the_key_to_age_then_rotates(
    database: Database, tmp_path: Path
) -> None:
    path = tmp_path / KEY_FILE_NAME
    ring = KeyRing.load_or_create(path, reload_interval_s=0.0)
    first = ring.active_kid
    settings = settings_for("postgresql://unused", tmp_path, key_rotation_interval_s=3600.0)
    ctx = JobContext(settings, database.pool, ring)
    job = job_named("rotate-signing-key")
    # A brand-new key is not rotated.
    assert (await run_round(job, ctx)).outcome is Outcome.NOT_DUE
    # An hour old, it is: a new active key, the old one still verifies.
    hour_ago = time.time() - 3601
    os.utime(path, (hour_ago, hour_ago))
    result = await run_round(job, ctx)
    assert result.outcome is Outcome.OK, result
    assert ring.active_kid != first and first in ring.kids
    assert result.detail == f"new active key {ring.active_kid}; 1 previous key(s) still verify"
    assert (await run_round(job, ctx)).outcome is Outcome.NOT_DUE
    assert oct(path.stat().st_mode & 0o777) == "0o600"


async def test_another_process_ring_follows_the_rotated_file(tmp_path: Path) -> None:
    """A process that did not rotate signs with the new key once it sees the file
    changed, so no process keeps signing with a key that is rotated out later."""
    path = tmp_path / KEY_FILE_NAME
    other = KeyRing.load_or_create(path, reload_interval_s=0.0)
    first = other.active_kid
    rotated = rotate_key_file(path)
    assert other.signing_key()[0] == rotated.active_kid != first


async def test_rotation_is_off_for_keys_from_the_environment(
    database: Database, tmp_path: Path
) -> None:
    settings = settings_for(
        "postgresql://unused", tmp_path, jwt_private_keys=Secret("-----BEGIN...")
    )
    result = await run_round(job_named("rotate-signing-key"), JobContext(settings, database.pool))
    assert result.outcome is Outcome.OFF
    assert "TICKGRAPH_JWT_PRIVATE_KEYS" in result.detail
    assert not (tmp_path / KEY_FILE_NAME).exists()


async def test_prune_second_bars_keeps_the_configured_days(
    database: Database, tmp_path: Path
) -> None:
    day_ms = 86_400_000
    newest = 1_700_000_000_000

    def second(start: int) -> Bar:
        return Bar(
            "AAPL", Timeframe.S1, start, start + 1000, 1.0, 1.0, 1.0, 1.0, 1, 1.0, 1, True, 0
        )

    await write_bars(
        database.pool, [second(newest - 3 * day_ms), second(newest - day_ms), second(newest)]
    )
    settings = settings_for("postgresql://unused", tmp_path, second_bars_days=2)
    result = await run_round(job_named("prune-second-bars"), JobContext(settings, database.pool))
    assert result.detail == "deleted 1 1-second bar(s) older than 2 days"
    kept = await database.pool.fetchval("SELECT count(*) FROM bars WHERE timeframe = '1s'")
    assert kept == 2
    off = dataclasses.replace(settings, second_bars_days=0)
    assert (
        await run_round(job_named("prune-second-bars"), JobContext(off, database.pool))
    ).outcome is Outcome.OFF
