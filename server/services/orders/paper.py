"""The paper broker's inputs: the feed's quotes and trades, and a clock.

``PaperFeed.on_event`` is called by the ingest for every applied event, after the
analytics, on the hot path: the engine looks up the symbol's books and returns at once
when nothing rests there. Trades that may not set the consolidated last price (odd
lots, average-price prints: ``streams.conditions``) do not trigger stops or fill
limits, as they cannot move the last price a stop is defined on.

``run_clock`` advances the engine once a second on the feed's clock (extrapolated by
wall time while the feed is quiet), so DAY orders expire at the close and auctions
happen even when no tick arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from brokers.paper import PaperBroker
from streams.conditions import LAST
from streams.events import Quote, Received, Trade
from streams.screening import FeedClock

log = logging.getLogger(__name__)


class PaperFeed:
    def __init__(self, broker: PaperBroker, now_ms: Callable[[], int]) -> None:
        self._broker = broker
        self._now_ms = now_ms

    def on_event(self, item: Received) -> None:
        ev = item.event
        kind = type(ev)
        if kind is Quote or (kind is Trade and item.flags & LAST):
            try:
                self._broker.on_market_event(ev)
            except Exception:
                # A fault in matching must never stop the feed.
                log.exception("paper broker failed on %s", kind.__name__)

    async def run_clock(self, every_s: float = 1.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                self._broker.advance(self._now_ms())
            except Exception:
                log.exception("paper broker failed to advance its clock")


def feed_now_ms(clock: FeedClock, *, live: bool) -> Callable[[], int]:
    """The feed's time: a replayed day is traded on its own clock, which stands still
    while the replay does (so the same replay and orders give the same fills whatever
    the wall clock did); a live feed's clock runs on by wall time while it is quiet.
    Wall time until the feed has a clock."""

    def now_ms() -> int:
        wall = time.time_ns() // 1_000_000
        return (clock.now_ms(wall) if live else clock.time_ms) or wall

    return now_ms
