"""Brackets, OCO and OTO: legs held until the entry fills, exits cancel each other."""

from __future__ import annotations

from decimal import Decimal

from server.trading.events import Reason
from server.trading.states import OrderStatus
from tests.brokers.paper.harness import Desk
from tests.brokers.paper.helpers import ny

D = Decimal
S = OrderStatus
BRACKET = {"side": "buy", "type": "limit", "qty": "100", "limitPrice": "100.00",
           "orderClass": "bracket", "takeProfit": {"limitPrice": "105.00"},
           "stopLoss": {"stopPrice": "97.00"}}  # fmt: skip


def open_desk() -> Desk:
    return Desk.opened("100.20", "100.30", "100.25")


def test_bracket_legs_wait_for_the_entry_then_the_take_profit_cancels_the_stop() -> None:
    d = open_desk()
    entry, tp, sl = d.place(**BRACKET)
    assert d.kinds(entry) == ["new"] and d.kinds(tp) == ["held"] and d.kinds(sl) == ["held"]
    d.trade("105.50")  # legs are held: nothing for them
    assert d.kinds(tp) == ["held"]
    d.quote("99.90", "99.95", asz=60)
    assert d.status(entry) is S.PARTIALLY_FILLED and d.kinds(tp) == ["held"]
    d.quote("99.90", "99.95", asz=60)
    assert d.status(entry) is S.FILLED
    assert d.kinds(tp) == ["held", "new"] and d.kinds(sl) == ["held", "new"]
    assert d.last(tp).qty == 100
    d.quote("105.00", "105.10", bs=30)
    assert d.fills(tp) == [(D(30), D("105.00"))]
    assert d.status(sl) is S.CANCELED and d.last(sl).reason is Reason.OCO_SIBLING_FILLED
    assert d.last(sl).related_order_id == tp
    d.trade("96.00")  # the canceled stop does nothing
    assert d.status(sl) is S.CANCELED
    d.quote("105.00", "105.10", bs=100)
    assert d.status(tp) is S.FILLED and d.account.position("AMZN").qty == 0


def test_the_stop_loss_side_of_a_bracket() -> None:
    d = open_desk()
    entry, tp, sl = d.place(**{**BRACKET, "type": "market", "limitPrice": None})
    assert d.status(entry) is S.FILLED and d.kinds(sl) == ["new"]  # filled at once: never held
    d.quote("96.90", "97.00", bs=1000)
    d.trade("96.95")
    assert d.kinds(sl) == ["new", "triggered", "fill"]
    assert d.fills(sl) == [(D(100), D("96.90"))] and d.status(tp) is S.CANCELED


def test_an_entry_that_ends_partly_filled_starts_its_legs_for_what_filled() -> None:
    d = open_desk()
    entry, tp, sl = d.place(**BRACKET)
    d.quote("99.90", "99.95", asz=40)
    d.cancel(entry)
    assert d.status(entry) is S.CANCELED
    assert d.kinds(tp) == ["held", "new"] and d.last(tp).qty == 40 and d.last(sl).qty == 40


def test_an_entry_that_ends_unfilled_cancels_its_legs() -> None:
    d = open_desk()
    entry, tp, sl = d.place(**BRACKET)
    d.advance(ny(16, 0))
    assert d.status(entry) is S.EXPIRED
    for leg in (tp, sl):
        assert d.status(leg) is S.CANCELED and d.last(leg).reason is Reason.PARENT_CANCELED


def test_an_entry_that_fills_at_once_starts_its_legs_at_once() -> None:
    d = open_desk()
    entry, tp, sl = d.place(**{**BRACKET, "limitPrice": "100.30"})
    assert d.status(entry) is S.FILLED
    assert d.kinds(tp) == ["new"] and d.kinds(sl) == ["new"]  # never held


def test_oco_exits_a_position() -> None:
    d = open_desk()
    d.place(side="buy", type="market", qty="100")
    tp, sl = d.place(
        side="sell",
        type="limit",
        qty="100",
        timeInForce="gtc",
        orderClass="oco",
        takeProfit={"limitPrice": "103.00"},
        stopLoss={"stopPrice": "98.00"},
    )
    assert d.kinds(tp) == ["new"] and d.kinds(sl) == ["new"]
    d.quote("97.90", "98.10", bs=10)
    d.trade("98.00")
    assert d.kinds(sl) == ["new", "triggered", "partial_fill"]
    assert d.status(tp) is S.CANCELED  # at the first fill, even a partial one
    d.quote("97.80", "97.95", bs=500)
    assert d.status(sl) is S.FILLED and d.account.position("AMZN").qty == 0


def test_oto_has_one_leg() -> None:
    d = open_desk()
    entry, sl = d.place(
        side="buy", type="market", qty="10", orderClass="oto", stopLoss={"stopPrice": "95.00"}
    )
    assert d.status(entry) is S.FILLED and d.kinds(sl) == ["new"]
    d.cancel(sl)
    assert d.status(sl) is S.CANCELED


def test_canceling_one_exit_leaves_the_other() -> None:
    d = open_desk()
    _entry, tp, sl = d.place(**{**BRACKET, "type": "market", "limitPrice": None})
    d.cancel(tp)
    assert d.status(tp) is S.CANCELED and d.status(sl) is S.NEW


def test_replacing_a_held_leg_keeps_it_held_and_linked() -> None:
    d = open_desk()
    _entry, tp, sl = d.place(**BRACKET)
    new_tp, events = d.replace(tp, limit_price="106.00")
    assert [str(e.kind) for e in events] == ["replaced", "held"]
    assert d.status(tp) is S.REPLACED and d.last(tp).related_order_id == new_tp
    d.quote("99.90", "99.95", asz=1000)
    assert d.kinds(new_tp) == ["held", "new"] and d.kinds(sl) == ["held", "new"]
    d.quote("106.00", "106.10", bs=1000)
    assert d.status(new_tp) is S.FILLED and d.status(sl) is S.CANCELED
    assert d.last(sl).related_order_id == new_tp
