"""One WebSocket connection's pending messages: where backpressure stops.

Everything the server sends on a graphql-transport-ws connection goes through its
``Outbox``: protocol messages (``connection_ack``, ``pong``, ``error``, ``complete``)
and the ``next`` messages of every subscription. A subscription's data waits in
its ``Lane``:

* a conflating lane keeps only the newest payload per key (per symbol for quotes),
  so a reader that falls behind gets fresh data and never a backlog;
* a queued lane keeps every payload up to a bound; past it, it either drops the
  oldest (the next message it sends is re-rendered to say how many were lost) or
  ends the subscription (``on_overflow``), for streams where a silent loss is wrong.

Nothing here waits for the client. Putting data marks the outbox dirty with the
``Flusher``, which writes every dirty outbox once at the end of the event loop's
current turn: all the messages a burst of upstream events produced for one
connection leave in one ``write``. While the transport is paused (the client is not
reading and the kernel buffer is full) the outbox keeps its lanes, bounded as above,
and flushes again when the writer says it is writable.

Payloads are bytes already encoded by the subscription's group; a ``next`` message
is the lane's prefix (``{"id":...,"type":"next","payload":``), the payload and ``}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Protocol

import orjson

from server.observability.histogram import LatencyHistogram

log = logging.getLogger(__name__)

#: Protocol messages that may wait for a non-reading client before the handler stops
#: reading that client's messages (it then waits for the client to catch up).
CONTROL_BACKLOG = 32
#: Rounds of preparation in one flush (a preparer may hand work to others).
PREPARE_ROUNDS = 4
#: While the feed is behind, at most this share of the event loop's time goes to
#: preparing conflated data.
PREPARE_SHARE = 0.2


class FrameWriter(Protocol):
    """Writes whole graphql-transport-ws messages as WebSocket text frames."""

    def writable(self) -> bool:
        """True when a write now would not queue behind the kernel's buffer."""
        ...

    def write(self, messages: list[bytes]) -> None:
        """Send the messages, in order; never waits."""
        ...

    def when_writable(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, the next time the connection becomes writable or closes."""
        ...

    @property
    def closed(self) -> bool: ...


def _never() -> bool:
    return False


class Preparer(Protocol):
    """Something that puts data into lanes at the flush rather than as it arrives."""

    def prepare(self) -> None:
        """Put what is pending into the lanes (called once per flush it asked for)."""
        ...


class Flusher:
    """Writes dirty outboxes once per event-loop turn, and at most once per
    ``min_interval_s`` under load.

    Each write is a system call; a burst of upstream frames read in quick succession
    would otherwise cost one per frame per connection. When the previous flush was
    less than ``min_interval_s`` ago the next one waits until the interval is over
    (the whole burst then leaves in one write per connection); when the server is
    quiet, data leaves on the same loop turn it arrived.

    A flush first runs the preparers that asked for it (``prepare``): subscription
    groups of conflating streams execute only the newest item per key there, once,
    instead of every item as it arrives, and analytics computes the provisional
    indicator values only subscribers read. Then every dirty outbox is written, then
    the ``after_flush`` callbacks run.

    Preparing is the work subscribers' selections cost, and it must never make the feed
    fall behind: while the feed is behind (``behind()``, e.g. upstream data waiting
    unread in the kernel), flushes that prepare take at most ``prepare_share`` of the
    loop's time. After one that took ``t`` (preparing, then writing), the next
    preparation then waits ``t * (1 / prepare_share - 1)`` (data that needs no
    preparation is still written every ``min_interval_s``): conflating streams
    conflate longer, and the feed gets the rest. While the feed keeps up, preparation
    runs at the flusher's own pace, however much it costs: a loop with time to spare
    delivers as much as it can."""

    __slots__ = (
        "_dirty",
        "_handle",
        "_last",
        "_prepare_after",
        "_preparers",
        "_scheduled",
        "_waiting_for_budget",
        "after_flush",
        "behind",
        "latency",
        "messages",
        "min_interval_s",
        "oldest_stamp_ns",
        "prepare_share",
        "writes",
    )

    def __init__(self, min_interval_s: float = 0.001, prepare_share: float = PREPARE_SHARE) -> None:
        if not 0.0 < prepare_share <= 1.0:
            raise ValueError("prepare_share must be in (0, 1]")
        self._dirty: dict[Outbox, None] = {}
        self._preparers: dict[Preparer, None] = {}
        self._scheduled = False
        self._waiting_for_budget = False
        self._handle: asyncio.Handle | None = None
        self._last = 0.0
        self._prepare_after = 0.0
        self.min_interval_s = min_interval_s
        self.prepare_share = prepare_share
        self.after_flush: list[Callable[[], None]] = []
        #: Whether the feed is behind now (the runtime sets the feed's ``behind``).
        self.behind: Callable[[], bool] = _never
        # For /metrics, kept per flush and per write, never per event or per member.
        #: Messages written, and the writes (one per connection per flush) they took.
        self.messages = 0
        self.writes = 0
        #: The oldest upstream receive time (``Received.received_ns``) among the market
        #: data put in lanes since the last flush (0: none); groups note it
        #: (``stamp``) once per item, not per member.
        self.oldest_stamp_ns = 0
        #: Feed stamp → socket write: one sample per flush that wrote market data, the
        #: age of its oldest item (the flush's worst case).
        self.latency = LatencyHistogram()

    def stamp(self, received_ns: int) -> None:
        """Market data received upstream at ``received_ns`` goes out with the next flush."""
        oldest = self.oldest_stamp_ns
        if not oldest or received_ns < oldest:
            self.oldest_stamp_ns = received_ns

    def mark(self, outbox: Outbox) -> None:
        self._dirty[outbox] = None
        if not self._scheduled or self._waiting_for_budget:
            self._schedule()

    def prepare(self, preparer: Preparer) -> None:
        """Call ``preparer.prepare()`` at the next flush, before anything is written."""
        self._preparers[preparer] = None
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        due = self._last + self.min_interval_s
        # Only preparation waiting: it keeps to its share of the loop.
        budget = not self._dirty and self._prepare_after > due
        if budget:
            due = self._prepare_after
        if self._scheduled:
            if not self._waiting_for_budget or budget:
                return
            assert self._handle is not None
            self._handle.cancel()  # data to write came in: no waiting for the budget
        self._scheduled = True
        self._waiting_for_budget = budget
        if loop.time() >= due:
            self._handle = loop.call_soon(self._flush)
        else:
            self._handle = loop.call_at(due, self._flush)

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        now = self._last = loop.time()
        # Running now: whatever is marked meanwhile belongs to this flush.
        self._waiting_for_budget = False
        prepared = bool(self._preparers) and now >= self._prepare_after
        if prepared:
            # A preparer may give others work (analytics' indicator values go to
            # subscription groups): they run in the same flush, a few rounds at most.
            for _round in range(PREPARE_ROUNDS):
                if not self._preparers:
                    break
                preparers, self._preparers = self._preparers, {}
                for preparer in preparers:
                    try:
                        preparer.prepare()
                    except Exception:
                        log.exception("preparing a flush failed")
        # Only now: what the preparers put in lanes belongs to this flush.
        self._scheduled = False
        self._handle = None
        dirty, self._dirty = self._dirty, {}
        written = writes = 0
        for outbox in dirty:
            try:
                n = outbox.flush()
            except Exception:
                # One connection's failure must not stall the others' data.
                log.exception("flushing a connection failed")
                outbox.close()
                continue
            if n:
                written += n
                writes += 1
        if written:
            self.messages += written
            self.writes += writes
            oldest = self.oldest_stamp_ns
            if oldest:
                self.latency.record_ns(time.time_ns() - oldest)
        # Data that found no writable connection waits in its lanes: its age is not
        # carried over (conflation and drops are counted for it instead).
        self.oldest_stamp_ns = 0
        for callback in self.after_flush:
            callback()
        if prepared:
            if self.behind():
                # Preparing and writing what it prepared: the flush's whole cost.
                spent = loop.time() - now
                self._prepare_after = now + spent * (1.0 / self.prepare_share - 1.0)
            else:
                self._prepare_after = 0.0
        if (self._preparers or self._dirty) and not self._scheduled:
            self._schedule()


class Lane:
    """The pending ``next`` payloads of one subscription on one connection."""

    __slots__ = (
        "_conflating",
        "_drops_pending",
        "_outbox",
        "_queue",
        "closed",
        "conflated",
        "dropped",
        "on_overflow",
        "operation_id",
        "prefix",
        "queued",
        "rerender",
    )

    def __init__(
        self,
        outbox: Outbox,
        operation_id: str,
        *,
        conflate: bool,
        queue_size: int,
        rerender: Callable[[Any, int], bytes] | None,
        on_overflow: Callable[[int], None] | None,
    ) -> None:
        self._outbox = outbox
        self.operation_id = operation_id
        self.prefix = b'{"id":' + orjson.dumps(operation_id) + b',"type":"next","payload":'
        self._conflating: dict[Hashable, bytes] | None = {} if conflate else None
        self._queue: deque[tuple[Any, bytes]] | None = (
            None if conflate else deque(maxlen=max(1, queue_size))
        )
        #: Re-encodes a queued item to say how many were dropped just before it.
        self.rerender = rerender
        #: Called (with the count) instead of dropping, for streams that must not lose data.
        self.on_overflow = on_overflow
        self._drops_pending = 0
        self.queued = False  # waiting in the outbox's order
        self.closed = False
        #: Over the lane's life: payloads replaced before sending, and dropped.
        self.conflated = 0
        self.dropped = 0

    def put(self, key: Hashable, payload: bytes, item: Any = None) -> None:
        if self.closed:
            return
        if self._conflating is not None:
            box = self._conflating
            if key in box:
                self.conflated += 1
            box[key] = payload
        else:
            assert self._queue is not None
            queue = self._queue
            if len(queue) == queue.maxlen:
                if self.on_overflow is not None:
                    self.closed = True
                    self.on_overflow(len(queue) + 1)
                    return
                self.dropped += 1
                self._drops_pending += 1
            queue.append((item, payload))
        if not self.queued:
            self.queued = True
            self._outbox._enqueue(self)

    def drain_into(self, out: list[bytes]) -> None:
        self.queued = False
        prefix = self.prefix
        if self._conflating is not None:
            payloads = list(self._conflating.values())
            self._conflating.clear()
            out.extend(prefix + p + b"}" for p in payloads)
            return
        assert self._queue is not None
        queue = self._queue
        if self._drops_pending and queue and self.rerender is not None:
            item, _ = queue.popleft()
            out.append(prefix + self.rerender(item, self._drops_pending) + b"}")
        self._drops_pending = 0
        out.extend(prefix + p + b"}" for _, p in queue)
        queue.clear()

    def close(self) -> None:
        """Stop: whatever is pending is discarded (the subscriber has gone)."""
        self.closed = True
        self._outbox._forget(self)
        if self._conflating is not None:
            self._conflating.clear()
        elif self._queue is not None:
            self._queue.clear()

    def __len__(self) -> int:
        if self._conflating is not None:
            return len(self._conflating)
        return len(self._queue) if self._queue is not None else 0


class Outbox:
    """Pending messages of one connection, in the order they became pending."""

    __slots__ = ("_closed", "_drained", "_flusher", "_lanes", "_order", "_waiting", "writer")

    def __init__(self, writer: FrameWriter, flusher: Flusher) -> None:
        self.writer = writer
        self._flusher = flusher
        # Control messages (bytes) and lanes with data, oldest first; a lane is in it once.
        self._order: deque[bytes | Lane] = deque()
        self._waiting = False  # registered with the writer for writability
        self._drained: asyncio.Event | None = None
        self._lanes: dict[str, Lane] = {}
        self._closed = False

    def lane(
        self,
        operation_id: str,
        *,
        conflate: bool,
        queue_size: int = 0,
        rerender: Callable[[Any, int], bytes] | None = None,
        on_overflow: Callable[[int], None] | None = None,
    ) -> Lane:
        lane = self._lanes[operation_id] = Lane(
            self,
            operation_id,
            conflate=conflate,
            queue_size=queue_size,
            rerender=rerender,
            on_overflow=on_overflow,
        )
        return lane

    def drop(self, operation_id: str) -> None:
        """Discard an operation's pending data and accept no more (it was completed)."""
        lane = self._lanes.get(operation_id)
        if lane is not None:
            lane.close()

    def _forget(self, lane: Lane) -> None:
        if self._lanes.get(lane.operation_id) is lane:
            del self._lanes[lane.operation_id]

    def send(self, message: bytes) -> None:
        """Queue a whole protocol message (never conflated or dropped), unless the outbox
        is closed: then nothing more leaves, whoever asks."""
        if self._closed:
            return
        self._order.append(message)
        self._flusher.mark(self)

    async def send_and_wait(self, message: bytes) -> None:
        """``send``, then wait while too many protocol messages wait for this client.

        The handler reads the client's next message only after this returns, so a
        client that sends pings without reading the pongs stops being read instead
        of growing our memory."""
        self.send(message)
        while self.backlog() > CONTROL_BACKLOG and not self.writer.closed:
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            await self._drained.wait()

    def backlog(self) -> int:
        return sum(1 for entry in self._order if isinstance(entry, bytes))

    def _enqueue(self, lane: Lane) -> None:
        if self._closed:
            return
        self._order.append(lane)
        self._flusher.mark(self)

    def flush(self) -> int:
        """Write what is pending, if the connection can take it; how many messages."""
        writer = self.writer
        if not self._order:
            return 0
        if not writer.writable():
            if writer.closed:
                self._order.clear()
                self._wake()
                return 0
            if not self._waiting:
                self._waiting = True
                writer.when_writable(self._on_writable)
            return 0
        messages: list[bytes] = []
        order = self._order
        while order:
            entry = order.popleft()
            if isinstance(entry, bytes):
                messages.append(entry)
            elif not entry.closed:
                entry.drain_into(messages)
        if messages:
            writer.write(messages)
        self._wake()
        return len(messages)

    def _on_writable(self) -> None:
        self._waiting = False
        if self._order:
            self._flusher.mark(self)
        else:
            self._wake()

    def _wake(self) -> None:
        if self._drained is not None:
            self._drained.set()

    def close(self) -> None:
        """Discard everything pending and send nothing more (the connection is ending,
        or its credential was revoked: not one more message may leave)."""
        self._closed = True
        for lane in list(self._lanes.values()):
            lane.close()
        self._order.clear()
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed
