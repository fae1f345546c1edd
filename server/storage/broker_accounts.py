"""Linked broker accounts and the corrections reconciliations found (migration 0008).

Only sealed secrets pass through here (``server.auth.sealing``); opening them is the
service's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from server.storage.order_rows import Executor


@dataclass(frozen=True, slots=True)
class LinkedRow:
    owner: str
    broker: str
    key_id: str
    secret_sealed: bytes
    live: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CorrectionRow:
    id: int
    broker: str
    what: str
    order_id: str | None
    kind: str | None
    detail: str
    recorded_at: datetime


async def save_link(
    db: Executor, owner: str, *, broker: str, key_id: str, sealed: bytes, live: bool
) -> LinkedRow:
    row = await db.fetchrow(
        """
        INSERT INTO broker_accounts (owner, broker, key_id, secret_sealed, live)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (owner) DO UPDATE SET broker = $2, key_id = $3, secret_sealed = $4,
            live = $5, created_at = now()
        RETURNING owner, broker, key_id, secret_sealed, live, created_at
        """,
        owner,
        broker,
        key_id,
        sealed,
        live,
    )
    return LinkedRow(**dict(row))


async def delete_link(db: Executor, owner: str) -> bool:
    done = await db.execute("DELETE FROM broker_accounts WHERE owner = $1", owner)
    return str(done).endswith(" 1")


async def load_links(db: Executor) -> list[LinkedRow]:
    rows = await db.fetch(
        "SELECT owner, broker, key_id, secret_sealed, live, created_at FROM broker_accounts"
    )
    return [LinkedRow(**dict(r)) for r in rows]


async def record_corrections(
    db: Executor, rows: list[tuple[str | None, str, str, str | None, str | None, str]]
) -> None:
    """(owner, broker, what, order id, kind, detail) each."""
    await db.executemany(
        "INSERT INTO broker_corrections (owner, broker, what, order_id, kind, detail) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        rows,
    )


async def corrections_of(db: Executor, owner: str, limit: int) -> list[CorrectionRow]:
    rows = await db.fetch(
        "SELECT id, broker, what, order_id, kind, detail, recorded_at FROM broker_corrections "
        "WHERE owner = $1 ORDER BY id DESC LIMIT $2",
        owner,
        limit,
    )
    return [CorrectionRow(**dict(r)) for r in rows]


async def load_fills_by_broker(db: Executor) -> list[tuple[str, str, dict[str, object]]]:
    """Every fill in the ledger with its owner and its order's broker, in ledger order
    (the fill as stored: ``server.storage.orders.fill_from_doc`` reads it)."""
    rows = await db.fetch(
        "SELECT e.owner, o.broker, e.event FROM order_events e JOIN orders o ON o.id = e.order_id "
        "WHERE e.fill_id IS NOT NULL ORDER BY e.seq"
    )
    return [(r["owner"], r["broker"], orjson.loads(r["event"])["fill"]) for r in rows]


async def load_all_accounts(db: Executor) -> list[tuple[str, str, object]]:
    rows = await db.fetch("SELECT owner, broker, starting_cash FROM trading_accounts")
    return [(r["owner"], r["broker"], r["starting_cash"]) for r in rows]
