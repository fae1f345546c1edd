"""Alpaca's JSON, both ways, as exact values (pure: no I/O).

Requests are written as JSON with decimal *strings*: alpaca-py's request models hold
floats, so the adapter sends these bodies through ``TradingClient.post/patch`` instead
and nothing is ever rounded. Answers and trade updates are read as Alpaca writes them
(money and quantities as strings) into frozen values with ``Decimal``s; a field that is
missing or malformed raises ``WireError`` and the message is logged and skipped.

Our order id is Alpaca's ``client_order_id`` for every order we submit ourselves.
Bracket/OCO/OTO legs get client order ids Alpaca makes up; they are matched to ours by
their role (``leg_roles``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from server.trading.model import LegRole, Order, OrderClass, OrderSpec, OrderType


class WireError(ValueError):
    pass


def _s(value: Decimal) -> str:
    return format(value, "f")


def _spec_fields(spec: OrderSpec) -> dict[str, object]:
    body: dict[str, object] = {
        "symbol": spec.symbol,
        "side": str(spec.side),
        "type": str(spec.type),
        "time_in_force": str(spec.time_in_force),
    }
    for name in ("qty", "notional", "limit_price", "stop_price", "trail_price", "trail_percent"):
        value = getattr(spec, name)
        if value is not None:
            body[name] = _s(value)
    if spec.extended_hours:
        body["extended_hours"] = True
    return body


def order_body(orders: Sequence[Order]) -> dict[str, object]:
    """``POST /v2/orders`` for one request: a simple order, or the first order of a
    bracket/OCO/OTO with its exits as ``take_profit``/``stop_loss``."""
    first = orders[0]
    body = _spec_fields(first.spec)
    body["client_order_id"] = first.id
    if first.order_class is OrderClass.SIMPLE:
        return body
    body["order_class"] = str(first.order_class)
    # The OCO's first order is itself the take-profit (Alpaca: a limit order with a
    # stop_loss); a bracket's and an OTO's exits are its legs.
    legs = list(orders) if first.order_class is OrderClass.OCO else list(orders[1:])
    for leg in legs:
        spec = leg.spec
        if leg.role is LegRole.TAKE_PROFIT:
            assert spec.limit_price is not None
            body["take_profit"] = {"limit_price": _s(spec.limit_price)}
        elif leg.role is LegRole.STOP_LOSS:
            assert spec.stop_price is not None
            stop: dict[str, str] = {"stop_price": _s(spec.stop_price)}
            if spec.limit_price is not None:
                stop["limit_price"] = _s(spec.limit_price)
            body["stop_loss"] = stop
    return body


def replace_body(replacement: Order, remaining_qty: Decimal | None) -> dict[str, object]:
    """``PATCH /v2/orders/{id}``. Our replacement's ``qty`` is the new total; Alpaca's is
    what is left to trade from now on (the old order keeps its fills)."""
    spec = replacement.spec
    body: dict[str, object] = {
        "time_in_force": str(spec.time_in_force),
        "client_order_id": replacement.id,
    }
    if remaining_qty is not None:
        body["qty"] = _s(remaining_qty)
    if spec.limit_price is not None:
        body["limit_price"] = _s(spec.limit_price)
    if spec.stop_price is not None and spec.type is not OrderType.TRAILING_STOP:
        body["stop_price"] = _s(spec.stop_price)
    trail = spec.trail_price if spec.trail_price is not None else spec.trail_percent
    if trail is not None:
        body["trail"] = _s(trail)
    return body


# --- answers --------------------------------------------------------------------------


def decimal(value: object, name: str) -> Decimal:
    if not isinstance(value, str | int):
        raise WireError(f"{name}: expected a decimal string, got {type(value).__name__}")
    try:
        out = Decimal(value)
    except InvalidOperation:
        raise WireError(f"{name}: {value!r} is not a decimal") from None
    if not out.is_finite():
        raise WireError(f"{name}: {value!r} is not finite")
    return out


def optional_decimal(value: object, name: str) -> Decimal | None:
    return None if value is None else decimal(value, name)


def time_ms(value: object, name: str = "timestamp") -> int:
    """Alpaca's RFC 3339 times (nanoseconds, ``Z`` or an offset) in epoch ms."""
    if not isinstance(value, str) or len(value) < 20:
        raise WireError(f"{name}: expected an RFC 3339 time, got {value!r}")
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most microseconds: cut the fraction to six digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise WireError(f"{name}: {value!r} is not an RFC 3339 time") from None


def _str(doc: Mapping[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise WireError(f"{name}: expected a string, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An Alpaca order object, as much of it as the adapter reads."""

    id: str
    client_order_id: str
    status: str
    type: str
    qty: Decimal | None
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    updated_ms: int
    replaced_by: str | None
    replaces: str | None
    legs: tuple[Snapshot, ...]
    reject_reason: str | None = None


def snapshot(doc: object) -> Snapshot:
    if not isinstance(doc, Mapping):
        raise WireError(f"an order must be an object, got {type(doc).__name__}")
    legs = doc.get("legs") or ()
    if not isinstance(legs, list | tuple):
        raise WireError("legs: expected a list")
    updated = doc.get("updated_at") or doc.get("submitted_at") or doc.get("created_at")
    return Snapshot(
        id=_str(doc, "id"),
        client_order_id=_str(doc, "client_order_id"),
        status=_str(doc, "status"),
        type=str(doc.get("type") or doc.get("order_type") or ""),
        qty=optional_decimal(doc.get("qty"), "qty"),
        filled_qty=decimal(doc.get("filled_qty") or "0", "filled_qty"),
        filled_avg_price=optional_decimal(doc.get("filled_avg_price"), "filled_avg_price"),
        updated_ms=time_ms(updated, "updated_at"),
        replaced_by=doc.get("replaced_by") or None,
        replaces=doc.get("replaces") or None,
        legs=tuple(snapshot(leg) for leg in legs),
    )


@dataclass(frozen=True, slots=True)
class TradeUpdate:
    event: str
    order: Snapshot
    time_ms: int
    #: ``fill``/``partial_fill``: this execution.
    price: Decimal | None = None
    qty: Decimal | None = None


def trade_update(data: object) -> TradeUpdate:
    """The ``data`` of a ``trade_updates`` message."""
    if not isinstance(data, Mapping):
        raise WireError("trade update data must be an object")
    event = _str(data, "event")
    order = snapshot(data.get("order"))
    stamp = data.get("timestamp") or data.get("at")
    when = time_ms(stamp) if stamp is not None else order.updated_ms
    if event in ("fill", "partial_fill"):
        return TradeUpdate(
            event, order, when, decimal(data.get("price"), "price"), decimal(data.get("qty"), "qty")
        )
    return TradeUpdate(event, order, when)


@dataclass(frozen=True, slots=True)
class Activity:
    """One execution from ``GET /v2/account/activities/FILL``."""

    id: str
    order_id: str
    qty: Decimal
    price: Decimal
    #: The order's filled quantity after this execution: what identifies the fill
    #: whichever channel (stream, activities, a restart) reports it.
    cum_qty: Decimal
    time_ms: int
    #: It completed the order (``type`` is ``fill``, not ``partial_fill``).
    final: bool


def activity(doc: object) -> Activity:
    if not isinstance(doc, Mapping):
        raise WireError("an activity must be an object")
    return Activity(
        id=_str(doc, "id"),
        order_id=_str(doc, "order_id"),
        qty=decimal(doc.get("qty"), "qty"),
        price=decimal(doc.get("price"), "price"),
        cum_qty=decimal(doc.get("cum_qty"), "cum_qty"),
        time_ms=time_ms(doc.get("transaction_time"), "transaction_time"),
        final=doc.get("type") == "fill",
    )


def leg_roles(order_class: OrderClass, snap: Snapshot) -> list[tuple[LegRole, Snapshot]]:
    """Alpaca's orders of one request, by our role: the root first, then its legs."""
    root_role = LegRole.TAKE_PROFIT if order_class is OrderClass.OCO else LegRole.ENTRY
    out = [(root_role, snap)]
    for leg in snap.legs:
        role = LegRole.TAKE_PROFIT if leg.type == "limit" else LegRole.STOP_LOSS
        out.append((role, leg))
    return out
