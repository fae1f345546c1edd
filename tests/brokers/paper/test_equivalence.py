"""The indexed books fill exactly what the naive scan fills, event for event, on seeded
random workloads; and every event the engine emits obeys the state machine, the
quantity rules and the account's bookkeeping."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.paper.books import IndexedBook
from brokers.paper.matching import MatchingEngine
from brokers.paper.naive import NaiveBook
from server.trading.account import Account
from server.trading.errors import InvalidTransition, TickgraphError
from server.trading.events import OrderEvent
from server.trading.lifecycle import OrderState
from server.trading.states import EventKind, OrderStatus, next_status
from tests.brokers.paper.helpers import ny
from tests.brokers.paper.workload import workload


class Checked:
    """Runs a workload through one engine, folding every event strictly."""

    def __init__(self, engine: MatchingEngine) -> None:
        self.engine = engine
        self.states: dict[str, OrderState] = {}
        self.account = Account.open(Decimal(10_000_000))
        self.out: list[object] = []

    def _request(self, order_id: str, kind: EventKind) -> OrderEvent | None:
        """The service records the request (``None``: it is refused, the order is done)."""
        state = self.states[order_id]
        try:
            status = next_status(state.status, kind)
        except InvalidTransition:
            return None
        event = OrderEvent(0, kind, order_id, status, 0, state.qty, state.filled_qty)
        state.apply(event)
        return event

    def step(self, kind: str, arg: object) -> None:
        e = self.engine
        if kind in ("cancel", "replace"):
            # What the clock does up to the request happens before it reaches the engine.
            self._record(e.advance(arg[-1]))  # type: ignore[index]
        try:
            if kind == "submit":
                orders, t = arg  # type: ignore[misc]
                for o in orders:
                    self.states.setdefault(o.id, OrderState.of(o))
                events = e.submit(orders, t)
            elif kind == "cancel":
                order_id, t = arg  # type: ignore[misc]
                self._request(order_id, EventKind.CANCEL_REQUESTED)
                events = e.cancel(order_id, t)
            elif kind == "replace":
                order_id, new, t = arg  # type: ignore[misc]
                self._request(order_id, EventKind.REPLACE_REQUESTED)
                self.states[new.id] = OrderState.of(new)
                events = e.replace(order_id, new, t)
            elif kind == "advance":
                events = e.advance(arg)  # type: ignore[arg-type]
            else:
                events = e.on_event(arg)  # type: ignore[arg-type]
        except TickgraphError as err:
            self.out.append(("error", err.code))
            return
        self._record(events)

    def _record(self, events: list[OrderEvent]) -> None:
        for ev in events:
            self.states[ev.order_id].apply(ev, strict=True)
            if ev.fill is not None:
                self.account.apply(ev.fill)
            self.out.append(ev.as_dict())


@pytest.mark.parametrize("seed", range(12))
def test_indexed_equals_naive_and_obeys_the_rules(seed: int) -> None:
    runs = []
    for factory in (IndexedBook, NaiveBook):
        checked = Checked(MatchingEngine(book_factory=factory, start_ms=ny(9, 0)))
        for kind, arg in workload(seed):
            checked.step(kind, arg)
        runs.append(checked)
    indexed, naive = runs
    assert indexed.out == naive.out
    fills = [o for o in indexed.out if isinstance(o, dict) and "fill" in o]
    assert fills, "the workload should fill something"
    # Nothing the engine still works contradicts the folds.
    for view in indexed.engine.open_orders():
        state = indexed.states[view.order.id]
        assert state.status is view.status and state.filled_qty == view.filled_qty
        assert state.status not in (OrderStatus.FILLED, OrderStatus.CANCELED)
