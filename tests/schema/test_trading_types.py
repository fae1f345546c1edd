"""The trading GraphQL types, built from real domain values and executed through
strawberry: orders folded from their events, an account folded from fills, the
performance of an equity curve; inputs whose documents the domain's validator reads."""

from __future__ import annotations

import json
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson
import pytest
import strawberry

from schema.money import plain
from schema.trading import (
    Account,
    EquityPoint,
    EventKind,
    LegRole,
    Order,
    OrderClass,
    OrderConnection,
    OrderInput,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Performance,
    PositionSide,
    Reason,
    ReplaceOrderInput,
    Side,
    TimeInForce,
    ledger_seq_of,
)
from server.errors import InvalidInput
from server.trading.account import fold_account
from server.trading.events import OrderEvent
from server.trading.lifecycle import OrderState
from server.trading.model import build_orders
from server.trading.performance import MarkSample, equity_curve, performance
from server.trading.validation import parse_order
from tests.schema.graphql_support import fail, make_schema, run
from tests.server.trading.helpers import fill
from tests.server.trading.test_validation import LIMIT

E, S = EventKind, OrderStatus
T0 = 1_700_000_000_000
START = Decimal("100000.00")
PAPER = {"broker": "paper", "source": "api"}

AMZN_LIMIT = {**LIMIT, "clientOrderId": "my-1"}


def _event(seq: int, kind: EventKind, status: OrderStatus, filled: str, **extra: Any) -> OrderEvent:
    return OrderEvent(
        seq=seq,
        kind=kind,
        order_id=extra.pop("order_id", "o1"),
        status=status,
        time_ms=T0 + seq,
        qty=extra.pop("qty", Decimal(10)),
        filled_qty=Decimal(filled),
        **extra,
    )


def _ledger() -> list[OrderUpdate]:
    """A limit buy's life: accepted, part-filled, then filled, as the ledger holds it."""
    (order,) = build_orders(parse_order(AMZN_LIMIT), ["o1"], T0)
    state = OrderState.of(order)
    events = [
        _event(1, E.NEW, S.NEW, "0"),
        _event(
            2,
            E.PARTIAL_FILL,
            S.PARTIALLY_FILLED,
            "4",
            fill=fill("o1", 1, "4", "221.50", commission="0.01", t=T0 + 2),
        ),
        _event(3, E.FILL, S.FILLED, "10", fill=fill("o1", 2, "6", "221.49", t=T0 + 3)),
    ]
    updates = []
    for ledger_seq, event in enumerate(events, start=41):
        state.apply(event, strict=True)
        updates.append(OrderUpdate.of(event, Order.of(state, **PAPER), ledger_seq=ledger_seq))
    return updates


def _bracket() -> list[Order]:
    doc = {
        **AMZN_LIMIT,
        "orderClass": "bracket",
        "takeProfit": {"limitPrice": "230"},
        "stopLoss": {"stopPrice": "215", "limitPrice": "214.50"},
    }
    orders = build_orders(parse_order(doc), ["b1", "b2", "b3"], T0)
    states = [OrderState.of(o) for o in orders]
    for seq, (state, kind) in enumerate(zip(states, (E.NEW, E.HELD, E.HELD), strict=True)):
        status = S.NEW if kind is E.NEW else S.HELD
        state.apply(_event(seq, kind, status, "0", order_id=state.order.id, qty=None))
    return [Order.of(s, broker="paper", source="alert", alert_id="a-9") for s in states]


def _replaced_and_canceled() -> list[Order]:
    (old,) = build_orders(parse_order(AMZN_LIMIT), ["r1"], T0)
    state = OrderState.of(old)
    state.apply(_event(1, E.NEW, S.NEW, "0", order_id="r1"))
    state.apply(_event(2, E.REPLACE_REQUESTED, S.PENDING_REPLACE, "0", order_id="r1"))
    state.apply(_event(3, E.REPLACED, S.REPLACED, "0", order_id="r1", related_order_id="r2"))
    notional = {**AMZN_LIMIT, "type": "market", "qty": None, "notional": "2500", "limitPrice": None}
    (market,) = build_orders(parse_order(notional), ["n1"], T0)
    return [
        Order.of(state, replaced_by="r2", **PAPER),
        Order.of(OrderState.of(market), **PAPER),
    ]


FILLS = [
    fill("o1", 1, "10", "221.50", commission="0.01", t=T0 + 1000),
    fill("o2", 1, "5", "220.00", t=T0 + 2000),
    fill("o3", 1, "5", "225.10", side=Side.SELL, commission="0.02", t=T0 + 3000),
    fill("o4", 1, "1000", "0.5012", side=Side.SELL, symbol="XYZ", t=T0 + 4000),
]
MARKS = {"AMZN": Decimal("223.00"), "XYZ": Decimal("0.4999")}
SAMPLES = [
    MarkSample(T0 + 1500, "AMZN", Decimal("221.00")),
    MarkSample(T0 + 2500, "AMZN", Decimal("219.00")),
    MarkSample(T0 + 3500, "AMZN", Decimal("226.00")),
    MarkSample(T0 + 4500, "XYZ", Decimal("0.4999")),
]


def _echo(enum: type[StrEnum]) -> Any:
    def echo(v: Any) -> Any:
        assert type(v) is enum
        return v

    echo.__annotations__ = {"v": enum, "return": enum}
    return strawberry.field(resolver=echo)


@strawberry.type
class Query:
    @strawberry.field
    def updates(self) -> list[OrderUpdate]:
        return _ledger()

    @strawberry.field
    def orders(self, which: str) -> OrderConnection:
        orders = _bracket() if which == "bracket" else _replaced_and_canceled()
        return OrderConnection.of([(f"c{i}", o) for i, o in enumerate(orders)], has_next_page=False)

    @strawberry.field
    def account(self) -> Account:
        account = fold_account(START, FILLS)
        return Account.of(account, account.value(MARKS, Decimal(2)), broker="paper")

    @strawberry.field
    def history(self) -> list[EquityPoint]:
        return [EquityPoint.of(p) for p in equity_curve(START, FILLS, SAMPLES)]

    @strawberry.field
    def performance(self) -> Performance:
        curve = equity_curve(START, FILLS, SAMPLES)
        return Performance.of(performance(curve, FILLS), from_ms=T0, to_ms=T0 + 5000)

    @strawberry.field
    def order_doc(self, input: OrderInput) -> str:
        return json.dumps(input.doc())

    @strawberry.field
    def validate(self, input: OrderInput) -> OrderClass:
        return parse_order(input.doc()).order_class

    @strawberry.field
    def replace_doc(self, input: ReplaceOrderInput) -> str:
        return json.dumps(input.doc())

    # Echoes: each enum in and out, the resolver checking it got the domain's member.
    side = _echo(Side)
    order_type = _echo(OrderType)
    tif = _echo(TimeInForce)
    order_class = _echo(OrderClass)
    status = _echo(OrderStatus)
    kind = _echo(EventKind)
    role = _echo(LegRole)
    position_side = _echo(PositionSide)
    reason = _echo(Reason)


SCHEMA = make_schema(Query)

ORDER_FIELDS = """
    id clientOrderId symbol side type timeInForce orderClass legRole parentId replaces
    replacedBy qty notional limitPrice stopPrice trailPrice trailPercent extendedHours
    status filledQty remainingQty avgFillPrice commission createdAt updatedAt source alertId
    broker
"""


def _no_exponent_anywhere(data: object) -> None:
    text = json.dumps(data)
    assert "E+" not in text and "e+" not in text and "E-" not in text, text


def test_order_updates_render_the_folded_state_exactly() -> None:
    data = run(
        SCHEMA,
        f"""{{ updates {{ cursor kind reason relatedOrderId stopPrice at
              fill {{ id orderId symbol side qty price commission at }}
              order {{ {ORDER_FIELDS} }} }} }}""",
    )
    _no_exponent_anywhere(data)
    new, partial, filled = data["updates"]
    assert [u["kind"] for u in data["updates"]] == ["NEW", "PARTIAL_FILL", "FILL"]
    assert [ledger_seq_of(u["cursor"]) for u in data["updates"]] == [41, 42, 43]
    assert new["fill"] is None and new["order"]["status"] == "NEW"
    assert new["order"]["avgFillPrice"] is None and new["order"]["filledQty"] == "0"
    assert partial["fill"] == {
        "id": "o1-1",
        "orderId": "o1",
        "symbol": "AMZN",
        "side": "BUY",
        "qty": "4",
        "price": "221.50",
        "commission": "0.01",
        "at": T0 + 2,
    }
    assert partial["order"]["status"] == "PARTIALLY_FILLED"
    assert partial["order"]["remainingQty"] == "6"
    assert filled["at"] == T0 + 3 and filled["reason"] is None
    assert filled["order"] == {
        "id": "o1",
        "clientOrderId": "my-1",
        "symbol": "AMZN",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "DAY",
        "orderClass": "SIMPLE",
        "legRole": "ENTRY",
        "parentId": None,
        "replaces": None,
        "replacedBy": None,
        "qty": "10",
        "notional": None,
        "limitPrice": "221.50",
        "stopPrice": None,
        "trailPrice": None,
        "trailPercent": None,
        "extendedHours": False,
        "status": "FILLED",
        "filledQty": "10",
        "remainingQty": "0",
        # (4 * 221.50 + 6 * 221.49) / 10, held to $0.0001.
        "avgFillPrice": "221.4940",
        "commission": "0.01",
        "createdAt": T0,
        "updatedAt": T0 + 3,
        "source": "api",
        "alertId": None,
        "broker": "paper",
    }


def test_an_update_cursor_is_opaque_and_checked() -> None:
    cursor = run(SCHEMA, "{ updates { cursor } }")["updates"][0]["cursor"]
    assert "41" not in cursor
    with pytest.raises(InvalidInput, match="order updates"):
        ledger_seq_of("bm90LWEtY3Vyc29y")


def test_an_update_refuses_the_wrong_order() -> None:
    update = _ledger()[0]
    with pytest.raises(ValueError, match="update of order o1"):
        OrderUpdate.of(_event(1, E.NEW, S.NEW, "0"), _bracket()[0], ledger_seq=1)
    assert update.order.id == "o1"


def test_bracket_legs_and_their_links() -> None:
    data = run(
        SCHEMA,
        '{ orders(which: "bracket") { pageInfo { hasNextPage endCursor } edges { cursor '
        "node { id orderClass legRole parentId status type side qty limitPrice stopPrice "
        "source alertId } } } }",
    )
    conn = data["orders"]
    assert conn["pageInfo"] == {"hasNextPage": False, "endCursor": "c2"}
    nodes = [e["node"] for e in conn["edges"]]
    assert [(n["id"], n["legRole"], n["parentId"], n["status"]) for n in nodes] == [
        ("b1", "ENTRY", None, "NEW"),
        ("b2", "TAKE_PROFIT", "b1", "HELD"),
        ("b3", "STOP_LOSS", "b1", "HELD"),
    ]
    tp, sl = nodes[1], nodes[2]
    # The validator puts prices on their tick: "230" is $230.00.
    assert (tp["type"], tp["side"], tp["qty"]) == ("LIMIT", "SELL", "10")
    assert tp["limitPrice"] == "230.00"
    assert (sl["type"], sl["stopPrice"], sl["limitPrice"]) == ("STOP_LIMIT", "215.00", "214.50")
    assert {n["orderClass"] for n in nodes} == {"BRACKET"}
    assert {(n["source"], n["alertId"]) for n in nodes} == {("alert", "a-9")}


def test_a_replaced_order_and_a_notional_one() -> None:
    data = run(
        SCHEMA,
        '{ orders(which: "other") { edges { node { id status replacedBy qty notional '
        "limitPrice type remainingQty } } } }",
    )
    replaced, notional = (e["node"] for e in data["orders"]["edges"])
    assert (replaced["status"], replaced["replacedBy"]) == ("REPLACED", "r2")
    assert notional == {
        "id": "n1",
        "status": "PENDING_NEW",
        "replacedBy": None,
        "qty": None,
        "notional": "2500.00",
        "limitPrice": None,
        "type": "MARKET",
        "remainingQty": None,
    }


def test_account_and_positions_to_the_cent() -> None:
    data = run(
        SCHEMA,
        """{ account { broker startingCash cash equity longMarketValue shortMarketValue
             grossExposure buyingPower multiplier realizedPnl unrealizedPnl commissions
             positions { symbol side qty avgEntryPrice costBasis mark marketValue
               unrealizedPnl unrealizedPnlPercent realizedPnl commissions updatedAt } } }""",
    )
    _no_exponent_anywhere(data)
    a = data["account"]
    # 100000 - 2215.00 - 1100.00 + 1125.50 + 501.20 - 0.03
    assert a["cash"] == "98311.67"
    assert a["startingCash"] == "100000.00" and a["broker"] == "paper"
    assert a["longMarketValue"] == "2230.00"  # 10 * 223.00
    assert a["shortMarketValue"] == "-499.90"  # -1000 * 0.4999
    assert a["equity"] == "100041.77"
    assert a["grossExposure"] == "2729.90"
    assert a["multiplier"] == "2"
    assert a["buyingPower"] == "197353.64"  # 2 * 100041.77 - 2729.90
    assert a["commissions"] == "0.03"
    equity, start = Decimal(a["equity"]), Decimal(a["startingCash"])
    pnl = Decimal(a["realizedPnl"]) + Decimal(a["unrealizedPnl"]) - Decimal(a["commissions"])
    assert equity - start == pnl
    amzn, xyz = a["positions"]
    assert amzn == {
        "symbol": "AMZN",
        "side": "LONG",
        "qty": "10",
        "avgEntryPrice": "221.00",
        "costBasis": "2210.00",
        "mark": "223.00",
        "marketValue": "2230.00",
        "unrealizedPnl": "20.00",
        "unrealizedPnlPercent": "0.9050",  # 20 / 2210, as a percentage
        "realizedPnl": "20.50",  # 5 * (225.10 - 221.00)
        "commissions": "0.03",
        "updatedAt": T0 + 3000,
    }
    assert (xyz["side"], xyz["qty"], xyz["costBasis"]) == ("SHORT", "-1000", "-501.20")
    assert (xyz["avgEntryPrice"], xyz["marketValue"]) == ("0.5012", "-499.90")
    assert (xyz["unrealizedPnl"], xyz["unrealizedPnlPercent"]) == ("1.30", "0.2594")


def test_equity_curve_and_performance() -> None:
    data = run(
        SCHEMA,
        """{ history { at equity }
             performance { from to timeWeightedReturn realizedPnl netRealizedPnl trades wins
               losses winRate maxDrawdown { depth depthPercent peakAt troughAt recoveredAt } } }""",
    )
    _no_exponent_anywhere(data)
    curve = equity_curve(START, FILLS, SAMPLES)
    assert data["history"] == [{"at": p.time_ms, "equity": plain(p.equity)} for p in curve]
    perf = data["performance"]
    expected = performance(curve, FILLS)
    assert (perf["from"], perf["to"]) == (T0, T0 + 5000)
    assert perf["timeWeightedReturn"] == plain(expected.time_weighted_return or Decimal(0))
    assert (perf["trades"], perf["wins"], perf["losses"]) == (0, 0, 0)  # AMZN still open
    assert perf["winRate"] is None and perf["realizedPnl"] == "0"
    dd = perf["maxDrawdown"]
    assert expected.max_drawdown is not None
    assert dd["depth"] == plain(expected.max_drawdown.fraction)
    assert Decimal(dd["depthPercent"]) == Decimal(dd["depth"]) * 100
    assert dd["peakAt"] == T0 + 1500 and dd["troughAt"] == T0 + 2500
    assert dd["recoveredAt"] == T0 + 3500


ROUND_TRIPS = [
    # (GraphQL input literal, the document parse_order gets, the order class it makes)
    (
        '{symbol: "amzn", side: BUY, type: MARKET, timeInForce: DAY, qty: 2.5}',
        {"symbol": "amzn", "side": "buy", "type": "market", "timeInForce": "day", "qty": "2.5"},
        OrderClass.SIMPLE,
    ),
    (
        '{symbol: "AMZN", side: SELL, type: MARKET, timeInForce: DAY, notional: "1500"}',
        {
            "symbol": "AMZN",
            "side": "sell",
            "type": "market",
            "timeInForce": "day",
            "notional": "1500",
        },
        OrderClass.SIMPLE,
    ),
    (
        '{symbol: "AMZN", side: BUY, type: LIMIT, timeInForce: DAY, qty: 1, '
        'limitPrice: 0.5012, extendedHours: true, clientOrderId: "x-1"}',
        {
            "symbol": "AMZN",
            "side": "buy",
            "type": "limit",
            "timeInForce": "day",
            "qty": "1",
            "limitPrice": "0.5012",
            "extendedHours": True,
            "clientOrderId": "x-1",
        },
        OrderClass.SIMPLE,
    ),
    (
        '{symbol: "AMZN", side: SELL, type: STOP_LIMIT, timeInForce: GTC, qty: 3, '
        'stopPrice: "210", limitPrice: "209.50"}',
        {
            "symbol": "AMZN",
            "side": "sell",
            "type": "stop_limit",
            "timeInForce": "gtc",
            "qty": "3",
            "stopPrice": "210",
            "limitPrice": "209.50",
        },
        OrderClass.SIMPLE,
    ),
    (
        '{symbol: "AMZN", side: SELL, type: TRAILING_STOP, timeInForce: DAY, qty: 3, '
        "trailPercent: 1.25}",
        {
            "symbol": "AMZN",
            "side": "sell",
            "type": "trailing_stop",
            "timeInForce": "day",
            "qty": "3",
            "trailPercent": "1.25",
        },
        OrderClass.SIMPLE,
    ),
    (
        '{symbol: "AMZN", side: BUY, type: LIMIT, timeInForce: GTC, qty: 10, '
        'limitPrice: "221.50", orderClass: BRACKET, takeProfit: {limitPrice: 230}, '
        'stopLoss: {stopPrice: "215", limitPrice: "214.50"}}',
        {
            "symbol": "AMZN",
            "side": "buy",
            "type": "limit",
            "timeInForce": "gtc",
            "qty": "10",
            "limitPrice": "221.50",
            "orderClass": "bracket",
            "takeProfit": {"limitPrice": "230"},
            "stopLoss": {"stopPrice": "215", "limitPrice": "214.50"},
        },
        OrderClass.BRACKET,
    ),
    (
        '{symbol: "AMZN", side: SELL, type: LIMIT, timeInForce: DAY, qty: 10, '
        'orderClass: OCO, takeProfit: {limitPrice: "240"}, stopLoss: {stopPrice: "200"}}',
        {
            "symbol": "AMZN",
            "side": "sell",
            "type": "limit",
            "timeInForce": "day",
            "qty": "10",
            "orderClass": "oco",
            "takeProfit": {"limitPrice": "240"},
            "stopLoss": {"stopPrice": "200"},
        },
        OrderClass.OCO,
    ),
    (
        '{symbol: "AMZN", side: SELL, type: MARKET, timeInForce: DAY, qty: 10, '
        "orderClass: OTO, stopLoss: {stopPrice: 250}}",
        {
            "symbol": "AMZN",
            "side": "sell",
            "type": "market",
            "timeInForce": "day",
            "qty": "10",
            "orderClass": "oto",
            "stopLoss": {"stopPrice": "250"},
        },
        OrderClass.OTO,
    ),
]


@pytest.mark.parametrize(("literal", "doc", "order_class"), ROUND_TRIPS)
def test_order_input_doc_is_what_parse_order_reads(
    literal: str, doc: dict[str, Any], order_class: OrderClass
) -> None:
    data = run(SCHEMA, f"{{ orderDoc(input: {literal}) validate(input: {literal}) }}")
    given = json.loads(data["orderDoc"])
    assert given == doc
    assert parse_order(given) == parse_order(doc)
    assert parse_order(given).order_class is order_class
    assert data["validate"] == order_class.name


def test_order_input_from_json_variables() -> None:
    variables = orjson.loads(
        b'{"input": {"symbol": "AMZN", "side": "BUY", "type": "LIMIT", "timeInForce": "DAY",'
        b' "qty": 10, "limitPrice": 221.5, "orderClass": "BRACKET",'
        b' "takeProfit": {"limitPrice": "230.00"}, "stopLoss": {"stopPrice": 215}}}'
    )
    data = run(SCHEMA, "query($input: OrderInput!) { orderDoc(input: $input) }", variables)
    doc = json.loads(data["orderDoc"])
    assert doc["qty"] == "10" and doc["limitPrice"] == "221.5"
    assert doc["takeProfit"] == {"limitPrice": "230.00"} and doc["stopLoss"] == {"stopPrice": "215"}
    request = parse_order(doc)
    assert request.entry.limit_price == Decimal("221.50") and request.take_profit is not None


def test_a_null_reaches_the_validator_which_names_the_field() -> None:
    base = '{symbol: "AMZN", side: BUY, type: LIMIT, timeInForce: DAY, qty: 1'
    doc = json.loads(run(SCHEMA, f"{{ orderDoc(input: {base}, limitPrice: null}}) }}")["orderDoc"])
    assert doc["limitPrice"] is None
    error = fail(SCHEMA, f"{{ validate(input: {base}, limitPrice: null}}) }}")
    ext = error["extensions"]
    assert (ext["code"], ext["field"], ext["reason"]) == ("INVALID_PRICE", "limitPrice", "REQUIRED")
    error = fail(SCHEMA, f"{{ validate(input: {base}, limitPrice: 1, extendedHours: null}}) }}")
    assert (error["extensions"]["code"], error["extensions"]["field"]) == (
        "INVALID_ORDER",
        "extendedHours",
    )
    # Not on the tick: the scalar takes the number exactly; the domain refuses it.
    error = fail(SCHEMA, f"{{ validate(input: {base}, limitPrice: 221.505}}) }}")
    assert (error["extensions"]["code"], error["extensions"]["reason"]) == (
        "INVALID_PRICE",
        "SUB_PENNY",
    )


def test_replace_input_doc_has_only_what_was_given() -> None:
    literal = '{limitPrice: "222.00", trailPercent: 0.5, timeInForce: GTC, clientOrderId: null}'
    data = run(SCHEMA, f"{{ replaceDoc(input: {literal}) a: replaceDoc(input: {{}}) }}")
    assert json.loads(data["replaceDoc"]) == {
        "limitPrice": "222.00",
        "trailPercent": "0.5",
        "timeInForce": "gtc",
        "clientOrderId": None,
    }
    assert json.loads(data["a"]) == {}


ENUMS = [
    ("side", Side, "OrderSide"),
    ("orderType", OrderType, "OrderType"),
    ("tif", TimeInForce, "TimeInForce"),
    ("orderClass", OrderClass, "OrderClass"),
    ("status", OrderStatus, "OrderStatus"),
    ("kind", EventKind, "OrderEventKind"),
    ("role", LegRole, "LegRole"),
    ("positionSide", PositionSide, "PositionSide"),
    ("reason", Reason, "OrderReason"),
]


@pytest.mark.parametrize(("field", "enum", "name"), ENUMS)
def test_enums_map_both_ways(field: str, enum: type[StrEnum], name: str) -> None:
    data = run(SCHEMA, f'{{ __type(name: "{name}") {{ enumValues {{ name }} }} }}')
    assert [v["name"] for v in data["__type"]["enumValues"]] == [m.name for m in enum]
    members = list(enum)
    document = "{ " + " ".join(f"m{i}: {field}(v: {m.name})" for i, m in enumerate(members)) + " }"
    assert run(SCHEMA, document) == {f"m{i}": m.name for i, m in enumerate(members)}
    # Variables carry the GraphQL names too; the domain's values are not enum names.
    value = members[-1]
    variables = {"v": value.name}
    assert run(SCHEMA, f"query($v: {name}!) {{ {field}(v: $v) }}", variables) == {field: value.name}
    error = fail(SCHEMA, f"query($v: {name}!) {{ {field}(v: $v) }}", {"v": "not_a_member"})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
