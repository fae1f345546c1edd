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

from server.storage.orders import LedgerEntry, OrderRecord
from server.trading.account import Account
from server.trading.errors import InvalidTransition
from server.trading.events import OrderEvent
from server.trading.model import LegRole
from server.trading.risk import OpenOrder
from server.trading.states import DONE, EventKind

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UserBook:
    owner: str
    account: Account
    #: Open orders of this user by id.
    open: dict[str, OrderRecord] = field(default_factory=dict)

    def reservations(self) -> list[OpenOrder]:
        return [o for _, o in self.reservations_by_id()]

    def reservations_by_id(self) -> list[tuple[str, OpenOrder]]:
        """What the user's open entry orders still commit (exit legs close a position
        their entry opens: they reserve nothing)."""
        out: list[tuple[str, OpenOrder]] = []
        for record in self.open.values():
            state = record.state
            spec = state.order.spec
            if state.order.role is not LegRole.ENTRY:
                continue
            price = record.meta.estimate_price
            if spec.notional is not None and state.qty is None:
                spent = state.filled_value
                left = max(spec.notional - spent, Decimal(0))
                out.append(
                    (
                        state.order.id,
                        OpenOrder(spec.symbol, spec.side, price, remaining_notional=left),
                    )
                )
                continue
            remaining = state.remaining_qty
            if remaining is not None and remaining > 0:
                out.append(
                    (
                        state.order.id,
                        OpenOrder(spec.symbol, spec.side, price, remaining_qty=remaining),
                    )
                )
        return out


class OrderBook:
    def __init__(self, starting_cash: Decimal) -> None:
        self.starting_cash = starting_cash
        self.users: dict[str, UserBook] = {}
        #: Every open order by id (what broker events are matched against).
        self.open: dict[str, OrderRecord] = {}
        self.refused = 0

    def user(self, owner: str, starting_cash: Decimal | None = None) -> UserBook:
        book = self.users.get(owner)
        if book is None:
            cash = self.starting_cash if starting_cash is None else starting_cash
            book = self.users[owner] = UserBook(owner, Account.open(cash))
        return book

    def add(self, record: OrderRecord) -> None:
        """Track a new (or restored) open order."""
        self.open[record.order.id] = record
        self.user(record.meta.owner).open[record.order.id] = record

    def discard(self, order_id: str) -> None:
        """Forget an order whose insert did not commit."""
        record = self.open.pop(order_id, None)
        if record is not None:
            self.users[record.meta.owner].open.pop(order_id, None)

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
        book = self.users[record.meta.owner]
        if event.fill is not None:
            try:
                book.account.apply(event.fill)
            except ValueError:  # booked already: the order state would have refused it
                log.exception("fill %s booked twice", event.fill.id)
        replaced_by = None
        if event.kind is EventKind.REPLACED and event.related_order_id is not None:
            replaced_by = event.related_order_id
            record.meta = replace(record.meta, replaced_by=replaced_by)
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
