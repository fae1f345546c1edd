"""The order state machine, as one explicit transition table.

Statuses are Alpaca's (``docs/trading.md`` has the table as a diagram):

=================  =====================================================================
pending_new        recorded by us, not yet acknowledged by the broker (the initial status)
accepted           acknowledged, held until its session opens (or its auction)
held               a bracket/OTO leg waiting for its entry to fill (Alpaca's ``held``)
new                working at the venue
partially_filled   working, some quantity filled
pending_cancel     a cancel was requested and is not yet confirmed
pending_replace    a replace was requested and is not yet confirmed
done_for_day       no more fills today; works again next session
filled             done: the whole quantity filled
canceled           done: canceled (by request, IOC/FOK remainder, OCO sibling)
expired            done: its time in force ran out
replaced           done: replaced by another order (``related_order_id``)
rejected           done: refused; nothing was ever filled
=================  =====================================================================

Events are what happened, reported by the broker or recorded by us (``*_REQUESTED``).
``FILL`` is a fill that completes the quantity; ``PARTIAL_FILL`` one that leaves some.

The races the table admits, and why:

- **A fill after a cancel/replace request** (``pending_cancel``/``pending_replace`` +
  fill): the venue executed before the request arrived. A complete fill wins (→
  ``filled``; the request's rejection then arrives in ``filled`` and changes nothing);
  a partial fill keeps the request pending.
- **Acknowledgements that arrive late** (``new``/``accepted``/``held`` after the order
  moved on, e.g. the submit response after the stream's fill): no change. Only in
  ``rejected`` are they a contradiction.
- **Answers to requests that were overtaken** (``cancel_rejected``/``replace_rejected``
  in a done status): no change.
- **Late partial fills** (after ``canceled``/``expired``/``replaced``/``done_for_day``):
  reports can be reordered; the shares were executed, so the fill is booked and the
  status stays. A *completing* fill after a confirmed cancel, expiry or replace
  contradicts that confirmation and is refused.
- **Fills before the acknowledgement** (``pending_new``/``accepted`` + fill): the submit
  response and the fill travel on different channels.

Everything else is refused with ``InvalidTransition``: nothing ever leaves
``rejected`` or ``filled``, a held leg cannot trade, a second replace cannot start
while one is pending, a done order cannot be canceled.

``RESUME`` (the answer to a rejected cancel/replace, and a ``done_for_day`` order's new
session) returns to the working status the order would have without the request:
``partially_filled`` if anything filled, else the last acknowledgement it had
(``new``, ``accepted``, ``held``, or ``pending_new`` if none came yet).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from server.trading.errors import InvalidTransition


class OrderStatus(StrEnum):
    PENDING_NEW = "pending_new"
    ACCEPTED = "accepted"
    HELD = "held"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    DONE_FOR_DAY = "done_for_day"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    REJECTED = "rejected"


class EventKind(StrEnum):
    ACCEPTED = "accepted"
    HELD = "held"
    NEW = "new"
    TRIGGERED = "triggered"  # a stop triggered (informational: the status stays)
    PARTIAL_FILL = "partial_fill"
    FILL = "fill"
    CANCEL_REQUESTED = "cancel_requested"
    CANCEL_REJECTED = "cancel_rejected"
    CANCELED = "canceled"
    REPLACE_REQUESTED = "replace_requested"
    REPLACE_REJECTED = "replace_rejected"
    REPLACED = "replaced"
    REJECTED = "rejected"
    EXPIRED = "expired"
    DONE_FOR_DAY = "done_for_day"


class _Resume:
    """The pseudo-target "back to the working status" (see the module docstring)."""

    def __repr__(self) -> str:
        return "RESUME"


RESUME: Final = _Resume()
Target = OrderStatus | _Resume

S = OrderStatus
E = EventKind

#: Statuses after which nothing changes except the late reports the table admits.
DONE: Final = frozenset({S.FILLED, S.CANCELED, S.EXPIRED, S.REPLACED, S.REJECTED})
#: Statuses in which the order may still trade or be activated.
OPEN: Final = frozenset(S) - DONE
#: The working statuses ``RESUME`` can return to.
ACKNOWLEDGED: Final = frozenset({S.PENDING_NEW, S.ACCEPTED, S.HELD, S.NEW})

_ACKS = (E.ACCEPTED, E.HELD, E.NEW)


Row = dict[EventKind, Target]


def _stay(status: OrderStatus, *events: EventKind) -> Row:
    """Events that leave ``status`` as it is."""
    return dict.fromkeys(events, status)


def _rows() -> dict[OrderStatus, Row]:
    late_answers = (E.CANCEL_REJECTED, E.REPLACE_REJECTED)
    working: Row = {
        E.PARTIAL_FILL: S.PARTIALLY_FILLED,
        E.FILL: S.FILLED,
        E.CANCEL_REQUESTED: S.PENDING_CANCEL,
        E.CANCELED: S.CANCELED,
        E.REPLACE_REQUESTED: S.PENDING_REPLACE,
        E.REPLACED: S.REPLACED,
        E.EXPIRED: S.EXPIRED,
        E.DONE_FOR_DAY: S.DONE_FOR_DAY,
    }
    rows: dict[OrderStatus, Row] = {
        # Anything the broker may answer first.
        S.PENDING_NEW: {
            E.ACCEPTED: S.ACCEPTED,
            E.HELD: S.HELD,
            E.NEW: S.NEW,
            E.PARTIAL_FILL: S.PARTIALLY_FILLED,
            E.FILL: S.FILLED,
            E.CANCEL_REQUESTED: S.PENDING_CANCEL,
            E.CANCELED: S.CANCELED,
            E.REJECTED: S.REJECTED,
            E.EXPIRED: S.EXPIRED,
        },
        # Held by the broker until its session; not replaceable (as on Alpaca).
        S.ACCEPTED: {
            E.NEW: S.NEW,
            E.PARTIAL_FILL: S.PARTIALLY_FILLED,
            E.FILL: S.FILLED,
            E.CANCEL_REQUESTED: S.PENDING_CANCEL,
            E.CANCELED: S.CANCELED,
            E.REJECTED: S.REJECTED,
            E.EXPIRED: S.EXPIRED,
            **_stay(S.ACCEPTED, E.ACCEPTED),
        },
        # A leg waiting for its entry; activation is NEW. It cannot trade before.
        S.HELD: {
            E.NEW: S.NEW,
            E.CANCEL_REQUESTED: S.PENDING_CANCEL,
            E.CANCELED: S.CANCELED,
            E.REPLACE_REQUESTED: S.PENDING_REPLACE,
            E.REPLACED: S.REPLACED,
            E.REJECTED: S.REJECTED,
            E.EXPIRED: S.EXPIRED,
            **_stay(S.HELD, E.HELD, E.ACCEPTED),
        },
        # Working. A venue may still reject a working order that has not traded.
        S.NEW: {**working, E.REJECTED: S.REJECTED, **_stay(S.NEW, E.TRIGGERED, *_ACKS)},
        S.PARTIALLY_FILLED: {**working, **_stay(S.PARTIALLY_FILLED, E.TRIGGERED, *_ACKS)},
        # Fills race the request.
        S.PENDING_CANCEL: {
            E.FILL: S.FILLED,
            E.CANCELED: S.CANCELED,
            E.CANCEL_REJECTED: RESUME,
            E.EXPIRED: S.EXPIRED,
            E.REJECTED: S.REJECTED,
            **_stay(S.PENDING_CANCEL, E.PARTIAL_FILL, E.TRIGGERED, *_ACKS),
        },
        # Fills race the request; a cancel may overtake it.
        S.PENDING_REPLACE: {
            E.FILL: S.FILLED,
            E.REPLACED: S.REPLACED,
            E.REPLACE_REJECTED: RESUME,
            E.CANCEL_REQUESTED: S.PENDING_CANCEL,
            E.CANCELED: S.CANCELED,
            E.EXPIRED: S.EXPIRED,
            **_stay(S.PENDING_REPLACE, E.PARTIAL_FILL, E.TRIGGERED, *_ACKS),
        },
        # Works again next session (NEW), or ends.
        S.DONE_FOR_DAY: {
            E.NEW: RESUME,
            E.FILL: S.FILLED,
            E.CANCEL_REQUESTED: S.PENDING_CANCEL,
            E.CANCELED: S.CANCELED,
            E.EXPIRED: S.EXPIRED,
            **_stay(S.DONE_FOR_DAY, E.PARTIAL_FILL, E.DONE_FOR_DAY, E.ACCEPTED),
        },
        # Done: late acknowledgements, late answers, late partial fills.
        S.FILLED: _stay(S.FILLED, *_ACKS, E.TRIGGERED, *late_answers),
        S.REJECTED: {},
    }
    for done in (S.CANCELED, S.EXPIRED, S.REPLACED):
        rows[done] = _stay(done, *_ACKS, E.TRIGGERED, E.PARTIAL_FILL, *late_answers)
    return rows


#: (status, event) → the next status, or ``RESUME``. Pairs not in it are refused.
TRANSITIONS: Final[dict[tuple[OrderStatus, EventKind], Target]] = {
    (status, event): target for status, row in _rows().items() for event, target in row.items()
}


def resume_status(acknowledged: OrderStatus, filled: bool) -> OrderStatus:
    """Where ``RESUME`` leads: ``partially_filled`` once anything filled, else the last
    acknowledgement (``new`` for a ``held`` leg that was activated, and so on)."""
    if acknowledged not in ACKNOWLEDGED:
        raise ValueError(f"{acknowledged} is not an acknowledgement status")
    return S.PARTIALLY_FILLED if filled else acknowledged


def next_status(
    status: OrderStatus,
    event: EventKind,
    *,
    acknowledged: OrderStatus = S.NEW,
    filled: bool = False,
) -> OrderStatus:
    """The status after ``event``; ``InvalidTransition`` if the table refuses it.

    ``acknowledged`` and ``filled`` resolve ``RESUME`` (``OrderState`` keeps them).
    """
    target = TRANSITIONS.get((status, event))
    if target is None:
        raise InvalidTransition(
            f"an order that is {status} cannot take '{event}'", status=str(status), event=str(event)
        )
    if isinstance(target, _Resume):
        return resume_status(acknowledged, filled)
    return target
