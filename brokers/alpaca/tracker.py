"""What the adapter knows of each order, and Alpaca's reports turned into our events.

Pure and synchronous. Alpaca reports the same facts on several channels: the REST
answer to a request, the ``trade_updates`` stream, and the reads of a reconciliation
(an order's snapshot, the account's fill activities). Any of them may come twice, late,
or not at all. The tracker keeps its own ``OrderState`` per order (the same fold as the
service's book) and turns every report into the events that *change* it, so each fact
is emitted once whichever channel delivers it first:

- **Fills** are identified by the order's cumulative filled quantity after them (the
  stream's ``order.filled_qty``, the activity's ``cum_qty``), which every channel
  reports alike; the fill id is ``<order id>-<cum qty>``, so the ledger's unique fill
  id also refuses a fill a restarted process reports again. A stream fill that does
  not continue from what is known (fills were missed) is not booked: ``gap`` asks for
  the fill activities, which give every execution in order.
- **Statuses** are the events the state table admits; one that changes nothing (an
  acknowledgement seen twice, an answer to a request that was overtaken) is dropped.
- Snapshots never create fills (an average price is not an execution).
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal

from brokers.alpaca.wire import Activity, Snapshot, TradeUpdate
from server.trading.errors import InvalidTransition
from server.trading.events import Fill, OrderEvent, Reason
from server.trading.lifecycle import OrderState
from server.trading.model import Order
from server.trading.money import canonical_price, canonical_qty
from server.trading.states import DONE, EventKind, OrderStatus

log = logging.getLogger(__name__)

E = EventKind
#: Stream events that are a status change of ours.
STREAM_KINDS = {
    "new": E.NEW,
    "accepted": E.ACCEPTED,
    "held": E.HELD,
    "canceled": E.CANCELED,
    "expired": E.EXPIRED,
    "done_for_day": E.DONE_FOR_DAY,
    "replaced": E.REPLACED,
    "rejected": E.REJECTED,
    "order_cancel_rejected": E.CANCEL_REJECTED,
    "order_replace_rejected": E.REPLACE_REJECTED,
}
#: A snapshot's status as the event that brings an order there (fills aside).
SNAPSHOT_KINDS = {
    "new": E.NEW,
    "partially_filled": E.NEW,
    "accepted": E.ACCEPTED,
    "held": E.HELD,
    "done_for_day": E.DONE_FOR_DAY,
    "canceled": E.CANCELED,
    "expired": E.EXPIRED,
    "replaced": E.REPLACED,
    "rejected": E.REJECTED,
    # Open statuses Alpaca has and we do not: the order is working.
    "accepted_for_bidding": E.NEW,
    "stopped": E.NEW,
    "suspended": E.NEW,
    "calculated": E.NEW,
}
WORKING = {"new", "partially_filled", "accepted", "held", "done_for_day", "calculated"}
_ACKS = {E.NEW, E.ACCEPTED, E.HELD}


@dataclass(slots=True)
class Tracked:
    state: OrderState
    alpaca_id: str | None = None
    #: Our id of the replacement while a replace is pending (for ``replaced``).
    replacement: str | None = None

    @property
    def order(self) -> Order:
        return self.state.order


@dataclass(slots=True)
class Tracker:
    #: Strictly increasing cursor of this adapter's events (seeded above any earlier
    #: run's by the caller).
    seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    orders: dict[str, Tracked] = field(default_factory=dict)
    by_alpaca_id: dict[str, str] = field(default_factory=dict)

    # --- what we know ---------------------------------------------------------------

    def track(self, order: Order, state: OrderState | None = None) -> Tracked:
        tracked = self.orders.get(order.id)
        if tracked is None:
            own = copy.deepcopy(state) if state is not None else OrderState.of(order)
            tracked = self.orders[order.id] = Tracked(own)
        return tracked

    def bind(self, our_id: str, alpaca_id: str) -> None:
        tracked = self.orders.get(our_id)
        if tracked is not None and tracked.alpaca_id is None:
            tracked.alpaca_id = alpaca_id
            self.by_alpaca_id[alpaca_id] = our_id

    def ours(self, snap: Snapshot) -> str | None:
        """Our id of an Alpaca order: by its id once bound, else by its client order id
        (which is ours for every order we submitted ourselves)."""
        found = self.by_alpaca_id.get(snap.id)
        if found is None and snap.client_order_id in self.orders:
            found = snap.client_order_id
            self.bind(found, snap.id)
        return found

    def open_ids(self) -> list[str]:
        return [i for i, t in self.orders.items() if t.state.status not in DONE]

    def forget_done(self) -> None:
        for order_id in [i for i, t in self.orders.items() if t.state.status in DONE]:
            tracked = self.orders.pop(order_id)
            if tracked.alpaca_id is not None:
                self.by_alpaca_id.pop(tracked.alpaca_id, None)

    # --- events -----------------------------------------------------------------------

    def _emit(
        self,
        tracked: Tracked,
        kind: EventKind,
        time_ms: int,
        *,
        qty: Decimal | None = None,
        fill: Fill | None = None,
        filled_qty: Decimal | None = None,
        reason: Reason | None = None,
        related: str | None = None,
    ) -> OrderEvent | None:
        state = tracked.state
        before = (state.status, state.acknowledged)
        event = OrderEvent(
            seq=next(self.seq),
            kind=kind,
            order_id=state.order.id,
            status=state.status,  # the table decides; set below
            time_ms=max(time_ms, state.updated_ms),
            qty=qty if qty is not None else state.qty,
            filled_qty=filled_qty if filled_qty is not None else state.filled_qty,
            fill=fill,
            reason=reason,
            related_order_id=related,
        )
        try:
            state.apply(event)
        except InvalidTransition as exc:
            log.debug("alpaca report dropped: %s", exc)
            return None
        if fill is None and (state.status, state.acknowledged) == before:
            return None  # a report of what is known already
        return replace(event, status=state.status)

    def status(
        self, tracked: Tracked, kind: EventKind, time_ms: int, snap: Snapshot | None = None
    ) -> list[OrderEvent]:
        qty = None
        related = None
        if snap is not None and kind in _ACKS and tracked.order.spec.notional is None:
            qty = snap.qty  # a replacement's and a leg's quantity is Alpaca's
        if kind is E.REPLACED:
            related = tracked.replacement
            if related is None and snap is not None and snap.replaced_by is not None:
                related = self.by_alpaca_id.get(snap.replaced_by)
        elif kind in _ACKS and tracked.order.replaces is not None:
            related = tracked.order.replaces
        reason = None
        if kind is E.CANCELED and tracked.state.status is OrderStatus.PENDING_CANCEL:
            reason = Reason.CANCEL_REQUESTED
        event = self._emit(tracked, kind, time_ms, qty=qty, reason=reason, related=related)
        return [] if event is None else [event]

    def fill(
        self,
        tracked: Tracked,
        cum: Decimal,
        qty: Decimal,
        price: Decimal,
        time_ms: int,
        *,
        final: bool,
    ) -> list[OrderEvent] | None:
        """One execution that brought the order to ``cum`` filled (``final``: Alpaca says
        it completed the order); None when it does not continue from what is known (a
        fill in between was missed)."""
        state = tracked.state
        if cum <= state.filled_qty:
            return []  # known already
        if cum - qty != state.filled_qty:
            return None
        order = state.order
        total = state.qty
        if total is None and final:
            total = cum  # a notional order's quantity is known when it is done
        fill = Fill(
            id=f"{order.id}-{cum.normalize():f}",
            order_id=order.id,
            symbol=order.symbol,
            side=order.side,
            qty=_exact(canonical_qty, qty),
            price=_exact(canonical_price, price),
            commission=Decimal(0),
            time_ms=max(time_ms, state.updated_ms),
        )
        kind = E.FILL if total is not None and cum == total else E.PARTIAL_FILL
        event = self._emit(tracked, kind, time_ms, qty=total, fill=fill, filled_qty=cum)
        return [] if event is None else [event]

    # --- the channels -------------------------------------------------------------------

    def on_update(self, update: TradeUpdate) -> tuple[list[OrderEvent], bool]:
        """One stream message: (events, whether fills were missed: read the activities)."""
        our_id = self.ours(update.order)
        if our_id is None:
            return [], True  # a leg not yet bound, or an order placed elsewhere
        tracked = self.orders[our_id]
        if update.event in ("fill", "partial_fill"):
            assert update.qty is not None and update.price is not None
            out = self.fill(
                tracked,
                update.order.filled_qty,
                update.qty,
                update.price,
                update.time_ms,
                final=update.event == "fill",
            )
            return (out, False) if out is not None else ([], True)
        kind = STREAM_KINDS.get(update.event)
        if kind is None:
            return [], False  # pending_new, pending_cancel, pending_replace, ...
        return self.status(tracked, kind, update.time_ms, update.order), False

    def on_activity(self, act: Activity) -> list[OrderEvent] | None:
        our_id = self.by_alpaca_id.get(act.order_id)
        if our_id is None:
            return []
        return self.fill(
            self.orders[our_id], act.cum_qty, act.qty, act.price, act.time_ms, final=act.final
        )

    def on_snapshot(self, snap: Snapshot, *, answers: bool = False) -> list[OrderEvent]:
        """The status an order snapshot shows, as events (its fills come from the
        activities). ``answers``: a request of ours pending at Alpaca's that the
        snapshot shows as over (the cancel or replace was refused while we were away)."""
        our_id = self.ours(snap)
        if our_id is None:
            return []
        tracked = self.orders[our_id]
        status = tracked.state.status
        if answers and snap.status in WORKING:
            if status is OrderStatus.PENDING_CANCEL:
                return self.status(tracked, E.CANCEL_REJECTED, snap.updated_ms, snap)
            if status is OrderStatus.PENDING_REPLACE:
                return self.status(tracked, E.REPLACE_REJECTED, snap.updated_ms, snap)
        kind = SNAPSHOT_KINDS.get(snap.status)
        if kind is None:
            return []
        if kind is E.NEW and status is OrderStatus.DONE_FOR_DAY and snap.status != "new":
            return []
        return self.status(tracked, kind, snap.updated_ms, snap)

    def rejected(
        self, order_ids: Iterable[str], reason: Reason | None, time_ms: int
    ) -> list[OrderEvent]:
        out = []
        for order_id in order_ids:
            tracked = self.orders.get(order_id)
            if tracked is not None:
                event = self._emit(tracked, E.REJECTED, time_ms, reason=reason)
                if event is not None:
                    out.append(event)
        return out


def _exact(canonical: Callable[[Decimal], Decimal], value: Decimal) -> Decimal:
    """The domain's canonical form of a value (``180.00``, ``10``) when it is the same
    number; Alpaca's own digits when canonicalising would round them."""
    shown = canonical(value)
    return shown if shown == value else value
