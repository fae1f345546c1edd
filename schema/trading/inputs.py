"""Order inputs: what a client sends to place or replace an order.

Each input's ``doc()`` is the request as the domain reads it
(``server.trading.validation.parse_order`` for ``OrderInput``): the API's field names,
enum values as the domain's (``"stop_limit"``), decimals as plain decimal strings, and
only the fields the client gave. A field given as ``null`` is passed as ``None``, so
the validator, not this layer, says what is wrong with it (``INVALID_PRICE`` with
``extensions.field``), and every rule lives in one place. The document is JSON-safe:
it can be stored as is (an alert's order template) or fingerprinted (a repeated
idempotency key with a different request).

The GraphQL types already refuse what is not a number (the ``Decimal`` scalar) or not
an enum value; whether a number is a valid quantity or price is the domain's call.
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import Any

import strawberry
from strawberry.types.base import has_object_definition
from strawberry.utils.str_converters import to_camel_case

from schema.money import plain
from schema.trading.enums import OrderClass, OrderType, Side, TimeInForce


def _wire(value: object) -> object:
    """A given input value as the domain document holds it."""
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, Enum):
        return value.value
    if has_object_definition(value):
        return given_fields(value)
    return value


def given_fields(value: object) -> dict[str, Any]:
    """The fields of a strawberry input that the client gave (``UNSET`` ones left out),
    under their GraphQL names, with values as ``_wire`` makes them."""
    out: dict[str, Any] = {}
    for f in value.__strawberry_definition__.fields:  # type: ignore[attr-defined]
        raw = getattr(value, f.python_name)
        if raw is strawberry.UNSET:
            continue
        out[f.graphql_name or to_camel_case(f.python_name)] = _wire(raw)
    return out


@strawberry.input(description="A bracket's or OCO's take-profit leg: a limit order.")
class TakeProfitInput:
    limit_price: Decimal = strawberry.field(
        description="Its limit: above the stop-loss (and a limit entry) when the exits sell, "
        "below when they buy."
    )

    def doc(self) -> dict[str, Any]:
        return given_fields(self)


@strawberry.input(
    description="A bracket's or OCO's stop-loss leg: a stop, or a stop-limit with limitPrice."
)
class StopLossInput:
    stop_price: Decimal = strawberry.field(
        description="Its stop: below the take-profit (and a limit entry) when the exits "
        "sell, above when they buy."
    )
    limit_price: Decimal | None = strawberry.field(
        default=strawberry.UNSET,
        description="Makes it a stop-limit: at or below the stop when selling, at or above "
        "when buying.",
    )

    def doc(self) -> dict[str, Any]:
        return given_fields(self)


@strawberry.input(
    description="An order to place. Exactly one of qty and notional. Prices are exact "
    "decimals on the tick ($0.01 from $1, $0.0001 below). Which fields an order needs "
    "depends on its type and class; a missing or superfluous one is refused with "
    "extensions.field naming it."
)
class OrderInput:
    symbol: str = strawberry.field(description='The symbol to trade, e.g. "AMZN".')
    side: Side = strawberry.field(description="BUY or SELL.")
    type: OrderType = strawberry.field(description="MARKET, LIMIT, STOP, STOP_LIMIT, ...")
    time_in_force: TimeInForce = strawberry.field(
        description="DAY, GTC, IOC, FOK, OPG or CLS (stops and legs: DAY or GTC)."
    )
    qty: Decimal | None = strawberry.field(
        default=strawberry.UNSET,
        description="Shares: whole, or fractional (up to 9 decimals) for a simple MARKET "
        "DAY order.",
    )
    notional: Decimal | None = strawberry.field(
        default=strawberry.UNSET,
        description="Dollars and cents to trade instead of a quantity (simple MARKET DAY orders).",
    )
    limit_price: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="LIMIT and STOP_LIMIT: the worst price."
    )
    stop_price: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="STOP and STOP_LIMIT: the trigger price."
    )
    trail_price: Decimal | None = strawberry.field(
        default=strawberry.UNSET,
        description="TRAILING_STOP: trail the best price by this many dollars (or give "
        "trailPercent).",
    )
    trail_percent: Decimal | None = strawberry.field(
        default=strawberry.UNSET,
        description="TRAILING_STOP: trail the best price by this percent (0 < % < 100).",
    )
    extended_hours: bool | None = strawberry.field(
        default=strawberry.UNSET,
        description="Also work in pre- and post-market sessions (simple LIMIT DAY orders). "
        "Default false.",
    )
    order_class: OrderClass | None = strawberry.field(
        default=strawberry.UNSET, description="Default SIMPLE."
    )
    take_profit: TakeProfitInput | None = strawberry.field(
        default=strawberry.UNSET, description="BRACKET, OCO, OTO: the take-profit leg."
    )
    stop_loss: StopLossInput | None = strawberry.field(
        default=strawberry.UNSET, description="BRACKET, OCO, OTO: the stop-loss leg."
    )
    client_order_id: str | None = strawberry.field(
        default=strawberry.UNSET,
        description="Your own id for the order: 1-128 printable ASCII characters, no spaces.",
    )

    def doc(self) -> dict[str, Any]:
        """The request for ``parse_order``."""
        return given_fields(self)


@strawberry.input(
    description="Changes to a working order. Give only what changes; the replacement keeps "
    "the rest. qty is the new total, including what has filled."
)
class ReplaceOrderInput:
    qty: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="The new total quantity."
    )
    limit_price: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="The new limit price."
    )
    stop_price: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="The new stop price."
    )
    trail_price: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="The new trail, in dollars."
    )
    trail_percent: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="The new trail, in percent."
    )
    time_in_force: TimeInForce | None = strawberry.field(
        default=strawberry.UNSET, description="The new time in force."
    )
    client_order_id: str | None = strawberry.field(
        default=strawberry.UNSET, description="A client order id for the replacement."
    )

    def doc(self) -> dict[str, Any]:
        """The fields given, under the API's names (as ``OrderInput.doc``)."""
        return given_fields(self)


__all__ = [
    "OrderInput",
    "ReplaceOrderInput",
    "StopLossInput",
    "TakeProfitInput",
    "given_fields",
]
