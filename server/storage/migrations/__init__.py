"""Schema migrations: versioned SQL files applied once, in order, at start-up.

Files are named ``NNNN_description.sql`` (four digits, then lower-case words) and live in
``server/storage/migrations/`` (package data). Each pending file runs in its own transaction
together with its row in ``schema_migrations``, so a migration is either fully applied and
recorded or not at all; a file must therefore not contain ``BEGIN``/``COMMIT`` or statements
that cannot run in a transaction (``CREATE INDEX CONCURRENTLY``).

Many server processes may start at once against one database. The whole run holds a
session-level advisory lock, so exactly one process applies a given migration and the
others wait, then find nothing left to do. Waiting is bounded by ``lock_timeout``.

Applied migrations are history: if a file's checksum no longer matches the one recorded
when it was applied, the run stops with an error naming the file, rather than leaving
databases that ran different SQL under the same version.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg

from server.errors import TickgraphError

logger = logging.getLogger(__name__)

#: The migrations shipped with the server.
MIGRATIONS_DIR = Path(__file__).resolve().parent

#: Advisory-lock key shared by every tickgraph process: b"tickgrap" as a big-endian int64.
#: Advisory locks are per database, so servers on different databases do not contend.
MIGRATION_LOCK_KEY = int.from_bytes(b"tickgrap", "big")

DEFAULT_LOCK_TIMEOUT_S = 60.0
#: Per migration file; data migrations may legitimately take minutes.
DEFAULT_STATEMENT_TIMEOUT_S = 600.0

#: An asyncpg connection (or a pool's proxy for one); asyncpg ships no type information.
Connection: TypeAlias = Any
#: Told ``(done, total, next file or None)`` before the first pending migration and after
#: each one: ``tickgraph migrate`` shows it as a progress bar.
Progress: TypeAlias = Callable[[int, int, str | None], None]

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9][a-z0-9_]*)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(TickgraphError):
    """The schema could not be brought up to date; the message says which file and why."""

    code = "MIGRATION_FAILED"


class MigrationChecksumError(MigrationError):
    """An applied migration's file was edited afterwards."""

    code = "MIGRATION_CHECKSUM_MISMATCH"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    filename: str  # e.g. "0001_core.sql"; recorded as schema_migrations.name
    sql: str
    checksum: str  # sha256 hex of the text with line endings normalised to "\n"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read and check the migration files of ``directory`` (default: the shipped ones).

    Files not ending in ``.sql`` are ignored; a ``.sql`` file with a malformed name, or two
    files with the same version, is an error (almost always a mistake that would otherwise
    be silently skipped).
    """
    directory = MIGRATIONS_DIR if directory is None else directory
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    by_version: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path.name!r} in {directory} is not named NNNN_description.sql"
            )
        version = int(match.group(1))
        if version == 0:
            raise MigrationError(f"migration file {path.name!r}: versions start at 0001")
        if version in by_version:
            raise MigrationError(
                f"migration files {by_version[version].filename!r} and {path.name!r} "
                f"have the same version {version:04d}"
            )
        # Normalised so that a checkout with CRLF line endings is not mistaken for an edit.
        sql = path.read_text(encoding="utf-8").replace("\r\n", "\n")
        checksum = hashlib.sha256(sql.encode("utf-8")).hexdigest()
        by_version[version] = Migration(version, path.name, sql, checksum)
    return [by_version[v] for v in sorted(by_version)]


async def apply_migrations(
    conn: Connection,
    directory: Path | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT_S,
    progress: Progress | None = None,
) -> list[Migration]:
    """Apply the pending migrations of ``directory`` on ``conn`` (an asyncpg connection).

    Returns the migrations this call applied (empty when the schema was up to date).
    Raises ``MigrationError`` (``MigrationChecksumError`` for an edited applied file);
    a failing file leaves nothing behind: neither its changes nor its row.
    """
    migrations = load_migrations(directory)
    await _lock(conn, lock_timeout)
    try:
        await conn.execute(_CREATE_TABLE)
        recorded = {
            row["version"]: (row["name"], row["checksum"])
            for row in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        }
        _check_history(migrations, recorded)
        pending = [m for m in migrations if m.version not in recorded]
        applied: list[Migration] = []
        for i, migration in enumerate(pending):
            if progress is not None:
                progress(i, len(pending), migration.filename)
            await _apply_one(conn, migration, statement_timeout)
            applied.append(migration)
        if progress is not None and pending:
            progress(len(pending), len(pending), None)
        return applied
    finally:
        await _unlock(conn)


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """How a database's schema compares with this build's migrations (read only)."""

    applied: int
    pending: tuple[str, ...]
    #: Applied files edited since: the server refuses to start.
    edited: tuple[str, ...]
    #: Applied by a newer build (a rolling deploy): tolerated.
    unknown: tuple[str, ...]


async def migration_status(conn: Connection, directory: Path | None = None) -> MigrationStatus:
    """Compare the database's ``schema_migrations`` with the files, changing nothing and
    taking no lock (``tickgraph doctor``)."""
    migrations = load_migrations(directory)
    recorded: dict[int, tuple[str, str]] = {}
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        recorded = {
            row["version"]: (row["name"], row["checksum"])
            for row in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        }
    files = {m.version: m for m in migrations}
    return MigrationStatus(
        applied=len(recorded),
        pending=tuple(m.filename for m in migrations if m.version not in recorded),
        edited=tuple(
            m.filename
            for v, (_, checksum) in sorted(recorded.items())
            if (m := files.get(v)) is not None and m.checksum != checksum
        ),
        unknown=tuple(recorded[v][0] for v in sorted(set(recorded) - set(files))),
    )


async def _lock(conn: Connection, wait_s: float) -> None:
    try:
        # SET LOCAL bounds the wait of this one statement; the lock itself is
        # session-level, so it outlives the transaction and covers every migration.
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = {max(1, round(wait_s * 1000))}")
            # The client-side timeout must not cut the wait short (a pool connection's
            # command_timeout may be shorter): lock_timeout is what should end it.
            await conn.execute(
                "SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY, timeout=wait_s + 10
            )
    except asyncpg.LockNotAvailableError:
        raise MigrationError(
            f"gave up after {wait_s:g} s waiting for another process to finish applying "
            "migrations (advisory lock held)"
        ) from None


async def _unlock(conn: Connection) -> None:
    try:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # A broken connection has lost the lock with its session; a pooled connection
        # drops all advisory locks when it is released. Either way nothing stays locked,
        # and the error that broke the connection is the one worth reporting.
        logger.warning("could not release the migration lock: %s", exc)


def _check_history(migrations: list[Migration], recorded: dict[int, tuple[str, str]]) -> None:
    files = {m.version: m for m in migrations}
    edited = [
        (files[version], checksum)
        for version, (_name, checksum) in sorted(recorded.items())
        if version in files and files[version].checksum != checksum
    ]
    if edited:
        raise MigrationChecksumError(
            "applied migration files were edited afterwards: "
            + "; ".join(
                f"{m.filename} (recorded checksum {checksum[:12]}…, file now {m.checksum[:12]}…)"
                for m, checksum in edited
            )
            + ". Applied migrations are history: restore the file and put the change "
            "in a new migration.",
            files=[m.filename for m, _ in edited],
        )
    unknown = sorted(set(recorded) - set(files))
    if unknown:
        # A newer build migrated this database (e.g. during a rolling deploy); an older
        # one must keep running against the expanded schema, so this is not fatal.
        logger.warning(
            "database has migrations this build does not know: %s",
            ", ".join(recorded[v][0] for v in unknown),
        )


async def _apply_one(conn: Connection, migration: Migration, statement_timeout: float) -> None:
    try:
        async with conn.transaction():
            # Without arguments asyncpg uses the simple query protocol, which accepts a
            # file of several statements.
            await conn.execute(migration.sql, timeout=statement_timeout)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.filename,
                migration.checksum,
            )
    except asyncpg.PostgresError as exc:
        raise MigrationError(
            f"migration {migration.filename} failed and was rolled back: "
            f"{_describe_postgres_error(exc, migration.sql)}",
            file=migration.filename,
            sqlstate=exc.sqlstate,
        ) from exc
    except (TimeoutError, asyncpg.InterfaceError, OSError) as exc:
        raise MigrationError(
            f"migration {migration.filename} did not complete and was rolled back: "
            f"{type(exc).__name__}: {str(exc) or f'no answer within {statement_timeout:g} s'}",
            file=migration.filename,
        ) from exc
    logger.info("applied migration %s", migration.filename)


def _describe_postgres_error(exc: asyncpg.PostgresError, sql: str) -> str:
    """PostgreSQL's own words, plus the line of the file its error position points at."""
    text = f"{exc.sqlstate} {type(exc).__name__}: {exc.message}"
    position = getattr(exc, "position", None)
    if position:
        # 1-based character offset into the whole file (the simple protocol sends it as one
        # string).
        offset = int(position) - 1
        line = sql.count("\n", 0, offset) + 1
        text += f" (at line {line}: {sql.splitlines()[line - 1].strip()!r})"
    if getattr(exc, "detail", None):
        text += f"; detail: {exc.detail}"
    if getattr(exc, "hint", None):
        text += f"; hint: {exc.hint}"
    return text
