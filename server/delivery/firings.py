"""Fired alerts: written to PostgreSQL first, then published to their owner.

The alert engine runs on the hot path and must not wait for the database, so it
hands firings to ``AlertDelivery.submit`` (synchronous, never blocks). One task
writes them in order; a firing is published on ``alerts.<owner>`` only after its
row is committed, and only if it was new, so subscribers never see a firing that
a restart could lose or repeat. While the database is unreachable the task retries
with backoff and keeps every firing queued: nothing is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from server.delivery.bus import Bus
from server.storage.alerts import record_firing
from streams.backoff import Backoff

log = logging.getLogger(__name__)


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


class AlertDelivery:
    def __init__(self, pool: asyncpg.Pool, bus: Bus, backoff: Backoff | None = None) -> None:
        self._pool = pool
        self._bus = bus
        self._backoff = backoff or Backoff(0.1, 5.0)
        self._queue: asyncio.Queue[Firing] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.duplicates = 0
        self.failures = 0

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def submit(self, firing: Firing) -> None:
        self._queue.put_nowait(firing)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="alert-delivery")

    async def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (bounded by ``timeout``), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self.pending:
            log.error("%d fired alerts were not written before shutdown", self.pending)

    async def _run(self) -> None:
        while True:
            firing = await self._queue.get()
            try:
                await self._deliver(firing)
            finally:
                self._queue.task_done()

    async def _deliver(self, firing: Firing) -> None:
        while True:
            try:
                event = await record_firing(
                    self._pool,
                    alert_id=firing.alert_id,
                    owner=firing.owner,
                    symbol=firing.symbol,
                    dedup_key=firing.dedup_key,
                    fired_at=datetime.fromtimestamp(firing.fired_at_ms / 1000, tz=UTC),
                    payload=firing.payload,
                    done=firing.done,
                )
                break
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                self.failures += 1
                delay = self._backoff.next_delay()
                log.warning("could not record a fired alert (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        self._backoff.reset()
        if event is None:
            self.duplicates += 1
            return
        self.written += 1
        self._bus.publish(alert_topic(firing.owner), event)
