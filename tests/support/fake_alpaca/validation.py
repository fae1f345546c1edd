"""The checks Alpaca makes on an order request before it looks at the account.

Quantities and prices may arrive as JSON numbers (alpaca-py sends floats: ``10.0``,
``190.5``) or strings (``"10"``); bodies are parsed with ``parse_float=Decimal`` so a
price keeps the digits the client wrote. Field errors are 422 with code 40010001,
rules about a well-formed order 422 with code 42210000, as on Alpaca. The messages
follow Alpaca's where they are known; the adapter must key on status and code, not on
message text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tests.support.fake_alpaca.orders import Asset
from tests.support.fake_alpaca.wire import CODE_MALFORMED, AlpacaError, invalid, unprocessable

SIDES = frozenset({"buy", "sell"})
TYPES = frozenset({"market", "limit", "stop", "stop_limit", "trailing_stop"})
TIME_IN_FORCE = frozenset({"day", "gtc", "opg", "cls", "ioc", "fok"})
CLASSES = frozenset({"simple", "bracket", "oco", "oto"})
INTENTS = frozenset({"buy_to_open", "buy_to_close", "sell_to_open", "sell_to_close"})
MAX_CLIENT_ORDER_ID = 128
QTY_PLACES = 9


@dataclass(frozen=True)
class OrderSpec:
    asset: Asset
    side: str
    type: str
    time_in_force: str
    order_class: str
    qty: Decimal | None
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    trail_price: Decimal | None
    trail_percent: Decimal | None
    extended_hours: bool
    client_order_id: str | None
    position_intent: str | None
    take_profit: Decimal | None  # limit price of the take-profit leg
    stop_loss: tuple[Decimal, Decimal | None] | None  # (stop price, limit price) of the leg


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_body(raw: bytes) -> Any:
    """JSON with exact decimals; a body that is not JSON is Alpaca's 400."""
    try:
        return json.loads(raw or b"null", parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError:
        raise AlpacaError(400, CODE_MALFORMED, "request body format is invalid") from None


def decimal_field(body: Mapping[str, Any], name: str) -> Decimal | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise invalid(f"invalid {name}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise invalid(f"invalid {name}") from None
    if not number.is_finite():
        raise invalid(f"invalid {name}")
    return number


def choice(body: Mapping[str, Any], name: str, allowed: frozenset[str], default: str | None) -> str:
    value = body.get(name, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise invalid(f"{name} is required")
    if value not in allowed:
        raise invalid(f"invalid {name}: {value}")
    return str(value)


def check_price(name: str, price: Decimal | None) -> None:
    """Alpaca's minimum price increment: a cent at or above $1, 1/100 cent below."""
    if price is None:
        return
    if price <= 0:
        raise invalid(f"{name} must be > 0")
    places = -price.normalize().as_tuple().exponent  # type: ignore[operator]
    if places > (2 if price >= 1 else 4):
        raise unprocessable(
            f"invalid {name} {price}. sub-penny increment does not fulfill minimum pricing criteria"
        )


def check_qty(name: str, qty: Decimal) -> None:
    if qty <= 0:
        raise invalid(f"{name} must be > 0")
    if -qty.normalize().as_tuple().exponent > QTY_PLACES:  # type: ignore[operator]
        raise invalid(f"{name} must have at most {QTY_PLACES} decimal places")


def parse_order_request(body: Any, asset_of: Callable[[str], Asset | None]) -> OrderSpec:
    if not isinstance(body, dict):
        raise AlpacaError(400, CODE_MALFORMED, "request body format is invalid")
    order_class = choice(body, "order_class", CLASSES | {"mleg"}, "simple")
    if order_class == "mleg":
        raise unprocessable("multi-leg option orders are not supported for this account")
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise invalid("symbol is required")
    asset = asset_of(symbol)
    if asset is None:
        raise invalid(f'asset "{symbol}" not found')
    if not asset.tradable:
        raise unprocessable(f"asset {asset.symbol} is not active")
    side = choice(body, "side", SIDES, None)
    type_ = choice(body, "type", TYPES, None)
    tif = choice(body, "time_in_force", TIME_IN_FORCE, None)
    qty = decimal_field(body, "qty")
    notional = decimal_field(body, "notional")
    limit_price = decimal_field(body, "limit_price")
    stop_price = decimal_field(body, "stop_price")
    trail_price = decimal_field(body, "trail_price")
    trail_percent = decimal_field(body, "trail_percent")
    extended_hours = body.get("extended_hours") or False
    if not isinstance(extended_hours, bool):
        raise invalid("invalid extended_hours")
    client_order_id = body.get("client_order_id")
    if client_order_id is not None:
        if not isinstance(client_order_id, str) or not client_order_id:
            raise invalid("invalid client_order_id")
        if len(client_order_id) > MAX_CLIENT_ORDER_ID:
            raise invalid(f"client_order_id must be no more than {MAX_CLIENT_ORDER_ID} characters")
    intent = body.get("position_intent")
    if intent is not None and intent not in INTENTS:
        raise invalid(f"invalid position_intent: {intent}")

    # -- quantity -------------------------------------------------------------------
    if qty is None and notional is None:
        raise invalid("qty or notional is required")
    if qty is not None and notional is not None:
        raise invalid("only one of qty or notional can be specified")
    fractional = notional is not None or (qty is not None and qty != qty.to_integral_value())
    if qty is not None:
        check_qty("qty", qty)
    if notional is not None:
        if notional <= 0:
            raise invalid("notional must be > 0")
        if type_ != "market":
            raise unprocessable("notional orders must be market orders")
    if fractional:
        if not asset.fractionable:
            raise unprocessable(f"asset {asset.symbol} is not fractionable")
        if tif != "day":
            raise unprocessable("fractional orders must be DAY orders")
        if type_ == "trailing_stop" or order_class != "simple":
            raise unprocessable("fractional orders must be simple market, limit or stop orders")

    # -- prices by type ---------------------------------------------------------------
    if order_class == "oco" and limit_price is None:
        # An OCO order is its take-profit limit; alpaca-py lets the price come from there.
        take = body.get("take_profit")
        limit_price = decimal_field(take, "limit_price") if isinstance(take, dict) else None
    needs_limit = type_ in {"limit", "stop_limit"}
    needs_stop = type_ in {"stop", "stop_limit"}
    if needs_limit and limit_price is None:
        raise invalid(f"limit_price is required for {type_} orders")
    if not needs_limit and limit_price is not None:
        raise invalid(f"limit_price must not be given for {type_} orders")
    if needs_stop and stop_price is None:
        raise invalid(f"stop_price is required for {type_} orders")
    if not needs_stop and stop_price is not None:
        raise invalid(f"stop_price must not be given for {type_} orders")
    check_price("limit_price", limit_price)
    check_price("stop_price", stop_price)
    if type_ == "trailing_stop":
        if (trail_price is None) == (trail_percent is None):
            raise invalid("exactly one of trail_price or trail_percent is required")
        if trail_price is not None:
            check_price("trail_price", trail_price)
        if trail_percent is not None and not Decimal(0) < trail_percent < 100:
            raise invalid("trail_percent must be > 0 and < 100")
        if tif not in {"day", "gtc"}:
            raise unprocessable("trailing stop orders must be DAY or GTC orders")
    elif trail_price is not None or trail_percent is not None:
        raise invalid(f"trail_price and trail_percent must not be given for {type_} orders")
    if tif in {"opg", "cls"} and type_ not in {"market", "limit"}:
        raise unprocessable(f"{tif} orders must be market or limit orders")
    if extended_hours and (type_ != "limit" or tif != "day"):
        raise unprocessable("extended hours order must be DAY limit orders")

    take_profit, stop_loss = _legs(
        body,
        order_class=order_class,
        type_=type_,
        tif=tif,
        side=side,
        limit_price=limit_price,
        asset=asset,
    )
    return OrderSpec(
        asset=asset,
        side=side,
        type=type_,
        time_in_force=tif,
        order_class=order_class,
        qty=qty,
        notional=notional,
        limit_price=limit_price,
        stop_price=stop_price,
        trail_price=trail_price,
        trail_percent=trail_percent,
        extended_hours=extended_hours,
        client_order_id=client_order_id,
        position_intent=intent,
        take_profit=take_profit,
        stop_loss=stop_loss,
    )


def _legs(
    body: Mapping[str, Any],
    *,
    order_class: str,
    type_: str,
    tif: str,
    side: str,
    limit_price: Decimal | None,
    asset: Asset,
) -> tuple[Decimal | None, tuple[Decimal, Decimal | None] | None]:
    take = body.get("take_profit")
    stop = body.get("stop_loss")
    if order_class == "simple":
        if take is not None or stop is not None:
            raise invalid("take_profit and stop_loss need order_class bracket, oco or oto")
        return None, None
    if tif not in {"day", "gtc"}:
        raise unprocessable(f"{order_class} orders must be DAY or GTC orders")
    if take is not None and not isinstance(take, dict):
        raise invalid("invalid take_profit")
    if stop is not None and not isinstance(stop, dict):
        raise invalid("invalid stop_loss")
    tp = decimal_field(take, "limit_price") if take else None
    sl_stop = decimal_field(stop, "stop_price") if stop else None
    sl_limit = decimal_field(stop, "limit_price") if stop else None
    if take is not None and tp is None:
        raise invalid("take_profit.limit_price is required")
    if stop is not None and sl_stop is None:
        raise invalid("stop_loss.stop_price is required")
    check_price("take_profit.limit_price", tp)
    check_price("stop_loss.stop_price", sl_stop)
    check_price("stop_loss.limit_price", sl_limit)
    if order_class in {"bracket", "oco"} and (tp is None or sl_stop is None):
        raise invalid(f"{order_class} orders require take_profit and stop_loss")
    if order_class == "oto" and (tp is None) == (sl_stop is None):
        raise invalid("oto orders require exactly one of take_profit or stop_loss")
    if order_class == "oco" and type_ != "limit":
        raise unprocessable("oco orders must be limit orders")
    # The exits must sit on the profitable and the losing side of the entry, a cent
    # apart at least: above and below it for a buy, the other way round for a sell.
    base = limit_price if limit_price is not None and order_class != "oco" else asset.price
    cent = Decimal("0.01")
    sign = 1 if side == "buy" else -1
    if order_class == "oco":
        sign = -sign  # an OCO order is the exit itself: a sell OCO closes a long
    if tp is not None and sign * (tp - base) < cent:
        relation = ">=" if sign > 0 else "<="
        raise unprocessable(
            f"take_profit.limit_price must be {relation} base_price {sign_word(sign)} 0.01"
        )
    if sl_stop is not None and sign * (base - sl_stop) < cent:
        relation = "<=" if sign > 0 else ">="
        raise unprocessable(
            f"stop_loss.stop_price must be {relation} base_price {sign_word(-sign)} 0.01"
        )
    return tp, (sl_stop, sl_limit) if sl_stop is not None else None


def sign_word(sign: int) -> str:
    return "+" if sign > 0 else "-"


@dataclass(frozen=True)
class ReplaceSpec:
    """``PATCH /v2/orders/{id}``: what the replacement changes."""

    qty: Decimal | None
    time_in_force: str | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    trail: Decimal | None
    client_order_id: str | None


def parse_replace_request(body: Any) -> ReplaceSpec:
    if not isinstance(body, dict):
        raise AlpacaError(400, CODE_MALFORMED, "request body format is invalid")
    qty = decimal_field(body, "qty")
    if qty is not None:
        check_qty("qty", qty)
        if qty != qty.to_integral_value():
            raise unprocessable("qty must be a whole number of shares to replace an order")
    tif = body.get("time_in_force")
    if tif is not None and tif not in TIME_IN_FORCE:
        raise invalid(f"invalid time_in_force: {tif}")
    limit_price = decimal_field(body, "limit_price")
    stop_price = decimal_field(body, "stop_price")
    trail = decimal_field(body, "trail")
    check_price("limit_price", limit_price)
    check_price("stop_price", stop_price)
    if trail is not None and trail <= 0:
        raise invalid("trail must be > 0")
    client_order_id = body.get("client_order_id")
    if client_order_id is not None and (
        not isinstance(client_order_id, str) or not 0 < len(client_order_id) <= 128
    ):
        raise invalid("invalid client_order_id")
    return ReplaceSpec(qty, tif, limit_price, stop_price, trail, client_order_id)
