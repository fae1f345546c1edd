"""The database: can we connect, what server is it, are the migrations current.

Read only: nothing is migrated (``migration_status`` takes no lock). The embedded
PostgreSQL is started only when its data directory exists already (a running server
shares it; a fresh one would be created by ``initdb``, which is the server's job).
"""

from __future__ import annotations

import asyncio

import asyncpg

from server.commands.doctor.finding import Finding, describe_error, fail, ok, warn
from server.settings import Settings
from server.storage.database import redact_dsn
from server.storage.embedded_postgres import EmbeddedPostgres, EmbeddedPostgresError
from server.storage.migrations import migration_status

AREA = "database"


async def check(settings: Settings, timeout_s: float) -> Finding:
    embedded: EmbeddedPostgres | None = None
    if settings.database_url is None:
        pgdata = settings.data_dir / "postgres"
        if not pgdata.exists():
            return ok(AREA, f"embedded PostgreSQL, created in {pgdata} at first start")
        try:
            embedded = await EmbeddedPostgres.start(pgdata)
        except EmbeddedPostgresError as exc:
            return fail(AREA, f"embedded PostgreSQL in {pgdata} does not start: {exc}")
        dsn, kind = embedded.uri, "embedded"
    else:
        dsn, kind = settings.database_url.reveal(), "external"
    where = f"{kind} PostgreSQL at {redact_dsn(dsn)}"
    try:
        return await _inspect(dsn, where, timeout_s)
    finally:
        if embedded is not None:
            await embedded.stop()


async def _inspect(dsn: str, where: str, timeout_s: float) -> Finding:
    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn, timeout=timeout_s), timeout_s + 1)
    except Exception as exc:
        return fail(AREA, f"cannot connect to {where}: {describe_error(exc)}")
    try:
        version = await conn.fetchval("SHOW server_version")
        status = await migration_status(conn)
    except Exception as exc:
        return fail(AREA, f"{where} answers but cannot be read: {describe_error(exc)}")
    finally:
        await conn.close()
    server = f"{where} (PostgreSQL {str(version).split()[0]})"
    if status.edited:
        return fail(
            AREA,
            f"{server}: applied migrations edited since: {', '.join(status.edited)} "
            "(the server refuses to start)",
        )
    if status.pending:
        return warn(
            AREA,
            f"{server}: {len(status.pending)} migration(s) pending ({', '.join(status.pending)}); "
            "`tickgraph migrate` or the next start applies them",
        )
    newer = f"; {len(status.unknown)} from a newer build" if status.unknown else ""
    return ok(AREA, f"{server}: migrations current ({status.applied} applied{newer})")
