"""Builders for the trading tests."""

from __future__ import annotations

from decimal import Decimal

from server.trading.events import Fill, OrderEvent
from server.trading.model import Order, OrderSpec, OrderType, Side, TimeInForce
from server.trading.states import EventKind, OrderStatus


def limit_order(order_id: str = "o1", qty: str | None = "10", notional: str | None = None) -> Order:
    spec = OrderSpec(
        symbol="AMZN",
        side=Side.BUY,
        type=OrderType.MARKET if notional else OrderType.LIMIT,
        time_in_force=TimeInForce.DAY,
        qty=Decimal(qty) if qty else None,
        notional=Decimal(notional) if notional else None,
        limit_price=None if notional else Decimal("100"),
    )
    return Order(order_id, spec, created_ms=1)


def fill(
    order_id: str,
    n: int,
    qty: str,
    price: str,
    *,
    side: Side = Side.BUY,
    symbol: str = "AMZN",
    commission: str = "0",
    t: int = 0,
) -> Fill:
    return Fill(
        f"{order_id}-{n}",
        order_id,
        symbol,
        side,
        Decimal(qty),
        Decimal(price),
        Decimal(commission),
        t,
    )


def event(
    seq: int,
    kind: EventKind,
    order_id: str,
    status: OrderStatus,
    filled: str = "0",
    *,
    qty: str | None = None,
    the_fill: Fill | None = None,
) -> OrderEvent:
    return OrderEvent(
        seq=seq,
        kind=kind,
        order_id=order_id,
        status=status,
        time_ms=seq,
        qty=Decimal(qty) if qty else None,
        filled_qty=Decimal(filled),
        fill=the_fill,
    )
