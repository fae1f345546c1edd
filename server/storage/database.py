"""The database connection: an asyncpg pool on the embedded or an external PostgreSQL.

``Database.open(settings)`` picks the server (embedded when ``DATABASE_URL`` is unset),
waits a bounded time for it to accept connections, applies the schema migrations and
returns an object holding the pool::

    async with await Database.open(settings) as db:
        await db.pool.fetch(...)

The password in ``DATABASE_URL`` never appears in a log line or an error message: the
server is described by a redacted URL, and driver messages are scrubbed before they are
wrapped.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from server.errors import Unavailable
from server.settings import Settings
from server.storage.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError
from server.storage.migrations import Progress, apply_migrations
from server.storage.timing import QueryStats, timed_connection_class

logger = logging.getLogger(__name__)

DatabaseKind = Literal["embedded", "external"]

#: Total time allowed for PostgreSQL to accept a first connection at start-up.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
#: Default per-query limit; a query that needs longer must say so with ``timeout=``.
COMMAND_TIMEOUT_S = 30.0
#: Idle connections are closed after this long, so a quiet process holds few backends.
MAX_INACTIVE_CONNECTION_LIFETIME_S = 300.0
CLOSE_TIMEOUT_S = 10.0
#: Per connection attempt, including the pool's later reconnects.
CONNECTION_TIMEOUT_S = 10.0

# Failures worth retrying until the deadline: nothing listening yet, the server starting
# up or shutting down, no connection slot free, a network hiccup.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ConnectionDoesNotExistError,
)

_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})


class DatabaseUnavailable(Unavailable):
    """PostgreSQL could not be reached or refused us; the message says which server."""

    code = "DATABASE_UNAVAILABLE"


class Database:
    """An open connection pool plus, in embedded mode, this process's handle on the server."""

    def __init__(
        self,
        pool: Any,
        kind: DatabaseKind,
        description: str,
        *,
        embedded: EmbeddedPostgres | None = None,
        applied_migrations: tuple[str, ...] = (),
        dsn: str | None = None,
        queries: QueryStats | None = None,
    ) -> None:
        #: The asyncpg pool (asyncpg ships no type information, hence ``Any``).
        self.pool: Any = pool
        self.kind: DatabaseKind = kind
        #: Where the database is, password removed: safe to log and to show in /readyz.
        self.description = description
        #: File names of the migrations this start-up applied.
        self.applied_migrations = applied_migrations
        self._embedded = embedded
        self._closed = False
        self._dsn = dsn
        #: Latency and errors of the pool's statements (``server.storage.timing``).
        self.queries = queries if queries is not None else QueryStats()

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        migrations_dir: Path | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        progress: Progress | None = None,
    ) -> Database:
        """Connect, migrate and return the database of ``settings``.

        Raises ``DatabaseUnavailable`` when PostgreSQL cannot be started (embedded) or
        reached within ``connect_timeout`` (external), ``MigrationError`` when the schema
        cannot be brought up to date.
        """
        embedded: EmbeddedPostgres | None = None
        kind: DatabaseKind
        if settings.database_url is None:
            kind = "embedded"
            try:
                embedded = await EmbeddedPostgres.start(settings.data_dir / "postgres")
            except EmbeddedPostgresError as exc:
                raise DatabaseUnavailable(str(exc)) from exc
            dsn = embedded.uri
        else:
            kind = "external"
            dsn = settings.database_url.reveal()

        description = redact_dsn(dsn)
        queries = QueryStats()
        try:
            pool = await _create_pool(dsn, kind, description, connect_timeout, queries)
            try:
                async with pool.acquire() as conn:
                    applied = await apply_migrations(conn, migrations_dir, progress=progress)
            except BaseException:
                await _close_pool(pool)
                raise
        except BaseException:
            if embedded is not None:
                await embedded.stop()
            raise

        names = tuple(m.filename for m in applied)
        logger.info(
            "database ready: %s PostgreSQL at %s; migrations applied now: %s",
            kind,
            description,
            ", ".join(names) or "none (up to date)",
        )
        return cls(
            pool,
            kind,
            description,
            embedded=embedded,
            applied_migrations=names,
            dsn=dsn,
            queries=queries,
        )

    @property
    def dsn(self) -> str | None:
        """The connection string (secret: never logged), ``None`` once closed."""
        return None if self._closed else self._dsn

    async def connect(self, timeout: float = CONNECTION_TIMEOUT_S) -> Any:
        """A connection of its own, outside the pool: for LISTEN, which needs one session
        for as long as it listens. The caller closes it. ``DatabaseUnavailable`` (with
        the password scrubbed) if it cannot be opened."""
        if self._dsn is None or self._closed:
            raise DatabaseUnavailable(f"no database connection possible to {self.description}")
        try:
            return await asyncpg.connect(
                self._dsn,
                timeout=timeout,
                command_timeout=COMMAND_TIMEOUT_S,
                server_settings={"application_name": "tickgraph-listener"},
            )
        except Exception as exc:
            raise DatabaseUnavailable(
                f"cannot connect to {self.kind} PostgreSQL at {self.description}: "
                + _scrub(f"{type(exc).__name__}: {exc}", _secrets_in(self._dsn))
            ) from None

    async def ping(self, timeout: float = 2.0) -> bool:
        """Whether PostgreSQL answers a trivial query within ``timeout``. Never raises
        (except cancellation of the caller, which must propagate)."""
        if self._closed:
            return False
        try:
            async with asyncio.timeout(timeout), self.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except Exception as exc:
            logger.debug("database ping failed: %s: %s", type(exc).__name__, exc)
            return False
        return True

    async def close(self) -> None:
        """Close the pool and, in embedded mode, give back the server handle. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await _close_pool(self.pool)
        finally:
            if self._embedded is not None:
                await self._embedded.stop()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says PostgreSQL cannot be reached or is going away (down,
    restarting, a connection cut, a query that timed out), as opposed to a bug or a
    refused statement."""
    return isinstance(
        exc,
        DatabaseUnavailable
        | asyncpg.InterfaceError
        | asyncpg.PostgresConnectionError
        | asyncpg.exceptions.OperatorInterventionError
        | OSError
        | TimeoutError,
    )


APPLICATION_NAME = "tickgraph"
#: What every pooled connection is opened with (``server.storage.fence`` re-opens them
#: with the leader's token added).
CONNECT_ARGS: dict[str, float] = {
    "command_timeout": COMMAND_TIMEOUT_S,
    "timeout": CONNECTION_TIMEOUT_S,
}


async def _create_pool(
    dsn: str,
    kind: DatabaseKind,
    description: str,
    connect_timeout: float,
    queries: QueryStats,
) -> Any:
    """Create the pool, retrying transient failures until ``connect_timeout`` has passed.

    Retrying matters when many processes start together with the database (a compose
    file, a fresh deploy): the first attempts may find it still starting.
    """
    secrets = _secrets_in(dsn)
    connection_class = timed_connection_class(queries)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout
    delay = 0.05
    attempts = 0
    last_error = "no attempt made"
    while (remaining := deadline - loop.time()) > 0:
        attempts += 1
        try:
            return await asyncio.wait_for(
                asyncpg.create_pool(
                    dsn,
                    min_size=POOL_MIN_SIZE,
                    max_size=POOL_MAX_SIZE,
                    max_inactive_connection_lifetime=MAX_INACTIVE_CONNECTION_LIFETIME_S,
                    server_settings={"application_name": APPLICATION_NAME},
                    connection_class=connection_class,
                    **CONNECT_ARGS,
                ),
                remaining,
            )
        except _TRANSIENT as exc:
            last_error = _scrub(f"{type(exc).__name__}: {exc}", secrets)
        except Exception as exc:
            # Wrong password, unknown database, malformed URL...: waiting will not help.
            # "from None": the original exception's text has not been scrubbed.
            raise DatabaseUnavailable(
                f"cannot connect to {kind} PostgreSQL at {description}: "
                + _scrub(f"{type(exc).__name__}: {exc}", secrets)
            ) from None
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 1.0)
    raise DatabaseUnavailable(
        f"{kind} PostgreSQL at {description} not reachable within {connect_timeout:g} s "
        f"({attempts} attempt{'s' if attempts != 1 else ''}; last error: {last_error})"
    )


async def _close_pool(pool: Any) -> None:
    try:
        # close() waits for every acquired connection to come back; don't wait forever
        # for code that holds one.
        await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
    except (TimeoutError, OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as exc:
        logger.warning("closing the database pool failed (%s); terminating it", exc)
        pool.terminate()


def redact_dsn(dsn: str) -> str:
    """``dsn`` without its password (in the user info or as a query parameter)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable database URL>"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}@{hostport}" if at and user else hostport
    query = urlencode(
        [
            (key, value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if key.lower() not in _SECRET_QUERY_KEYS
        ],
        safe="/",
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _secrets_in(dsn: str) -> list[str]:
    """Every form in which the DSN's passwords could show up in a message."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    found = [userinfo.partition(":")[2]] if ":" in userinfo else []
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_QUERY_KEYS]
    forms = {form for secret in found for form in (secret, unquote(secret))}
    return sorted((f for f in forms if f), key=len, reverse=True)


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
