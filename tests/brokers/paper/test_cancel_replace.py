"""Cancel and replace, and the races the service sees: a fill before the cancel or the
replace lands, a partial fill racing a replace."""

from __future__ import annotations

from decimal import Decimal

import pytest

from server.trading.errors import OrderNotCancelable, OrderNotFound, OrderNotReplaceable
from server.trading.events import Reason
from server.trading.model import Order, Side
from server.trading.states import EventKind, OrderStatus
from tests.brokers.paper.harness import Desk
from tests.brokers.paper.helpers import ny

D = Decimal
S = OrderStatus


def open_desk() -> Desk:
    return Desk.opened("100.00", "100.10", "100.05")


def test_cancel_a_working_order() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="99")
    (e,) = d.cancel(o)
    assert (str(e.kind), e.status, e.reason) == ("canceled", S.CANCELED, Reason.CANCEL_REQUESTED)
    d.quote("98", "98.50")
    assert not d.fills(o) and d.engine.symbols() == []


def test_cancel_an_order_held_for_the_open() -> None:
    d = Desk(start_ms=ny(7, 0))
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="99")
    d.cancel(o)
    d.advance(ny(10, 0))
    assert d.kinds(o) == ["accepted", "canceled"]


def test_the_fill_wins_a_race_with_the_cancel() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="99")
    # The service records the cancel request; before the broker acts, the order fills.
    d.request(o, EventKind.CANCEL_REQUESTED)
    assert d.status(o) is S.PENDING_CANCEL
    d.quote("98.90", "98.95", asz=100)
    assert d.status(o) is S.FILLED  # pending_cancel + fill
    (answer,) = d.send_cancel(o)
    assert str(answer.kind) == "cancel_rejected" and answer.reason is Reason.ALREADY_DONE
    assert d.status(o) is S.FILLED


def test_a_partial_fill_during_a_cancel_request_is_kept() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="99")
    d.request(o, EventKind.CANCEL_REQUESTED)
    d.quote("98.90", "98.95", asz=4)
    assert d.status(o) is S.PENDING_CANCEL and d.filled(o) == 4
    d.send_cancel(o)
    assert d.status(o) is S.CANCELED and d.filled(o) == 4 and d.account.position("AMZN").qty == 4


def test_replace_a_limit_price_and_the_quantity_is_the_new_total() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="100", limitPrice="99")
    d.quote("98.90", "98.95", asz=30)
    new, events = d.replace(o, limit_price="99.50", qty="150")
    assert [(e.order_id, str(e.kind)) for e in events] == [(o, "replaced"), (new, "new")]
    assert events[0].related_order_id == new and events[1].related_order_id == o
    assert events[1].qty == 120  # 150 in all, 30 already filled by the old order
    d.quote("99.40", "99.45", asz=1000)
    assert d.fills(new) == [(D(120), D("99.50"))]
    assert d.account.position("AMZN").qty == 150


def test_a_fill_racing_a_replace_rejects_the_replacement() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="99")
    new = d.replacement(o, limit_price="99.50")
    d.request(o, EventKind.REPLACE_REQUESTED)
    d.quote("98.90", "98.95", asz=100)  # fills before the replace reaches the broker
    assert d.status(o) is S.FILLED
    events = d.send_replace(o, new)
    assert [(e.order_id, str(e.kind), e.reason) for e in events] == [
        (o, "replace_rejected", Reason.REPLACED_ORDER_FILLED),
        (new.id, "rejected", Reason.REPLACED_ORDER_FILLED),
    ]
    assert d.status(o) is S.FILLED and d.status(new.id) is S.REJECTED


def test_a_partial_fill_racing_a_replace_is_counted_in_the_new_total() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="100", limitPrice="99")
    new = d.replacement(o, limit_price="99.20")  # the service asks for 100 in all at 99.20
    d.request(o, EventKind.REPLACE_REQUESTED)
    d.quote("98.90", "98.95", asz=60)
    assert d.status(o) is S.PENDING_REPLACE and d.filled(o) == 60
    d.send_replace(o, new)
    assert d.status(o) is S.REPLACED and d.last(new.id).qty == 40  # 60 filled, 40 left
    assert d.fills(new.id) == []


def test_a_new_total_at_or_below_what_filled_is_refused() -> None:
    d = open_desk()
    (o2,) = d.place(side="buy", type="limit", qty="100", limitPrice="99")
    d.quote("98.90", "98.95", asz=70)
    bad, events = d.replace(o2, qty="70")
    assert [str(e.kind) for e in events] == ["replace_rejected", "rejected"]
    assert d.status(o2) is S.PARTIALLY_FILLED and d.status(bad) is S.REJECTED


@pytest.mark.parametrize("changes", [{"side": Side.SELL}, {"symbol": "MSFT"}])
def test_what_a_replace_cannot_change(changes: dict[str, object]) -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="99")
    _new, events = d.replace(o, **changes)
    assert [(str(e.kind), e.reason) for e in events] == [
        ("replace_rejected", Reason.NOT_REPLACEABLE),
        ("rejected", Reason.NOT_REPLACEABLE),
    ]
    assert d.status(o) is S.NEW


def test_replacing_a_trailing_stop_keeps_its_water_mark() -> None:
    d = open_desk()
    (o,) = d.place(side="sell", type="trailing_stop", qty="10", trailPrice="1.00")
    d.trade("103.00")
    d.trade("102.50")
    new, _ = d.replace(o, trail_price="2.00")
    view = d.engine.order(new)
    assert view is not None and (view.water_price, view.stop_price) == (D("103.00"), D("101.00"))


def test_refusals_that_raise() -> None:
    d = open_desk()
    with pytest.raises(OrderNotFound):
        d.engine.cancel("nope")
    (rej,) = d.place(side="buy", type="market", qty="1", timeInForce="ioc", at=ny(17, 0))
    assert d.status(rej) is S.REJECTED
    with pytest.raises(OrderNotCancelable):
        d.engine.cancel(rej)
    late = Desk(start_ms=ny(7, 0))
    (acc,) = late.place(side="buy", type="limit", qty="1", limitPrice="1")
    with pytest.raises(OrderNotReplaceable):
        late.engine.replace(acc, Order("x", late.states[acc].order.spec, late.t))
    with pytest.raises(ValueError, match="already used"):
        late.engine.replace(acc, late.states[acc].order)


def test_submitting_an_id_again_is_a_no_op() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="99")
    assert d.engine.submit([d.states[o].order]) == []
    assert len(d.engine.open_orders()) == 1
