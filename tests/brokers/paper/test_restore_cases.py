"""Restoring the engine from the ledger: the cases one by one (fill ids and seqs go on,
held legs, requests in flight, triggered and trailing stops, downtime, a ledger that
lost its last events, refusals)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest

from brokers.paper.broker import PaperBroker
from brokers.paper.matching import MatchingEngine
from server.trading.events import OrderEvent, Reason
from server.trading.lifecycle import fold_order
from server.trading.model import Order
from server.trading.states import EventKind, OrderStatus
from streams.events import MarketEvent, Trade
from tests.brokers.paper.harness import Desk
from tests.brokers.paper.helpers import DAY, ny

D = Decimal
E = EventKind
S = OrderStatus
BRACKET = {"side": "buy", "type": "limit", "qty": "100", "limitPrice": "100.00",
           "orderClass": "bracket", "takeProfit": {"limitPrice": "105.00"},
           "stopLoss": {"stopPrice": "97.00"}}  # fmt: skip
OCO = {"side": "sell", "type": "limit", "qty": "50", "orderClass": "oco",
       "takeProfit": {"limitPrice": "101.00"}, "stopLoss": {"stopPrice": "99.00"}}  # fmt: skip
_REQUESTED = {S.PENDING_CANCEL: E.CANCEL_REQUESTED, S.PENDING_REPLACE: E.REPLACE_REQUESTED}


def ledger(d: Desk, events: list[OrderEvent]) -> list[tuple[Order, list[OrderEvent]]]:
    """Each order with its recorded events, and the request the service recorded and
    the engine has not answered (the service writes it to the ledger too)."""
    out = []
    for oid, state in d.states.items():
        mine = [e for e in events if e.order_id == oid]
        request = _REQUESTED.get(state.status)
        if request is not None:
            mine.append(OrderEvent(0, request, oid, state.status, d.t, state.qty, state.filled_qty))
        out.append((state.order, mine))
    return out


def restart(
    d: Desk,
    *,
    now: int | None = None,
    lose: int = 0,
    water_marks: Mapping[str, Decimal | None] | None = None,
    market: tuple[MarketEvent, ...] = (),
) -> list[OrderEvent]:
    """The server restarts at ``now``: a new engine, restored from the ledger (less its
    last ``lose`` events: written by the old engine, lost in the crash), takes over the
    desk. Returns what ``restore`` emitted."""
    kept = d.events[: len(d.events) - lose]
    entries = ledger(d, kept)
    d.t = max(d.t, now or d.t)
    engine = MatchingEngine(d.engine.config, start_ms=0)
    caught_up = engine.restore(
        entries,
        next_seq=(kept[-1].seq if kept else 0) + 1,
        now_ms=d.t,
        water_marks=water_marks,
        market=market,
    )
    d.engine, d.events = engine, kept
    for order, events in entries:
        d.states[order.id] = fold_order(order, events)
        engine_events = [e for e in events if e.seq]  # not the service's request
        d.views[order.id] = fold_order(order, engine_events, strict=True)
    d._record(caught_up)
    return caught_up


def open_desk() -> Desk:
    return Desk.opened("100.20", "100.30", "100.25")


def test_fill_ids_cumulative_quantity_and_seq_continue() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="100", limitPrice="100.00")
    d.quote("99.90", "100.00", asz=30)
    last_seq = d.events[-1].seq
    assert restart(d) == []
    events = d.quote("99.90", "100.00", asz=30)
    assert events[0].seq == last_seq + 1
    assert [e.fill.id for e in d.events if e.fill] == [f"{o}-1", f"{o}-2"]
    assert events[0].filled_qty == 60 and events[0].status is S.PARTIALLY_FILLED
    d.quote("99.90", "100.00", asz=100)
    assert d.status(o) is S.FILLED and d.account.position("AMZN").qty == 100
    assert d.states[o].avg_fill_price == D("100.00")


def test_held_legs_stay_held_and_start_when_the_entry_fills() -> None:
    d = open_desk()
    entry, tp, sl = d.place(**BRACKET)
    restart(d)
    d.trade("105.50")  # held: nothing
    assert d.kinds(tp) == ["held"]
    d.quote("99.90", "99.95", asz=100)
    assert d.status(entry) is S.FILLED
    assert d.kinds(tp) == ["held", "new"] and d.last(sl).qty == 100
    d.quote("105.00", "105.10", bs=30)
    assert d.status(sl) is S.CANCELED and d.last(sl).reason is Reason.OCO_SIBLING_FILLED


def test_oco_siblings_stay_linked() -> None:
    d = open_desk()
    tp, sl = d.place(**OCO)
    restart(d)
    d.quote("101.00", "101.10", bs=10)
    assert d.fills(tp) == [(D(10), D("101.00"))] and d.status(sl) is S.CANCELED


def test_done_orders_are_not_worked_but_answered_as_before() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="market", qty="10")
    assert d.status(o) is S.FILLED
    restart(d)
    assert d.engine.open_orders() == [] and d.engine.symbols() == []
    d.quote("99.00", "99.10", asz=100)
    assert d.kinds(o) == ["new", "fill"]
    assert d.engine.submit([d.states[o].order]) == []  # a re-sent submit is a no-op
    d.cancel(o)
    assert d.last(o).kind is E.CANCEL_REJECTED and d.last(o).reason is Reason.ALREADY_DONE


def test_a_cancel_in_flight_is_answered_when_sent_again() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="100", limitPrice="100.00")
    d.request(o, E.CANCEL_REQUESTED)  # recorded; the engine died before it arrived
    restart(d)
    assert d.engine.order(o).status is S.NEW  # type: ignore[union-attr]
    d.quote("99.90", "100.00", asz=40)  # a fill races the re-sent request
    assert d.last(o).status is S.PARTIALLY_FILLED and d.status(o) is S.PENDING_CANCEL
    d.send_cancel(o)
    assert d.status(o) is S.CANCELED and d.filled(o) == 40


def test_a_replace_in_flight_is_answered_when_sent_again() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="100", limitPrice="99.00")
    new = d.replacement(o, qty="150", limit_price="99.50")
    d.request(o, E.REPLACE_REQUESTED)
    restart(d)
    assert d.engine.order(new.id) is None  # the replacement is the re-sent request's
    d.send_replace(o, new)
    assert d.status(o) is S.REPLACED and d.status(new.id) is S.NEW
    d.quote("99.40", "99.50", asz=150)
    assert d.status(new.id) is S.FILLED


def test_a_triggered_stop_stays_triggered_and_so_does_its_replacement() -> None:
    d = open_desk()
    (o,) = d.place(side="sell", type="stop", qty="100", stopPrice="99.00")
    d.quote("98.90", "99.00", bs=0)  # nothing to sell into
    d.trade("98.95")
    assert d.kinds(o) == ["new", "triggered"]
    new_id, _ = d.replace(o, qty="80")
    restart(d)
    view = d.engine.order(new_id)
    assert view is not None and view.triggered
    d.quote("98.80", "98.90", bs=100)  # a market order now: takes the bid
    assert d.fills(new_id) == [(D(80), D("98.80"))]


def test_trailing_stop_with_its_water_mark_is_exact() -> None:
    d = open_desk()
    (o,) = d.place(side="sell", type="trailing_stop", qty="10", trailPrice="1.00")
    for p in ("101.00", "102.00", "101.60"):
        d.trade(p)
    view = d.engine.order(o)
    assert view is not None and view.water_price == D("102.00")
    restart(d, water_marks={o: view.water_price})
    d.quote("100.90", "101.00", bs=100)
    d.trade("101.00")
    assert d.kinds(o) == ["new", "triggered", "fill"]


def test_trailing_stop_without_its_water_mark_trails_afresh_from_the_restart() -> None:
    """What is lost without the mark: the high before the restart. The stop trails
    from the last trade the engine is given (looser: lower for a sell) until the
    market passes the old high."""
    d = open_desk()
    (o,) = d.place(side="sell", type="trailing_stop", qty="10", trailPrice="1.00")
    for p in ("101.00", "102.00", "101.60"):
        d.trade(p)
    last = Trade(sym="AMZN", p=101.6, s=100, t=d.t)
    restart(d, market=(last,))
    view = d.engine.order(o)
    assert view is not None and view.water_price == D("101.60") and view.stop_price == D("100.60")
    d.trade("101.00")  # would have triggered the engine that never stopped
    assert d.kinds(o) == ["new"]
    d.trade("102.50")
    d.trade("101.50")  # no quote since the restart: it fills at the print
    assert d.kinds(o) == ["new", "triggered", "fill"] and d.fills(o) == [(D(10), D("101.50"))]


def test_trailing_stop_with_no_trade_since_it_started_trails_from_the_next() -> None:
    d = Desk.opened()
    (o,) = d.place(side="sell", type="trailing_stop", qty="10", trailPercent="1")
    restart(d, water_marks={o: None})
    assert d.engine.order(o).water_price is None  # type: ignore[union-attr]
    d.trade("100.00")
    assert d.engine.order(o).stop_price == D("99.00")  # type: ignore[union-attr]


def test_what_fell_due_while_the_server_was_down_happens_at_restore() -> None:
    d = Desk(start_ms=ny(8, 0))
    (waiting,) = d.place(side="buy", type="limit", qty="10", limitPrice="90.00")
    assert d.status(waiting) is S.ACCEPTED
    (gtc,) = d.place(side="buy", type="limit", qty="10", limitPrice="90.00", timeInForce="gtc")
    caught_up = restart(d, now=ny(9, 0, day=DAY.replace(day=DAY.day + 1)))
    assert [(e.order_id, e.kind, e.time_ms) for e in caught_up] == [
        (waiting, E.NEW, ny(9, 30)),
        (gtc, E.NEW, ny(9, 30)),
        (waiting, E.EXPIRED, ny(16, 0)),
    ]
    assert d.last(waiting).reason is Reason.DAY_ENDED and d.status(gtc) is S.NEW


def test_a_filled_entry_whose_legs_were_not_recorded_starts_them() -> None:
    d = open_desk()
    _entry, tp, sl = d.place(**BRACKET)
    d.quote("99.90", "99.95", asz=100)
    assert d.kinds(tp) == ["held", "new"] and d.kinds(sl) == ["held", "new"]
    caught_up = restart(d, lose=2)
    assert [(e.order_id, e.kind, e.qty) for e in caught_up] == [(tp, E.NEW, 100), (sl, E.NEW, 100)]


def test_a_fill_whose_oco_cancel_was_not_recorded_cancels_the_sibling() -> None:
    d = open_desk()
    _tp, sl = d.place(**OCO)
    d.quote("101.00", "101.10", bs=10)
    assert d.status(sl) is S.CANCELED
    caught_up = restart(d, lose=1)
    assert [(e.order_id, e.kind, e.reason) for e in caught_up] == [
        (sl, E.CANCELED, Reason.OCO_SIBLING_FILLED)
    ]
    d.trade("98.00")
    assert d.status(sl) is S.CANCELED


def test_an_ioc_whose_remainder_was_not_recorded_is_canceled() -> None:
    d = Desk.opened("100.20", "100.30")
    d.quote("100.20", "100.30", asz=30)
    (o,) = d.place(side="buy", type="limit", qty="100", limitPrice="100.30", timeInForce="ioc")
    assert d.kinds(o) == ["new", "partial_fill", "canceled"]
    caught_up = restart(d, lose=1)
    assert [(e.kind, e.reason, e.filled_qty) for e in caught_up] == [
        (E.CANCELED, Reason.IOC_REMAINDER, 30)
    ]


def test_legs_cut_off_from_their_request_are_held() -> None:
    d = open_desk()
    _entry, tp, sl = d.place(**BRACKET)
    caught_up = restart(d, lose=2)  # the legs' "held" never reached the ledger
    assert [(e.order_id, e.kind) for e in caught_up] == [(tp, E.HELD), (sl, E.HELD)]


def test_an_order_never_acknowledged_is_left_for_its_submit() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="99.00")
    assert restart(d, lose=1) == []
    assert d.engine.order(o) is None
    d.engine.submit([d.states[o].order])
    assert d.engine.order(o).status is S.NEW  # type: ignore[union-attr]


def test_refusals() -> None:
    d = open_desk()
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="99.00")
    entries = ledger(d, d.events)
    top = d.events[-1].seq
    fresh = MatchingEngine(start_ms=0)
    with pytest.raises(ValueError, match="restored twice"):
        fresh.restore(entries + entries, next_seq=top + 1, now_ms=d.t)
    with pytest.raises(ValueError, match="restored twice"):
        d.engine.restore(entries, next_seq=top + 1, now_ms=d.t)
    with pytest.raises(ValueError, match="next_seq"):
        MatchingEngine().restore(entries, next_seq=top, now_ms=d.t)
    with pytest.raises(ValueError, match="water mark"):
        MatchingEngine().restore(entries, next_seq=top + 1, now_ms=d.t, water_marks={"x": None})
    entry, _tp, _sl = d.place(**BRACKET)
    legs_only = [(order, events) for order, events in ledger(d, d.events) if order.id != entry]
    with pytest.raises(ValueError, match="held leg"):
        MatchingEngine().restore(legs_only, next_seq=d.events[-1].seq + 1, now_ms=d.t)
    d.replace(o, qty="20")
    without_old = [(order, events) for order, events in ledger(d, d.events) if order.id != o]
    with pytest.raises(ValueError, match=f"replaces {o}"):
        MatchingEngine().restore(without_old, next_seq=d.events[-1].seq + 1, now_ms=d.t)


def test_paper_broker_delivers_what_restore_caught_up() -> None:
    d = Desk(start_ms=ny(8, 0))
    (o,) = d.place(side="buy", type="limit", qty="10", limitPrice="90.00")
    broker = PaperBroker()
    got: list[OrderEvent] = []
    broker.set_listener(got.append)
    broker.restore(ledger(d, d.events), next_seq=d.events[-1].seq + 1, now_ms=ny(9, 30))
    assert [(e.order_id, e.kind, e.seq) for e in got] == [(o, E.NEW, d.events[-1].seq + 1)]
    assert broker.symbols() == ["AMZN"]
