"""The order ledger's writer: broker events made durable by group commit, then published.

The broker's listener runs on the hot path (a tick that fills an order) and must not
wait for the database, so it folds the event into the book and hands the ledger entry
to ``OrderLedger.append`` (synchronous, never blocks). One task writes: it takes
everything queued (up to ``batch_max``) and commits it in one transaction
(``storage.orders.record_ledger``) with the orders' new state and the outbox rows the
broker has answered. Only then is each entry published on ``orders.<owner>`` with its
ledger ``seq``, so a subscriber never sees an update that a restart could lose.

``answered(outbox_id)`` queues the removal of an outbox row after the events of the
broker's answer (the paper broker answers inside ``submit``; its events are queued
first), so the removal commits with them or after them, never before. ``committed``
waits until a row is gone: ``placeOrder`` answers with what the broker said, durably.

While the database is unreachable the task retries with backoff and keeps everything
queued; ``close`` writes everything queued before the database goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from server.delivery.bus import Bus
from server.delivery.firings import LagStats
from server.storage.order_rows import LedgerEntry, StoredEntry
from server.storage.orders import record_ledger
from streams.backoff import Backoff

log = logging.getLogger(__name__)

DEFAULT_BATCH_MAX = 1000
#: Updates kept per user for a subscriber resuming from a cursor without a database read.
RECENT_PER_USER = 2048


def orders_topic(owner: str) -> str:
    return f"orders.{owner}"


def account_topic(owner: str) -> str:
    return f"account.{owner}"


@dataclass(frozen=True, slots=True)
class AccountChanged:
    """Published on ``account.<owner>`` after a commit that booked fills."""

    owner: str
    seq: int


class OrderLedger:
    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        backoff: Backoff | None = None,
        *,
        batch_max: int = DEFAULT_BATCH_MAX,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._pool = pool
        self._bus = bus
        self._backoff = backoff or Backoff(0.05, 2.0)
        self._batch_max = batch_max
        self._clock_ns = clock_ns
        # Entries and answered outbox ids, in the order they happened.
        self._queue: deque[tuple[LedgerEntry | int, int]] = deque()
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.recent: dict[str, deque[StoredEntry]] = {}
        self.lag = LagStats()
        self.written = 0
        self.duplicates = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def append(self, entry: LedgerEntry) -> None:
        """Queue an entry for the next group commit; never blocks, never raises."""
        self._queue.append((entry, self._clock_ns()))
        self._wake.set()

    def answered(self, outbox_id: int) -> None:
        """The broker has answered this outbox row: delete it with the next commit."""
        self._queue.append((outbox_id, 0))
        self._wake.set()

    async def committed(self, outbox_id: int, timeout_s: float) -> bool:
        """Wait until the row's removal (and every event queued before it) is committed."""
        loop = asyncio.get_running_loop()
        future = self._waiters.setdefault(outbox_id, loop.create_future())
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(future)
            return True
        except TimeoutError:
            return False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="order-ledger")

    async def close(self, stall_timeout_s: float = 30.0) -> None:
        """Write everything queued, then stop (gives up after ``stall_timeout_s`` without
        progress; what was not written is lost with the paper engine's memory of it,
        and the restart rebuilds both from the ledger as it is)."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        task = self._task
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(stall_timeout_s):
                await asyncio.shield(task)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.error("order ledger stopped with %d entries unwritten", len(self._queue))
        self._task = None

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue and not self._closing:
                    await self._wake.wait()
                self._wake.clear()
                n = min(len(self._queue), self._batch_max)
                batch = [self._queue.popleft() for _ in range(n)]
                if batch and not await self._write(batch):
                    await asyncio.sleep(self._backoff.next_delay())
                    continue
                if self._closing and not self._queue:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("order ledger stopped; order events from now on are not written")

    async def _write(self, batch: list[tuple[LedgerEntry | int, int]]) -> bool:
        entries = [e for e, _ in batch if isinstance(e, LedgerEntry)]
        answered = [e for e, _ in batch if isinstance(e, int)]
        try:
            stored = await record_ledger(self._pool, entries, answered)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError) as exc:
            self.failures += 1
            # Back to the front, in order: nothing is lost, nothing reordered.
            self._queue.extendleft(reversed(batch))
            log.warning("could not record %d order events (%s); retrying", len(entries), exc)
            return False
        done_ns = self._clock_ns()
        self._backoff.reset()
        for e, submitted_ns in batch:
            if isinstance(e, LedgerEntry):
                self.lag.record((done_ns - submitted_ns) // 1000)
        self.written += len(stored)
        self.duplicates += len(entries) - len(stored)
        fills: dict[str, int] = {}
        publish = self._bus.publish
        for item in stored:
            owner = item.entry.owner
            recent = self.recent.get(owner)
            if recent is None:
                recent = self.recent[owner] = deque(maxlen=RECENT_PER_USER)
            recent.append(item)
            publish(orders_topic(owner), item)
            if item.entry.event.fill is not None:
                fills[owner] = item.seq
        for owner, seq in fills.items():
            publish(account_topic(owner), AccountChanged(owner, seq))
        for outbox_id in answered:
            future = self._waiters.pop(outbox_id, None)
            if future is not None and not future.done():
                future.set_result(None)
        return True
