"""Writing orders, their outbox and their ledger in PostgreSQL.

- ``insert_request``: the orders of one request and their outbox row in one statement,
  before any broker sees them. A taken idempotency key or client order id refuses the
  whole request (the caller reads the first one's orders back).
- ``record_ledger``: a batch of broker events appended to ``order_events`` with the
  orders' new folded state and the outbox rows they answer, in one statement (a group
  commit). A fill already in the ledger is not booked again.
- ``ensure_account``: a user's trading account, opened on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import asyncpg
import orjson

from server.storage.order_rows import (
    ORDER_COLUMNS,
    Executor,
    LedgerEntry,
    OrderMeta,
    StoredEntry,
    spec_to_doc,
)
from server.trading.model import (
    Order,
)

# -- writes -----------------------------------------------------------------------------------

# One statement (one round trip, atomic on its own): the orders of a request and their
# outbox row. A taken idempotency key or client order id raises a unique violation,
# which undoes the whole statement: never a bracket without its entry.
_INSERT_REQUEST = f"""
WITH v AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $11::uuid[], $12::numeric[], $13::bigint[], $14::numeric[],
                         $15::bytea[], $16::int[])
        AS v(id, coid, ikey, cls, role, parent, repl, sym, spec, src, alert, est, created,
             qty, digest, i)
), ins AS (
    INSERT INTO orders ({ORDER_COLUMNS}, request_digest)
    SELECT id, $17, $18, coid, ikey, cls, role, parent, repl, sym, spec::jsonb, src, alert,
           est, created, 'pending_new', qty, 0, 0, 0, created, 0, NULL, digest
    FROM v ORDER BY i
    RETURNING id
)
INSERT INTO order_outbox (owner, kind, order_ids)
SELECT $17, $19, $20 WHERE (SELECT count(*) FROM ins) = $21
RETURNING id
"""


async def insert_request(
    db: Executor,
    orders: Sequence[Order],
    metas: Sequence[OrderMeta],
    *,
    digest: bytes | None,
    outbox_kind: str = "submit",
    outbox_ids: Sequence[str] | None = None,
) -> int | None:
    """Insert ``orders`` and one outbox row in one statement. Returns the outbox id, or
    ``None`` when the first order's idempotency key (or a client order id) is taken:
    then nothing was inserted. In a transaction, it runs in a savepoint, so a refusal
    leaves the caller's transaction usable."""
    first = metas[0]
    args = (
        [o.id for o in orders],
        [o.client_order_id for o in orders],
        [first.idempotency_key] + [None] * (len(orders) - 1),
        [str(o.order_class) for o in orders],
        [str(o.role) for o in orders],
        [o.parent_id for o in orders],
        [o.replaces for o in orders],
        [o.symbol for o in orders],
        [orjson.dumps(spec_to_doc(o.spec)).decode() for o in orders],
        [m.source for m in metas],
        [m.alert_id for m in metas],
        [m.estimate_price for m in metas],
        [o.created_ms for o in orders],
        [o.spec.qty for o in orders],
        [digest] + [None] * (len(orders) - 1),
        list(range(len(orders))),
        first.owner,
        first.broker,
        outbox_kind,
        list(outbox_ids) if outbox_ids is not None else [o.id for o in orders],
        len(orders),
    )
    try:
        if getattr(db, "is_in_transaction", lambda: False)():
            async with db.transaction():  # a savepoint
                outbox: int | None = await db.fetchval(_INSERT_REQUEST, *args)
        else:
            outbox = await db.fetchval(_INSERT_REQUEST, *args)
    except asyncpg.UniqueViolationError:
        return None
    return outbox


async def insert_outbox(conn: Executor, owner: str, kind: str, order_ids: Sequence[str]) -> int:
    outbox: int = await conn.fetchval(
        "INSERT INTO order_outbox (owner, kind, order_ids) VALUES ($1, $2, $3) RETURNING id",
        owner,
        kind,
        list(order_ids),
    )
    return outbox


# One statement per batch (one round trip, one commit): the events (a fill already
# booked is skipped), each order's newest folded state, and the answered outbox rows.
_RECORD = """
WITH v AS (
    SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::bigint[], $7::text[], $8::text[])
        AS v(i, o, oid, k, st, t, ev, fid)
), ins AS (
    INSERT INTO order_events (owner, order_id, kind, status, time_ms, event, fill_id)
    SELECT o, oid, k, st, t, ev::jsonb, fid FROM v ORDER BY i
    ON CONFLICT (fill_id) DO NOTHING
    RETURNING seq, order_id, fill_id
), s AS (
    SELECT * FROM unnest($9::text[], $10::text[], $11::numeric[], $12::numeric[],
                         $13::numeric[], $14::numeric[], $15::bigint[], $16::text[])
        AS s(id, st, q, fq, fv, c, u, rb)
), upd AS (
    UPDATE orders AS o SET
        status = s.st, qty = s.q, filled_qty = s.fq, filled_value = s.fv,
        commission = s.c, updated_ms = s.u, replaced_by = COALESCE(s.rb, o.replaced_by),
        last_seq = GREATEST(o.last_seq,
                            COALESCE((SELECT max(seq) FROM ins WHERE ins.order_id = s.id), 0))
    FROM s WHERE o.id = s.id
    RETURNING o.id
), gone AS (
    DELETE FROM order_outbox WHERE id = ANY($17::bigint[]) RETURNING id
)
SELECT seq, fill_id FROM ins ORDER BY seq
"""


async def record_ledger(
    db: Executor, entries: Sequence[LedgerEntry], answered: Iterable[int] = ()
) -> list[StoredEntry]:
    """Append ``entries`` (in order), update their orders, delete the ``answered``
    outbox rows: one transaction. Returns what was new, with its ledger ``seq``."""
    latest: dict[str, LedgerEntry] = {}
    for e in entries:
        latest[e.event.order_id] = e
    rows = await db.fetch(
        _RECORD,
        list(range(len(entries))),
        [e.owner for e in entries],
        [e.event.order_id for e in entries],
        [str(e.event.kind) for e in entries],
        [str(e.status) for e in entries],
        [e.event.time_ms for e in entries],
        [orjson.dumps(e.document()).decode() for e in entries],
        [e.event.fill.id if e.event.fill is not None else None for e in entries],
        list(latest),
        [str(e.status) for e in latest.values()],
        [e.qty for e in latest.values()],
        [e.filled_qty for e in latest.values()],
        [e.filled_value for e in latest.values()],
        [e.commission for e in latest.values()],
        [e.updated_ms for e in latest.values()],
        [e.replaced_by for e in latest.values()],
        list(answered),
    )
    # Rows are inserted in entry order, so seqs follow it; only fills already in the
    # ledger are skipped (they are absent from what came back).
    booked = {r["fill_id"] for r in rows if r["fill_id"] is not None}
    new = [e for e in entries if e.event.fill is None or e.event.fill.id in booked]
    return [StoredEntry(r["seq"], e) for r, e in zip(rows, new, strict=True)]


async def ensure_account(db: Executor, owner: str, broker: str, starting_cash: Decimal) -> Decimal:
    """The account's starting cash (opening it with ``starting_cash`` if it is new).

    Two statements, not one: a statement's snapshot would not see the row a concurrent
    first call commits while this one waits on the conflict."""
    await db.execute(
        "INSERT INTO trading_accounts (owner, broker, starting_cash) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING",
        owner,
        broker,
        starting_cash,
    )
    cash: Decimal = await db.fetchval(
        "SELECT starting_cash FROM trading_accounts WHERE owner = $1 AND broker = $2",
        owner,
        broker,
    )
    return cash
