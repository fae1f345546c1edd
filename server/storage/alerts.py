"""Alerts and their firing history in PostgreSQL.

Every read and write is scoped by ``owner``: a caller can only ever see or change its
own alerts, whatever ids it guesses. Firings are recorded with the engine's dedup
key under a unique constraint, so writing the same firing twice (a retry, a replay
after a restart) stores it once, and the caller publishes only what was new.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg
import orjson

from server.errors import LimitExceeded
from server.storage.alert_events import AlertEventRow, alert_history, record_firing

__all__ = [
    "AlertEventRow",
    "StoredAlert",
    "alert_history",
    "delete_alert",
    "get_alert",
    "insert_alert",
    "list_alerts",
    "load_armed",
    "mark_done",
    "record_firing",
    "replace_alert",
    "set_enabled",
]

#: A pool or a connection (so callers can use these inside their own transaction).
#: asyncpg's pool/connection methods are not typed as a shared protocol.
Executor: TypeAlias = Any


@dataclass(frozen=True, slots=True)
class StoredAlert:
    id: uuid.UUID
    owner: str
    symbol: str
    definition: dict[str, Any]
    enabled: bool
    done: bool
    expires_at: datetime | None
    last_fired_key: str | None
    last_fired_at: datetime | None
    fire_count: int
    created_at: datetime
    updated_at: datetime
    #: Firings above the tier's rate that were not delivered.
    suppressed_count: int = 0


_ALERT_COLUMNS = (
    "id, owner, symbol, definition, enabled, done, expires_at, last_fired_key, "
    "last_fired_at, fire_count, suppressed_count, created_at, updated_at"
)


def _alert(row: asyncpg.Record) -> StoredAlert:
    return StoredAlert(
        id=row["id"],
        owner=row["owner"],
        symbol=row["symbol"],
        definition=orjson.loads(row["definition"]),
        enabled=row["enabled"],
        done=row["done"],
        expires_at=row["expires_at"],
        last_fired_key=row["last_fired_key"],
        last_fired_at=row["last_fired_at"],
        fire_count=row["fire_count"],
        suppressed_count=row["suppressed_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _json(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


async def insert_alert(
    pool: asyncpg.Pool,
    *,
    alert_id: uuid.UUID,
    owner: str,
    symbol: str,
    definition: dict[str, Any],
    enabled: bool,
    expires_at: datetime | None,
    max_per_owner: int,
) -> StoredAlert:
    """Store a validated alert; ``LimitExceeded`` if the owner already has the maximum.

    The count and the insert happen under a per-owner advisory lock, so two
    concurrent creates cannot both slip under the limit.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('alerts:' || $1))", owner)
        count = await conn.fetchval(
            "SELECT count(*) FROM alerts WHERE owner = $1 AND NOT done", owner
        )
        if count >= max_per_owner:
            raise LimitExceeded(
                f"at most {max_per_owner} active alerts per user; delete some first",
                limit=max_per_owner,
            )
        row = await conn.fetchrow(
            f"INSERT INTO alerts (id, owner, symbol, definition, enabled, expires_at) "
            f"VALUES ($1, $2, $3, $4::jsonb, $5, $6) RETURNING {_ALERT_COLUMNS}",
            alert_id,
            owner,
            symbol,
            _json(definition),
            enabled,
            expires_at,
        )
    return _alert(row)


async def replace_alert(
    db: Executor,
    *,
    alert_id: uuid.UUID,
    owner: str,
    symbol: str,
    definition: dict[str, Any],
    enabled: bool,
    expires_at: datetime | None,
) -> StoredAlert | None:
    """Replace an alert's definition and re-arm it (its firing state starts over).

    ``None`` when no such alert belongs to ``owner``.
    """
    row = await db.fetchrow(
        f"UPDATE alerts SET symbol = $3, definition = $4::jsonb, enabled = $5, "
        f"expires_at = $6, done = false, last_fired_key = NULL, last_fired_at = NULL, "
        f"updated_at = now() WHERE id = $1 AND owner = $2 RETURNING {_ALERT_COLUMNS}",
        alert_id,
        owner,
        symbol,
        _json(definition),
        enabled,
        expires_at,
    )
    return _alert(row) if row else None


async def set_enabled(
    db: Executor, *, alert_id: uuid.UUID, owner: str, enabled: bool
) -> StoredAlert | None:
    row = await db.fetchrow(
        f"UPDATE alerts SET enabled = $3, updated_at = now() "
        f"WHERE id = $1 AND owner = $2 RETURNING {_ALERT_COLUMNS}",
        alert_id,
        owner,
        enabled,
    )
    return _alert(row) if row else None


async def delete_alert(db: Executor, *, alert_id: uuid.UUID, owner: str) -> bool:
    status: str = await db.execute(
        "DELETE FROM alerts WHERE id = $1 AND owner = $2", alert_id, owner
    )
    return status.endswith(" 1")


async def get_alert(db: Executor, *, alert_id: uuid.UUID, owner: str) -> StoredAlert | None:
    row = await db.fetchrow(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = $1 AND owner = $2", alert_id, owner
    )
    return _alert(row) if row else None


async def list_alerts(db: Executor, *, owner: str) -> list[StoredAlert]:
    rows = await db.fetch(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE owner = $1 ORDER BY created_at, id", owner
    )
    return [_alert(r) for r in rows]


async def load_armed(db: Executor) -> list[StoredAlert]:
    """Every alert the engine must watch at start-up (all owners)."""
    rows = await db.fetch(
        f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE NOT done ORDER BY created_at, id"
    )
    return [_alert(r) for r in rows]


async def mark_done(db: Executor, alert_ids: Sequence[uuid.UUID]) -> None:
    if alert_ids:
        await db.execute(
            "UPDATE alerts SET done = true, updated_at = now() WHERE id = ANY($1::uuid[])",
            list(alert_ids),
        )
