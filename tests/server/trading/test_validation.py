"""Order requests: what is accepted, and the precise error for everything that is not."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from server.trading.errors import InvalidOrder
from server.trading.model import (
    LegRole,
    OrderClass,
    OrderType,
    Side,
    StopLoss,
    TakeProfit,
    TimeInForce,
    build_orders,
)
from server.trading.validation import parse_order

LIMIT = {
    "symbol": "AMZN",
    "side": "buy",
    "type": "limit",
    "timeInForce": "day",
    "qty": "10",
    "limitPrice": "221.50",
}
MARKET = {"symbol": "AMZN", "side": "buy", "type": "market", "timeInForce": "day", "qty": "10"}
BRACKET = {
    **LIMIT,
    "orderClass": "bracket",
    "takeProfit": {"limitPrice": "230"},
    "stopLoss": {"stopPrice": "215"},
}
OCO = {
    "symbol": "AMZN",
    "side": "sell",
    "type": "limit",
    "timeInForce": "gtc",
    "qty": "10",
    "orderClass": "oco",
    "takeProfit": {"limitPrice": "230"},
    "stopLoss": {"stopPrice": "215", "limitPrice": "214.50"},
}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = {**base, **changes}
    return {k: v for k, v in doc.items() if v is not None}


def test_a_limit_order() -> None:
    req = parse_order({**LIMIT, "symbol": " amzn ", "side": "BUY", "type": "LIMIT"})
    spec = req.entry
    assert (spec.symbol, spec.side, spec.type, spec.time_in_force) == (
        "AMZN",
        Side.BUY,
        OrderType.LIMIT,
        TimeInForce.DAY,
    )
    assert spec.qty == Decimal(10) and str(spec.limit_price) == "221.50"
    assert req.order_class is OrderClass.SIMPLE and not spec.fractional


@pytest.mark.parametrize(
    "doc",
    [
        MARKET,
        with_(MARKET, qty="0.5"),
        with_(MARKET, qty="0.123456789"),
        with_(MARKET, qty=None, notional="25.50"),
        with_(MARKET, timeInForce="ioc"),
        with_(MARKET, timeInForce="opg"),
        with_(LIMIT, timeInForce="cls"),
        with_(LIMIT, timeInForce="fok"),
        with_(LIMIT, extendedHours=True),
        with_(LIMIT, limitPrice="0.5123"),
        {**MARKET, "type": "stop", "stopPrice": "230", "timeInForce": "gtc"},
        {**MARKET, "type": "stop_limit", "stopPrice": "230", "limitPrice": "231"},
        {**MARKET, "type": "trailing_stop", "trailPrice": "2.50"},
        {**MARKET, "type": "trailing_stop", "trailPercent": "1.25", "timeInForce": "gtc"},
        BRACKET,
        with_(BRACKET, type="market", limitPrice=None),
        with_(
            BRACKET,
            side="sell",
            takeProfit={"limitPrice": "210"},
            stopLoss={"stopPrice": "225", "limitPrice": "226"},
        ),
        with_(BRACKET, orderClass="oto", stopLoss=None),
        with_(BRACKET, orderClass="oto", takeProfit=None),
        OCO,
        with_(OCO, limitPrice="230"),
        with_(LIMIT, clientOrderId="my-order_1:x"),
    ],
)
def test_valid_orders(doc: dict[str, Any]) -> None:
    req = parse_order(doc)
    assert len(build_orders(req, [f"id{i}" for i in range(req.order_count)], 0)) == req.order_count


@pytest.mark.parametrize(
    ("doc", "code", "field", "reason"),
    [
        # shape
        (with_(LIMIT, color="red"), "INVALID_ORDER", "color", "UNKNOWN_FIELD"),
        (with_(LIMIT, symbol=None), "INVALID_ORDER", "symbol", "REQUIRED"),
        (with_(LIMIT, symbol="not a symbol"), "INVALID_ORDER", "symbol", "INVALID"),
        (with_(LIMIT, side=None), "INVALID_ORDER", "side", "REQUIRED"),
        (with_(LIMIT, side="long"), "INVALID_ORDER", "side", "INVALID"),
        (with_(LIMIT, type="iceberg"), "INVALID_ORDER", "type", "INVALID"),
        (with_(LIMIT, timeInForce=None), "INVALID_ORDER", "timeInForce", "REQUIRED"),
        (with_(LIMIT, orderClass="otoco"), "INVALID_ORDER", "orderClass", "INVALID"),
        (with_(LIMIT, extendedHours="yes"), "INVALID_ORDER", "extendedHours", "INVALID"),
        (with_(LIMIT, clientOrderId="has space"), "INVALID_ORDER", "clientOrderId", "INVALID"),
        (with_(LIMIT, clientOrderId="x" * 129), "INVALID_ORDER", "clientOrderId", "INVALID"),
        # quantity
        (with_(LIMIT, qty="0"), "INVALID_QUANTITY", "qty", "NOT_POSITIVE"),
        (with_(LIMIT, qty="-5"), "INVALID_QUANTITY", "qty", "NOT_POSITIVE"),
        (with_(LIMIT, qty="NaN"), "INVALID_QUANTITY", "qty", "NOT_FINITE"),
        (with_(LIMIT, qty="Infinity"), "INVALID_QUANTITY", "qty", "NOT_FINITE"),
        (with_(LIMIT, qty=float("nan")), "INVALID_QUANTITY", "qty", "NOT_FINITE"),
        (with_(LIMIT, qty="ten"), "INVALID_QUANTITY", "qty", "NOT_A_NUMBER"),
        (with_(LIMIT, qty=True), "INVALID_QUANTITY", "qty", "NOT_A_NUMBER"),
        (with_(LIMIT, qty="100000000"), "INVALID_QUANTITY", "qty", "TOO_LARGE"),
        (with_(MARKET, qty="0.1234567891"), "INVALID_QUANTITY", "qty", "TOO_MANY_DECIMALS"),
        (with_(LIMIT, qty=None), "INVALID_QUANTITY", "qty", "QTY_OR_NOTIONAL"),
        (with_(MARKET, notional="10"), "INVALID_QUANTITY", "qty", "QTY_OR_NOTIONAL"),
        (with_(MARKET, qty=None, notional="0.50"), "INVALID_QUANTITY", "notional", "TOO_SMALL"),
        (with_(MARKET, qty=None, notional="-1"), "INVALID_QUANTITY", "notional", "NOT_POSITIVE"),
        (with_(MARKET, qty=None, notional="1e12"), "INVALID_QUANTITY", "notional", "NOT_A_NUMBER"),
        (
            with_(MARKET, qty=None, notional="2000000000"),
            "INVALID_QUANTITY",
            "notional",
            "TOO_LARGE",
        ),
        (
            with_(MARKET, qty=None, notional="10.001"),
            "INVALID_QUANTITY",
            "notional",
            "TOO_MANY_DECIMALS",
        ),
        # prices
        (with_(LIMIT, limitPrice=None), "INVALID_PRICE", "limitPrice", "REQUIRED"),
        (with_(LIMIT, limitPrice="0"), "INVALID_PRICE", "limitPrice", "NOT_POSITIVE"),
        (with_(LIMIT, limitPrice="-221"), "INVALID_PRICE", "limitPrice", "NOT_POSITIVE"),
        (with_(LIMIT, limitPrice="NaN"), "INVALID_PRICE", "limitPrice", "NOT_FINITE"),
        (with_(LIMIT, limitPrice="-Infinity"), "INVALID_PRICE", "limitPrice", "NOT_FINITE"),
        (with_(LIMIT, limitPrice="5000000"), "INVALID_PRICE", "limitPrice", "TOO_LARGE"),
        (with_(LIMIT, limitPrice="221.505"), "INVALID_PRICE", "limitPrice", "SUB_PENNY"),
        (with_(LIMIT, limitPrice="0.12345"), "INVALID_PRICE", "limitPrice", "SUB_PENNY"),
        (with_(MARKET, limitPrice="221"), "INVALID_PRICE", "limitPrice", "NOT_ALLOWED"),
        (with_(LIMIT, stopPrice="221"), "INVALID_PRICE", "stopPrice", "NOT_ALLOWED"),
        (with_(MARKET, type="stop"), "INVALID_PRICE", "stopPrice", "REQUIRED"),
        (
            with_(MARKET, type="stop_limit", stopPrice="230"),
            "INVALID_PRICE",
            "limitPrice",
            "REQUIRED",
        ),
        (
            with_(MARKET, type="trailing_stop"),
            "INVALID_PRICE",
            "trailPrice",
            "TRAIL_PRICE_OR_PERCENT",
        ),
        (
            with_(MARKET, type="trailing_stop", trailPrice="1", trailPercent="1"),
            "INVALID_PRICE",
            "trailPrice",
            "TRAIL_PRICE_OR_PERCENT",
        ),
        (
            with_(MARKET, type="trailing_stop", trailPercent="0"),
            "INVALID_PRICE",
            "trailPercent",
            "OUT_OF_RANGE",
        ),
        (
            with_(MARKET, type="trailing_stop", trailPercent="100"),
            "INVALID_PRICE",
            "trailPercent",
            "OUT_OF_RANGE",
        ),
        (
            with_(MARKET, type="trailing_stop", trailPercent="1.00001"),
            "INVALID_PRICE",
            "trailPercent",
            "TOO_MANY_DECIMALS",
        ),
        (
            with_(MARKET, type="trailing_stop", trailPrice="1.001"),
            "INVALID_PRICE",
            "trailPrice",
            "SUB_PENNY",
        ),
        # time in force and extended hours
        (
            with_(MARKET, type="stop", stopPrice="230", timeInForce="ioc"),
            "INVALID_TIME_IN_FORCE",
            "timeInForce",
            "NOT_FOR_TYPE",
        ),
        (
            with_(MARKET, type="trailing_stop", trailPrice="1", timeInForce="opg"),
            "INVALID_TIME_IN_FORCE",
            "timeInForce",
            "NOT_FOR_TYPE",
        ),
        (
            with_(MARKET, extendedHours=True),
            "INVALID_TIME_IN_FORCE",
            "extendedHours",
            "NOT_FOR_TYPE",
        ),
        (
            with_(LIMIT, extendedHours=True, timeInForce="gtc"),
            "INVALID_TIME_IN_FORCE",
            "extendedHours",
            "NOT_FOR_TYPE",
        ),
        (
            with_(BRACKET, timeInForce="ioc"),
            "INVALID_TIME_IN_FORCE",
            "timeInForce",
            "NOT_FOR_CLASS",
        ),
        (
            with_(BRACKET, extendedHours=True),
            "INVALID_TIME_IN_FORCE",
            "extendedHours",
            "NOT_FOR_CLASS",
        ),
        # fractional
        (with_(LIMIT, qty="0.5"), "FRACTIONAL_NOT_ALLOWED", "qty", "FRACTIONAL"),
        (
            with_(MARKET, qty="0.5", timeInForce="gtc"),
            "FRACTIONAL_NOT_ALLOWED",
            "qty",
            "FRACTIONAL",
        ),
        (
            with_(MARKET, qty=None, notional="100", timeInForce="ioc"),
            "FRACTIONAL_NOT_ALLOWED",
            "qty",
            "FRACTIONAL",
        ),
        (with_(BRACKET, qty="1.5"), "FRACTIONAL_NOT_ALLOWED", "qty", "FRACTIONAL"),
        # order classes and legs
        (
            with_(LIMIT, takeProfit={"limitPrice": "230"}),
            "INVALID_BRACKET",
            "takeProfit",
            "NOT_ALLOWED",
        ),
        (with_(BRACKET, stopLoss=None), "INVALID_BRACKET", "stopLoss", "REQUIRED"),
        (with_(BRACKET, takeProfit=None), "INVALID_BRACKET", "takeProfit", "REQUIRED"),
        (with_(BRACKET, orderClass="oto"), "INVALID_BRACKET", "takeProfit", "ONE_LEG"),
        (
            with_(BRACKET, takeProfit={"limitPrice": "230", "x": 1}),
            "INVALID_BRACKET",
            "takeProfit",
            "SHAPE",
        ),
        (with_(BRACKET, takeProfit={}), "INVALID_PRICE", "takeProfit.limitPrice", "REQUIRED"),
        (
            with_(BRACKET, stopLoss={"limitPrice": "1"}),
            "INVALID_PRICE",
            "stopLoss.stopPrice",
            "REQUIRED",
        ),
        (
            with_(BRACKET, stopLoss={"stopPrice": "215.001"}),
            "INVALID_PRICE",
            "stopLoss.stopPrice",
            "SUB_PENNY",
        ),
        (with_(BRACKET, type="stop", stopPrice="220"), "INVALID_BRACKET", "type", "ENTRY_TYPE"),
        # The take-profit below the stop-loss, and the legs on the wrong side of the entry.
        (
            with_(BRACKET, takeProfit={"limitPrice": "214"}),
            "INVALID_BRACKET",
            "takeProfit.limitPrice",
            "TAKE_PROFIT_WRONG_SIDE",
        ),
        (
            with_(BRACKET, takeProfit={"limitPrice": "215"}),
            "INVALID_BRACKET",
            "takeProfit.limitPrice",
            "TAKE_PROFIT_WRONG_SIDE",
        ),
        (
            with_(BRACKET, takeProfit={"limitPrice": "220"}),
            "INVALID_BRACKET",
            "takeProfit.limitPrice",
            "TAKE_PROFIT_WRONG_SIDE",
        ),
        (
            with_(BRACKET, stopLoss={"stopPrice": "222"}),
            "INVALID_BRACKET",
            "stopLoss.stopPrice",
            "STOP_LOSS_WRONG_SIDE",
        ),
        (
            with_(BRACKET, stopLoss={"stopPrice": "215", "limitPrice": "216"}),
            "INVALID_BRACKET",
            "stopLoss.limitPrice",
            "STOP_LIMIT_WRONG_SIDE",
        ),
        (
            with_(BRACKET, side="sell"),
            "INVALID_BRACKET",
            "takeProfit.limitPrice",
            "TAKE_PROFIT_WRONG_SIDE",
        ),
        (with_(OCO, type="market"), "INVALID_BRACKET", "type", "OCO_TYPE"),
        (with_(OCO, limitPrice="229"), "INVALID_BRACKET", "limitPrice", "OCO_LIMIT"),
        (
            with_(OCO, side="buy"),
            "INVALID_BRACKET",
            "takeProfit.limitPrice",
            "TAKE_PROFIT_WRONG_SIDE",
        ),
    ],
)
def test_invalid_orders(doc: dict[str, Any], code: str, field: str, reason: str) -> None:
    with pytest.raises(InvalidOrder) as info:
        parse_order(doc)
    err = info.value
    assert (err.code, err.extensions["field"], err.extensions["reason"]) == (code, field, reason)
    assert err.extensions["code"] == code
    assert isinstance(err.message, str) and err.message


def test_bracket_builds_three_linked_orders() -> None:
    req = parse_order(BRACKET)
    assert req.take_profit == TakeProfit(Decimal("230.00"))
    assert req.stop_loss == StopLoss(Decimal("215.00"))
    entry, tp, sl = build_orders(req, ["e", "t", "s"], 5)
    assert (entry.role, tp.role, sl.role) == (LegRole.ENTRY, LegRole.TAKE_PROFIT, LegRole.STOP_LOSS)
    assert tp.parent_id == sl.parent_id == "e" and entry.parent_id is None
    assert tp.side is sl.side is Side.SELL
    assert (tp.spec.type, sl.spec.type) == (OrderType.LIMIT, OrderType.STOP)
    assert tp.spec.qty == sl.spec.qty == Decimal(10)
    assert tp.spec.time_in_force is TimeInForce.DAY


def test_oco_is_a_limit_with_a_stop_loss_leg() -> None:
    req = parse_order(OCO)
    assert req.entry.limit_price == Decimal("230.00")
    first, second = build_orders(req, ["a", "b"], 0)
    assert (first.role, second.role) == (LegRole.TAKE_PROFIT, LegRole.STOP_LOSS)
    assert second.parent_id == "a" and first.side is second.side is Side.SELL
    assert second.spec.type is OrderType.STOP_LIMIT
    assert second.spec.limit_price == Decimal("214.50")


def test_build_orders_needs_one_distinct_id_per_order() -> None:
    req = parse_order(BRACKET)
    with pytest.raises(ValueError):
        build_orders(req, ["a", "b"], 0)
    with pytest.raises(ValueError):
        build_orders(req, ["a", "a", "b"], 0)
