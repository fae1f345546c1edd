"""The adapter's pure parts: reports turned into events once, and the rate arithmetic."""

from __future__ import annotations

from decimal import Decimal

from brokers.alpaca.pacing import Pacing, retry_after
from brokers.alpaca.tracker import Tracker
from brokers.alpaca.wire import order_body, snapshot, time_ms, trade_update
from server.trading.model import OrderType
from server.trading.states import EventKind, OrderStatus
from tests.brokers.alpaca.adapter_support import order


def _order_doc(coid: str, status: str, filled: str = "0", qty: str = "10") -> dict[str, object]:
    return {
        "id": "a-" + coid,
        "client_order_id": coid,
        "status": status,
        "type": "limit",
        "qty": qty,
        "filled_qty": filled,
        "updated_at": "2024-03-01T15:00:00.123456789Z",
    }


def _update(event: str, coid: str, status: str, filled: str, **extra: str) -> dict[str, object]:
    return {
        "event": event,
        "order": _order_doc(coid, status, filled),
        "timestamp": "2024-03-01T15:00:01.5Z",
        **extra,
    }


def test_the_same_fact_from_two_channels_is_one_event() -> None:
    o = order("10", type=OrderType.LIMIT, limit="190")
    tracker = Tracker()
    tracker.track(o)
    first = tracker.on_snapshot(snapshot(_order_doc(o.id, "new")))
    again, _ = tracker.on_update(trade_update(_update("new", o.id, "new", "0")))
    assert [e.kind for e in first] == [EventKind.NEW] and again == []
    fill = trade_update(
        _update("partial_fill", o.id, "partially_filled", "4", price="189.5", qty="4")
    )
    events, missed = tracker.on_update(fill)
    assert not missed and events[0].fill is not None
    assert events[0].fill.id == f"{o.id}-4" and events[0].fill.price == Decimal("189.50")
    assert tracker.on_update(fill) == ([], False)  # delivered twice: booked once


def test_a_fill_that_skips_one_asks_for_the_activities() -> None:
    o = order("10", type=OrderType.LIMIT, limit="190")
    tracker = Tracker()
    tracker.track(o)
    tracker.on_snapshot(snapshot(_order_doc(o.id, "new")))
    late = trade_update(_update("fill", o.id, "filled", "10", price="190", qty="6"))
    events, missed = tracker.on_update(late)
    assert events == [] and missed
    assert tracker.orders[o.id].state.status is OrderStatus.NEW


def test_requests_carry_decimal_strings_and_our_id() -> None:
    o = order("3", type=OrderType.LIMIT, limit="0.1234")
    body = order_body([o])
    assert body["qty"] == "3" and body["limit_price"] == "0.1234"
    assert body["client_order_id"] == o.id


def test_alpaca_times_keep_their_milliseconds() -> None:
    assert time_ms("2024-03-01T15:00:00.123456789Z") == 1709305200123
    assert time_ms("2024-03-01T10:00:00-05:00") == 1709305200000


def test_pacing_keeps_a_sliding_window_and_pauses_after_a_429() -> None:
    pacing = Pacing(limit=2, window_s=10)
    assert pacing.delay(0) == 0 and pacing.delay(1) == 0
    assert pacing.delay(2) == 8  # the first slot frees at 10
    assert pacing.delay(10) == 0
    pacing.pause(10, 5)
    assert pacing.delay(12) == 3


def test_retry_after_prefers_the_header_then_the_reset_then_a_default() -> None:
    assert retry_after({"Retry-After": "7"}, 1000.0) == 7
    assert retry_after({"X-Ratelimit-Reset": "1004"}, 1000.0) == 4
    assert retry_after({"Retry-After": "nan"}, 1000.0) == 1.0
    assert retry_after({}, 1000.0, default_s=2) == 2
