"""Live streams for one subscriber: hub attachment + mailbox + wake-up.

Each stream attaches to the hub (so the feed puts straight into this subscriber's
mailbox, never waiting), queues the current snapshot through the same mailbox (so
a snapshot and a live update of the same symbol can never be delivered out of
order or twice), and yields at the subscriber's own pace. Closing the generator
(``complete``, disconnect, cancellation) detaches from the hub, which releases
the subscriber's interest in its symbols.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from server.fanout import MarketHub
from server.mailbox import ConflatingMailbox, DroppingQueue
from server.market_state import MarketState
from server.stream_registry import StreamRegistry
from streams.events import Received
from streams.feed_status import FeedStatus, FeedStatusTracker

T = TypeVar("T")


async def next_batch(drain: Callable[[], list[T]], wake: asyncio.Event) -> list[T]:
    """Whatever the mailbox holds, waiting until it holds something.

    ``wake`` is set by the mailbox when it goes from empty to non-empty; the feed
    runs on this loop, so nothing can arrive between ``drain`` and ``clear``.
    """
    while True:
        batch = drain()
        if batch:
            return batch
        wake.clear()
        await wake.wait()


@dataclass(frozen=True, slots=True)
class Delivery:
    item: Received
    snapshot: bool = False
    dropped_before: int = 0


async def quote_stream(
    hub: MarketHub,
    state: MarketState,
    symbols: Sequence[str],
    throttle_s: float = 0.0,
    registry: StreamRegistry | None = None,
) -> AsyncGenerator[Delivery, None]:
    wake = asyncio.Event()
    box: ConflatingMailbox[str, Delivery] = ConflatingMailbox(wake.set)
    attachment = hub.attach("Q", symbols, lambda item: box.put(item.event.sym, Delivery(item)))
    if registry is not None:
        registry.add(box)
    try:
        for sym in symbols:
            st = state.get(sym)
            if st is not None and st.last_quote is not None:
                box.put_if_absent(sym, Delivery(st.last_quote, snapshot=True))
        while True:
            for delivery in await next_batch(box.drain, wake):
                yield delivery
            if throttle_s:
                # Conflation keeps collecting meanwhile: at most one update per
                # symbol per interval, always the newest.
                await asyncio.sleep(throttle_s)
    finally:
        attachment.close()
        if registry is not None:
            registry.remove(box)


async def trade_stream(
    hub: MarketHub,
    state: MarketState,
    symbols: Sequence[str],
    queue_size: int,
    registry: StreamRegistry | None = None,
) -> AsyncGenerator[Delivery, None]:
    wake = asyncio.Event()
    queue: DroppingQueue[Received] = DroppingQueue(queue_size, wake.set)
    # Snapshot and attach with no await in between: the feed runs on this loop, so no
    # trade can fall between them, and none can be in both.
    snapshots = [
        st.last_trade
        for sym in symbols
        if (st := state.get(sym)) is not None and st.last_trade is not None
    ]
    attachment = hub.attach("T", symbols, queue.put)
    if registry is not None:
        registry.add(queue)
    try:
        for item in snapshots:
            yield Delivery(item, snapshot=True)
        while True:
            ((items, dropped),) = await next_batch(lambda: [queue.drain()] if queue else [], wake)
            for item in items:
                yield Delivery(item, dropped_before=dropped)
                dropped = 0
    finally:
        attachment.close()
        if registry is not None:
            registry.remove(queue)


async def feed_status_stream(tracker: FeedStatusTracker) -> AsyncGenerator[FeedStatus, None]:
    wake = asyncio.Event()
    box: ConflatingMailbox[int, FeedStatus] = ConflatingMailbox(wake.set)
    stop_listening = tracker.listen(lambda snap: box.put(0, snap))
    try:
        yield tracker.snapshot()
        while True:
            yield (await next_batch(box.drain, wake))[-1]
    finally:
        stop_listening()
