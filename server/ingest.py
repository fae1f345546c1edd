"""The hot path: upstream frame → decode → market state → bus.

Each frame is decoded once; each event is applied once to its symbol's state and
published once. Nothing here awaits. Bad input is counted per reason and logged
once per reason (a broken upstream must not flood the log), and the feed goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from server.delivery.bus import Bus
from server.market.state import MarketState
from streams.events import CHANNEL_OF, Received, Status
from streams.feed_status import FeedStatusTracker
from streams.polygon_protocol import Reject, RejectReason, decode_frame

log = logging.getLogger(__name__)


class Ingest:
    def __init__(
        self,
        state: MarketState,
        bus: Bus,
        status: FeedStatusTracker,
        on_notice: Callable[[Status], None] | None = None,
        on_applied: Callable[[Received], None] | None = None,
    ) -> None:
        self._state = state
        #: Bars, indicators and alerts: called with each event after it was applied
        #: and published.
        self.on_applied = on_applied
        self._bus = bus
        self._status = status
        self.on_notice = on_notice
        self._logged: set[RejectReason] = set()

    def new_session(self) -> None:
        """A new upstream connection: sequence numbers start over."""
        self._state.reset_sequences()

    def on_frame(self, data: str | bytes, received_ns: int) -> None:
        try:
            self._on_frame(data, received_ns)
        except Exception:
            # A bug here must cost one frame, not the feed.
            self._status.count_reject("internal_error")
            log.exception("ingest failed on a frame")

    def _on_frame(self, data: str | bytes, received_ns: int) -> None:
        decoded = decode_frame(data)
        for reject in decoded.rejects:
            self._reject(reject)
        if decoded.statuses and self.on_notice is not None:
            for notice in decoded.statuses:
                self.on_notice(notice)
        apply = self._state.apply
        publish = self._bus.publish
        after = self.on_applied
        applied = 0
        for ev in decoded.events:
            item = Received(ev, received_ns)
            if not apply(item):
                self._reject(Reject(RejectReason.REORDERED, f"{ev.sym} q={ev.q}"))  # type: ignore[union-attr]
                continue
            publish(f"{CHANNEL_OF[type(ev)]}.{ev.sym}", item)
            if after is not None:
                after(item)
            applied += 1
        if applied:
            self._status.count_events(applied, received_ns)

    def _reject(self, reject: Reject) -> None:
        self._status.count_reject(reject.reason.value)
        if reject.reason not in self._logged:
            self._logged.add(reject.reason)
            log.warning(
                "dropped upstream input (%s): %s; further drops of this kind are only counted",
                reject.reason.value,
                reject.detail[:200],
            )
