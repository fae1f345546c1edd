"""The order book of this process: every open order's state and every user's account.

Synchronous and in memory, so the broker's listener (called on the hot path for fills
caused by a tick) folds an event in microseconds, and pre-trade checks read a state
that already holds every fill the broker reported. The ledger is the durable copy:
``apply`` returns the ``LedgerEntry`` to write, and a restart rebuilds this book by
folding the ledger (``server.services.orders.restore``).

An event the state table refuses (a broker bug, a duplicate delivered twice) changes
nothing and is not written: it is logged and counted in ``refused``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from decimal import Decimal

from server.storage.order_rows import LedgerEntry, OrderRecord
from server.trading.account import Account
from server.trading.errors import InvalidTransition
from server.trading.events import OrderEvent
from server.trading.model import LegRole, Side
from server.trading.money import CTX, ZERO
from server.trading.risk import OpenOrder
from server.trading.states import DONE, EventKind

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Group:
    """The open entry orders of one symbol and side: what they still commit."""

    qty: Decimal = ZERO
    value: Decimal = ZERO


@dataclass(slots=True)
class UserBook:
    owner: str
    account: Account
    #: Open orders of this user by id.
    open: dict[str, OrderRecord] = field(default_factory=dict)
    #: What the open entry orders commit, per (symbol, side), kept as they change, so a
    #: pre-trade check costs the same with 10 or 10,000 orders resting.
    _groups: dict[tuple[str, Side], _Group] = field(default_factory=dict)
    #: Each order's part of its group: (qty, value).
    _parts: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)

    def track(self, record: OrderRecord) -> None:
        """An order was added or changed: update its part of its group's reservation."""
        state = record.state
        order = state.order
        qty = value = ZERO
        if order.role is LegRole.ENTRY and state.status not in DONE:
            price = record.meta.estimate_price
            spec = order.spec
            if spec.notional is not None and state.qty is None:
                left = max(spec.notional - state.filled_value, ZERO)
                qty, value = OpenOrder(spec.symbol, spec.side, price, None, left).qty, left
            else:
                remaining = state.remaining_qty
                if remaining is not None and remaining > 0:
                    qty, value = remaining, remaining * price
        self._set_part(order.id, (order.symbol, order.side), qty, value)

    def untrack(self, order_id: str, symbol: str, side: Side) -> None:
        """An order that was never placed: it commits nothing."""
        self._set_part(order_id, (symbol, side), ZERO, ZERO)

    def _set_part(self, order_id: str, key: tuple[str, Side], qty: Decimal, value: Decimal) -> None:
        old_qty, old_value = self._parts.pop(order_id, (ZERO, ZERO))
        if qty:
            self._parts[order_id] = (qty, value)
        if qty == old_qty and value == old_value:
            return
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
        group.qty += qty - old_qty
        group.value += value - old_value
        if group.qty <= 0:
            del self._groups[key]

    def reservations(self, exclude: str = "") -> list[OpenOrder]:
        """What the user's open entry orders still commit, one reservation per symbol and
        side at their average estimated price (exit legs close a position their entry
        opens: they reserve nothing). ``exclude``: leave that order out (a replace)."""
        left_out = self._parts.get(exclude)
        out = []
        for (symbol, side), group in self._groups.items():
            qty, value = group.qty, group.value
            if (
                left_out is not None
                and self.open[exclude].order.symbol == symbol
                and (self.open[exclude].order.side is side)
            ):
                qty, value = qty - left_out[0], value - left_out[1]
            if qty > 0:
                price = CTX.divide(value, qty)
                out.append(OpenOrder(symbol, side, price, remaining_qty=qty))
        return out


class OrderBook:
    def __init__(self, starting_cash: Decimal) -> None:
        self.starting_cash = starting_cash
        self.users: dict[str, UserBook] = {}
        #: Every open order by id (what broker events are matched against).
        self.open: dict[str, OrderRecord] = {}
        self.refused = 0
        #: Fills folded into accounts over this process's life (for /metrics).
        self.fills = 0
        #: Events folded, by (broker, kind, reason: "" when none), for /metrics. One
        #: increment per broker event (not per tick); every part comes from a closed
        #: set (broker names, ``EventKind``, ``Reason``), so its size is bounded.
        self.events: dict[tuple[str, str, str], int] = {}

    def user(self, owner: str, starting_cash: Decimal | None = None) -> UserBook:
        book = self.users.get(owner)
        if book is None:
            cash = self.starting_cash if starting_cash is None else starting_cash
            book = self.users[owner] = UserBook(owner, Account.open(cash))
        return book

    def add(self, record: OrderRecord) -> None:
        """Track a new (or restored) open order."""
        self.open[record.order.id] = record
        book = self.user(record.meta.owner)
        book.open[record.order.id] = record
        book.track(record)

    def discard(self, order_id: str) -> None:
        """Forget an order whose insert did not commit."""
        record = self.open.pop(order_id, None)
        if record is not None:
            book = self.users[record.meta.owner]
            book.open.pop(order_id, None)
            book.untrack(order_id, record.order.symbol, record.order.side)

    def get(self, order_id: str) -> OrderRecord | None:
        return self.open.get(order_id)

    def apply(self, event: OrderEvent) -> LedgerEntry | None:
        """Fold one event into its order and, for a fill, its owner's account."""
        record = self.open.get(event.order_id)
        if record is None:
            self.refused += 1
            log.error("broker event %s for order %s, which is not open", event.kind, event.order_id)
            return None
        state = record.state
        try:
            state.apply(event)
        except InvalidTransition as exc:
            self.refused += 1
            log.error("refused broker event %s: %s", event.kind, exc)
            return None
        key = (record.meta.broker, event.kind.value, event.reason.value if event.reason else "")
        self.events[key] = self.events.get(key, 0) + 1
        book = self.users[record.meta.owner]
        if event.fill is not None:
            self.fills += 1
            try:
                book.account.apply(event.fill)
            except ValueError:  # booked already: the order state would have refused it
                log.exception("fill %s booked twice", event.fill.id)
        replaced_by = None
        if event.kind is EventKind.REPLACED and event.related_order_id is not None:
            replaced_by = event.related_order_id
            record.meta = replace(record.meta, replaced_by=replaced_by)
        book.track(record)
        if state.status in DONE:
            del self.open[event.order_id]
            book.open.pop(event.order_id, None)
        return entry_of(record, event, replaced_by)


def entry_of(record: OrderRecord, event: OrderEvent, replaced_by: str | None = None) -> LedgerEntry:
    state = record.state
    return LedgerEntry(
        owner=record.meta.owner,
        event=event,
        status=state.status,
        qty=state.qty,
        filled_qty=state.filled_qty,
        filled_value=state.filled_value,
        commission=state.commission,
        updated_ms=state.updated_ms,
        replaced_by=replaced_by,
        order=state.order,
        meta=record.meta,
    )
