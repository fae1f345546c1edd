"""Database.open in both modes, against real PostgreSQL servers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from server.settings import Settings
from server.storage.database import Database, DatabaseUnavailable, redact_dsn
from server.storage.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError
from server.storage.migrations import MigrationError, load_migrations
from server.storage.symbols import SymbolRow, get_symbol, upsert_symbols
from tests.support.postgres import settings_for, with_database
from tests.support.timing import TIMEOUT

REPO_ROOT = Path(__file__).resolve().parents[3]

SHIPPED = tuple(m.filename for m in load_migrations())


def embedded_settings(data_dir: Path) -> Settings:
    return dataclasses.replace(Settings(), database_url=None, data_dir=data_dir)


def postmaster_running(pgdata: Path) -> bool:
    """Whether the postmaster recorded in ``pgdata`` is alive (its pid file is removed on a
    clean stop)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except FileNotFoundError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_for_postmaster_exit(pgdata: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while postmaster_running(pgdata):
        assert time.monotonic() < deadline, f"PostgreSQL in {pgdata} is still running"
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_external_mode_opens_migrates_pings_and_closes(
    fresh_database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(fresh_database_url, tmp_path)
    async with asyncio.timeout(TIMEOUT):
        db = await Database.open(settings)
        async with db:
            assert db.kind == "external"
            assert db.applied_migrations == SHIPPED
            assert await db.ping()
            assert await db.pool.fetchval("SELECT count(*) FROM symbols") == 0
        assert not await db.ping()  # closed: False, not an exception
        await db.close()  # idempotent

        # A second start-up finds the schema up to date.
        async with await Database.open(settings) as again:
            assert again.applied_migrations == ()


async def test_embedded_mode_with_a_long_data_dir_starts_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(str(data_dir / "postgres")) > 110  # too long for a socket inside it
    settings = embedded_settings(data_dir)
    pgdata = data_dir / "postgres"

    async with asyncio.timeout(TIMEOUT * 3):
        async with await Database.open(settings) as db:
            assert db.kind == "embedded"
            assert db.applied_migrations == SHIPPED
            assert await db.ping()
            socket_dir = parse_qs(urlsplit(db.description).query)["host"][0]
            assert len(socket_dir) < 100
            assert "tickgraph" in db.description  # the application database, not "postgres"
            await upsert_symbols(db.pool, [SymbolRow("AAPL", name="Apple", source="config")])
        # The last user is gone: the server stopped.
        assert not postmaster_running(pgdata)

        async with await Database.open(settings) as db:
            assert db.applied_migrations == ()
            row = await get_symbol(db.pool, "AAPL")
            assert row == SymbolRow("AAPL", name="Apple", source="config")
        assert not postmaster_running(pgdata)
    # pgserver leaves the (now empty) socket directory behind in the runtime dir.
    with contextlib.suppress(OSError):
        os.rmdir(socket_dir)


async def test_embedded_server_outlives_one_of_two_users_in_a_process(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    async with asyncio.timeout(TIMEOUT * 3):
        first = await Database.open(settings)
        second = await Database.open(settings)
        await first.close()
        assert await second.ping()
        await second.close()
    assert not postmaster_running(tmp_path / "postgres")


# A second tickgraph process on the same data dir: opens, reports, waits for a line on
# stdin, closes and exits.
_CHILD = """
import asyncio, dataclasses, sys
from pathlib import Path
from server.storage.database import Database
from server.settings import Settings

async def main(data_dir):
    settings = dataclasses.replace(Settings(), database_url=None, data_dir=Path(data_dir))
    db = await Database.open(settings)
    print("ready", await db.ping(), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await db.close()

asyncio.run(main(sys.argv[1]))
"""


async def test_embedded_server_is_shared_between_processes(tmp_path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        str(tmp_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), TIMEOUT * 3)
        assert line.split() == [b"ready", b"True"]

        async with asyncio.timeout(TIMEOUT):
            db = await Database.open(embedded_settings(tmp_path))
        try:
            assert db.applied_migrations == ()  # the child's server, already migrated
            child.stdin.write(b"exit\n")
            await child.stdin.drain()
            assert await asyncio.wait_for(child.wait(), TIMEOUT) == 0
            # The child released its handle and exited; the server is still ours.
            assert await db.ping()
        finally:
            await db.close()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert not postmaster_running(tmp_path / "postgres")


async def test_ping_is_false_once_the_server_is_gone(tmp_path: Path) -> None:
    async with asyncio.timeout(TIMEOUT * 3):
        db = await Database.open(embedded_settings(tmp_path))
    try:
        assert await db.ping()
        pgdata = tmp_path / "postgres"
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown, as in a crash
        await wait_for_postmaster_exit(pgdata)

        started = time.monotonic()
        assert await db.ping(timeout=1.0) is False
        assert time.monotonic() - started < 1.0 + TIMEOUT / 10
    finally:
        async with asyncio.timeout(TIMEOUT):
            await db.close()


async def test_abandoned_embedded_start_gives_its_handle_back(tmp_path: Path) -> None:
    pgdata = tmp_path / "postgres"
    # initdb alone takes longer than this: the caller gives up while the worker thread,
    # which cannot be interrupted, goes on to start the server.
    with pytest.raises(EmbeddedPostgresError, match="did not start within"):
        await EmbeddedPostgres.start(pgdata, start_timeout=0.01)

    async with asyncio.timeout(TIMEOUT * 3):
        embedded = await EmbeddedPostgres.start(pgdata)
        await embedded.stop()
    # Had the abandoned start kept its handle, the server would never stop.
    await wait_for_postmaster_exit(pgdata)


async def test_unreachable_database_url_fails_in_bounded_time_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://tick:s3cret-Pa55@127.0.0.1:{port}/tickgraph"
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG), pytest.raises(DatabaseUnavailable) as caught:
        await asyncio.wait_for(
            Database.open(settings_for(url, tmp_path), connect_timeout=0.5), TIMEOUT
        )
    elapsed = time.monotonic() - started

    assert elapsed < 0.5 + TIMEOUT / 5
    message = str(caught.value)
    assert "external" in message
    assert f"127.0.0.1:{port}" in message
    assert caught.value.code == "DATABASE_UNAVAILABLE"
    for text in (message, repr(caught.value), caplog.text):
        assert "s3cret-Pa55" not in text
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ or caught.value.__context__ is None


async def test_permanent_connection_errors_are_not_retried(
    postgres_url: str, tmp_path: Path
) -> None:
    url = with_database(postgres_url, "no_such_database")
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        await Database.open(settings_for(url, tmp_path), connect_timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT / 2


async def test_failing_migration_fails_open_and_releases_the_pool(
    fresh_database_url: str, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_bad.sql").write_text("CREATE TABLE broken (;")
    with pytest.raises(MigrationError, match=r"0001_bad\.sql"):
        await asyncio.wait_for(
            Database.open(settings_for(fresh_database_url, tmp_path), migrations_dir=migrations),
            TIMEOUT,
        )
    # The pool was closed: no tickgraph session is left on the server (backends exit a
    # moment after their client disconnects, hence the polling).
    conn = await asyncpg.connect(fresh_database_url, timeout=TIMEOUT)
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                left = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = 'tickgraph'"
                )
                if left == 0:
                    break
                await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def test_data_dir_pg_ctl_cannot_handle_is_rejected_clearly(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable, match="spaces and shell metacharacters"):
        await Database.open(embedded_settings(tmp_path / "my data"))


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://u:pw@db:5432/app", "postgresql://u@db:5432/app"),
        (
            "postgresql://u@db/app?password=pw&sslmode=require",
            "postgresql://u@db/app?sslmode=require",
        ),
        ("postgresql://:pw@db/app", "postgresql://db/app"),
        (
            "postgresql://postgres:@/tickgraph?host=/run/pg",
            "postgresql://postgres@/tickgraph?host=/run/pg",
        ),
    ],
)
def test_redact_dsn_removes_passwords(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected
