"""Reading orders and their ledger: for start-up (every open order with its events,
every account's fills, the outbox) and for the API (pages of orders, an order, the
ledger after a cursor). Every API read is scoped by owner."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson

from server.storage.order_rows import (
    DONE_STATUSES,
    ORDER_COLUMNS,
    Executor,
    LedgerEntry,
    OrderRecord,
    StoredEntry,
    event_from_doc,
    fill_from_doc,
    record_of,
)
from server.trading.events import Fill, OrderEvent
from server.trading.states import EventKind

# -- reads ------------------------------------------------------------------------------------


async def order_by_key(db: Executor, owner: str, key: str) -> tuple[str, bytes | None] | None:
    row = await db.fetchrow(
        "SELECT id, request_digest FROM orders WHERE owner = $1 AND idempotency_key = $2",
        owner,
        key,
    )
    return None if row is None else (row["id"], row["request_digest"])


async def order_by_client_id(db: Executor, owner: str, client_order_id: str) -> str | None:
    ident: str | None = await db.fetchval(
        "SELECT id FROM orders WHERE owner = $1 AND client_order_id = $2",
        owner,
        client_order_id,
    )
    return ident


async def load_orders(db: Executor, ids: Sequence[str]) -> list[OrderRecord]:
    rows = await db.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ANY($1::text[])", list(ids)
    )
    by_id = {r["id"]: record_of(r) for r in rows}
    return [by_id[i] for i in ids if i in by_id]


async def load_open(db: Executor) -> list[tuple[OrderRecord, list[OrderEvent]]]:
    """Every order not done, with its ledger events in order (the start-up rebuild)."""
    rows = await db.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE status <> ALL($1::text[]) "
        "ORDER BY created_ms, id",
        list(DONE_STATUSES),
    )
    return await _with_events(db, rows)


async def load_related(
    db: Executor, ids: Sequence[str]
) -> list[tuple[OrderRecord, list[OrderEvent]]]:
    """The orders ``ids`` refer to, transitively (the entry of a leg, the orders a
    replacement replaced), not ``ids`` themselves, with their events."""
    rows = await db.fetch(
        f"""
        WITH RECURSIVE rel(id) AS (
            SELECT unnest($1::text[])
            UNION
            SELECT x FROM orders o JOIN rel ON o.id = rel.id,
                 LATERAL unnest(ARRAY[o.parent_id, o.replaces]) AS x
            WHERE x IS NOT NULL
        )
        SELECT {ORDER_COLUMNS} FROM orders
        WHERE id IN (SELECT id FROM rel) AND id <> ALL($1::text[])
        ORDER BY created_ms, id
        """,
        list(ids),
    )
    return await _with_events(db, rows)


async def _with_events(db: Executor, rows: list[Any]) -> list[tuple[OrderRecord, list[OrderEvent]]]:
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    events: dict[str, list[OrderEvent]] = {i: [] for i in ids}
    for e in await db.fetch(
        "SELECT order_id, event FROM order_events WHERE order_id = ANY($1::text[]) ORDER BY seq",
        ids,
    ):
        events[e["order_id"]].append(event_from_doc(orjson.loads(e["event"])))
    return [(record_of(r), events[r["id"]]) for r in rows]


async def ledger_extent(db: Executor) -> tuple[int, int]:
    """The largest broker seq and event time in the ledger (0, 0 when empty)."""
    row = await db.fetchrow(
        "SELECT COALESCE(max((event->>'seq')::bigint), 0) AS seq, "
        "COALESCE(max(time_ms), 0) AS t FROM order_events"
    )
    return int(row["seq"]), int(row["t"])


async def load_fills(db: Executor, owner: str | None = None) -> list[tuple[str, Fill]]:
    """Every fill in the ledger (of ``owner``, or of everyone), in ledger order."""
    if owner is None:
        rows = await db.fetch(
            "SELECT owner, event FROM order_events WHERE fill_id IS NOT NULL ORDER BY seq"
        )
    else:
        rows = await db.fetch(
            "SELECT owner, event FROM order_events WHERE fill_id IS NOT NULL AND owner = $1 "
            "ORDER BY seq",
            owner,
        )
    return [(r["owner"], fill_from_doc(orjson.loads(r["event"])["fill"])) for r in rows]


async def load_accounts(db: Executor, broker: str) -> dict[str, Decimal]:
    rows = await db.fetch(
        "SELECT owner, starting_cash FROM trading_accounts WHERE broker = $1", broker
    )
    return {r["owner"]: r["starting_cash"] for r in rows}


async def pending_outbox(db: Executor) -> list[tuple[int, str, str, list[str]]]:
    rows = await db.fetch("SELECT id, owner, kind, order_ids FROM order_outbox ORDER BY id")
    return [(r["id"], r["owner"], r["kind"], list(r["order_ids"])) for r in rows]


async def orders_page(
    db: Executor,
    owner: str,
    *,
    statuses: Sequence[str] | None,
    symbol: str | None,
    after: tuple[int, str] | None,
    limit: int,
) -> list[OrderRecord]:
    """A page of ``owner``'s orders, newest first, after ``(created_ms, id)``."""
    clauses = ["owner = $1"]
    args: list[object] = [owner]
    if statuses is not None:
        args.append(list(statuses))
        clauses.append(f"status = ANY(${len(args)}::text[])")
    if symbol is not None:
        args.append(symbol)
        clauses.append(f"symbol = ${len(args)}")
    if after is not None:
        args.extend(after)
        clauses.append(f"(created_ms, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    rows = await db.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE {' AND '.join(clauses)} "
        f"ORDER BY created_ms DESC, id DESC LIMIT ${len(args)}",
        *args,
    )
    return [record_of(r) for r in rows]


async def ledger_after(db: Executor, owner: str, seq: int, limit: int) -> list[StoredEntry]:
    """``owner``'s ledger after ``seq``, each entry with its order's state after it."""
    rows = await db.fetch(
        "SELECT seq, owner, event FROM order_events WHERE owner = $1 AND seq > $2 "
        "ORDER BY seq LIMIT $3",
        owner,
        seq,
        limit,
    )
    return await _stored(db, rows)


async def ledger_since(db: Executor, seq: int, limit: int) -> list[StoredEntry]:
    """Everyone's ledger after ``seq`` (its one writer commits in ``seq`` order), for
    the processes that deliver what the leader committed (``server.scaleout``)."""
    rows = await db.fetch(
        "SELECT seq, owner, event FROM order_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        seq,
        limit,
    )
    return await _stored(db, rows)


async def ledger_end(db: Executor) -> int:
    """The last ledger ``seq`` committed (0 when empty)."""
    value = await db.fetchval("SELECT coalesce(max(seq), 0) FROM order_events")
    return int(value)


async def _stored(db: Executor, rows: Sequence[Any]) -> list[StoredEntry]:
    docs = [(r["seq"], r["owner"], orjson.loads(r["event"])) for r in rows]
    ids = list({d["orderId"] for _, _, d in docs})
    records = {r.order.id: r for r in await load_orders(db, ids)}
    out = []
    for ledger_seq, owner, doc in docs:
        event = event_from_doc(doc)
        record = records[event.order_id]
        state = doc.get("state", {})
        replaced_by = event.related_order_id if event.kind is EventKind.REPLACED else None
        entry = LedgerEntry(
            owner=owner,
            event=event,
            status=event.status,
            qty=event.qty,
            filled_qty=event.filled_qty,
            filled_value=Decimal(state.get("filledValue", "0")),
            commission=Decimal(state.get("commission", "0")),
            updated_ms=int(state.get("updatedMs", event.time_ms)),
            replaced_by=replaced_by,
            order=record.order,
            meta=record.meta,
        )
        out.append(StoredEntry(ledger_seq, entry))
    return out
