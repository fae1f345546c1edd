"""What the upstream feed is doing, for ``Query.feedStatus``, its subscription and /readyz.

The tracker is written by the feed supervisor and the ingest and read by GraphQL.
Listeners hear about state changes only (not every event), so a status subscriber
is never flooded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

log = logging.getLogger(__name__)


class FeedState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    AUTH_FAILED = "auth_failed"
    EVICTED = "evicted"  # another connection with our key took over (max_connections)
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class FeedStatus:
    source: str  # "simulated" | "polygon"
    url: str
    state: FeedState = FeedState.CONNECTING
    since_ns: int = 0
    connected_since_ns: int | None = None
    last_error: str | None = None
    reconnects: int = 0
    next_retry_ns: int | None = None
    topics: tuple[str, ...] = ()
    events: int = 0
    last_event_ns: int | None = None
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        return self.state is FeedState.CONNECTED


Listener = Callable[[FeedStatus], None]


class FeedStatusTracker:
    def __init__(self, source: str, url: str, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock_ns
        self._status = FeedStatus(source=source, url=url, since_ns=clock_ns())
        self._listeners: list[Listener] = []
        # Counters live outside the frozen snapshot: they change on every event.
        self.events = 0
        #: Of ``events``: trades and quotes (the rest are aggregates), for /metrics.
        self.trades = 0
        self.quotes = 0
        self.last_event_ns: int | None = None
        self.rejected: dict[str, int] = {}

    def snapshot(self) -> FeedStatus:
        return replace(
            self._status,
            events=self.events,
            last_event_ns=self.last_event_ns,
            rejected=dict(self.rejected),
        )

    @property
    def state(self) -> FeedState:
        return self._status.state

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _set(self, **changes: object) -> None:
        new = replace(self._status, **changes)  # type: ignore[arg-type]
        if new == self._status:
            return
        old_state = self._status.state
        self._status = new
        if new.state is not old_state:
            log.info(
                "feed %s",
                new.state.value,
                extra={"feed_state": new.state.value, "error": new.last_error},
            )
        snap = self.snapshot()
        for listener in list(self._listeners):
            try:
                listener(snap)
            except Exception:
                log.exception("feed status listener failed")

    # --- transitions, called by the supervisor ---------------------------------------

    def connecting(self) -> None:
        self._set(state=FeedState.CONNECTING, since_ns=self._clock(), next_retry_ns=None)

    def connected(self) -> None:
        if self._status.state is not FeedState.CONNECTED:
            now = self._clock()
            self._set(
                state=FeedState.CONNECTED, since_ns=now, connected_since_ns=now, last_error=None
            )

    def disconnected(
        self, error: str, retry_in_s: float, *, state: FeedState = FeedState.DISCONNECTED
    ) -> None:
        now = self._clock()
        self._set(
            state=state,
            since_ns=now,
            connected_since_ns=None,
            last_error=error,
            reconnects=self._status.reconnects + 1,
            next_retry_ns=now + int(retry_in_s * 1e9),
        )

    def stopped(self) -> None:
        self._set(
            state=FeedState.STOPPED,
            since_ns=self._clock(),
            connected_since_ns=None,
            next_retry_ns=None,
        )

    def topics_changed(self, topics: set[str]) -> None:
        self._set(topics=tuple(sorted(topics)))

    # --- counters, called by the ingest ------------------------------------------------

    def count_events(self, n: int, received_ns: int, trades: int = 0, quotes: int = 0) -> None:
        """``n`` events of one frame applied, ``trades`` and ``quotes`` of them (counted
        per frame by the ingest, so the per-kind split costs nothing per event here)."""
        self.events += n
        self.trades += trades
        self.quotes += quotes
        self.last_event_ns = received_ns

    def count_reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
