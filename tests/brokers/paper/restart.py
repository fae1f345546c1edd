"""Restart harness: run a workload on one engine, recording every order's ledger, and
restore a second engine from that ledger at any point."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal

from brokers.paper.matching import MatchingEngine
from server.trading.calendar import NYSE
from server.trading.events import OrderEvent
from server.trading.model import Order, OrderClass, OrderType, TimeInForce
from server.trading.states import DONE, EventKind, OrderStatus
from streams.events import MarketEvent, Quote
from tests.brokers.paper.test_equivalence import Checked
from tests.brokers.paper.workload import Step

S = OrderStatus


class Recorder(Checked):
    """``Checked`` that also keeps each order's ledger (its events, in order) and
    knows which symbols' displayed size our fills have eaten since their last quote."""

    def __init__(self, engine: MatchingEngine) -> None:
        super().__init__(engine)
        self.ledger: dict[str, list[OrderEvent]] = {}
        self.last_seq = 0
        self.eaten: set[str] = set()

    def step(self, kind: str, arg: object) -> None:
        if kind == "quote":
            self.eaten.discard(arg.sym)  # type: ignore[attr-defined]
        super().step(kind, arg)

    def _request(self, order_id: str, kind: EventKind) -> OrderEvent | None:
        """The service's request goes into the order's ledger too (its own seq: 0)."""
        event = super()._request(order_id, kind)
        if event is not None:
            self.ledger.setdefault(order_id, []).append(event)
        return event

    def _record(self, events: list[OrderEvent]) -> None:
        super()._record(events)
        for ev in events:
            self.ledger.setdefault(ev.order_id, []).append(ev)
            self.last_seq = ev.seq
            if ev.fill is not None:
                self.eaten.add(ev.fill.symbol)

    def entries(self) -> list[tuple[Order, list[OrderEvent]]]:
        """Every order the service knows, with its ledger (submission order)."""
        return [(s.order, self.ledger.get(oid, [])) for oid, s in self.states.items()]

    def water_marks(self) -> dict[str, Decimal | None]:
        """The exact water mark of every trailing stop that trails (or carries one)."""
        marks: dict[str, Decimal | None] = {}
        for view in self.engine.open_orders():
            if view.order.spec.type is OrderType.TRAILING_STOP and not view.triggered:
                marks[view.order.id] = view.water_price
        return marks


def latest_market(steps: Sequence[Step]) -> list[MarketEvent]:
    """Per symbol, the last quote, the last trade and the last regular-session trade."""
    last: dict[tuple[str, str], MarketEvent] = {}
    for kind, arg in steps:
        if kind == "quote":
            last[(arg.sym, "Q")] = arg
        elif kind == "trade":
            last[(arg.sym, "T")] = arg
            session = NYSE.next_session(arg.t)
            if session.open_ms <= arg.t < session.close_ms:
                last[(arg.sym, "R")] = arg
    return sorted(last.values(), key=lambda e: (e.t, type(e) is Quote))


def restored(a: Recorder, before: Sequence[Step]) -> tuple[Recorder, list[OrderEvent]]:
    """Engine B, restored from A's ledger at this point, with a copy of A's folds."""
    b = Recorder(MatchingEngine(start_ms=0))
    caught_up = b.engine.restore(
        a.entries(),
        next_seq=a.last_seq + 1,
        now_ms=a.engine.now_ms,
        water_marks=a.water_marks(),
        market=latest_market(before),
    )
    b.states = copy.deepcopy(a.states)
    b._record(caught_up)
    return b, caught_up


def shapes(engine: MatchingEngine) -> Counter[str]:
    """What kinds of open orders an engine has (to show the tests cover them)."""
    seen: Counter[str] = Counter()
    for view in engine.open_orders():
        order, spec = view.order, view.order.spec
        assert view.status not in DONE
        seen[f"type:{spec.type}"] += 1
        seen[f"tif:{spec.time_in_force}"] += 1
        seen[f"class:{order.order_class}"] += 1
        seen[f"status:{view.status}"] += 1
        if view.triggered:
            seen[f"triggered:{spec.type}"] += 1
        if spec.type is OrderType.TRAILING_STOP and view.water_price is not None:
            seen["trailing with a water mark"] += 1
        if order.replaces is not None:
            seen["replacement"] += 1
        if spec.extended_hours:
            seen["extended hours"] += 1
        if spec.notional is not None:
            seen["notional"] += 1
        if order.order_class is not OrderClass.SIMPLE and view.status is not S.HELD:
            seen[f"working {order.order_class} {order.role}"] += 1
        if spec.time_in_force in (TimeInForce.OPG, TimeInForce.CLS):
            seen["auction"] += 1
    return seen
