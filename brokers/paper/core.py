"""The matching engine's state and clock: orders, symbols, the schedule of timed
actions (activations, expiries, auctions) and the event output.

Layers, each a class on the one before: ``EngineCore`` (this module: state, time,
events) -> ``Execution`` (``execution.py``: market data and fills) -> ``OrderDesk``
(``desk.py``: placing, ending, replacing orders and their legs) -> ``MatchingEngine``
(``matching.py``: the public API). The hooks a lower layer calls and a higher one
implements are declared here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from decimal import Decimal
from heapq import heappop, heappush

from brokers.paper.books import Book, IndexedBook
from brokers.paper.config import PaperConfig
from brokers.paper.symbols import SymbolState
from brokers.paper.working import Working
from server.trading.calendar import Session
from server.trading.errors import OrderNotFound
from server.trading.events import Fill, OrderEvent, Reason
from server.trading.model import Order
from server.trading.money import canonical_qty
from server.trading.states import EventKind, OrderStatus, next_status

E = EventKind
S = OrderStatus

_ACK_OF = {E.ACCEPTED: S.ACCEPTED, E.HELD: S.HELD, E.NEW: S.NEW}
_ACK_RANK = {S.PENDING_NEW: 0, S.ACCEPTED: 1, S.HELD: 1, S.NEW: 2}

# Scheduled actions, in the order they run at the same instant.
AUCTION = 0
EXPIRE = 1
ACTIVATE = 2
_FOREVER = 1 << 62


class EngineCore(ABC):
    def __init__(
        self,
        config: PaperConfig | None = None,
        *,
        book_factory: Callable[[], Book] = IndexedBook,
        start_ms: int = 0,
    ) -> None:
        self.config = config or PaperConfig()
        self.calendar = self.config.calendar
        self.now_ms = start_ms
        self._book_factory = book_factory
        self._orders: dict[str, Working] = {}
        self._symbols: dict[str, SymbolState] = {}
        # (time, action, order seq, order id)
        self._schedule: list[tuple[int, int, int, str]] = []
        self._out: list[OrderEvent] = []
        self._event_seq = 0
        self._order_seq = 0
        self._session: Session = self.calendar.next_session(start_ms)
        self._horizon = 0  # the next time something scheduled is due

    def _clock(self, now_ms: int | None) -> None:
        t = self.now_ms if now_ms is None else max(self.now_ms, now_ms)
        if t >= self._horizon:
            self._run_schedule(t)
        self.now_ms = t

    def _schedule_at(self, time_ms: int, action: int, w: Working) -> None:
        heappush(self._schedule, (time_ms, action, w.seq, w.order.id))
        self._horizon = min(self._horizon, time_ms)

    def _run_schedule(self, t: int) -> None:
        schedule = self._schedule
        while True:
            due = schedule[0][0] if schedule else _FOREVER
            roll = self._session.post_close_ms
            if roll <= t and roll < due:
                # Straight to the session of whatever happens next (a quiet market may
                # skip days).
                self._session = self.calendar.next_session(min(t, due))
                continue
            if due > t:
                break
            time_ms, action, _, order_id = heappop(schedule)
            self.now_ms = max(self.now_ms, time_ms)
            self._run_action(action, self._orders[order_id], time_ms)
        self._horizon = min(schedule[0][0] if schedule else _FOREVER, self._session.post_close_ms)

    def _new_working(self, order: Order) -> Working:
        self._order_seq += 1
        w = Working(order, self._order_seq)
        self._orders[order.id] = w
        return w

    def _symbol(self, symbol: str) -> SymbolState:
        st = self._symbols[symbol] = SymbolState(symbol, self._book_factory)
        return st

    def _emit(
        self,
        w: Working,
        kind: EventKind,
        *,
        fill: Fill | None = None,
        reason: Reason | None = None,
        related: str | None = None,
        stop_price: Decimal | None = None,
    ) -> None:
        status = next_status(w.status, kind, acknowledged=w.ack, filled=w.filled > 0)
        w.status = status
        ack = _ACK_OF.get(kind)
        if ack is not None and _ACK_RANK[ack] > _ACK_RANK[w.ack]:
            w.ack = ack
        self._event_seq += 1
        self._out.append(
            OrderEvent(
                seq=self._event_seq,
                kind=kind,
                order_id=w.order.id,
                status=status,
                time_ms=self.now_ms,
                qty=None if w.qty is None else canonical_qty(w.qty),
                filled_qty=canonical_qty(w.filled),
                fill=fill,
                reason=reason,
                related_order_id=related,
                stop_price=stop_price,
            )
        )

    def _flush(self) -> list[OrderEvent]:
        out, self._out = self._out, []
        return out

    def _get(self, order_id: str) -> Working:
        w = self._orders.get(order_id)
        if w is None:
            raise OrderNotFound(f"no order {order_id}", orderId=order_id)
        return w

    # --- hooks of the layers above (each layer implements its own) -----------------------

    @abstractmethod
    def _run_action(self, action: int, w: Working, time_ms: int) -> None:
        """A scheduled action of ``w`` fell due (activation, expiry, an auction)."""

    @abstractmethod
    def _activate(self, w: Working) -> None:
        """``w`` starts working: into the market queue or its book."""

    @abstractmethod
    def _finish(self, w: Working) -> None:
        """Take ``w`` out of whatever it is in; it is done."""

    @abstractmethod
    def _end(self, w: Working, kind: EventKind, reason: Reason, related: str | None = None) -> None:
        """Cancel or expire ``w`` and deal with its legs."""

    @abstractmethod
    def _entry_ended(self, w: Working) -> None:
        """An entry is done: its held legs work for what filled, or are canceled."""
