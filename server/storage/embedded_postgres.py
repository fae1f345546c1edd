"""The embedded PostgreSQL: a real server from the ``pgserver`` wheel, kept under the data dir.

Used when ``DATABASE_URL`` is not set. How pgserver behaves, and what this module adds:

- **Blocking start-up.** ``pgserver.PostgresServer`` runs ``initdb`` (first time only) and
  ``pg_ctl -w start`` synchronously, so it is called in a worker thread.
- **Socket placement.** pgserver listens on a Unix socket only (``-h ""``: no TCP port to
  collide with or to expose). The socket goes into the data directory when
  ``<pgdata>/.s.PGSQL.5432`` fits in ``sun_path`` (~107 bytes); otherwise into a short
  directory named by a hash of the data dir under the user runtime dir
  (``$XDG_RUNTIME_DIR`` or ``/tmp/runtime-<uid>``, then ``python_PostgresServer/<hash>``).
  The URI is read back from ``postmaster.pid``, so every process finds the socket wherever
  the process that started the server put it. Long data-dir paths therefore work as they
  are; what does not work is a path with spaces or shell metacharacters, because pg_ctl
  passes the socket directory to postgres through a shell unquoted. That is rejected up
  front with a clear message instead of failing inside pg_ctl.
- **Running as root.** PostgreSQL refuses to run as root; pgserver then creates (once) and
  uses a system user ``pgserver``, chowns the data dir to it and makes the parent
  directories traversable (``o+rx``).
- **Shared use.** pgserver records the pids using a data dir in ``<pgdata>/.handle_pids.json``
  under an inter-process file lock, and a process giving up its handle (explicitly, or at
  exit through pgserver's ``atexit`` hook) stops the server only if it is the last pid in
  that list. So one tickgraph process exiting never stops the database under another, and
  the last one out stops it. A process killed with SIGKILL would stay in that list for
  ever, and the server with it; ``pg_housekeeping`` closes that: a start-up forgets the
  pids of processes that are gone (and so adopts a server a crashed process left), and a
  detached watchdog stops the server when this process is gone and nobody else uses it,
  however it exited.
- **In-process sharing.** pgserver's own per-data-dir cache hands the same object to every
  caller in a process but counts nothing, and its file lock (fcntl) does not exclude
  threads of the same process. This module serialises start/stop with a thread lock and
  counts references per data dir, so two ``Database`` objects on one data dir in one
  process can close independently.
- **Database.** The server's ``postgres`` database is the maintenance database; the
  application's tables live in their own database (``tickgraph``), created on first use.

The URI carries no password (pgserver's cluster uses ``trust`` authentication on the
socket), so it is safe to log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from server.errors import Unavailable
from server.storage.pg_housekeeping import forget_dead_handles, start_watchdog

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

logger = logging.getLogger(__name__)

#: Generous: the first start runs initdb, and pg_ctl itself gives up after 10 s.
DEFAULT_START_TIMEOUT_S = 60.0

#: Characters that survive pg_ctl's unquoted hand-over of the socket dir to postgres.
_SHELL_SAFE_PATH = re.compile(r"^[\w./+,:@%=~-]+$")
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class EmbeddedPostgresError(Unavailable):
    """The embedded PostgreSQL could not be started or prepared."""

    code = "DATABASE_UNAVAILABLE"


@dataclass(slots=True)
class _Handle:
    server: PostgresServer
    refs: int


_registry_lock = threading.Lock()
_handles: dict[Path, _Handle] = {}


class EmbeddedPostgres:
    """This process's handle on the embedded server of one data directory.

    Create with ``await EmbeddedPostgres.start(pgdata)``; give back with ``await stop()``.
    """

    __slots__ = ("_stopped", "pgdata", "uri")

    def __init__(self, pgdata: Path, uri: str) -> None:
        self.pgdata = pgdata
        #: Connection URI of the application database, e.g.
        #: ``postgresql://postgres:@/tickgraph?host=/path/to/socket/dir`` (no password).
        self.uri = uri
        self._stopped = False

    @classmethod
    async def start(
        cls,
        pgdata: Path,
        *,
        database: str = "tickgraph",
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
    ) -> EmbeddedPostgres:
        """Start (or join) the server whose data lives in ``pgdata``; create ``database``.

        ``pgdata`` and its parents are created when missing. Raises
        ``EmbeddedPostgresError`` when the server cannot be started within
        ``start_timeout``.
        """
        if not _DATABASE_NAME.match(database):
            raise ValueError(f"database name {database!r} must match {_DATABASE_NAME.pattern}")

        acquiring = asyncio.ensure_future(asyncio.to_thread(_acquire, pgdata))
        try:
            pgdata, admin_uri = await asyncio.wait_for(asyncio.shield(acquiring), start_timeout)
        except EmbeddedPostgresError:
            raise
        except TimeoutError:
            acquiring.add_done_callback(_give_back_late)
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL in {pgdata} did not start within {start_timeout:g} s "
                f"(server log: {pgdata / 'log'})"
            ) from None
        except asyncio.CancelledError:
            acquiring.add_done_callback(_give_back_late)
            raise
        except Exception as exc:
            raise EmbeddedPostgresError(
                f"the embedded PostgreSQL in {pgdata} failed to start: "
                f"{type(exc).__name__}: {exc} (server log: {pgdata / 'log'})"
            ) from exc

        try:
            await _ensure_database(admin_uri, database, start_timeout)
        except BaseException as exc:
            await asyncio.to_thread(_release, pgdata)
            if isinstance(exc, Exception):
                raise EmbeddedPostgresError(
                    f"the embedded PostgreSQL in {pgdata} started but database {database!r} "
                    f"could not be prepared: {type(exc).__name__}: {exc}"
                ) from exc
            raise
        uri = _with_database(admin_uri, database)
        logger.info("embedded PostgreSQL ready: %s", uri)
        return cls(pgdata, uri)

    async def stop(self) -> None:
        """Give back this handle. Idempotent.

        The server stops only when no other handle in this process and no other process
        uses it.
        """
        if self._stopped:
            return
        self._stopped = True
        await asyncio.to_thread(_release, self.pgdata)


def _import_server_class() -> type[PostgresServer]:
    # pgserver asks platformdirs for the runtime dir at import time, which warns when
    # XDG_RUNTIME_DIR is unset (containers, CI) although its fallback works fine.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        # Deferred: only embedded mode pays for the import.
        from pgserver.postgres_server import PostgresServer

    return PostgresServer


def _acquire(pgdata: Path) -> tuple[Path, str]:
    """Blocking: take a handle on the server for ``pgdata``.

    Returns the canonical data-dir path (the registry key) and the maintenance-DB URI.
    """
    pgdata = pgdata.expanduser().resolve()
    if not _SHELL_SAFE_PATH.match(str(pgdata)):
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL cannot use the data directory {str(pgdata)!r}: "
            "pg_ctl breaks on spaces and shell metacharacters in its path. Set "
            "TICKGRAPH_DATA_DIR to a plainer path, or DATABASE_URL to an external server."
        )
    with _registry_lock:
        handle = _handles.get(pgdata)
        if handle is None:
            server_class = _import_server_class()
            pgdata.mkdir(parents=True, exist_ok=True)
            # A crashed process's handle would keep the server alive for ever.
            forget_dead_handles(pgdata)
            # The constructor, not pgserver.get_server(): get_server returns its cached
            # object for a data dir without re-registering this pid once that object has
            # been cleaned up, and then another process exiting could stop the server
            # under us. The constructor always registers the pid and checks the server
            # is running.
            server = _construct(server_class, pgdata)
            handle = _handles[pgdata] = _Handle(server=server, refs=0)
            start_watchdog(os.getpid(), pgdata)
        handle.refs += 1
        return pgdata, handle.server.get_uri()


#: pgserver gives ``pg_ctl -w start`` 10 s; a first start (initdb too) on a loaded machine
#: can take longer, and the server usually comes up anyway: look again this many times.
START_ATTEMPTS = 3


def _construct(server_class: type[PostgresServer], pgdata: Path) -> PostgresServer:
    """pgserver's server object, started (or joined). pgserver gives up on a slow start
    after 10 s (and then fails reading a log the server had no time to write); a start
    that is merely slow is found running by the next attempt."""
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            return server_class(pgdata, cleanup_mode="stop")
        except (subprocess.SubprocessError, FileNotFoundError) as exc:
            if attempt == START_ATTEMPTS:
                raise
            logger.warning(
                "the embedded PostgreSQL in %s is slow to start (%s); looking again",
                pgdata,
                type(exc).__name__,
            )
            time.sleep(2.0 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _release(pgdata: Path) -> None:
    """Blocking: give back one handle; the last one in this process tells pgserver."""
    with _registry_lock:
        handle = _handles.get(pgdata)
        if handle is None:
            return
        handle.refs -= 1
        if handle.refs > 0:
            return
        del _handles[pgdata]
        # Removes this pid from pgserver's list and stops the server if the list is then
        # empty; other processes still using it keep it running.
        handle.server.cleanup()


def _give_back_late(future: asyncio.Future[tuple[Path, str]]) -> None:
    """Done-callback of an abandoned start: the worker thread cannot be interrupted, so if
    it still takes a handle after the caller gave up, give that handle back."""
    if future.cancelled() or future.exception() is not None:
        return
    pgdata, _uri = future.result()
    # Not a daemon thread: the interpreter waits for it before running atexit hooks.
    threading.Thread(target=_release, args=(pgdata,), name="embedded-postgres-release").start()


async def _ensure_database(admin_uri: str, database: str, limit_s: float) -> None:
    conn = await asyncpg.connect(admin_uri, timeout=limit_s)
    try:
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", database, timeout=limit_s
        )
        if exists:
            return
        # Another process may create it between our check and our CREATE.
        with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            # The name is checked against _DATABASE_NAME, so quoting it is enough.
            await conn.execute(f'CREATE DATABASE "{database}"', timeout=limit_s)
    finally:
        await conn.close(timeout=limit_s)


def _with_database(uri: str, database: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"/{database}"))
