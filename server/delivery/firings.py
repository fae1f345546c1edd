"""Fired alerts: made durable in PostgreSQL by group commit, then published to their owner.

The alert engine runs on the hot path and must not wait for the database, so it hands
firings to ``AlertDelivery.submit`` (synchronous, never blocks). One task writes them:
it takes *everything* queued (up to ``batch_max``) and commits it in one transaction
(``storage.alert_events.record_events``), so under load a commit carries many firings
and the durability lag stays bounded by about one commit, not by the queue's length. A
firing is published on ``alerts.<owner>`` only after its row is committed, and only if
it was new, so subscribers never see a firing that a restart could lose or repeat.

The watermark
    With each batch that empties the queue, the per-symbol evaluation times taken at the
    same instant (``take_evaluated``: the exchange time of the last event each symbol's
    alerts were evaluated on) are committed in the same transaction. Every firing
    decided up to then was in that batch or an earlier one, so the stored watermark
    means "all firings up to here are durable". After a crash, the next start-up knows
    exactly which window to re-evaluate or report as a GAP. When no firing comes, the
    watermark is still committed every ``checkpoint_s``.

Measured, not assumed
    ``lag`` holds the durability lag of recent firings: from ``submit`` to the end of the
    commit that made it durable (``status()`` gives p50/p99/max).

Failures and shutdown
    While the database is unreachable the task retries with backoff and keeps every
    firing queued: nothing is dropped. ``close`` writes everything queued, however much
    (no fixed time cap); it gives up only when the database has made no progress for
    ``stall_timeout_s``, and then the firings it could not write are after the stored
    watermark, so the next start-up re-evaluates or reports their window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from server.delivery.bus import Bus
from server.storage.alert_events import EventKind, NewEvent, record_events
from streams.backoff import Backoff

if TYPE_CHECKING:
    from server.services.orders.alert_orders import AlertOrders

log = logging.getLogger(__name__)

#: Rows per commit: a batch this large commits in ~20-40 ms on a loaded 2-core machine.
DEFAULT_BATCH_MAX = 500
DEFAULT_CHECKPOINT_S = 1.0
DEFAULT_STALL_TIMEOUT_S = 30.0
#: Recent lags kept for the percentiles.
LAG_WINDOW = 20_000


def alert_topic(owner: str) -> str:
    return f"alerts.{owner}"


@dataclass(frozen=True, slots=True)
class Firing:
    alert_id: uuid.UUID
    owner: str
    symbol: str
    dedup_key: str
    fired_at_ms: int
    payload: dict[str, Any]
    done: bool  # the alert will never fire again (ONCE)
    #: Firings of this alert suppressed by its rate limit since the last delivered one.
    suppressed: int = 0
    kind: EventKind = "firing"


class LagStats:
    """Durability lags of the most recent firings, in microseconds."""

    def __init__(self, window: int = LAG_WINDOW) -> None:
        self._lags: deque[int] = deque(maxlen=window)
        self.count = 0
        self.max_us = 0

    def record(self, lag_us: int) -> None:
        self._lags.append(lag_us)
        self.count += 1
        self.max_us = max(self.max_us, lag_us)

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile (0-100) of the recent lags in ms, 0 when none."""
        if not self._lags:
            return 0.0
        ordered = sorted(self._lags)
        i = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
        return ordered[i] / 1000.0


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    pending: int
    decided: int
    written: int
    duplicates: int
    failures: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float


class AlertDelivery:
    def __init__(
        self,
        pool: asyncpg.Pool,
        bus: Bus,
        backoff: Backoff | None = None,
        *,
        take_evaluated: Callable[[], dict[str, int]] | None = None,
        batch_max: int = DEFAULT_BATCH_MAX,
        checkpoint_s: float = DEFAULT_CHECKPOINT_S,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._pool = pool
        self._bus = bus
        self._backoff = backoff or Backoff(0.05, 2.0)
        #: Called synchronously with the batch: the per-symbol evaluation times since the
        #: last call (the analytics hands them over and starts a new dict).
        self.take_evaluated = take_evaluated
        self._batch_max = batch_max
        self._checkpoint_s = checkpoint_s
        self._clock_ns = clock_ns
        self._queue: deque[tuple[Firing, int]] = deque()
        self._evaluated: dict[str, int] = {}  # taken but not yet committed
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_progress_ns = 0
        self.lag = LagStats()
        #: Alerts that trade: orders placed in the firings' transaction.
        self.trades: AlertOrders | None = None
        self.decided = 0
        self.written = 0
        self.duplicates = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def status(self) -> DeliveryStatus:
        return DeliveryStatus(
            pending=len(self._queue),
            decided=self.decided,
            written=self.written,
            duplicates=self.duplicates,
            failures=self.failures,
            lag_p50_ms=self.lag.percentile(50),
            lag_p99_ms=self.lag.percentile(99),
            lag_max_ms=self.lag.max_us / 1000.0,
        )

    def submit(self, firing: Firing) -> None:
        """Queue a firing for the next group commit; never blocks, never raises."""
        self._queue.append((firing, self._clock_ns()))
        self.decided += 1
        self._wake.set()
        if log.isEnabledFor(logging.DEBUG):
            # One line per decision: what a crash test compares with what was stored.
            log.debug(
                "firing decided: %s %s %s %d",
                firing.kind,
                firing.alert_id,
                firing.dedup_key,
                firing.fired_at_ms,
            )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="alert-delivery")

    async def close(self, stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> None:
        """Write everything queued and the final watermark, then stop. There is no time
        cap while the database makes progress; after ``stall_timeout_s`` without any,
        what is left is reported and left to the next start-up's recovery."""
        if self._task is None:
            return
        self._closing = True
        self._last_progress_ns = self._clock_ns()
        self._wake.set()
        task = self._task
        while not task.done():
            stalled_s = (self._clock_ns() - self._last_progress_ns) / 1e9
            if stalled_s > stall_timeout_s:
                task.cancel()
                break
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(min(1.0, stall_timeout_s)):
                    await asyncio.shield(task)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = None
        status = self.status()
        if self.pending:
            log.error(
                "alert delivery stopped with %d firings unwritten: the database made no "
                "progress for %.0f s; the next start-up re-evaluates their window or "
                "records it as a GAP",
                self.pending,
                stall_timeout_s,
            )
        log.info(
            "alert delivery closed: decided=%d written=%d duplicates=%d pending=%d "
            "lag p50=%.1f ms p99=%.1f ms max=%.1f ms",
            status.decided,
            status.written,
            status.duplicates,
            status.pending,
            status.lag_p50_ms,
            status.lag_p99_ms,
            status.lag_max_ms,
        )

    # -- the writer -----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                if not self._queue and not self._closing:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._checkpoint_s):
                            await self._wake.wait()
                self._wake.clear()
                batch, marks = self._take()
                if (batch or marks) and not await self._write(batch, marks):
                    await asyncio.sleep(self._backoff.next_delay())
                    continue
                if self._closing and not self._queue:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("alert delivery stopped; firings from now on are not written")

    def _take(self) -> tuple[list[tuple[Firing, int]], dict[str, int]]:
        """Everything queued (at most ``batch_max``), and the watermarks when the batch
        empties the queue: taken in one synchronous step, so they agree."""
        queue = self._queue
        n = min(len(queue), self._batch_max)
        batch = [queue.popleft() for _ in range(n)]
        if not queue and self.take_evaluated is not None:
            for symbol, t in self.take_evaluated().items():
                if t > self._evaluated.get(symbol, 0):
                    self._evaluated[symbol] = t
        return batch, dict(self._evaluated) if not queue else {}

    async def _write(self, batch: list[tuple[Firing, int]], marks: Mapping[str, int]) -> bool:
        trades = self.trades
        decided: dict[Any, Any] = {}
        if trades is not None and trades.templates:
            decided = trades.prepare(
                [(f.alert_id, f.owner, f.dedup_key) for f, _ in batch if f.kind == "firing"]
            )
        events = [_event(f, decided.get((f.alert_id, f.dedup_key)), trades) for f, _ in batch]
        placed: list[Any] = []
        try:
            if decided:
                assert trades is not None
                # The firings and the orders they place: one transaction.
                async with self._pool.acquire() as conn, conn.transaction():
                    stored = await record_events(conn, events, marks)
                    placed = await trades.insert(conn, decided, set(stored))
            else:
                stored = await record_events(self._pool, events, marks)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError) as exc:
            if trades is not None and decided:
                trades.release(decided)
            self.failures += 1
            # Back to the front, in order: nothing is lost, nothing reordered.
            self._queue.extendleft(reversed(batch))
            log.warning("could not record %d fired alerts (%s); retrying", len(batch), exc)
            return False
        if trades is not None and decided:
            trades.settle(decided, placed)
        done_ns = self._clock_ns()
        self._last_progress_ns = done_ns
        self._backoff.reset()
        for symbol, t in marks.items():
            if self._evaluated.get(symbol) == t:
                del self._evaluated[symbol]
        for firing, submitted_ns in batch:
            self.lag.record((done_ns - submitted_ns) // 1000)
            row = stored.pop((firing.alert_id, firing.dedup_key), None)  # once per batch
            if row is None:
                self.duplicates += 1
                continue
            self.written += 1
            self._bus.publish(alert_topic(firing.owner), row)
        return True


def _event(f: Firing, order: Any = None, trades: AlertOrders | None = None) -> NewEvent:
    payload = f.payload
    if order is not None and trades is not None:
        # What the firing did about its order: placed (its id) or refused (why).
        payload = {**payload, "order": trades.outcome(order)}
    return NewEvent(
        alert_id=f.alert_id,
        owner=f.owner,
        symbol=f.symbol,
        dedup_key=f.dedup_key,
        at_ms=f.fired_at_ms,
        payload=payload,
        kind=f.kind,
        done=f.done,
        suppressed=f.suppressed,
    )
