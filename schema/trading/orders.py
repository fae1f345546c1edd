"""Orders, fills and order updates as GraphQL types, built from the domain's values.

``Order.of(state, ...)`` snapshots an ``OrderState`` (the order folded from its
events) with what only the service knows: which broker works it, where it came from
(the API, an alert), and the order that replaced it. ``OrderUpdate.of`` is one ledger
entry: the event, the order as it stood after it, and the ledger position as cursor.
Money and quantities are ``Decimal`` (the exact decimal-string scalar of
``schema.money``); times are ``Timestamp`` (epoch milliseconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import strawberry

from schema.pagination import PageInfo, decode_position, encode_position
from schema.scalars import Timestamp
from schema.trading.enums import (
    EventKind,
    LegRole,
    OrderClass,
    OrderStatus,
    OrderType,
    Reason,
    Side,
    TimeInForce,
)
from server.trading import events as domain_events
from server.trading.events import OrderEvent
from server.trading.lifecycle import OrderState

#: The kind of position an ``OrderUpdate`` cursor holds (``schema.pagination``).
UPDATE_CURSOR = "ledger"


def ms(time_ms: int) -> Timestamp:
    return Timestamp(float(time_ms))


def _id(value: str | None) -> strawberry.ID | None:
    return None if value is None else strawberry.ID(value)


def update_cursor(ledger_seq: int) -> str:
    """The opaque cursor of the ledger entry ``ledger_seq``."""
    return encode_position(UPDATE_CURSOR, ledger_seq)


def ledger_seq_of(cursor: str) -> int:
    """The ledger sequence number an ``OrderUpdate.cursor`` holds; ``InvalidInput``
    (``BAD_USER_INPUT``) for anything that is not such a cursor."""
    return decode_position(UPDATE_CURSOR, cursor, "order updates")


@strawberry.type(description="One execution of an order.")
class Fill:
    id: strawberry.ID = strawberry.field(
        description="Unique per fill: the order id and the fill's number on it."
    )
    order_id: strawberry.ID = strawberry.field(description="The order that filled.")
    symbol: str = strawberry.field(description="The symbol traded.")
    side: Side = strawberry.field(description="BUY or SELL.")
    qty: Decimal = strawberry.field(description="Shares executed (> 0).")
    price: Decimal = strawberry.field(description="Price per share.")
    commission: Decimal = strawberry.field(description="Fees charged for this fill, in dollars.")
    at: Timestamp = strawberry.field(description="When it executed.")

    @classmethod
    def of(cls, fill: domain_events.Fill) -> Fill:
        return cls(
            id=strawberry.ID(fill.id),
            order_id=strawberry.ID(fill.order_id),
            symbol=fill.symbol,
            side=fill.side,
            qty=fill.qty,
            price=fill.price,
            commission=fill.commission,
            at=ms(fill.time_ms),
        )


@strawberry.type(
    description="An order: what was asked for, and where it stands. A replace makes a new "
    "order (replaces / replacedBy link the two)."
)
class Order:
    id: strawberry.ID = strawberry.field(description="The server's id for the order.")
    client_order_id: str | None = strawberry.field(
        description="The client's own id, as given when placing it (on the entry of a "
        "bracket/OTO, the first order of an OCO)."
    )
    symbol: str = strawberry.field(description="The symbol traded.")
    side: Side = strawberry.field(description="BUY or SELL.")
    type: OrderType = strawberry.field(description="MARKET, LIMIT, STOP, ...")
    time_in_force: TimeInForce = strawberry.field(description="How long the order works.")
    order_class: OrderClass = strawberry.field(
        description="SIMPLE, or the class of the group the order belongs to."
    )
    leg_role: LegRole = strawberry.field(
        description="ENTRY, or which exit leg of its group the order is."
    )
    parent_id: strawberry.ID | None = strawberry.field(
        description="A leg's entry (bracket/OTO) or the OCO's first order; null otherwise."
    )
    replaces: strawberry.ID | None = strawberry.field(
        description="The order this one replaced, if it is a replacement."
    )
    replaced_by: strawberry.ID | None = strawberry.field(
        description="The order that replaced this one (status REPLACED), if any."
    )
    qty: Decimal | None = strawberry.field(
        description="Shares ordered. Null for a notional order until it is done, and for a "
        "held leg until its entry fills; a replacement's is the new total less what the "
        "replaced order had filled."
    )
    notional: Decimal | None = strawberry.field(
        description="Dollars to trade, for a notional order (qty follows from the fills)."
    )
    limit_price: Decimal | None = strawberry.field(
        description="LIMIT and STOP_LIMIT orders: the worst price to fill at."
    )
    stop_price: Decimal | None = strawberry.field(
        description="STOP and STOP_LIMIT orders: the last-trade price that triggers them."
    )
    trail_price: Decimal | None = strawberry.field(
        description="TRAILING_STOP: the stop trails the best price by this many dollars."
    )
    trail_percent: Decimal | None = strawberry.field(
        description="TRAILING_STOP: the stop trails the best price by this percent."
    )
    extended_hours: bool = strawberry.field(
        description="Works in pre- and post-market sessions too (LIMIT DAY orders)."
    )
    status: OrderStatus = strawberry.field(description="Where the order stands.")
    filled_qty: Decimal = strawberry.field(description="Shares filled so far.")
    remaining_qty: Decimal | None = strawberry.field(
        description="Shares still open (qty - filledQty); null while qty is."
    )
    avg_fill_price: Decimal | None = strawberry.field(
        description="Average price of the fills; null before the first."
    )
    commission: Decimal = strawberry.field(description="Fees charged on the fills so far.")
    created_at: Timestamp = strawberry.field(description="When the order was placed.")
    updated_at: Timestamp = strawberry.field(description="When it last changed.")
    source: str = strawberry.field(
        description='What placed it, as the server recorded it: "api" (placeOrder), '
        '"alert" (an alert\'s order template, when the alert fired), ...'
    )
    alert_id: strawberry.ID | None = strawberry.field(
        description="The alert whose firing placed it, when source is alert."
    )
    broker: str = strawberry.field(description='The broker that works it, e.g. "paper".')

    @classmethod
    def of(
        cls,
        state: OrderState,
        *,
        broker: str,
        source: str,
        alert_id: str | None = None,
        replaced_by: str | None = None,
    ) -> Order:
        order = state.order
        spec = order.spec
        return cls(
            id=strawberry.ID(order.id),
            client_order_id=order.client_order_id,
            symbol=spec.symbol,
            side=spec.side,
            type=spec.type,
            time_in_force=spec.time_in_force,
            order_class=order.order_class,
            leg_role=order.role,
            parent_id=_id(order.parent_id),
            replaces=_id(order.replaces),
            replaced_by=_id(replaced_by),
            qty=state.qty,
            notional=spec.notional,
            limit_price=spec.limit_price,
            stop_price=spec.stop_price,
            trail_price=spec.trail_price,
            trail_percent=spec.trail_percent,
            extended_hours=spec.extended_hours,
            status=state.status,
            filled_qty=state.filled_qty,
            remaining_qty=state.remaining_qty,
            avg_fill_price=state.avg_fill_price,
            commission=state.commission,
            created_at=ms(order.created_ms),
            updated_at=ms(state.updated_ms),
            source=source,
            alert_id=_id(alert_id),
            broker=broker,
        )


@strawberry.type(
    description="One change of one order, in ledger order: every state change and every "
    "fill, never conflated. Resume after a reconnect from the last cursor received."
)
class OrderUpdate:
    cursor: str = strawberry.field(
        description="This update's position in the ledger (opaque): pass it to resume "
        "from the update after it."
    )
    kind: EventKind = strawberry.field(description="What happened.")
    order: Order = strawberry.field(description="The order as it stood after the update.")
    fill: Fill | None = strawberry.field(description="The fill, for PARTIAL_FILL and FILL.")
    reason: Reason | None = strawberry.field(
        description="Why, for a rejection, cancellation, expiry or refused request."
    )
    related_order_id: strawberry.ID | None = strawberry.field(
        description="REPLACED: the new order. NEW of a replacement: the order it "
        "replaces. CANCELED by an OCO: the sibling that filled. A leg's activation: its "
        "entry."
    )
    stop_price: Decimal | None = strawberry.field(
        description="TRIGGERED: the stop price that triggered (a trailing stop's trailed stop)."
    )
    at: Timestamp = strawberry.field(description="When it happened.")

    @classmethod
    def of(cls, event: OrderEvent, order: Order, *, ledger_seq: int) -> OrderUpdate:
        """``order`` is the order after ``event`` (``Order.of`` of the folded state)."""
        if str(order.id) != event.order_id:
            raise ValueError(f"update of order {event.order_id} with order {order.id}")
        return cls(
            cursor=update_cursor(ledger_seq),
            kind=event.kind,
            order=order,
            fill=None if event.fill is None else Fill.of(event.fill),
            reason=event.reason,
            related_order_id=_id(event.related_order_id),
            stop_price=event.stop_price,
            at=ms(event.time_ms),
        )


@strawberry.type(description="An order and its position in the list.")
class OrderEdge:
    cursor: str = strawberry.field(description="Pass as `after` for the orders after this.")
    node: Order = strawberry.field(description="The order.")


@strawberry.type(description="A page of orders.")
class OrderConnection:
    edges: list[OrderEdge] = strawberry.field(description="The orders of this page, in order.")
    page_info: PageInfo = strawberry.field(description="Whether there is a next page.")

    @classmethod
    def of(cls, edges: Sequence[tuple[str, Order]], *, has_next_page: bool) -> OrderConnection:
        """A page from (cursor, order) pairs, in list order."""
        page = [OrderEdge(cursor=cursor, node=node) for cursor, node in edges]
        return cls(
            edges=page,
            page_info=PageInfo(
                has_next_page=has_next_page, end_cursor=page[-1].cursor if page else None
            ),
        )


__all__ = [
    "UPDATE_CURSOR",
    "Fill",
    "Order",
    "OrderConnection",
    "OrderEdge",
    "OrderUpdate",
    "ledger_seq_of",
    "ms",
    "update_cursor",
]
