"""The baseline servers' upstream: one Polygon-protocol connection, quotes stamped on receipt.

Both baselines (``loadtests.fanout_baselines``) read the same replay the harness serves
tickgraph, and the way tickgraph does: the receipt time is taken once per frame, before
decoding, so the latency a client measures includes decoding; frames are decoded with
``streams.polygon_protocol.decode_frame``; only quotes are kept. A baseline that cannot
read its upstream has nothing to measure, so a lost feed ends the process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect

from streams.events import Quote
from streams.polygon_protocol import auth_message, decode_frame, subscribe_message

#: ``(quote, receivedAt)``: receipt time in epoch milliseconds, as tickgraph's ``receivedAt``.
QuoteHandler = Callable[[Quote, float], None]


@dataclass
class FeedStats:
    frames: int = 0
    quotes: int = 0
    rejects: int = 0


class FeedError(RuntimeError):
    """The upstream refused us or said something unexpected."""


def now_ms() -> float:
    """Epoch milliseconds with sub-millisecond precision, as tickgraph stamps ``receivedAt``."""
    return time.time_ns() / 1e6


async def _statuses(ws: ClientConnection, timeout_s: float) -> list[tuple[str, str]]:
    raw = await asyncio.wait_for(ws.recv(decode=False), timeout_s)
    return [(s.status, s.message) for s in decode_frame(raw).statuses]


async def open_feed(
    url: str, symbols: Sequence[str], *, api_key: str = "fanout-baseline", timeout_s: float = 10.0
) -> ClientConnection:
    """Connect, authenticate and subscribe to ``Q.<symbol>`` for every symbol; returns once
    every subscription is acknowledged (the server sends no data of a topic before its ack)."""
    ws = await connect(url, max_size=None, ping_interval=None, compression=None)
    try:
        await _expect(ws, "connected", timeout_s)
        await ws.send(auth_message(api_key), text=True)
        await _expect(ws, "auth_success", timeout_s)
        topics = {f"Q.{s}" for s in symbols}
        await ws.send(subscribe_message(topics), text=True)
        pending = set(topics)
        deadline = time.monotonic() + timeout_s
        while pending:
            for status, message in await _statuses(ws, max(0.0, deadline - time.monotonic())):
                if status != "success":
                    raise FeedError(f"subscribe: {status}: {message}")
                pending.discard(message.removeprefix("subscribed to: "))
    except BaseException:
        await ws.close()
        raise
    return ws


async def _expect(ws: ClientConnection, wanted: str, timeout_s: float) -> None:
    statuses = await _statuses(ws, timeout_s)
    if not any(status == wanted for status, _ in statuses):
        raise FeedError(f"expected {wanted}, got {statuses}")


async def pump_feed(
    ws: ClientConnection, on_quote: QuoteHandler, stats: FeedStats, *, yield_every: int = 1
) -> None:
    """Hand every quote to ``on_quote``, until the upstream closes (then raise).

    Yields to the event loop every ``yield_every`` frames. ``recv`` does not when a
    frame is already buffered, and one socket read can buffer thousands of small
    frames: a server whose ``on_quote`` does the fan-out (raw: ``yield_every=1``) would
    otherwise fan them all out in one go and accept, read and answer no client for
    seconds. One whose ``on_quote`` only queues (strawberry) reads many frames per turn
    instead: with one task per subscriber, a turn of the loop is long, and reading one
    frame per turn would leave the feed behind whatever the subscribers do.
    """
    clock = time.time_ns
    while True:
        raw = await ws.recv(decode=False)
        received_ms = clock() / 1e6
        decoded = decode_frame(raw)
        stats.frames += 1
        stats.rejects += len(decoded.rejects)
        for ev in decoded.events:
            if type(ev) is Quote:
                stats.quotes += 1
                on_quote(ev, received_ms)
        if stats.frames % yield_every == 0:
            await asyncio.sleep(0)
