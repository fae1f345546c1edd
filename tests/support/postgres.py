"""PostgreSQL for tests: one real server per session, one empty database per test.

- ``postgres_url`` (session): ``TEST_DATABASE_URL`` when set, otherwise a pgserver started
  once in a temporary directory and deleted at the end of the session. It points at a
  maintenance database; tests should not create tables in it.
- ``fresh_database_url`` (function): a new, empty database on that server, dropped after
  the test, so tests cannot see each other's rows.
- ``database`` (function): a migrated ``Database`` on a fresh database.
- ``settings_for(url, data_dir)``: ``Settings`` pointing at ``url``.

A server that cannot be started or reached FAILS the test with the reason, never skips
it: a missing database must not turn into a green run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from server.settings import Secret, Settings
from server.storage.database import Database, redact_dsn
from tests.support.timing import TIMEOUT


def settings_for(url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Default settings with ``DATABASE_URL=url`` and data under ``data_dir``."""
    return dataclasses.replace(Settings(), database_url=Secret(url), data_dir=data_dir, **overrides)


def with_database(url: str, database: str) -> str:
    """``url`` with its database name replaced (works for TCP and Unix-socket URLs)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    external = os.environ.get("TEST_DATABASE_URL", "").strip()
    if external:
        yield external
        return

    # Short, fixed-depth path under the system temp dir, so the socket sits in the data dir.
    workdir = Path(tempfile.mkdtemp(prefix="tickgraph-test-pg-"))
    try:
        with warnings.catch_warnings():
            # pgserver warns at import when XDG_RUNTIME_DIR is unset; its fallback works.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            from pgserver.postgres_server import get_server

        server = get_server(workdir / "pgdata", cleanup_mode="delete")
    except Exception as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(
            f"could not start the test PostgreSQL with pgserver in {workdir}: "
            f"{type(exc).__name__}: {exc}. Set TEST_DATABASE_URL to use another server.",
            pytrace=False,
        )
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()  # stops the server and deletes its data directory
        shutil.rmtree(workdir, ignore_errors=True)


@pytest_asyncio.fixture
async def fresh_database_url(postgres_url: str) -> AsyncIterator[str]:
    name = f"test_{uuid.uuid4().hex}"
    admin = await _connect_or_fail(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(postgres_url, name)
    finally:
        admin = await _connect_or_fail(postgres_url)
        try:
            # FORCE: a test that leaked a connection must not make the drop fail.
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest_asyncio.fixture
async def database(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    db = await Database.open(settings_for(fresh_database_url, tmp_path))
    try:
        yield db
    finally:
        await db.close()


async def _connect_or_fail(url: str) -> Any:
    try:
        return await asyncpg.connect(url, timeout=TIMEOUT)
    except Exception as exc:
        pytest.fail(
            f"test PostgreSQL at {redact_dsn(url)} is not reachable: {type(exc).__name__}: {exc}",
            pytrace=False,
        )
