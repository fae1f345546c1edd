"""Order updates and fired alerts, from the leader that commits them to the subscribers
of every process, each exactly once.

Both are written to PostgreSQL first by the leader's one writer of each (the order
ledger, the alert delivery), which commits in order of ``order_events.seq`` and
``alert_events.id``. So the database is the stream, and those numbers are its cursor:

* the leader appends a notice to the Redis Stream ``EVENTS_KEY`` after each commit
  (``StreamWriter``, pipelined ``XADD ... MAXLEN ~``): "order events up to seq n",
  "alert events up to id m";
* every other process blocks on the stream (``XREAD``) and, woken, reads from
  PostgreSQL what was committed past its own cursor, in order, and publishes it on its
  in-process bus (``orders.<owner>``, ``alerts.<owner>``), where ``orderUpdates`` and
  ``alertEvents`` subscribers receive it as they would on the leader.

A notice lost (Redis restarted, the stream trimmed, a reader cut off) loses nothing:
the next notice, or the reader's poll every ``poll_s`` without one, reads everything
past the cursor; and nothing is published twice, because the cursor only moves
forward. This is why there are no consumer groups: every process needs every event,
and its progress is the cursor it holds, not a pending-entries list in Redis that would
outlive a crashed process whose subscribers have already reconnected elsewhere (they
resume from their own cursor, ``orderUpdates(after:)``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.delivery.bus import Bus, Handler
from server.delivery.firings import alert_topic
from server.services.orders.ledger import RECENT_PER_USER, orders_topic
from server.storage.alert_events import AlertEventRow, events_end, events_since
from server.storage.order_reads import ledger_end, ledger_since
from server.storage.order_rows import StoredEntry
from server.tasks import cancel_all
from streams.backoff import Backoff

log = logging.getLogger(__name__)

EVENTS_KEY = "{tickgraph}:events"
#: Notices kept in the stream (approximately): a reader further behind than this
#: reads the database anyway.
MAXLEN = 10_000
#: Rows read from the database at a time.
BATCH = 500


class StreamingBus:
    """The bus the ledger and the alert delivery publish on: to this process's
    subscribers as always, and a notice to the deployment while this process leads."""

    def __init__(self, bus: Bus, writer: StreamWriter) -> None:
        self._bus = bus
        self._writer = writer

    def publish(self, topic: str, message: Any) -> None:
        self._bus.publish(topic, message)
        self._writer.notice(message)

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._bus.subscribe(topic, handler)

    def unsubscribe(self, topic: str, handler: Handler) -> None:
        self._bus.unsubscribe(topic, handler)


class StreamWriter:
    """Appends "committed up to" notices to the stream; at most one ``XADD`` per kind per
    loop turn of its task, however many rows were committed."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self.enabled = False
        self._orders = 0
        self._alerts = 0
        self._sent = (0, 0)
        self._wake = asyncio.Event()
        self.notices = 0

    def notice(self, message: Any) -> None:
        if not self.enabled:
            return
        if isinstance(message, StoredEntry):
            self._orders = max(self._orders, message.seq)
        elif isinstance(message, AlertEventRow):
            self._alerts = max(self._alerts, message.id)
        else:
            return
        self._wake.set()

    async def run(self) -> None:
        backoff = Backoff(0.05, 2.0)
        while True:
            await self._wake.wait()
            self._wake.clear()
            latest = (self._orders, self._alerts)
            if latest == self._sent:
                continue
            try:
                await self._redis.xadd(
                    EVENTS_KEY,
                    {"o": latest[0], "a": latest[1]},
                    maxlen=MAXLEN,
                    approximate=True,
                )
            except (RedisError, OSError) as exc:
                # Readers poll the database meanwhile; the next notice covers this one.
                log.debug("could not append to the event stream: %s", exc)
                self._wake.set()
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            self._sent = latest
            self.notices += 1


class StreamReader:
    """A follower's side: publishes locally what the leader committed, in order, once.
    The order ledger's recent entries (``recent``) are kept as the leader keeps them,
    so ``orderUpdates(after:)`` resumes here as it does there."""

    def __init__(
        self,
        redis: Redis,
        pool: Any,
        bus: Bus,
        recent: dict[str, deque[StoredEntry]],
        *,
        poll_s: float = 1.0,
        block_ms: int = 1000,
    ) -> None:
        self._redis = redis
        self._pool = pool
        self._bus = bus
        self._recent = recent
        self._poll = poll_s
        self._block_ms = block_ms
        self.order_seq = 0
        self.alert_id = 0
        self.published = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """From what is committed now on: a subscriber that needs the past resumes
        from the database with its cursor."""
        self.order_seq = await ledger_end(self._pool)
        self.alert_id = await events_end(self._pool)
        self._task = asyncio.create_task(self._run(), name="event-stream-reader")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_all([task])

    async def _run(self) -> None:
        position = "$"
        backoff = Backoff(0.05, 2.0)
        while True:
            try:
                position = await self._wait(position)
                backoff.reset()
            except (RedisError, OSError) as exc:
                log.debug("event stream unavailable (%s); reading the database", exc)
                position = "$"
                await asyncio.sleep(min(backoff.next_delay(), self._poll))
            try:
                await self.catch_up()
            except Exception:
                # The database is down: the cursor has not moved, the next round retries.
                log.warning("could not read committed events; retrying", exc_info=True)
                await asyncio.sleep(self._poll)

    async def _wait(self, position: str) -> str:
        """Until a notice arrives or ``poll_s`` passes; the position to read from next."""
        block = min(self._block_ms, int(self._poll * 1000))
        answer: Any = await self._redis.xread({EVENTS_KEY: position}, count=100, block=block)
        for _stream, entries in answer or ():
            if entries:
                last = entries[-1][0]
                return last.decode() if isinstance(last, bytes) else str(last)
        return position

    async def catch_up(self) -> int:
        """Publish everything committed past the cursors, in order."""
        count = 0
        while entries := await ledger_since(self._pool, self.order_seq, BATCH):
            for entry in entries:
                self._publish_order(entry)
            count += len(entries)
            if len(entries) < BATCH:
                break
        while rows := await events_since(self._pool, self.alert_id, BATCH):
            for row in rows:
                self.alert_id = row.id
                self._bus.publish(alert_topic(row.owner), row)
            count += len(rows)
            if len(rows) < BATCH:
                break
        self.published += count
        return count

    def _publish_order(self, stored: StoredEntry) -> None:
        self.order_seq = stored.seq
        owner = stored.entry.owner
        recent = self._recent.get(owner)
        if recent is None:
            recent = self._recent[owner] = deque(maxlen=RECENT_PER_USER)
        recent.append(stored)
        self._bus.publish(orders_topic(owner), stored)
