"""The trading enums in GraphQL: the domain's own ``StrEnum`` classes, registered as is.

GraphQL names are the members' names (``BUY``, ``STOP_LIMIT``, ``PENDING_NEW``); values
are the domain members themselves, both ways: an input arrives as ``Side.BUY`` and a
resolver returns ``OrderStatus.FILLED`` unchanged. There is no second enum to keep in
step with the domain: a member added there appears here.

Registering sets strawberry's definition on the domain class (as ``schema.alerts``
does for the alert enums), so each is registered once, here; import them from this
module (or from ``server.trading``: it is the same class).
"""

from __future__ import annotations

import strawberry

from server.trading.events import Reason
from server.trading.model import LegRole, OrderClass, OrderType, Side, TimeInForce
from server.trading.positions import PositionSide
from server.trading.states import EventKind, OrderStatus

OrderSide = strawberry.enum(Side, name="OrderSide", description="BUY or SELL.")
strawberry.enum(
    OrderType,
    name="OrderType",
    description="MARKET, LIMIT (needs limitPrice), STOP (stopPrice), STOP_LIMIT (both), "
    "TRAILING_STOP (trailPrice or trailPercent).",
)
strawberry.enum(
    TimeInForce,
    name="TimeInForce",
    description="DAY: until the close of its session. GTC: until canceled. IOC: fill what "
    "can be filled at once, cancel the rest. FOK: fill all at once or nothing. OPG / CLS: "
    "in the opening / closing auction.",
)
strawberry.enum(
    OrderClass,
    name="OrderClass",
    description="SIMPLE; BRACKET: an entry with a take-profit and a stop-loss leg that "
    "work once it fills and cancel each other; OTO: an entry and one of those legs; OCO: "
    "a take-profit limit and a stop-loss that cancel each other.",
)
OrderEventKind = strawberry.enum(
    EventKind,
    name="OrderEventKind",
    description="What happened to an order. PARTIAL_FILL / FILL: a fill that leaves some "
    "quantity open / completes it. *_REQUESTED: a cancel or replace was asked for; "
    "TRIGGERED: a stop triggered (the status stays).",
)
strawberry.enum(
    OrderStatus,
    name="OrderStatus",
    description="PENDING_NEW: recorded, not yet acknowledged by the broker. ACCEPTED: "
    "waiting for its session. HELD: a leg waiting for its entry to fill. NEW / "
    "PARTIALLY_FILLED: working. PENDING_CANCEL / PENDING_REPLACE: a request is in flight. "
    "DONE_FOR_DAY: works again next session. Done: FILLED, CANCELED, EXPIRED, REPLACED "
    "(by replacedBy), REJECTED.",
)
strawberry.enum(
    LegRole,
    name="LegRole",
    description="ENTRY: a simple order or the entry of a bracket/OTO; TAKE_PROFIT / "
    "STOP_LOSS: an exit leg (an OCO's first order is its TAKE_PROFIT).",
)
strawberry.enum(
    PositionSide, name="PositionSide", description="LONG (quantity > 0) or SHORT (< 0)."
)
OrderReason = strawberry.enum(
    Reason,
    name="OrderReason",
    description="Why an order was rejected, canceled or expired, or a cancel or replace "
    "refused. Stable codes: clients may branch on them.",
)

__all__ = [
    "EventKind",
    "LegRole",
    "OrderClass",
    "OrderEventKind",
    "OrderReason",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "PositionSide",
    "Reason",
    "Side",
    "TimeInForce",
]
