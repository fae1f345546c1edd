"""Orders and their ledger as stored: the row types and the JSON codecs of specs, fills
and events (decimals as strings, never binary floats)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

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

DONE_STATUSES = tuple(str(s) for s in DONE)


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


ORDER_COLUMNS = (
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
