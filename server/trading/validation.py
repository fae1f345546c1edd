"""User input → ``OrderRequest``, or one precise error.

``parse_order`` takes the request as a mapping with the API's (GraphQL) names::

    {"symbol": "AMZN", "side": "buy", "type": "limit", "timeInForce": "day",
     "qty": "10", "limitPrice": "221.50", "extendedHours": false,
     "orderClass": "bracket",
     "takeProfit": {"limitPrice": "230"}, "stopLoss": {"stopPrice": "215", "limitPrice": "214.5"},
     "clientOrderId": "my-id-1"}

Enum values are case-insensitive (``"BUY"``, ``"stop_limit"``, ``"STOP_LIMIT"``).
Numbers are decimal strings (or ints; floats are taken by their shortest text).

The checks, in order (the first failure is raised):

1. shape: known keys, required ones present, enums valid (``INVALID_ORDER``);
2. quantity: exactly one of ``qty``/``notional``; positive, finite, at most
   ``MAX_QTY`` shares with 9 decimals / ``MIN_NOTIONAL``..``MAX_NOTIONAL`` dollars in
   cents (``INVALID_QUANTITY``);
3. prices for the type: required ones present, others absent; positive, finite, at
   most ``MAX_PRICE``, on the Rule 612 increment (``INVALID_PRICE``); a trailing stop
   has exactly one of ``trailPrice`` and ``trailPercent`` (0 < % < 100, 4 decimals);
4. time in force and extended hours for the type and class (``INVALID_TIME_IN_FORCE``);
5. fractional shares / notional only for simple market day orders, regular hours
   (``FRACTIONAL_NOT_ALLOWED``);
6. order class and legs: which legs, their prices, and their sides relative to each
   other and to a limit entry (``INVALID_BRACKET``);
7. ``clientOrderId``: 1-128 printable ASCII characters without spaces (``INVALID_ORDER``).

What needs the market (a stop on the wrong side of the last trade, a market bracket's
legs against the current price, whether the symbol trades) is in ``server.trading.risk``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

from server.market.symbols import is_valid_symbol
from server.trading.errors import (
    FractionalNotAllowed,
    InvalidBracket,
    InvalidOrder,
    InvalidPrice,
    InvalidQuantity,
    InvalidTimeInForce,
)
from server.trading.model import (
    LIMIT_TYPES,
    STOP_TYPES,
    OrderClass,
    OrderRequest,
    OrderSpec,
    OrderType,
    Side,
    StopLoss,
    TakeProfit,
    TimeInForce,
)
from server.trading.money import (
    MAX_NOTIONAL,
    MAX_PRICE,
    MAX_QTY,
    MIN_NOTIONAL,
    NotADecimal,
    decimal_places,
    is_whole,
    price_increment,
    to_decimal,
)

CLIENT_ORDER_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
MAX_TRAIL_PERCENT = Decimal(100)

_KEYS = frozenset(
    {
        "symbol",
        "side",
        "type",
        "timeInForce",
        "qty",
        "notional",
        "limitPrice",
        "stopPrice",
        "trailPrice",
        "trailPercent",
        "extendedHours",
        "orderClass",
        "takeProfit",
        "stopLoss",
        "clientOrderId",
    }
)
_TP_KEYS = frozenset({"limitPrice"})
_SL_KEYS = frozenset({"stopPrice", "limitPrice"})
#: Time in force each type may have.
_TIF_FOR_TYPE = {
    OrderType.MARKET: frozenset(TimeInForce),
    OrderType.LIMIT: frozenset(TimeInForce),
    OrderType.STOP: frozenset({TimeInForce.DAY, TimeInForce.GTC}),
    OrderType.STOP_LIMIT: frozenset({TimeInForce.DAY, TimeInForce.GTC}),
    OrderType.TRAILING_STOP: frozenset({TimeInForce.DAY, TimeInForce.GTC}),
}
_LEG_TIFS = frozenset({TimeInForce.DAY, TimeInForce.GTC})
_ENTRY_TYPES = frozenset({OrderType.MARKET, OrderType.LIMIT})

En = TypeVar("En", bound=StrEnum)


def _enum(doc: Mapping[str, object], key: str, enum: type[En], default: En | None = None) -> En:
    raw = doc.get(key)
    if raw is None:
        if default is not None:
            return default
        raise InvalidOrder(f"{key} is required", field=key, reason="REQUIRED")
    if isinstance(raw, enum):
        return raw
    if isinstance(raw, str):
        for member in enum:
            if raw.lower() == member.value:
                return member
    allowed = ", ".join(m.value for m in enum)
    raise InvalidOrder(
        f"{key}: {str(raw)[:32]!r} is not one of {allowed}", field=key, reason="INVALID"
    )


def _number(value: object, field: str, error: type[InvalidOrder]) -> Decimal:
    try:
        return to_decimal(value)
    except NotADecimal as exc:
        raise error(f"{field}: {exc}", field=field, reason=exc.reason) from None


def _price(value: object, field: str) -> Decimal:
    """A positive price on its Rule 612 increment."""
    d = _number(value, field, InvalidPrice)
    if d <= 0:
        raise InvalidPrice(f"{field} must be positive, got {d}", field=field, reason="NOT_POSITIVE")
    if d > MAX_PRICE:
        raise InvalidPrice(
            f"{field} {d} is above the largest price accepted ({MAX_PRICE})",
            field=field,
            reason="TOO_LARGE",
            limit=MAX_PRICE,
        )
    step = price_increment(d)
    if d % step:
        where = "of $1.00 or more" if step == Decimal("0.01") else "below $1.00"
        raise InvalidPrice(
            f"{field} {d}: prices {where} must be in increments of ${step} (Rule 612)",
            field=field,
            reason="SUB_PENNY",
            increment=step,
        )
    return d.quantize(step)


def _qty(doc: Mapping[str, object]) -> tuple[Decimal | None, Decimal | None]:
    raw_qty, raw_notional = doc.get("qty"), doc.get("notional")
    if (raw_qty is None) == (raw_notional is None):
        raise InvalidQuantity(
            "give exactly one of qty (shares) and notional (dollars)",
            field="qty",
            reason="QTY_OR_NOTIONAL",
        )
    if raw_qty is not None:
        qty = _number(raw_qty, "qty", InvalidQuantity)
        if qty <= 0:
            raise InvalidQuantity(
                f"qty must be positive, got {qty}", field="qty", reason="NOT_POSITIVE"
            )
        if qty > MAX_QTY:
            raise InvalidQuantity(
                f"qty {qty} is above the largest order accepted ({MAX_QTY} shares)",
                field="qty",
                reason="TOO_LARGE",
                limit=MAX_QTY,
            )
        if decimal_places(qty) > 9:
            raise InvalidQuantity(
                f"qty {qty} has more than 9 decimal places", field="qty", reason="TOO_MANY_DECIMALS"
            )
        return qty.normalize() if not is_whole(qty) else qty.quantize(Decimal(1)), None
    notional = _number(raw_notional, "notional", InvalidQuantity)
    if notional <= 0:
        raise InvalidQuantity(
            f"notional must be positive, got {notional}", field="notional", reason="NOT_POSITIVE"
        )
    if notional < MIN_NOTIONAL or notional > MAX_NOTIONAL:
        raise InvalidQuantity(
            f"notional must be between ${MIN_NOTIONAL} and ${MAX_NOTIONAL}, got {notional}",
            field="notional",
            reason="TOO_SMALL" if notional < MIN_NOTIONAL else "TOO_LARGE",
        )
    if decimal_places(notional) > 2:
        raise InvalidQuantity(
            f"notional {notional} is in dollars and cents",
            field="notional",
            reason="TOO_MANY_DECIMALS",
        )
    return None, notional.quantize(Decimal("0.01"))


def _present(doc: Mapping[str, object], key: str) -> bool:
    return doc.get(key) is not None


def _prices(doc: Mapping[str, object], type_: OrderType) -> dict[str, Decimal | None]:
    wants_limit = type_ in LIMIT_TYPES
    wants_stop = type_ in STOP_TYPES
    trailing = type_ is OrderType.TRAILING_STOP
    for key, wanted in (
        ("limitPrice", wants_limit),
        ("stopPrice", wants_stop),
        ("trailPrice", trailing),
        ("trailPercent", trailing),
    ):
        if wanted and not trailing and not _present(doc, key):
            raise InvalidPrice(f"a {type_} order needs {key}", field=key, reason="REQUIRED")
        if not wanted and _present(doc, key):
            raise InvalidPrice(f"a {type_} order takes no {key}", field=key, reason="NOT_ALLOWED")
    out: dict[str, Decimal | None] = {
        "limit": _price(doc["limitPrice"], "limitPrice") if wants_limit else None,
        "stop": _price(doc["stopPrice"], "stopPrice") if wants_stop else None,
        "trail_price": None,
        "trail_percent": None,
    }
    if trailing:
        has_price, has_percent = _present(doc, "trailPrice"), _present(doc, "trailPercent")
        if has_price == has_percent:
            raise InvalidPrice(
                "a trailing stop needs exactly one of trailPrice and trailPercent",
                field="trailPrice",
                reason="TRAIL_PRICE_OR_PERCENT",
            )
        if has_price:
            out["trail_price"] = _price(doc["trailPrice"], "trailPrice")
        else:
            pct = _number(doc["trailPercent"], "trailPercent", InvalidPrice)
            if not (0 < pct < MAX_TRAIL_PERCENT):
                raise InvalidPrice(
                    f"trailPercent must be above 0 and below 100, got {pct}",
                    field="trailPercent",
                    reason="OUT_OF_RANGE",
                )
            if decimal_places(pct) > 4:
                raise InvalidPrice(
                    f"trailPercent {pct} has more than 4 decimal places",
                    field="trailPercent",
                    reason="TOO_MANY_DECIMALS",
                )
            out["trail_percent"] = pct
    return out


def _check_tif(
    type_: OrderType, tif: TimeInForce, order_class: OrderClass, extended: bool, fractional: bool
) -> None:
    if tif not in _TIF_FOR_TYPE[type_]:
        allowed = "/".join(sorted(t.value for t in _TIF_FOR_TYPE[type_]))
        raise InvalidTimeInForce(
            f"a {type_} order cannot be {tif} (allowed: {allowed})",
            field="timeInForce",
            reason="NOT_FOR_TYPE",
        )
    if order_class is not OrderClass.SIMPLE and tif not in _LEG_TIFS:
        raise InvalidTimeInForce(
            f"a {order_class} order is day or gtc, not {tif}",
            field="timeInForce",
            reason="NOT_FOR_CLASS",
        )
    if extended and (type_ is not OrderType.LIMIT or tif is not TimeInForce.DAY):
        raise InvalidTimeInForce(
            "extendedHours is for limit orders with timeInForce day",
            field="extendedHours",
            reason="NOT_FOR_TYPE",
        )
    if extended and order_class is not OrderClass.SIMPLE:
        raise InvalidTimeInForce(
            f"a {order_class} order works in regular hours only",
            field="extendedHours",
            reason="NOT_FOR_CLASS",
        )
    if fractional and (
        type_ is not OrderType.MARKET
        or tif is not TimeInForce.DAY
        or order_class is not OrderClass.SIMPLE
        or extended
    ):
        raise FractionalNotAllowed(
            "fractional shares and notional amounts are for simple market orders with "
            "timeInForce day, in regular hours",
            field="qty",
            reason="FRACTIONAL",
        )


def _legs(doc: Mapping[str, object]) -> tuple[TakeProfit | None, StopLoss | None]:
    tp = sl = None
    raw_tp, raw_sl = doc.get("takeProfit"), doc.get("stopLoss")
    if raw_tp is not None:
        if not isinstance(raw_tp, Mapping) or set(raw_tp) - _TP_KEYS:
            raise InvalidBracket("takeProfit is {limitPrice}", field="takeProfit", reason="SHAPE")
        if raw_tp.get("limitPrice") is None:
            raise InvalidPrice(
                "takeProfit needs limitPrice", field="takeProfit.limitPrice", reason="REQUIRED"
            )
        tp = TakeProfit(_price(raw_tp["limitPrice"], "takeProfit.limitPrice"))
    if raw_sl is not None:
        if not isinstance(raw_sl, Mapping) or set(raw_sl) - _SL_KEYS:
            raise InvalidBracket(
                "stopLoss is {stopPrice, limitPrice?}", field="stopLoss", reason="SHAPE"
            )
        if raw_sl.get("stopPrice") is None:
            raise InvalidPrice(
                "stopLoss needs stopPrice", field="stopLoss.stopPrice", reason="REQUIRED"
            )
        stop = _price(raw_sl["stopPrice"], "stopLoss.stopPrice")
        limit = raw_sl.get("limitPrice")
        sl = StopLoss(stop, None if limit is None else _price(limit, "stopLoss.limitPrice"))
    return tp, sl


def _check_exits(
    exit_side: Side, tp: TakeProfit | None, sl: StopLoss | None, base: Decimal | None
) -> None:
    """Exits that sell must take profit above ``base`` (the entry's limit) and stop out
    below it; exits that buy (covering a short) the other way round."""
    up = exit_side is Side.SELL  # a sell exit profits when the price goes up

    def above(a: Decimal, b: Decimal) -> bool:
        """``a`` is strictly on the profit side of ``b``."""
        return a > b if up else a < b

    profit_side, loss_side = ("above", "below") if up else ("below", "above")
    if tp is not None and sl is not None and not above(tp.limit_price, sl.stop_price):
        raise InvalidBracket(
            f"takeProfit.limitPrice {tp.limit_price} must be {profit_side} stopLoss.stopPrice "
            f"{sl.stop_price} when the exits {exit_side}",
            field="takeProfit.limitPrice",
            reason="TAKE_PROFIT_WRONG_SIDE",
        )
    if sl is not None and sl.limit_price is not None and above(sl.limit_price, sl.stop_price):
        raise InvalidBracket(
            f"stopLoss.limitPrice {sl.limit_price} must be at or {loss_side} its stopPrice "
            f"{sl.stop_price}",
            field="stopLoss.limitPrice",
            reason="STOP_LIMIT_WRONG_SIDE",
        )
    if base is None:
        return
    if tp is not None and not above(tp.limit_price, base):
        raise InvalidBracket(
            f"takeProfit.limitPrice {tp.limit_price} must be {profit_side} the entry's "
            f"limitPrice {base}",
            field="takeProfit.limitPrice",
            reason="TAKE_PROFIT_WRONG_SIDE",
        )
    if sl is not None and not above(base, sl.stop_price):
        raise InvalidBracket(
            f"stopLoss.stopPrice {sl.stop_price} must be {loss_side} the entry's limitPrice {base}",
            field="stopLoss.stopPrice",
            reason="STOP_LOSS_WRONG_SIDE",
        )


def _check_legs_present(
    order_class: OrderClass, type_: OrderType, tp: TakeProfit | None, sl: StopLoss | None
) -> None:
    if order_class is OrderClass.SIMPLE:
        if tp is not None or sl is not None:
            field = "takeProfit" if tp is not None else "stopLoss"
            raise InvalidBracket(
                f"a simple order has no {field}; use orderClass bracket, oco or oto",
                field=field,
                reason="NOT_ALLOWED",
            )
        return
    if order_class in (OrderClass.BRACKET, OrderClass.OCO) and (tp is None or sl is None):
        field = "takeProfit" if tp is None else "stopLoss"
        raise InvalidBracket(
            f"a {order_class} order needs takeProfit and stopLoss", field=field, reason="REQUIRED"
        )
    if order_class is OrderClass.OTO and (tp is None) == (sl is None):
        raise InvalidBracket(
            "an oto order needs exactly one of takeProfit and stopLoss",
            field="takeProfit",
            reason="ONE_LEG",
        )
    if order_class is OrderClass.OCO and type_ is not OrderType.LIMIT:
        raise InvalidBracket("an oco order has type limit", field="type", reason="OCO_TYPE")
    if order_class in (OrderClass.BRACKET, OrderClass.OTO) and type_ not in _ENTRY_TYPES:
        raise InvalidBracket(
            f"the entry of a {order_class} order is market or limit, not {type_}",
            field="type",
            reason="ENTRY_TYPE",
        )


def parse_order(doc: Mapping[str, object]) -> OrderRequest:
    """Validate an order request; raises an ``InvalidOrder`` (subclass) on the first fault."""
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise InvalidOrder(
            f"unknown field {unknown[0]!r}", field=unknown[0], reason="UNKNOWN_FIELD"
        )
    raw_symbol = doc.get("symbol")
    if not isinstance(raw_symbol, str) or not raw_symbol.strip():
        raise InvalidOrder("symbol is required", field="symbol", reason="REQUIRED")
    symbol = raw_symbol.strip().upper()
    if not is_valid_symbol(symbol):
        raise InvalidOrder(
            f"{raw_symbol[:16]!r} is not a valid symbol", field="symbol", reason="INVALID"
        )
    side = _enum(doc, "side", Side)
    type_ = _enum(doc, "type", OrderType)
    tif = _enum(doc, "timeInForce", TimeInForce)
    order_class = _enum(doc, "orderClass", OrderClass, OrderClass.SIMPLE)
    extended = doc.get("extendedHours", False)
    if not isinstance(extended, bool):
        raise InvalidOrder(
            "extendedHours is true or false", field="extendedHours", reason="INVALID"
        )
    qty, notional = _qty(doc)
    tp, sl = _legs(doc)
    _check_legs_present(order_class, type_, tp, sl)
    if order_class is OrderClass.OCO and tp is not None:
        # An OCO is the take-profit limit with a stop-loss leg: its limit is the leg's.
        if (
            _present(doc, "limitPrice")
            and _price(doc["limitPrice"], "limitPrice") != tp.limit_price
        ):
            raise InvalidBracket(
                "an oco order's limitPrice is its takeProfit.limitPrice",
                field="limitPrice",
                reason="OCO_LIMIT",
            )
        doc = {**doc, "limitPrice": tp.limit_price}
    prices = _prices(doc, type_)
    spec = OrderSpec(
        symbol=symbol,
        side=side,
        type=type_,
        time_in_force=tif,
        qty=qty,
        notional=notional,
        limit_price=prices["limit"],
        stop_price=prices["stop"],
        trail_price=prices["trail_price"],
        trail_percent=prices["trail_percent"],
        extended_hours=extended,
    )
    _check_tif(type_, tif, order_class, extended, spec.fractional)
    if order_class is OrderClass.OCO:
        _check_exits(side, tp, sl, None)
    elif order_class is not OrderClass.SIMPLE:
        _check_exits(side.opposite, tp, sl, spec.limit_price)
    coid = doc.get("clientOrderId")
    if coid is not None and (not isinstance(coid, str) or not CLIENT_ORDER_ID.fullmatch(coid)):
        raise InvalidOrder(
            "clientOrderId is 1-128 printable ASCII characters without spaces",
            field="clientOrderId",
            reason="INVALID",
        )
    return OrderRequest(spec, order_class, tp, sl, coid)
