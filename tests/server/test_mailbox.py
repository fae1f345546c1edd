"""Mailboxes bound memory whatever the reader does, and say what they dropped."""

from __future__ import annotations

import pytest

from server.mailbox import ConflatingMailbox, DroppingQueue


def test_conflation_keeps_newest_per_key_in_first_come_order() -> None:
    wakes: list[int] = []
    box: ConflatingMailbox[str, int] = ConflatingMailbox(lambda: wakes.append(1))
    for i in range(10_000):
        box.put("AMZN", i)
        box.put("GOOG", -i)
    assert len(box) == 2 and wakes == [1]
    assert box.drain() == [9_999, -9_999]
    assert box.conflated == 2 * 9_999
    assert box.drain() == [] and len(box) == 0
    box.put("GOOG", 1)
    assert wakes == [1, 1]


def test_put_if_absent_never_overwrites_a_newer_value() -> None:
    box: ConflatingMailbox[str, str] = ConflatingMailbox()
    box.put("AMZN", "live")
    box.put_if_absent("AMZN", "snapshot")
    box.put_if_absent("GOOG", "snapshot")
    assert box.drain() == ["live", "snapshot"]


def test_dropping_queue_drops_oldest_and_reports_drops_once() -> None:
    wakes: list[int] = []
    q: DroppingQueue[int] = DroppingQueue(3, lambda: wakes.append(1))
    for i in range(10):
        q.put(i)
    assert q.drain() == ([7, 8, 9], 7)
    assert q.drain() == ([], 0)
    q.put(10)
    assert q.drain() == ([10], 0)
    assert q.dropped == 7 and wakes == [1, 1]


def test_dropping_queue_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        DroppingQueue(0)
