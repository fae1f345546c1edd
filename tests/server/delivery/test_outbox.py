"""The outbox of one connection: ordered, batched, bounded, and never waiting for the
client (except ``send_and_wait``, which is how the handler stops reading a client that
does not read)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from server.delivery.outbox import CONTROL_BACKLOG, Flusher, Outbox
from tests.support.timing import TIMEOUT


class FakeWriter:
    """A ``FrameWriter`` that records each ``write`` (one list of messages per call)."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.paused = False
        self._closed = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def writable(self) -> bool:
        return not self.paused and not self._closed

    def write(self, messages: list[bytes]) -> None:
        assert not self._closed, "wrote to a closed connection"
        assert not self.paused, "wrote while the transport is paused"
        self.batches.append(list(messages))

    def when_writable(self, callback: Callable[[], None]) -> None:
        if self.writable() or self._closed:
            callback()
        else:
            self._callbacks.append(callback)

    @property
    def waiting(self) -> int:
        return len(self._callbacks)

    def _fire(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._fire()

    def close(self) -> None:
        self._closed = True
        self._fire()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every message written so far, parsed."""
        return [json.loads(m) for batch in self.batches for m in batch]

    @property
    def last(self) -> list[dict[str, Any]]:
        """The messages of the last write, parsed."""
        return [json.loads(m) for m in self.batches[-1]]


#: Long enough for the flusher to run: at the end of the loop turn when idle, or once
#: its pacing interval (a millisecond) is over when it flushed just before.
FLUSH_WAIT = 0.02


async def flushed() -> None:
    """Let the flusher write what is pending."""
    await asyncio.sleep(FLUSH_WAIT)


async def turn() -> None:
    """One turn of the event loop."""
    await asyncio.sleep(0)


def payload(**data: Any) -> bytes:
    return orjson.dumps({"data": data})


def control(kind: str, **extra: Any) -> bytes:
    return orjson.dumps({"type": kind, **extra})


def summary(messages: list[dict[str, Any]]) -> list[Any]:
    """A message as (id, data) for ``next``, and its type for protocol messages."""
    return [(m["id"], m["payload"]["data"]) if m["type"] == "next" else m["type"] for m in messages]


@pytest.fixture
def writer() -> FakeWriter:
    return FakeWriter()


@pytest.fixture
def outbox(writer: FakeWriter) -> Outbox:
    return Outbox(writer, Flusher())


async def test_next_frame_is_exactly_id_type_payload(writer: FakeWriter, outbox: Outbox) -> None:
    op = 'op "1" \\ é'  # quotes, a backslash, non-ASCII: the id must be JSON-escaped
    body = b'{"data":{"quotes":{"symbol":"AMZN","bidPrice":223.5,"indicators":[1,2]}}}'
    outbox.lane(op, conflate=True).put("AMZN", body)
    await flushed()
    assert len(writer.batches) == 1 and len(writer.batches[0]) == 1
    frame = writer.batches[0][0]
    parsed = json.loads(frame)
    assert parsed == {"id": op, "type": "next", "payload": json.loads(body)}
    assert list(parsed) == ["id", "type", "payload"]
    # The group's encoded bytes are sent as they are, not re-encoded.
    assert frame == b'{"id":' + orjson.dumps(op) + b',"type":"next","payload":' + body + b"}"


async def test_conflation_keeps_newest_per_key_in_first_come_key_order(
    writer: FakeWriter, outbox: Outbox
) -> None:
    lane = outbox.lane("q", conflate=True)
    for n in range(1000):
        lane.put("GOOG", payload(sym="GOOG", n=n))
        lane.put("AMZN", payload(sym="AMZN", n=n))
    lane.put("AAPL", payload(sym="AAPL", n=0))
    lane.put("GOOG", payload(sym="GOOG", n=1000))
    assert len(lane) == 3
    await flushed()
    assert summary(writer.messages) == [
        ("q", {"sym": "GOOG", "n": 1000}),
        ("q", {"sym": "AMZN", "n": 999}),
        ("q", {"sym": "AAPL", "n": 0}),
    ]
    assert lane.conflated == 2 * 999 + 1 and lane.dropped == 0
    assert len(lane) == 0
    # Once sent, a key starts afresh (and in its new place).
    lane.put("AMZN", payload(sym="AMZN", n=1000))
    lane.put("GOOG", payload(sym="GOOG", n=1001))
    await flushed()
    assert summary(writer.last) == [
        ("q", {"sym": "AMZN", "n": 1000}),
        ("q", {"sym": "GOOG", "n": 1001}),
    ]


async def test_queued_lane_drops_oldest_and_says_so_in_the_next_message(
    writer: FakeWriter, outbox: Outbox
) -> None:
    rerendered: list[tuple[Any, int]] = []

    def rerender(item: Any, dropped: int) -> bytes:
        rerendered.append((item, dropped))
        return payload(n=item, droppedBefore=dropped)

    lane = outbox.lane("t", conflate=False, queue_size=3, rerender=rerender)
    for n in range(8):
        lane.put(None, payload(n=n, droppedBefore=0), n)
    assert len(lane) == 3 and lane.dropped == 5
    await flushed()
    # 0..4 were dropped; 5 says so, 6 and 7 go as they were encoded.
    assert summary(writer.messages) == [
        ("t", {"n": 5, "droppedBefore": 5}),
        ("t", {"n": 6, "droppedBefore": 0}),
        ("t", {"n": 7, "droppedBefore": 0}),
    ]
    assert rerendered == [(5, 5)]
    # The loss was reported once: what follows is not re-rendered.
    lane.put(None, payload(n=8, droppedBefore=0), 8)
    await flushed()
    assert summary(writer.last) == [("t", {"n": 8, "droppedBefore": 0})]
    assert rerendered == [(5, 5)] and lane.dropped == 5


async def test_queued_lane_within_its_bound_loses_nothing(
    writer: FakeWriter, outbox: Outbox
) -> None:
    lane = outbox.lane(
        "t", conflate=False, queue_size=100, rerender=lambda item, n: payload(bad=True)
    )
    for n in range(100):
        lane.put(None, payload(n=n), n)
    await flushed()
    assert summary(writer.messages) == [("t", {"n": n}) for n in range(100)]
    assert lane.dropped == 0


async def test_overflow_callback_ends_the_lane_instead_of_dropping(
    writer: FakeWriter, outbox: Outbox
) -> None:
    overflows: list[int] = []
    lane = outbox.lane("alerts", conflate=False, queue_size=3, on_overflow=overflows.append)
    other = outbox.lane("q", conflate=True)
    for n in range(3):
        lane.put(None, payload(n=n), n)
    assert overflows == []
    lane.put(None, payload(n=3), 3)
    assert overflows == [4]  # the queued three and the one that did not fit
    assert lane.closed
    # It accepts nothing more, and says so only once.
    for n in range(4, 10):
        lane.put(None, payload(n=n), n)
    assert overflows == [4] and lane.dropped == 0
    other.put("AMZN", payload(sym="AMZN"))
    await flushed()
    sent = summary(writer.messages)
    # Nothing is delivered past the overflow: a silent gap is what this lane exists to avoid.
    assert not any(m[0] == "alerts" and m[1]["n"] >= 3 for m in sent if isinstance(m, tuple))
    assert ("q", {"sym": "AMZN"}) in sent


async def test_protocol_messages_and_lanes_keep_their_relative_order(
    writer: FakeWriter, outbox: Outbox
) -> None:
    a = outbox.lane("a", conflate=True)
    b = outbox.lane("b", conflate=False, queue_size=10)
    outbox.send(control("connection_ack"))
    a.put("AMZN", payload(lane="a", n=1))
    outbox.send(control("pong"))
    b.put(None, payload(lane="b", n=1), 1)
    outbox.send(control("complete", id="x"))
    # A lane already waiting keeps its place: newer data joins it there.
    a.put("AMZN", payload(lane="a", n=2))
    b.put(None, payload(lane="b", n=2), 2)
    await flushed()
    assert summary(writer.messages) == [
        "connection_ack",
        ("a", {"lane": "a", "n": 2}),
        "pong",
        ("b", {"lane": "b", "n": 1}),
        ("b", {"lane": "b", "n": 2}),
        "complete",
    ]
    # After a flush, a lane's next data goes after what became pending before it.
    outbox.send(control("ping"))
    a.put("AMZN", payload(lane="a", n=3))
    await flushed()
    assert summary(writer.last) == [
        "ping",
        ("a", {"lane": "a", "n": 3}),
    ]


async def test_everything_pending_leaves_in_one_write_per_flush(writer: FakeWriter) -> None:
    flusher = Flusher()
    outbox = Outbox(writer, flusher)
    other_writer = FakeWriter()
    other = Outbox(other_writer, flusher)
    quotes = outbox.lane("q", conflate=True)
    trades = outbox.lane("t", conflate=False, queue_size=1000)
    theirs = other.lane("q", conflate=True)
    for n in range(500):
        quotes.put(f"S{n % 7}", payload(n=n))
        trades.put(None, payload(n=n), n)
        theirs.put("AMZN", payload(n=n))
        if n % 100 == 0:
            outbox.send(control("pong"))
    assert writer.batches == [] and other_writer.batches == []  # nothing is written at once
    await turn()  # a quiet flusher writes at the end of the loop turn
    assert len(writer.batches) == 1, [len(b) for b in writer.batches]
    assert len(writer.batches[0]) == 7 + 500 + 5
    assert len(other_writer.batches) == 1 and len(other_writer.batches[0]) == 1
    # An idle outbox is not written again.
    await flushed()
    await flushed()
    assert len(writer.batches) == 1 and len(other_writer.batches) == 1
    # Later data is the next write.
    quotes.put("S0", payload(n=500))
    await flushed()
    assert len(writer.batches) == 2 and len(other_writer.batches) == 1


async def test_flushes_in_quick_succession_are_paced(writer: FakeWriter) -> None:
    interval = 0.2
    flusher = Flusher(min_interval_s=interval)
    outbox = Outbox(writer, flusher)
    lane = outbox.lane("q", conflate=False, queue_size=1000)
    loop = asyncio.get_running_loop()
    lane.put(None, payload(n=0), 0)
    await turn()
    assert len(writer.batches) == 1  # quiet: it leaves on the loop turn it arrived
    first = loop.time()
    # A burst right after: it waits for the interval, then leaves in one write.
    for n in range(1, 50):
        lane.put(None, payload(n=n), n)
        await turn()
    assert len(writer.batches) == 1
    async with asyncio.timeout(TIMEOUT):
        while len(writer.batches) < 2:  # noqa: ASYNC110 - polling the fake writer
            await asyncio.sleep(0.01)
    assert loop.time() - first >= interval * 0.9
    assert [len(b) for b in writer.batches] == [1, 49]
    assert [m["payload"]["data"]["n"] for m in writer.messages] == list(range(50))


async def test_paused_writer_gets_nothing_then_the_conflated_rest_when_writable(
    writer: FakeWriter, outbox: Outbox
) -> None:
    quotes = outbox.lane("q", conflate=True)
    trades = outbox.lane("t", conflate=False, queue_size=3, rerender=lambda i, n: payload(n=i, d=n))
    writer.pause()
    outbox.send(control("pong"))
    for n in range(50):
        quotes.put("AMZN", payload(sym="AMZN", n=n))
        quotes.put("GOOG", payload(sym="GOOG", n=n))
        await turn()  # many loop turns while paused: still nothing written
        trades.put(None, payload(n=n, d=0), n)
    assert writer.batches == []
    assert writer.waiting == 1  # it asked once to be told, not once per flush
    assert len(quotes) == 2 and len(trades) == 3 and outbox.backlog() == 1
    writer.resume()
    await flushed()
    assert len(writer.batches) == 1
    assert summary(writer.messages) == [
        "pong",
        ("q", {"sym": "AMZN", "n": 49}),
        ("q", {"sym": "GOOG", "n": 49}),
        ("t", {"n": 47, "d": 47}),
        ("t", {"n": 48, "d": 0}),
        ("t", {"n": 49, "d": 0}),
    ]
    assert outbox.backlog() == 0 and len(quotes) == 0 and len(trades) == 0
    # Writable again: back to one write per turn.
    quotes.put("AMZN", payload(sym="AMZN", n=50))
    await flushed()
    assert len(writer.batches) == 2


async def test_closed_writer_discards_everything(writer: FakeWriter, outbox: Outbox) -> None:
    quotes = outbox.lane("q", conflate=True)
    writer.pause()
    outbox.send(control("pong"))
    quotes.put("AMZN", payload(n=1))
    await flushed()
    writer.close()  # the client went away while we waited for it
    await flushed()
    assert writer.batches == [] and outbox.backlog() == 0
    outbox.send(control("pong"))
    quotes.put("AMZN", payload(n=2))
    await flushed()
    assert writer.batches == [] and outbox.backlog() == 0


async def test_drop_discards_a_completed_operations_pending_data(
    writer: FakeWriter, outbox: Outbox
) -> None:
    done = outbox.lane("1", conflate=True)
    kept = outbox.lane("2", conflate=False, queue_size=10)
    done.put("AMZN", payload(op=1, n=1))
    kept.put(None, payload(op=2, n=1), 1)
    outbox.drop("1")
    done.put("AMZN", payload(op=1, n=2))  # too late: the operation was completed
    kept.put(None, payload(op=2, n=2), 2)
    outbox.drop("never-existed")  # harmless
    await flushed()
    assert summary(writer.messages) == [("2", {"op": 2, "n": 1}), ("2", {"op": 2, "n": 2})]
    assert len(done) == 0
    # The id may be used again by a new operation.
    again = outbox.lane("1", conflate=True)
    again.put("AMZN", payload(op=1, n=3))
    done.close()  # the old operation's clean-up runs late: the new lane is not affected
    await flushed()
    assert summary(writer.last) == [("1", {"op": 1, "n": 3})]


async def test_send_and_wait_stops_the_reader_behind_a_non_reading_client(
    writer: FakeWriter, outbox: Outbox
) -> None:
    writer.pause()
    for n in range(CONTROL_BACKLOG):
        async with asyncio.timeout(TIMEOUT):
            await outbox.send_and_wait(control("pong", n=n))
    assert outbox.backlog() == CONTROL_BACKLOG
    # One more than the backlog allows: the handler stops here (it reads no more).
    blocked = asyncio.create_task(outbox.send_and_wait(control("pong", n=CONTROL_BACKLOG)))
    for _ in range(10):
        await flushed()
    assert not blocked.done()
    assert writer.batches == []
    writer.resume()
    async with asyncio.timeout(TIMEOUT):
        await blocked
    assert [m["n"] for m in writer.messages] == list(range(CONTROL_BACKLOG + 1))
    assert outbox.backlog() == 0
    # Flushing regularly: never blocks.
    async with asyncio.timeout(TIMEOUT):
        await outbox.send_and_wait(control("pong", n=-1))


async def test_send_and_wait_is_released_when_the_connection_closes(
    writer: FakeWriter, outbox: Outbox
) -> None:
    writer.pause()
    for n in range(CONTROL_BACKLOG):
        await outbox.send_and_wait(control("pong", n=n))
    blocked = asyncio.create_task(outbox.send_and_wait(control("pong", n=CONTROL_BACKLOG)))
    await flushed()
    assert not blocked.done()
    writer.close()
    async with asyncio.timeout(TIMEOUT):
        await blocked
    assert writer.batches == [] and outbox.backlog() == 0


async def test_close_discards_lanes_and_releases_waiters(
    writer: FakeWriter, outbox: Outbox
) -> None:
    writer.pause()
    quotes = outbox.lane("q", conflate=True)
    quotes.put("AMZN", payload(n=1))
    for n in range(CONTROL_BACKLOG):
        await outbox.send_and_wait(control("pong", n=n))
    blocked = asyncio.create_task(outbox.send_and_wait(control("pong", n=CONTROL_BACKLOG)))
    await flushed()
    assert not blocked.done()
    outbox.close()  # the handler shuts down
    async with asyncio.timeout(TIMEOUT):
        await blocked
    assert quotes.closed and len(quotes) == 0 and outbox.backlog() == 0
    quotes.put("AMZN", payload(n=2))
    writer.resume()
    await flushed()
    assert writer.batches == []


# --- preparation: conflated work done at the flush, within its share of the loop ----------


class Preparer:
    """Puts what it was given into a lane at the flush (as a group does), recording when;
    ``busy_s``: how long its preparation takes (busy, as executing would be)."""

    def __init__(self, lane: Any, log: list[str], name: str, busy_s: float = 0.0) -> None:
        self.lane, self.log, self.name, self.busy_s = lane, log, name, busy_s
        self.pending: dict[str, int] = {}
        self.then: Preparer | None = None

    def give(self, flusher: Flusher, key: str, n: int) -> None:
        if not self.pending:
            flusher.prepare(self)
        self.pending[key] = n

    def prepare(self) -> None:
        self.log.append(f"prepare {self.name}")
        end = time.perf_counter() + self.busy_s
        while time.perf_counter() < end:
            pass
        pending, self.pending = self.pending, {}
        for key, n in pending.items():
            self.lane.put(key, payload(n=n))
            if self.then is not None:
                self.then.give(self.flusher, key, n)

    flusher: Flusher


async def test_preparers_run_once_per_flush_before_anything_is_written(
    writer: FakeWriter,
) -> None:
    flusher = Flusher()
    outbox = Outbox(writer, flusher)
    log: list[str] = []
    group = Preparer(outbox.lane("q", conflate=True), log, "group")
    # A preparer that hands work on to another in the same flush (analytics -> groups).
    upstream = Preparer(outbox.lane("u", conflate=True), log, "analytics")
    upstream.then, upstream.flusher = group, flusher
    for n in range(100):
        upstream.give(flusher, f"S{n % 3}", n)
    await flushed()
    assert log == ["prepare analytics", "prepare group"]
    assert len(writer.batches) == 1
    # The newest per key (S0, S1, S2 in first-come order), of both, in one write.
    newest = [("S0", 99), ("S1", 97), ("S2", 98)]
    assert summary(writer.last) == [("u", {"n": n}) for _, n in newest] + [
        ("q", {"n": n}) for _, n in newest
    ]


async def test_preparation_keeps_to_its_share_of_the_loop_and_data_is_not_held_back(
    writer: FakeWriter,
) -> None:
    busy, share = 0.05, 0.2
    flusher = Flusher(prepare_share=share)
    flusher.behind = lambda: True  # the feed is not keeping up
    outbox = Outbox(writer, flusher)
    log: list[str] = []
    group = Preparer(outbox.lane("q", conflate=True), log, "group", busy_s=busy)
    trades = outbox.lane("t", conflate=False, queue_size=100)
    loop = asyncio.get_running_loop()
    group.give(flusher, "AMZN", 1)
    await turn()
    first_end = loop.time()
    assert log == ["prepare group"]
    # Right after an expensive preparation: more to prepare, and data that needs none.
    group.give(flusher, "AMZN", 2)
    trades.put(None, payload(n=1), 1)
    written = len(writer.batches)
    async with asyncio.timeout(TIMEOUT):
        while len(writer.batches) == written:  # noqa: ASYNC110 - polling the fake writer
            await asyncio.sleep(0.001)
    # The trade left at the flusher's usual pace, without the preparation...
    assert log == ["prepare group"] and summary(writer.last) == [("t", {"n": 1})]
    async with asyncio.timeout(TIMEOUT):
        while len(log) < 2:  # noqa: ASYNC110 - polling the recorder
            await asyncio.sleep(0.005)
    # ... which waited until the loop had had (1 / share - 1) times its cost to itself.
    assert loop.time() - first_end >= busy * (1 / share - 1) * 0.95
    await flushed()
    assert summary(writer.last) == [("q", {"n": 2})]


async def test_while_the_feed_keeps_up_preparation_runs_at_the_flushers_pace(
    writer: FakeWriter,
) -> None:
    flusher = Flusher(prepare_share=0.2)  # the feed is never behind here
    outbox = Outbox(writer, flusher)
    log: list[str] = []
    group = Preparer(outbox.lane("q", conflate=True), log, "group", busy_s=0.05)
    trades = outbox.lane("t", conflate=False, queue_size=100)
    group.give(flusher, "AMZN", 1)
    await turn()
    # Right after an expensive preparation: the next one is not held back for the
    # budget; it leaves with the data that needs none, in the same write.
    group.give(flusher, "AMZN", 2)
    trades.put(None, payload(n=1), 1)
    written = len(writer.batches)
    async with asyncio.timeout(TIMEOUT):
        while len(writer.batches) == written:  # noqa: ASYNC110 - polling the fake writer
            await asyncio.sleep(0.001)
    assert log == ["prepare group", "prepare group"]
    assert summary(writer.last) == [("t", {"n": 1}), ("q", {"n": 2})]
