"""Stops trigger on trades; trailing stops follow the water mark."""

from __future__ import annotations

from decimal import Decimal

from server.trading.states import OrderStatus
from tests.brokers.paper.harness import Desk
from tests.brokers.paper.helpers import ny

D = Decimal
S = OrderStatus


def open_desk() -> Desk:
    return Desk.opened("100.00", "100.05", "100.02")


def test_buy_stop_triggers_on_a_trade_at_or_above_and_takes_the_ask() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="stop", qty="100", stopPrice="101.00")
    d.quote("100.90", "101.10", asz=60)  # quotes never trigger a stop
    assert d.kinds(o) == ["new"]
    d.trade("100.99")
    assert d.kinds(o) == ["new"]
    d.trade("101.00")
    assert d.kinds(o) == ["new", "triggered", "partial_fill"]
    assert d.last(o).fill is not None and d.fills(o) == [(D(60), D("101.10"))]
    triggered = next(e for e in d.events if e.order_id == o and str(e.kind) == "triggered")
    assert triggered.stop_price == D("101.00") and triggered.status is S.NEW
    d.quote("101.00", "101.20", asz=100)
    assert d.fills(o)[-1] == (D(40), D("101.20")) and d.status(o) is S.FILLED


def test_sell_stop_gaps_through_and_fills_at_the_bid() -> None:
    d = open_desk()
    (o,) = d.place(side="sell", type="stop", qty="100", stopPrice="99.00")
    d.quote("97.50", "97.60", bs=500)
    d.trade("97.55")  # gapped through the stop
    assert d.fills(o) == [(D(100), D("97.50"))]


def test_stop_limit_becomes_a_limit_when_triggered() -> None:
    d = open_desk()
    (o,) = d.place(
        side="buy", type="stop_limit", qty="100", stopPrice="101.00", limitPrice="101.05"
    )
    d.quote("101.00", "101.10", asz=500)
    d.trade("101.02")
    assert d.kinds(o) == ["new", "triggered"]  # ask above its limit: it rests
    d.quote("101.00", "101.05", asz=30)
    assert d.fills(o) == [(D(30), D("101.05"))]
    d.trade("101.04", size=500)  # a trade through its limit
    assert d.fills(o)[-1] == (D(70), D("101.05")) and d.status(o) is S.FILLED


def test_lowest_buy_stops_trigger_first_then_by_submission() -> None:
    d = open_desk()
    (b,) = d.place(side="buy", type="stop", qty="10", stopPrice="101.00")
    (a,) = d.place(side="buy", type="stop", qty="10", stopPrice="100.50")
    (c,) = d.place(side="buy", type="stop", qty="10", stopPrice="100.50")
    d.quote("101.00", "101.10", asz=15)
    d.trade("101.00")
    triggered = [e.order_id for e in d.events if str(e.kind) == "triggered"]
    assert triggered == [a, c, b]
    assert d.filled(a) == 10 and d.filled(c) == 5 and d.filled(b) == 0


def test_trailing_sell_stop_by_amount_follows_the_high() -> None:
    d = open_desk()
    (o,) = d.place(side="sell", type="trailing_stop", qty="10", trailPrice="1.00")
    view = d.engine.order(o)
    assert view is not None and view.water_price == D("100.02") and view.stop_price == D("99.02")
    for p in ("100.50", "101.00", "100.20", "101.30", "100.40"):
        d.trade(p)
    view = d.engine.order(o)
    assert view is not None and (view.water_price, view.stop_price) == (D("101.30"), D("100.30"))
    assert d.kinds(o) == ["new"]
    d.quote("100.25", "100.35", bs=100)
    d.trade("100.30")
    assert d.kinds(o) == ["new", "triggered", "fill"]
    assert d.fills(o) == [(D(10), D("100.25"))]


def test_trailing_buy_stop_by_percent_follows_the_low() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="trailing_stop", qty="10", trailPercent="2")
    for p in ("99.00", "98.00", "99.50", "99.95"):
        d.trade(p)
    view = d.engine.order(o)
    assert view is not None and (view.water_price, view.stop_price) == (D("98.00"), D("99.96"))
    assert d.kinds(o) == ["new"]
    d.trade("99.96")
    assert d.kinds(o)[:2] == ["new", "triggered"]


def test_trailing_stops_started_at_different_times_keep_their_own_marks() -> None:
    d = open_desk()
    (early,) = d.place(side="sell", type="trailing_stop", qty="1", trailPrice="3.00")
    d.trade("105.00")
    d.trade("102.50")
    (late,) = d.place(side="sell", type="trailing_stop", qty="1", trailPrice="1.00")
    d.trade("102.10")
    e, la = d.engine.order(early), d.engine.order(late)
    assert e is not None and la is not None
    assert (e.water_price, e.stop_price) == (D("105.00"), D("102.00"))
    assert (la.water_price, la.stop_price) == (D("102.50"), D("101.50"))
    d.trade("103.00")  # a new high for the late one only
    la = d.engine.order(late)
    assert la is not None and la.water_price == D("103.00")
    d.trade("101.99")  # through both stops: 102.00 and 102.00
    kinds = [e.order_id for e in d.events if str(e.kind) == "triggered"]
    assert kinds == [early, late]  # equal stops: submission order
    assert d.status(early) is S.FILLED and d.status(late) is S.FILLED


def test_a_trailing_stop_placed_before_any_trade_trails_from_the_first() -> None:
    d = Desk()
    d.advance(ny(9, 30))
    (o,) = d.place(side="sell", type="trailing_stop", qty="1", trailPrice="0.50")
    view = d.engine.order(o)
    assert view is not None and view.water_price is None and view.stop_price is None
    d.trade("50.00")
    view = d.engine.order(o)
    assert view is not None and view.stop_price == D("49.50")
