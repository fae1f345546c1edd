"""Housekeeping as it runs for real: on its schedule inside a running server, and from
``tickgraph housekeeping`` in a separate process."""

from __future__ import annotations

from pathlib import Path

from server.auth.tokens import KEY_FILE_NAME, KeyRing
from server.storage.database import Database
from tests.server.housekeeping.support import insert_refresh_token, token_exists
from tests.support.cli import clean_env, run_cli
from tests.support.postgres import settings_for
from tests.support.server import running_server
from tests.support.server_process import until
from tests.support.timing import TIMEOUT


async def test_a_running_server_purges_on_its_schedule(
    fresh_database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(
        fresh_database_url, tmp_path, token_purge_interval_s=1.0, symbols=("AAPL",)
    )
    async with running_server(settings) as server:
        pool = server.runtime.database.pool
        old = await insert_refresh_token(pool, expired_days_ago=30)
        valid = await insert_refresh_token(pool, expired_days_ago=-1)
        await until(lambda: token_exists(pool, old), lambda e: not e, "the purge", TIMEOUT * 2)
        assert await token_exists(pool, valid)
        row = await pool.fetchrow(
            "SELECT outcome, detail FROM housekeeping_runs WHERE job = 'purge-refresh-tokens'"
        )
        assert row["outcome"] == "ok" and row["detail"].startswith("deleted ")


async def test_cli_runs_every_job_now(fresh_database_url: str, tmp_path: Path) -> None:
    async with await Database.open(settings_for(fresh_database_url, tmp_path)) as db:
        old = await insert_refresh_token(db.pool, expired_days_ago=30)
        ring = KeyRing.load_or_create(tmp_path / KEY_FILE_NAME)
        env = clean_env(DATABASE_URL=fresh_database_url, TICKGRAPH_DATA_DIR=str(tmp_path))
        code, out, err = await run_cli("housekeeping", env=env)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split() == [
            "ok",
            "purge-refresh-tokens",
            "deleted",
            "1",
            "refresh",
            "token(s)",
            "expired",
            "over",
            "7",
            "days",
            "ago",
        ]
        assert lines[1].startswith("ok      rotate-signing-key     new active key ")
        assert lines[2].startswith("ok      prune-second-bars")
        assert not await token_exists(db.pool, old)
        rotated = KeyRing.from_file(tmp_path / KEY_FILE_NAME)
        assert rotated.active_kid != ring.active_kid and ring.active_kid in rotated.kids

        # One job by name; a job that does not apply to the configuration is an error then.
        env["TICKGRAPH_SECOND_BARS_DAYS"] = "0"
        code, out, _ = await run_cli("housekeeping", "--job", "prune-second-bars", env=env)
        assert code == 1
        assert out.split(None, 2)[:2] == ["off", "prune-second-bars"]
        code, _, err = await run_cli("housekeeping", "--job", "no-such-job", env=env)
        assert code == 2 and "invalid choice" in err
