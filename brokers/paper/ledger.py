"""What the matching engine needs to know of one order after a restart, read from the
order's ledger (the ``OrderEvent`` values recorded for it, in order).

``OrderState`` (``fold_order``) gives the status, quantities and acknowledgement. The
engine also needs what only the sequence of events says: where the order stood in the
engine's time priority, when it was placed (its session and expiry follow), since when
it has been taking liquidity (market orders queue FIFO), whether its stop triggered,
and how many fill ids it has used. ``read_ledger`` reads all of it in one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.trading.errors import InvalidTransition
from server.trading.events import OrderEvent
from server.trading.lifecycle import OrderState, fold_order
from server.trading.model import Order
from server.trading.states import EventKind, OrderStatus, resume_status

E = EventKind
S = OrderStatus

#: Events the service records itself: their seq is not the broker's.
_REQUESTS = frozenset({E.CANCEL_REQUESTED, E.REPLACE_REQUESTED})
#: Statuses the engine never holds between calls: the service's view of a request the
#: engine has not answered, and ``done_for_day`` (the paper engine never emits it).
_RESUMED = frozenset({S.PENDING_CANCEL, S.PENDING_REPLACE, S.DONE_FOR_DAY})


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    state: OrderState
    #: The seq of the broker's first event for the order (for every order the engine
    #: acknowledged, its ``accepted``/``held``/``new``): the engine's submission order,
    #: which is time priority among equal prices. 0: no broker event.
    first_seq: int
    #: The broker's last seq for the order (0: none).
    last_seq: int
    #: The time of its first ``accepted``/``new``: when it was placed to work (a held
    #: leg: when its entry started it). None: never placed.
    placed_ms: int | None
    #: The seq of its last ``new`` or ``triggered``: when it last started to work as it
    #: works now (market orders and triggered stops take liquidity in that order).
    active_seq: int
    #: A ``triggered`` event is in its own ledger (a replacement inherits its
    #: predecessor's trigger: ``order.replaces``).
    triggered: bool
    #: The highest ``n`` of its fill ids ``<order id>-<n>``: the next fill is ``n + 1``.
    fill_count: int
    #: The time of its latest broker event (0: none).
    last_ms: int

    @property
    def order(self) -> Order:
        return self.state.order

    @property
    def acknowledged(self) -> bool:
        """The broker acknowledged it (or answered it: a rejection, a cancel)."""
        return self.first_seq > 0

    @property
    def engine_status(self) -> OrderStatus:
        """The status as the engine held it: a request the service recorded and the
        engine did not answer is not the engine's (it gets the request again)."""
        state = self.state
        if state.status in _RESUMED:
            return resume_status(state.acknowledged, state.filled_qty > 0)
        return state.status


def read_ledger(order: Order, events: Sequence[OrderEvent]) -> LedgerRecord:
    """Fold ``events`` (non-strict: the service's requests are in them) and read what
    the engine needs. ``ValueError`` if the events contradict the state machine."""
    try:
        state = fold_order(order, list(events))
    except InvalidTransition as err:
        raise ValueError(f"the ledger of order {order.id} is inconsistent: {err}") from err
    first_seq = last_seq = active_seq = last_ms = fill_count = 0
    placed_ms: int | None = None
    triggered = False
    prefix = f"{order.id}-"
    for event in events:
        kind = event.kind
        if kind in _REQUESTS:
            continue
        if not first_seq:
            first_seq = event.seq
        last_seq = event.seq
        last_ms = max(last_ms, event.time_ms)
        if (kind is E.ACCEPTED or kind is E.NEW) and placed_ms is None:
            placed_ms = event.time_ms
        if kind is E.NEW or kind is E.TRIGGERED:
            active_seq = event.seq
        if kind is E.TRIGGERED:
            triggered = True
        fill = event.fill
        if fill is not None:
            n = fill.id.removeprefix(prefix)
            fill_count = max(fill_count + 1, int(n) if n.isdigit() else 0)
    return LedgerRecord(
        state=state,
        first_seq=first_seq,
        last_seq=last_seq,
        placed_ms=placed_ms,
        active_seq=active_seq,
        triggered=triggered,
        fill_count=fill_count,
        last_ms=last_ms,
    )
