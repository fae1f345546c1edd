"""The hot path: upstream frame → decode → screen → market state → bus.

Each frame is decoded once (every numeric field checked against its bounds,
``streams.polygon_protocol.check_event``); each event is then screened once against the
feed's clock, the receive time and its symbol's reference price
(``streams.screening``), applied once to its symbol's state and published once. The
live feed, replays and the simulated market all arrive here through the same Polygon
client, so they are judged by exactly the same rules. Nothing here awaits. Bad input is
counted per reason and logged once per reason (a broken upstream must not flood the
log), and the feed goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from server.delivery.bus import Bus
from server.market.state import MarketState
from streams.conditions import ALL, flags_for
from streams.events import CHANNEL_OF, MarketEvent, Quote, Received, Status, Trade
from streams.feed_status import FeedStatusTracker
from streams.polygon_protocol import Reject, RejectReason, decode_frame
from streams.screening import HELD, FeedScreen

log = logging.getLogger(__name__)


def trade_flags(trade: Trade) -> int:
    """What a print may update (``streams.conditions``); a size-0 print is a marker."""
    if not trade.s:
        return 0
    return flags_for(trade.c) if trade.c else ALL


class Ingest:
    def __init__(
        self,
        state: MarketState,
        bus: Bus,
        status: FeedStatusTracker,
        *,
        on_notice: Callable[[Status], None] | None = None,
        on_applied: Callable[[Received], None] | None = None,
        screen: FeedScreen | None = None,
    ) -> None:
        self._state = state
        #: Bars, indicators and alerts: called with each event after it was applied
        #: and published.
        self.on_applied = on_applied
        self._bus = bus
        self._status = status
        self.on_notice = on_notice
        self.screen = screen if screen is not None else FeedScreen()
        self._logged: set[RejectReason] = set()

    def new_session(self) -> None:
        """A new upstream connection: sequence numbers and the feed clock start over."""
        self._state.reset_sequences()
        self.screen.new_session()
        # What the screen held is applied now: counted like any applied event.
        self._status.events += self._drain_screen()

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
        screen = self.screen
        admit = screen.admit
        apply = self._state.apply
        publish = self._bus.publish
        after = self.on_applied
        recv_ms = received_ns // 1_000_000
        applied = trades = quotes = 0
        for ev in decoded.events:
            kind = type(ev)
            if kind is Trade:
                # trade_flags, inlined: a size-0 print is a marker.
                c: tuple[int, ...] = ev.c  # type: ignore[assignment]
                flags = (flags_for(c) if c else ALL) if ev.s else 0  # type: ignore[union-attr]
                item = Received(ev, received_ns, flags)
            else:
                item = Received(ev, received_ns)
            verdict = admit(item, recv_ms)
            if screen.released or screen.dropped:
                applied += self._drain_screen()
            if verdict is None:
                if not apply(item):
                    self._reject(Reject(RejectReason.REORDERED, f"{ev.sym} q={ev.q}"))  # type: ignore[union-attr]
                    continue
                publish(f"{CHANNEL_OF[kind]}.{ev.sym}", item)
                if after is not None:
                    after(item)
                applied += 1
                # By kind, in locals: the tracker is told once per frame (/metrics).
                if kind is Trade:
                    trades += 1
                elif kind is Quote:
                    quotes += 1
            elif verdict is not HELD:
                self._reject(verdict)
        if applied:
            self._status.count_events(applied, received_ns, trades, quotes)

    def _apply(self, item: Received, ev: MarketEvent) -> int:
        if not self._state.apply(item):
            self._reject(Reject(RejectReason.REORDERED, f"{ev.sym} q={ev.q}"))  # type: ignore[union-attr]
            return 0
        kind = type(ev)
        self._bus.publish(f"{CHANNEL_OF[kind]}.{ev.sym}", item)
        after = self.on_applied
        if after is not None:
            after(item)
        # Released by the screen (rare): counted by kind here, the total by the caller.
        if kind is Trade:
            self._status.trades += 1
        elif kind is Quote:
            self._status.quotes += 1
        return 1

    def _drain_screen(self) -> int:
        """Apply the events the screen released (in arrival order), count its drops."""
        screen = self.screen
        applied = 0
        if screen.released:
            released = list(screen.released)
            screen.released.clear()
            for item in released:
                applied += self._apply(item, item.event)
        if screen.dropped:
            dropped = list(screen.dropped)
            screen.dropped.clear()
            for reject in dropped:
                self._reject(reject)
        return applied

    def _reject(self, reject: Reject) -> None:
        self._status.count_reject(reject.reason.value)
        if reject.reason not in self._logged:
            self._logged.add(reject.reason)
            log.warning(
                "dropped upstream input (%s): %s; further drops of this kind are only counted",
                reject.reason.value,
                reject.detail[:200],
            )
