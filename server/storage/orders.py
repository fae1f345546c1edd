"""Orders, their outbox and their ledger in PostgreSQL.

- ``insert_request``: the orders of one request and its outbox row, in one transaction,
  before any broker sees them. With an idempotency key, a second request with the same
  key inserts nothing (a unique index decides, whatever the number of processes) and
  the caller reads the first one's orders back.
- ``record_ledger``: a batch of broker events appended to ``order_events`` with the
  orders' new folded state and the outbox rows they answer, in one transaction (a
  group commit). A fill already in the ledger is not booked again.
- reads for start-up (every open order with its events, every account's fills) and
  for the API (pages of orders, an order, the ledger after a cursor).

Decimals travel as strings (jsonb) and ``numeric`` (asyncpg gives ``Decimal``): no
binary float on the way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg
import orjson

from server.trading.events import Fill, OrderEvent, Reason
from server.trading.lifecycle import OrderState
from server.trading.model import (
    LegRole,
    Order,
    OrderClass,
    OrderSpec,
    OrderType,
    Side,
    TimeInForce,
)
from server.trading.states import DONE, EventKind, OrderStatus

#: A pool or a connection; asyncpg ships no type information.
Executor: TypeAlias = Any

_DONE = tuple(str(s) for s in DONE)


# -- codecs ---------------------------------------------------------------------------------


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def spec_to_doc(spec: OrderSpec) -> dict[str, object]:
    doc: dict[str, object] = {
        "symbol": spec.symbol,
        "side": str(spec.side),
        "type": str(spec.type),
        "timeInForce": str(spec.time_in_force),
        "extendedHours": spec.extended_hours,
    }
    for key, value in (
        ("qty", spec.qty),
        ("notional", spec.notional),
        ("limitPrice", spec.limit_price),
        ("stopPrice", spec.stop_price),
        ("trailPrice", spec.trail_price),
        ("trailPercent", spec.trail_percent),
    ):
        if value is not None:
            doc[key] = str(value)
    return doc


def spec_from_doc(doc: Mapping[str, Any]) -> OrderSpec:
    return OrderSpec(
        symbol=doc["symbol"],
        side=Side(doc["side"]),
        type=OrderType(doc["type"]),
        time_in_force=TimeInForce(doc["timeInForce"]),
        qty=_dec(doc.get("qty")),
        notional=_dec(doc.get("notional")),
        limit_price=_dec(doc.get("limitPrice")),
        stop_price=_dec(doc.get("stopPrice")),
        trail_price=_dec(doc.get("trailPrice")),
        trail_percent=_dec(doc.get("trailPercent")),
        extended_hours=bool(doc.get("extendedHours", False)),
    )


def fill_from_doc(doc: Mapping[str, Any]) -> Fill:
    return Fill(
        id=doc["id"],
        order_id=doc["orderId"],
        symbol=doc["symbol"],
        side=Side(doc["side"]),
        qty=Decimal(doc["qty"]),
        price=Decimal(doc["price"]),
        commission=Decimal(doc["commission"]),
        time_ms=int(doc["timeMs"]),
    )


def event_from_doc(doc: Mapping[str, Any]) -> OrderEvent:
    fill = doc.get("fill")
    reason = doc.get("reason")
    return OrderEvent(
        seq=int(doc["seq"]),
        kind=EventKind(doc["kind"]),
        order_id=doc["orderId"],
        status=OrderStatus(doc["status"]),
        time_ms=int(doc["timeMs"]),
        qty=_dec(doc.get("qty")),
        filled_qty=Decimal(doc["filledQty"]),
        fill=None if fill is None else fill_from_doc(fill),
        reason=None if reason is None else Reason(reason),
        related_order_id=doc.get("relatedOrderId"),
        stop_price=_dec(doc.get("stopPrice")),
    )


# -- what is stored ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderMeta:
    """What the ledger does not say about an order: who, where, why."""

    owner: str
    broker: str
    estimate_price: Decimal
    source: str = "api"
    alert_id: Any = None  # uuid.UUID of the alert that placed it
    idempotency_key: str | None = None
    replaced_by: str | None = None


@dataclass(slots=True)
class OrderRecord:
    """An order as stored: its folded state and what the ledger does not say."""

    state: OrderState
    meta: OrderMeta

    @property
    def order(self) -> Order:
        return self.state.order


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One accepted broker event, with the state of its order after it."""

    owner: str
    event: OrderEvent
    status: OrderStatus
    qty: Decimal | None
    filled_qty: Decimal
    filled_value: Decimal
    commission: Decimal
    updated_ms: int
    replaced_by: str | None = None
    #: The order and what the ledger does not say of it (for rendering the update).
    order: Order | None = None
    meta: OrderMeta | None = None

    def state(self) -> OrderState:
        """The order's state right after this event (``order`` must be set)."""
        assert self.order is not None
        return OrderState(
            order=self.order,
            status=self.status,
            qty=self.qty,
            filled_qty=self.filled_qty,
            filled_value=self.filled_value,
            commission=self.commission,
            updated_ms=self.updated_ms,
        )

    def document(self) -> dict[str, object]:
        """The ledger row's JSON: the event, and the order's state after it."""
        doc = self.event.as_dict()
        doc["state"] = {
            "filledValue": str(self.filled_value),
            "commission": str(self.commission),
            "updatedMs": self.updated_ms,
        }
        return doc


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A ledger entry as committed: ``seq`` is the user's order-update cursor."""

    seq: int
    entry: LedgerEntry


_ORDER_COLUMNS = (
    "id, owner, broker, client_order_id, idempotency_key, order_class, role, parent_id, "
    "replaces, symbol, spec, source, alert_id, estimate_price, created_ms, status, qty, "
    "filled_qty, filled_value, commission, updated_ms, last_seq, replaced_by"
)


def record_of(row: Any) -> OrderRecord:
    spec = spec_from_doc(orjson.loads(row["spec"]))
    order = Order(
        id=row["id"],
        spec=spec,
        created_ms=row["created_ms"],
        order_class=OrderClass(row["order_class"]),
        role=LegRole(row["role"]),
        parent_id=row["parent_id"],
        client_order_id=row["client_order_id"],
        replaces=row["replaces"],
    )
    state = OrderState(
        order=order,
        status=OrderStatus(row["status"]),
        qty=row["qty"],
        filled_qty=row["filled_qty"],
        filled_value=row["filled_value"],
        commission=row["commission"],
        updated_ms=row["updated_ms"],
        last_seq=row["last_seq"],
    )
    meta = OrderMeta(
        owner=row["owner"],
        broker=row["broker"],
        estimate_price=row["estimate_price"],
        source=row["source"],
        alert_id=row["alert_id"],
        idempotency_key=row["idempotency_key"],
        replaced_by=row["replaced_by"],
    )
    return OrderRecord(state, meta)


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
    INSERT INTO orders ({_ORDER_COLUMNS}, request_digest)
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
        f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = ANY($1::text[])", list(ids)
    )
    by_id = {r["id"]: record_of(r) for r in rows}
    return [by_id[i] for i in ids if i in by_id]


async def load_open(db: Executor) -> list[tuple[OrderRecord, list[OrderEvent]]]:
    """Every order not done, with its ledger events in order (the start-up rebuild)."""
    rows = await db.fetch(
        f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status <> ALL($1::text[]) "
        "ORDER BY created_ms, id",
        list(_DONE),
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
        SELECT {_ORDER_COLUMNS} FROM orders
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


async def max_seq(db: Executor) -> int:
    seq: int = await db.fetchval("SELECT COALESCE(max(seq), 0) FROM order_events")
    return seq


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
        f"SELECT {_ORDER_COLUMNS} FROM orders WHERE {' AND '.join(clauses)} "
        f"ORDER BY created_ms DESC, id DESC LIMIT ${len(args)}",
        *args,
    )
    return [record_of(r) for r in rows]


async def ledger_after(db: Executor, owner: str, seq: int, limit: int) -> list[StoredEntry]:
    """``owner``'s ledger after ``seq``, each entry with its order's state after it."""
    rows = await db.fetch(
        "SELECT seq, event FROM order_events WHERE owner = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        owner,
        seq,
        limit,
    )
    docs = [(r["seq"], orjson.loads(r["event"])) for r in rows]
    records = {r.order.id: r for r in await load_orders(db, list({d["orderId"] for _, d in docs}))}
    out = []
    for ledger_seq, doc in docs:
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
