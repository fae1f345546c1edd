"""Migrations against a real PostgreSQL: ordering, history checks, rollback, concurrency."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from server.storage.migrations import (
    MIGRATION_LOCK_KEY,
    MIGRATIONS_DIR,
    MigrationChecksumError,
    MigrationError,
    apply_migrations,
    load_migrations,
)
from tests.support.timing import TIMEOUT

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
async def conn(fresh_database_url: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(fresh_database_url, timeout=TIMEOUT)
    try:
        yield connection
    finally:
        await connection.close()


def write(directory: Path, name: str, sql: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(sql)
    return path


async def table_exists(conn: Any, name: str) -> bool:
    return await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)  # type: ignore[no-any-return]


async def recorded(conn: Any) -> list[tuple[int, str, str]]:
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY 1")
    return [(r["version"], r["name"], r["checksum"]) for r in rows]


async def test_shipped_migrations_apply_once_and_are_recorded(conn: Any) -> None:
    async with asyncio.timeout(TIMEOUT):
        first = await apply_migrations(conn)
        second = await apply_migrations(conn)

    shipped = load_migrations()
    assert [m.filename for m in first] == [m.filename for m in shipped]
    assert second == []
    assert await recorded(conn) == [(m.version, m.filename, m.checksum) for m in shipped]
    # The checksum is the file's sha256 (with CRLF normalised).
    core = (MIGRATIONS_DIR / "0001_core.sql").read_text()
    assert shipped[0].checksum == hashlib.sha256(core.encode()).hexdigest()
    assert await table_exists(conn, "symbols")
    assert await conn.fetchval("SELECT applied_at <= now() FROM schema_migrations")


async def test_migrations_apply_in_version_order(conn: Any, tmp_path: Path) -> None:
    # Written out of order; 0002 depends on 0001 and 0010 on 0002.
    write(tmp_path, "0010_add_c.sql", "ALTER TABLE t ADD COLUMN c int;")
    write(tmp_path, "0001_create_t.sql", "CREATE TABLE t (a int);")
    write(tmp_path, "0002_add_b.sql", "ALTER TABLE t ADD COLUMN b int;")
    write(tmp_path, "README.md", "not a migration: ignored")

    applied = await apply_migrations(conn, tmp_path)

    assert [m.version for m in applied] == [1, 2, 10]
    assert [v for v, _, _ in await recorded(conn)] == [1, 2, 10]
    # Adding a file later applies just that one.
    write(tmp_path, "0011_add_d.sql", "ALTER TABLE t ADD COLUMN d int;")
    assert [m.filename for m in await apply_migrations(conn, tmp_path)] == ["0011_add_d.sql"]


async def test_edited_applied_migration_is_an_error(conn: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "0001_create_t.sql", "CREATE TABLE t (a int);")
    await apply_migrations(conn, tmp_path)
    path.write_text("CREATE TABLE t (a bigint);")
    write(tmp_path, "0002_create_u.sql", "CREATE TABLE u (a int);")

    with pytest.raises(MigrationChecksumError) as caught:
        await apply_migrations(conn, tmp_path)

    message = str(caught.value)
    assert "0001_create_t.sql" in message
    assert "edited" in message
    assert caught.value.code == "MIGRATION_CHECKSUM_MISMATCH"
    # Nothing new is applied on top of a history that no longer matches.
    assert not await table_exists(conn, "u")
    assert [v for v, _, _ in await recorded(conn)] == [1]


async def test_crlf_checkout_is_not_an_edit(conn: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "0001_create_t.sql", "CREATE TABLE t (a int);\n-- done\n")
    await apply_migrations(conn, tmp_path)
    path.write_bytes(b"CREATE TABLE t (a int);\r\n-- done\r\n")
    assert await apply_migrations(conn, tmp_path) == []


async def test_failing_migration_rolls_back_completely(conn: Any, tmp_path: Path) -> None:
    write(tmp_path, "0001_ok.sql", "CREATE TABLE ok (a int);")
    bad = write(
        tmp_path,
        "0002_bad.sql",
        "CREATE TABLE half (a int);\n"
        "INSERT INTO half VALUES (1);\n"
        "INSERT INTO nowhere VALUES (1);\n",
    )

    with pytest.raises(MigrationError) as caught:
        await apply_migrations(conn, tmp_path)

    message = str(caught.value)
    assert "0002_bad.sql" in message
    assert 'relation "nowhere" does not exist' in message  # PostgreSQL's own words
    assert "line 3" in message
    assert caught.value.extensions["sqlstate"] == "42P01"
    # 0001 stays applied (its own transaction); 0002 left no table and no row.
    assert await table_exists(conn, "ok")
    assert not await table_exists(conn, "half")
    assert [v for v, _, _ in await recorded(conn)] == [1]

    # Once the file is fixed (it was never applied, so editing it is fine), it applies.
    bad.write_text("CREATE TABLE half (a int);\n")
    assert [m.filename for m in await apply_migrations(conn, tmp_path)] == ["0002_bad.sql"]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"1_short.sql": "SELECT 1;"}, "not named NNNN_description.sql"),
        ({"0001_Upper.sql": "SELECT 1;"}, "not named NNNN_description.sql"),
        ({"0000_zero.sql": "SELECT 1;"}, "versions start at 0001"),
        ({"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;"}, "same version 0001"),
    ],
)
def test_malformed_migration_directories_are_rejected(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    for name, sql in files.items():
        write(tmp_path, name, sql)
    with pytest.raises(MigrationError, match=expected):
        load_migrations(tmp_path)


def test_missing_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        load_migrations(tmp_path / "nope")


async def test_database_newer_than_the_code_only_warns(
    conn: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    newer = write(tmp_path, "0002_b.sql", "CREATE TABLE b (x int);")
    await apply_migrations(conn, tmp_path)
    newer.unlink()  # an older build, started during a rolling deploy

    with caplog.at_level(logging.WARNING, logger="server.storage.migrations"):
        assert await apply_migrations(conn, tmp_path) == []
    assert "0002_b.sql" in caplog.text


async def test_waiting_for_the_lock_is_bounded(
    conn: Any, fresh_database_url: str, tmp_path: Path
) -> None:
    write(tmp_path, "0001_a.sql", "CREATE TABLE a (x int);")
    holder = await asyncpg.connect(fresh_database_url, timeout=TIMEOUT)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        with pytest.raises(MigrationError, match="waiting for another process"):
            await asyncio.wait_for(apply_migrations(conn, tmp_path, lock_timeout=0.2), TIMEOUT)
    finally:
        await holder.close()
    assert not await table_exists(conn, "a")


def slow_non_idempotent_migrations(directory: Path, count: int) -> None:
    """Migrations that fail if applied twice (plain CREATE TABLE) and take long enough
    (pg_sleep) for concurrent appliers to overlap."""
    write(directory, "0001_log.sql", "CREATE TABLE apply_log (version int NOT NULL);")
    for version in range(2, count + 1):
        write(
            directory,
            f"{version:04d}_step.sql",
            f"SELECT pg_sleep(0.05);\nCREATE TABLE step_{version} (x int);\n"
            f"INSERT INTO apply_log VALUES ({version});",
        )


async def test_concurrent_appliers_apply_each_migration_once(
    fresh_database_url: str, tmp_path: Path
) -> None:
    slow_non_idempotent_migrations(tmp_path, 5)
    conns = [await asyncpg.connect(fresh_database_url, timeout=TIMEOUT) for _ in range(4)]
    try:
        async with asyncio.timeout(TIMEOUT):
            results = await asyncio.gather(*(apply_migrations(c, tmp_path) for c in conns))
        applied = sorted(m.version for result in results for m in result)
        log = await conns[0].fetch("SELECT version FROM apply_log ORDER BY version")
    finally:
        for c in conns:
            await c.close()

    assert applied == [1, 2, 3, 4, 5]
    assert [r["version"] for r in log] == [2, 3, 4, 5]


# Each child connects, reports "ready", waits for "go" so that all start together, then
# applies the migrations and prints the versions it applied as JSON.
_CHILD = """
import asyncio, json, sys
from pathlib import Path
import asyncpg
from server.storage.migrations import apply_migrations

async def main(url, directory):
    conn = await asyncpg.connect(url)
    print("ready", flush=True)
    sys.stdin.readline()
    applied = await apply_migrations(conn, Path(directory))
    print(json.dumps([m.version for m in applied]), flush=True)
    await conn.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_concurrent_processes_apply_each_migration_once(
    fresh_database_url: str, tmp_path: Path
) -> None:
    slow_non_idempotent_migrations(tmp_path, 4)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, fresh_database_url, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        for _ in range(3)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        outputs = []
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            out, _ = child.communicate(timeout=TIMEOUT)
            assert child.returncode == 0
            outputs.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    assert sorted(v for versions in outputs for v in versions) == [1, 2, 3, 4]
