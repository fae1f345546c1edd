"""A test desk around the matching engine, playing the order service's part.

Every event the engine emits is applied twice: to the service's view (``states``,
where a cancel/replace request is recorded when the service asks, possibly before
fills the engine already made) and, strictly, to the engine's view (``views``, where
the request is recorded when it reaches the engine: every event's status must be the
state table's). So each test also checks the engine against the state machine and the
quantity rules. Every fill is booked into an ``Account``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from brokers.paper.books import Book, IndexedBook
from brokers.paper.config import PaperConfig
from brokers.paper.matching import MatchingEngine
from server.trading.account import Account
from server.trading.errors import InvalidTransition
from server.trading.events import Fill, OrderEvent
from server.trading.lifecycle import OrderState
from server.trading.model import Order, build_orders
from server.trading.states import EventKind, OrderStatus, next_status
from server.trading.validation import parse_order
from streams.events import Quote, Trade
from tests.brokers.paper.helpers import ny

D = Decimal


class Desk:
    def __init__(
        self,
        config: PaperConfig | None = None,
        *,
        book_factory: Callable[[], Book] = IndexedBook,
        start_ms: int | None = None,
        symbol: str = "AMZN",
    ) -> None:
        self.t = ny(9, 0) if start_ms is None else start_ms
        self.engine = MatchingEngine(config, book_factory=book_factory, start_ms=self.t)
        self.symbol = symbol
        self.states: dict[str, OrderState] = {}
        self.views: dict[str, OrderState] = {}
        self.events: list[OrderEvent] = []
        self.account = Account.open(D(1_000_000))
        self._n = 0
        self._q = 0

    @classmethod
    def opened(
        cls,
        bid: str | None = None,
        ask: str | None = None,
        last: str | None = None,
        config: PaperConfig | None = None,
    ) -> Desk:
        """A desk at the open (09:30), with a deep quote and a first trade if given."""
        desk = cls(config)
        desk.advance(ny(9, 30))
        if bid is not None and ask is not None:
            desk.quote(bid, ask, bs=1000, asz=1000)
        if last is not None:
            desk.trade(last)
        return desk

    # --- requests ---------------------------------------------------------------------

    def place(self, at: int | None = None, **doc: Any) -> list[str]:
        """Place an order (API field names; ``symbol`` defaults to the desk's)."""
        doc.setdefault("symbol", self.symbol)
        doc.setdefault("timeInForce", "day")
        request = parse_order(doc)
        self._n += 1
        ids = [f"o{self._n}"] + [f"o{self._n}.{i}" for i in range(1, request.order_count)]
        orders = build_orders(request, ids, self._time(at))
        for order in orders:
            self._track(order)
        self._record(self.engine.submit(orders, self._time(at)))
        return ids

    def _track(self, order: Order) -> None:
        self.states[order.id] = OrderState.of(order)
        self.views[order.id] = OrderState.of(order)

    def request(self, order_id: str, kind: EventKind) -> None:
        """The service records a cancel/replace request (before sending it)."""
        _record_request(self.states[order_id], kind, self.t)

    def send_cancel(self, order_id: str, at: int | None = None) -> list[OrderEvent]:
        """The request reaches the engine (after what the clock does up to then)."""
        before = self._record(self.engine.advance(self._time(at)))
        _record_request(self.views[order_id], EventKind.CANCEL_REQUESTED, self.t)
        return before + self._record(self.engine.cancel(order_id, self.t))

    def cancel(self, order_id: str, at: int | None = None) -> list[OrderEvent]:
        self.request(order_id, EventKind.CANCEL_REQUESTED)
        return self.send_cancel(order_id, at)

    def replacement(self, order_id: str, **changes: Any) -> Order:
        """A replacement order with spec changes (``qty`` is the new total)."""
        old = self.states[order_id].order
        self._n += 1
        spec = replace(old.spec, **{k: _typed(k, v) for k, v in changes.items()})
        new = Order(
            id=f"o{self._n}",
            spec=spec,
            created_ms=self.t,
            order_class=old.order_class,
            role=old.role,
            parent_id=old.parent_id,
            client_order_id=old.client_order_id,
            replaces=old.id,
        )
        self._track(new)
        return new

    def send_replace(self, order_id: str, new: Order) -> list[OrderEvent]:
        before = self._record(self.engine.advance(self.t))
        _record_request(self.views[order_id], EventKind.REPLACE_REQUESTED, self.t)
        return before + self._record(self.engine.replace(order_id, new, self.t))

    def replace(self, order_id: str, **changes: Any) -> tuple[str, list[OrderEvent]]:
        new = self.replacement(order_id, **changes)
        self.request(order_id, EventKind.REPLACE_REQUESTED)
        return new.id, self.send_replace(order_id, new)

    # --- market data and time ---------------------------------------------------------

    def _time(self, at: int | None) -> int:
        if at is not None:
            self.t = max(self.t, at)
        return self.t

    def quote(
        self,
        bid: str,
        ask: str,
        bs: int = 100,
        asz: int = 100,
        *,
        at: int | None = None,
        symbol: str | None = None,
    ) -> list[OrderEvent]:
        self.t = self._time(at) if at is not None else self.t + 1
        self._q += 1
        q = Quote(
            sym=symbol or self.symbol,
            bp=float(bid),
            ap=float(ask),
            t=self.t,
            bs=bs,
            ask_size=asz,
            q=self._q,
        )
        return self._record(self.engine.on_quote(q))

    def trade(
        self, price: str, size: int = 100, at: int | None = None, symbol: str | None = None
    ) -> list[OrderEvent]:
        self.t = self._time(at) if at is not None else self.t + 1
        self._q += 1
        tr = Trade(sym=symbol or self.symbol, p=float(price), s=size, t=self.t, q=self._q)
        return self._record(self.engine.on_trade(tr))

    def advance(self, at: int) -> list[OrderEvent]:
        self.t = max(self.t, at)
        return self._record(self.engine.advance(at))

    # --- bookkeeping ------------------------------------------------------------------

    def _record(self, events: list[OrderEvent]) -> list[OrderEvent]:
        for e in events:
            if self.events:
                assert e.seq == self.events[-1].seq + 1
            self.states[e.order_id].apply(e)
            self.views[e.order_id].apply(e, strict=True)  # the engine obeys the table
            if e.fill is not None:
                self.account.apply(e.fill)
            self.events.append(e)
        return events

    def status(self, order_id: str) -> OrderStatus:
        return self.states[order_id].status

    def kinds(self, order_id: str) -> list[str]:
        return [str(e.kind) for e in self.events if e.order_id == order_id]

    def fills(self, order_id: str) -> list[tuple[Decimal, Decimal]]:
        return [(f.qty, f.price) for f in self._fills(order_id)]

    def _fills(self, order_id: str) -> list[Fill]:
        return [e.fill for e in self.events if e.order_id == order_id and e.fill is not None]

    def filled(self, order_id: str) -> Decimal:
        return self.states[order_id].filled_qty

    def last(self, order_id: str) -> OrderEvent:
        return [e for e in self.events if e.order_id == order_id][-1]


_DECIMALS = {"qty", "notional", "limit_price", "stop_price", "trail_price", "trail_percent"}


def _typed(key: str, value: Any) -> Any:
    return D(value) if key in _DECIMALS and isinstance(value, str) else value


def _record_request(state: OrderState, kind: EventKind, t: int) -> None:
    """Record a request the way the service does; a request to an order that is done
    is not recorded (the service refuses it, or the answer arrives in a race)."""
    try:
        status = next_status(state.status, kind)
    except InvalidTransition:
        return
    state.apply(
        OrderEvent(state.last_seq, kind, state.order.id, status, t, state.qty, state.filled_qty)
    )
