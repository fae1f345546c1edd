"""The order state machine, exhaustively from its table: every (status, event) pair is
either the documented transition or refused with a clear error."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from server.trading.errors import InvalidTransition
from server.trading.states import (
    DONE,
    OPEN,
    RESUME,
    TRANSITIONS,
    EventKind,
    OrderStatus,
    next_status,
    resume_status,
)

S = OrderStatus
E = EventKind
PAIRS = [(s, e) for s in OrderStatus for e in EventKind]
ACKS = (S.PENDING_NEW, S.ACCEPTED, S.HELD, S.NEW)


@pytest.mark.parametrize(("status", "event"), PAIRS, ids=[f"{s}-{e}" for s, e in PAIRS])
def test_every_pair(status: OrderStatus, event: EventKind) -> None:
    target = TRANSITIONS.get((status, event))
    if target is None:
        with pytest.raises(InvalidTransition) as info:
            next_status(status, event)
        err = info.value
        assert err.code == "INVALID_ORDER_TRANSITION"
        assert err.extensions["status"] == status and err.extensions["event"] == event
        assert str(status) in err.message and str(event) in err.message
        return
    for ack in ACKS:
        for filled in (False, True):
            got = next_status(status, event, acknowledged=ack, filled=filled)
            expected = resume_status(ack, filled) if target is RESUME else target
            assert got is expected


def test_the_table_is_what_the_docstring_says() -> None:
    # Nothing leaves rejected; filled only absorbs late acks and late answers.
    assert not [e for (s, e) in TRANSITIONS if s is S.REJECTED]
    for (status, event), target in TRANSITIONS.items():
        if status in DONE:
            assert target is status, (status, event)
        if event is E.TRIGGERED:
            assert target is status  # informational
    # A completing fill after a confirmed cancel, expiry or replace is a contradiction.
    for done in (S.CANCELED, S.EXPIRED, S.REPLACED, S.FILLED, S.REJECTED):
        assert (done, E.FILL) not in TRANSITIONS
    # A held leg cannot trade before it is activated.
    assert (S.HELD, E.FILL) not in TRANSITIONS and (S.HELD, E.PARTIAL_FILL) not in TRANSITIONS
    # Accepted orders are not replaceable (as on Alpaca); one replace at a time.
    assert (S.ACCEPTED, E.REPLACE_REQUESTED) not in TRANSITIONS
    assert (S.PENDING_REPLACE, E.REPLACE_REQUESTED) not in TRANSITIONS
    assert (S.PENDING_CANCEL, E.REPLACE_REQUESTED) not in TRANSITIONS
    # Done orders cannot be canceled or replaced.
    for done in DONE:
        assert (done, E.CANCEL_REQUESTED) not in TRANSITIONS
        assert (done, E.REPLACE_REQUESTED) not in TRANSITIONS


@pytest.mark.parametrize(
    ("path", "final"),
    [
        # The fill wins the race with the cancel request; the rejection changes nothing.
        ([E.NEW, E.CANCEL_REQUESTED, E.FILL, E.CANCEL_REJECTED], S.FILLED),
        # A partial fill during a pending cancel keeps it pending, then the cancel lands.
        ([E.NEW, E.CANCEL_REQUESTED, E.PARTIAL_FILL, E.CANCELED], S.CANCELED),
        # A rejected cancel after a partial fill resumes as partially filled.
        ([E.NEW, E.CANCEL_REQUESTED, E.PARTIAL_FILL, E.CANCEL_REJECTED], S.PARTIALLY_FILLED),
        # A partial fill racing a replace, then the replace lands.
        ([E.NEW, E.REPLACE_REQUESTED, E.PARTIAL_FILL, E.REPLACED], S.REPLACED),
        # The fill beats the replace; the replace's rejection arrives after.
        ([E.NEW, E.REPLACE_REQUESTED, E.FILL, E.REPLACE_REJECTED], S.FILLED),
        # A rejected replace resumes as new.
        ([E.NEW, E.REPLACE_REQUESTED, E.REPLACE_REJECTED], S.NEW),
        # A cancel overtakes a pending replace.
        ([E.NEW, E.REPLACE_REQUESTED, E.CANCEL_REQUESTED, E.CANCELED], S.CANCELED),
        # The stream's fill arrives before the submit response.
        ([E.FILL, E.NEW], S.FILLED),
        ([E.PARTIAL_FILL, E.NEW, E.FILL], S.FILLED),
        # Canceled before the broker acknowledged; the late ack changes nothing.
        ([E.CANCEL_REQUESTED, E.NEW, E.CANCEL_REJECTED], S.NEW),
        ([E.CANCEL_REQUESTED, E.CANCELED, E.NEW], S.CANCELED),
        # A late partial fill after the cancel confirmation is booked, status stays.
        ([E.NEW, E.PARTIAL_FILL, E.CANCELED, E.PARTIAL_FILL], S.CANCELED),
        # Held leg: activated, canceled by its sibling.
        ([E.HELD, E.NEW, E.CANCELED], S.CANCELED),
        # Accepted for the open, then working, then expired at the close.
        ([E.ACCEPTED, E.NEW, E.PARTIAL_FILL, E.EXPIRED], S.EXPIRED),
        # Done for the day, works again the next session.
        ([E.NEW, E.PARTIAL_FILL, E.DONE_FOR_DAY, E.NEW, E.FILL], S.FILLED),
        ([E.NEW, E.DONE_FOR_DAY, E.NEW], S.NEW),
    ],
)
def test_real_world_paths(path: list[EventKind], final: OrderStatus) -> None:
    status, ack, filled = S.PENDING_NEW, S.PENDING_NEW, False
    for event in path:
        status = next_status(status, event, acknowledged=ack, filled=filled)
        if event is E.NEW:
            ack = S.NEW
        filled = filled or event in (E.FILL, E.PARTIAL_FILL)
    assert status is final


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ([E.NEW, E.FILL], E.PARTIAL_FILL),  # nothing fills after filled
        ([E.NEW, E.FILL], E.CANCEL_REQUESTED),  # a filled order cannot be canceled
        ([E.REJECTED], E.NEW),  # nothing leaves rejected
        ([E.NEW, E.CANCELED], E.FILL),  # a completing fill contradicts the cancel
        ([E.HELD], E.FILL),
        ([E.NEW, E.REPLACE_REQUESTED], E.REPLACE_REQUESTED),
        ([E.NEW], E.CANCEL_REJECTED),  # an answer to a request nobody made
        ([E.NEW, E.PARTIAL_FILL], E.REJECTED),
        ([E.ACCEPTED], E.REPLACE_REQUESTED),
    ],
)
def test_impossible_paths_are_refused(path: list[EventKind], bad: EventKind) -> None:
    status = S.PENDING_NEW
    for event in path:
        status = next_status(status, event)
    with pytest.raises(InvalidTransition):
        next_status(status, bad)


def _reachable(start: OrderStatus) -> set[OrderStatus]:
    seen, queue = {start}, deque([start])
    while queue:
        status = queue.popleft()
        for (s, _), target in TRANSITIONS.items():
            if s is not status:
                continue
            nexts = (*ACKS, S.PARTIALLY_FILLED) if target is RESUME else (target,)
            for n in nexts:
                if n not in seen:
                    seen.add(n)
                    queue.append(n)
    return seen


def test_every_status_is_reachable_and_every_open_one_can_end() -> None:
    assert _reachable(S.PENDING_NEW) == set(OrderStatus)
    for status in OPEN:
        assert _reachable(status) & DONE, status


def test_resume_needs_an_acknowledgement_status() -> None:
    with pytest.raises(ValueError):
        resume_status(S.FILLED, False)


def render_table() -> str:
    """The transition table as docs/trading.md shows it."""
    events = list(EventKind)
    lines = [
        "| status \\ event | " + " | ".join(e.value for e in events) + " |",
        "|" + "---|" * (len(events) + 1),
    ]
    for status in OrderStatus:
        cells = []
        for event in events:
            target = TRANSITIONS.get((status, event))
            if target is None:
                cells.append("")
            elif target is RESUME:
                cells.append("*resume*")
            else:
                cells.append("=" if target is status else str(target))
        lines.append(f"| **{status}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_the_design_note_shows_this_table() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "trading.md").read_text()
    shown = doc.split("<!-- state-table -->\n")[1].split("\n<!-- /state-table -->")[0]
    assert shown == render_table()
