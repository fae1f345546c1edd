"""One order's state folded from its events: the state table plus quantity checks."""

from __future__ import annotations

from decimal import Decimal

import pytest

from server.trading.errors import InvalidTransition
from server.trading.lifecycle import OrderState, fold_order
from server.trading.states import EventKind, OrderStatus
from tests.server.trading.helpers import event, fill, limit_order

E = EventKind
S = OrderStatus


def test_fold_of_a_normal_life() -> None:
    order = limit_order()
    f1, f2 = fill("o1", 1, "4", "100"), fill("o1", 2, "6", "99.50", commission="0.10")
    state = fold_order(
        order,
        [
            event(1, E.NEW, "o1", S.NEW),
            event(2, E.PARTIAL_FILL, "o1", S.PARTIALLY_FILLED, "4", the_fill=f1),
            event(3, E.FILL, "o1", S.FILLED, "10", the_fill=f2),
        ],
    )
    assert state.status is S.FILLED and state.filled_qty == 10 and state.remaining_qty == 0
    assert state.avg_fill_price == Decimal("99.70")
    assert state.commission == Decimal("0.10") and state.last_seq == 3


def test_the_table_decides_the_status_unless_strict() -> None:
    # The service asked to cancel; the broker filled part before the request arrived.
    partial = event(
        3, E.PARTIAL_FILL, "o1", S.PARTIALLY_FILLED, "4", the_fill=fill("o1", 1, "4", "100")
    )
    states = []
    for _ in range(2):
        state = OrderState.of(limit_order())
        state.apply(event(1, E.NEW, "o1", S.NEW))
        state.apply(event(2, E.CANCEL_REQUESTED, "o1", S.PENDING_CANCEL))
        states.append(state)
    with pytest.raises(InvalidTransition, match="the event says partially_filled"):
        states[0].apply(partial, strict=True)
    states[1].apply(partial)
    assert states[1].status is S.PENDING_CANCEL and states[1].filled_qty == 4


def test_a_rejected_cancel_resumes_where_the_order_was() -> None:
    state = OrderState.of(limit_order())
    state.apply(event(1, E.NEW, "o1", S.NEW))
    state.apply(
        event(2, E.PARTIAL_FILL, "o1", S.PARTIALLY_FILLED, "4", the_fill=fill("o1", 1, "4", "100"))
    )
    state.apply(event(3, E.CANCEL_REQUESTED, "o1", S.PENDING_CANCEL, "4"))
    state.apply(event(4, E.CANCEL_REJECTED, "o1", S.PARTIALLY_FILLED, "4"))
    assert state.status is S.PARTIALLY_FILLED
    # Before any ack: back to pending_new; an ack that came during the request counts.
    state = OrderState.of(limit_order())
    state.apply(event(1, E.CANCEL_REQUESTED, "o1", S.PENDING_CANCEL))
    state.apply(event(2, E.NEW, "o1", S.PENDING_CANCEL))
    state.apply(event(3, E.CANCEL_REJECTED, "o1", S.NEW))
    assert state.status is S.NEW


def test_notional_orders_learn_their_quantity_when_done() -> None:
    order = limit_order(qty=None, notional="250")
    state = OrderState.of(order)
    state.apply(event(1, E.NEW, "o1", S.NEW))
    state.apply(
        event(
            2, E.PARTIAL_FILL, "o1", S.PARTIALLY_FILLED, "1.5", the_fill=fill("o1", 1, "1.5", "100")
        )
    )
    state.apply(
        event(3, E.FILL, "o1", S.FILLED, "2.5", qty="2.5", the_fill=fill("o1", 2, "1", "100"))
    )
    assert state.qty == Decimal("2.5") and state.status is S.FILLED


@pytest.mark.parametrize(
    ("events", "message"),
    [
        # A fill that overfills.
        (
            [event(1, E.FILL, "o1", S.FILLED, "11", the_fill=fill("o1", 1, "11", "100"))],
            "overfills",
        ),
        # FILL that does not complete, PARTIAL_FILL that does.
        ([event(1, E.FILL, "o1", S.FILLED, "4", the_fill=fill("o1", 1, "4", "100"))], "leaves"),
        (
            [
                event(
                    1,
                    E.PARTIAL_FILL,
                    "o1",
                    S.PARTIALLY_FILLED,
                    "10",
                    the_fill=fill("o1", 1, "10", "100"),
                )
            ],
            "leaves",
        ),
        # The same fill twice.
        (
            [
                event(
                    1,
                    E.PARTIAL_FILL,
                    "o1",
                    S.PARTIALLY_FILLED,
                    "4",
                    the_fill=fill("o1", 1, "4", "100"),
                ),
                event(
                    2,
                    E.PARTIAL_FILL,
                    "o1",
                    S.PARTIALLY_FILLED,
                    "8",
                    the_fill=fill("o1", 1, "4", "100"),
                ),
            ],
            "already applied",
        ),
        # A fill event without a fill, or with another order's fill.
        ([event(1, E.FILL, "o1", S.FILLED, "10")], "positive fill"),
        (
            [event(1, E.FILL, "o1", S.FILLED, "10", the_fill=fill("o2", 1, "10", "100"))],
            "positive fill",
        ),
        # Cumulative quantity that does not add up.
        (
            [
                event(
                    1,
                    E.PARTIAL_FILL,
                    "o1",
                    S.PARTIALLY_FILLED,
                    "5",
                    the_fill=fill("o1", 1, "4", "100"),
                )
            ],
            "add to",
        ),
        # Rejected after a fill (the table alone allows pending_cancel -> rejected).
        (
            [
                event(
                    1,
                    E.PARTIAL_FILL,
                    "o1",
                    S.PARTIALLY_FILLED,
                    "4",
                    the_fill=fill("o1", 1, "4", "100"),
                ),
                event(2, E.CANCEL_REQUESTED, "o1", S.PENDING_CANCEL, "4"),
                event(3, E.REJECTED, "o1", S.REJECTED, "4"),
            ],
            "cannot be rejected",
        ),
        # The event's status disagrees with the table.
        ([event(1, E.NEW, "o1", S.ACCEPTED)], "state machine says"),
        # An event of another order.
        ([event(1, E.NEW, "o2", S.NEW)], "applied to order"),
        # A quantity below what filled.
        (
            [
                event(
                    1,
                    E.PARTIAL_FILL,
                    "o1",
                    S.PARTIALLY_FILLED,
                    "4",
                    the_fill=fill("o1", 1, "4", "100"),
                ),
                event(2, E.NEW, "o1", S.PARTIALLY_FILLED, "4", qty="3"),
            ],
            "below",
        ),
    ],
)
def test_inconsistent_events_are_refused_and_change_nothing(events: list, message: str) -> None:
    state = OrderState.of(limit_order())
    *good, bad = events
    for e in good:
        state.apply(e)
    before = (state.status, state.filled_qty, state.filled_value, set(state.fill_ids), state.qty)
    with pytest.raises(InvalidTransition, match=message):
        state.apply(bad, strict=True)
    assert (state.status, state.filled_qty, state.filled_value, state.fill_ids, state.qty) == before
