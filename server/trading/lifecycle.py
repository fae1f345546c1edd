"""One order's state, folded from its events through the state machine.

The service keeps an ``OrderState`` per open order, applies every event it records
(``*_REQUESTED`` ones it makes itself, the rest from the broker), and can rebuild it at
start-up with ``fold_order`` over the ledger. ``apply`` checks more than the table:

- a fill's quantity is positive and never takes the order past its quantity;
  ``FILL`` completes it exactly and ``PARTIAL_FILL`` does not (for a notional order,
  whose quantity is unknown until done, ``FILL`` is simply the last one);
- fill ids are unique per order (a repeated report is refused, not double-booked);
- ``rejected`` never follows a fill;
- with ``strict``, the status the event carries is the one the table gives.

Not strict by default, because the service's view and the broker's differ in the
races: the service records ``cancel_requested`` when it asks, and a fill the broker
made before the request arrived says ``partially_filled`` while the service's table
says ``pending_cancel``. The table decides; the event's status is the broker's view.
A fold of one broker's events alone (its requests applied when they reach it) is
strict: the tests hold the paper engine to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from server.trading.errors import InvalidTransition
from server.trading.events import OrderEvent
from server.trading.model import Order
from server.trading.money import CTX, ZERO, canonical_price
from server.trading.states import EventKind, OrderStatus, next_status

_ACK_RANK: Final = {
    OrderStatus.PENDING_NEW: 0,
    OrderStatus.ACCEPTED: 1,
    OrderStatus.HELD: 1,
    OrderStatus.NEW: 2,
}
_ACK_OF: Final = {
    EventKind.ACCEPTED: OrderStatus.ACCEPTED,
    EventKind.HELD: OrderStatus.HELD,
    EventKind.NEW: OrderStatus.NEW,
}


@dataclass(slots=True)
class OrderState:
    order: Order
    status: OrderStatus = OrderStatus.PENDING_NEW
    qty: Decimal | None = None
    filled_qty: Decimal = ZERO
    #: Sum of qty * price over the fills (exact).
    filled_value: Decimal = ZERO
    commission: Decimal = ZERO
    #: The furthest acknowledgement seen (where a rejected cancel/replace returns to).
    acknowledged: OrderStatus = OrderStatus.PENDING_NEW
    updated_ms: int = 0
    last_seq: int = 0
    fill_ids: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, order: Order) -> OrderState:
        return cls(order=order, qty=order.spec.qty, updated_ms=order.created_ms)

    @property
    def remaining_qty(self) -> Decimal | None:
        return None if self.qty is None else self.qty - self.filled_qty

    @property
    def avg_fill_price(self) -> Decimal | None:
        if not self.filled_qty:
            return None
        return canonical_price(CTX.divide(self.filled_value, self.filled_qty))

    def apply(self, event: OrderEvent, *, strict: bool = False) -> None:
        """Apply one event, or raise ``InvalidTransition`` and change nothing."""
        if event.order_id != self.order.id:
            raise InvalidTransition(
                f"event for order {event.order_id} applied to order {self.order.id}",
                status=str(self.status),
                event=str(event.kind),
            )
        kind = event.kind
        new = next_status(
            self.status, kind, acknowledged=self.acknowledged, filled=self.filled_qty > 0
        )
        qty = event.qty if event.qty is not None else self.qty
        filled = self.filled_qty
        if kind in (EventKind.FILL, EventKind.PARTIAL_FILL):
            filled = self._check_fill(event, qty)
        elif kind is EventKind.REJECTED and filled > 0:
            self._refuse(event, "an order that has filled cannot be rejected")
        if qty is not None and filled > qty:
            self._refuse(event, f"quantity {qty} is below the {filled} already filled")
        if strict and event.status is not new:
            self._refuse(event, f"the event says {event.status}, the state machine says {new}")
        # All checks passed: commit.
        if event.fill is not None:
            self.fill_ids.add(event.fill.id)
            self.filled_value += CTX.multiply(event.fill.qty, event.fill.price)
            self.commission += event.fill.commission
        ack = _ACK_OF.get(kind)
        if ack is not None and _ACK_RANK[ack] > _ACK_RANK[self.acknowledged]:
            self.acknowledged = ack
        self.status = new
        self.qty = qty
        self.filled_qty = filled
        self.updated_ms = max(self.updated_ms, event.time_ms)
        self.last_seq = event.seq

    def _check_fill(self, event: OrderEvent, qty: Decimal | None) -> Decimal:
        fill = event.fill
        if fill is None or fill.order_id != self.order.id or fill.qty <= 0:
            self._refuse(event, "a fill event needs a positive fill of this order")
        assert fill is not None
        if fill.id in self.fill_ids:
            self._refuse(event, f"fill {fill.id} was already applied")
        filled = self.filled_qty + fill.qty
        if qty is not None:
            completes = filled == qty
            if filled > qty:
                self._refuse(event, f"fill of {fill.qty} overfills ({self.filled_qty}/{qty})")
            if completes != (event.kind is EventKind.FILL):
                self._refuse(event, f"{event.kind} of {fill.qty} leaves {qty - filled} open")
        if event.filled_qty != filled:
            self._refuse(event, f"event says {event.filled_qty} filled, fills add to {filled}")
        return filled

    def _refuse(self, event: OrderEvent, why: str) -> None:
        raise InvalidTransition(
            f"order {self.order.id}: {why}", status=str(self.status), event=str(event.kind)
        )


def fold_order(order: Order, events: list[OrderEvent], *, strict: bool = False) -> OrderState:
    """The state of ``order`` after ``events`` (in order), from ``pending_new``."""
    state = OrderState.of(order)
    for event in events:
        state.apply(event, strict=strict)
    return state
