"""The audit log: an append-only record of security-relevant actions.

Rows are written in the same transaction as the change they describe where there is one
(a password change and its row commit or roll back together). ``user_id`` has no foreign
key, so the history survives the account. Nothing secret goes into ``detail``: no
password, token or key, only ids, names and reasons.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import orjson

#: A pool or a connection (so callers can write inside their own transaction).
Executor: TypeAlias = Any

#: Client addresses are recorded as given (an IPv6 address with zone fits easily); longer
#: values are cut so a forged header cannot bloat the log.
MAX_IP_LENGTH = 64


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    user_id: uuid.UUID | None
    ip: str | None
    action: str
    detail: dict[str, Any]


async def audit(
    db: Executor,
    action: str,
    *,
    user_id: uuid.UUID | None = None,
    ip: str | None = None,
    **detail: Any,
) -> None:
    """Append one row. ``detail`` values must be JSON-serialisable by orjson (str, numbers,
    bools, None, UUIDs, datetimes, lists and dicts of those)."""
    await db.execute(
        "INSERT INTO audit_log (user_id, ip, action, detail) VALUES ($1, $2, $3, $4::jsonb)",
        user_id,
        ip[:MAX_IP_LENGTH] if ip is not None else None,
        action,
        orjson.dumps(detail, default=_json_default).decode(),
    )


def _json_default(value: object) -> object:
    # asyncpg returns its own UUID subclass, which orjson does not take as a UUID.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"audit detail value of type {type(value).__name__} is not JSON")


async def audit_history(db: Executor, *, user_id: uuid.UUID, limit: int = 100) -> list[AuditEntry]:
    """The newest ``limit`` rows about ``user_id``, newest first."""
    rows = await db.fetch(
        "SELECT id, at, user_id, ip, action, detail FROM audit_log "
        "WHERE user_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        user_id,
        max(1, min(limit, 1000)),
    )
    return [
        AuditEntry(
            id=row["id"],
            at=row["at"],
            user_id=row["user_id"],
            ip=row["ip"],
            action=row["action"],
            detail=orjson.loads(row["detail"]),
        )
        for row in rows
    ]
