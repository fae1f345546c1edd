"""Every process's copy of the market: the leader writes it, followers keep theirs.

* Events: the leader's ingest publishes each accepted event on the bus; with Redis it
  reaches every follower, which applies it to its own ``MarketState`` (``FollowerCopy``)
  exactly as the leader's ingest did, and its hub delivers it to local subscribers.
* Snapshot: a follower that starts, or reconnects after a Redis outage, has missed
  events. The leader keeps the latest quote and trade of each symbol in one Redis hash
  (``MARKET_KEY``, written every ``every_s`` for the symbols that changed, in one
  ``HSET``); the follower reads it then, so its first answer is the current quote, not
  an empty one. ``MarketState.apply`` refuses anything older than what it holds.
* Feed status: the leader's feed status is written beside it (``STATUS_KEY``, expiring
  after a few periods), and a follower's ``feedStatus`` is the leader's while its own
  Redis link is up, DISCONNECTED with the reason otherwise: a subscriber on any process
  sees the same changes, and sees its own process lose Redis.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.delivery.bus import Bus
from server.delivery.redis_wire import MsgspecCodec
from server.market.state import MarketState
from server.tasks import cancel_all
from streams.events import Received
from streams.feed_status import FeedState, FeedStatusTracker
from streams.polygon_protocol import topics_for

log = logging.getLogger(__name__)

MARKET_KEY = "{tickgraph}:market"
STATUS_KEY = "{tickgraph}:feed-status"
_CODEC = MsgspecCodec(Received)


class _Status(msgspec.Struct, frozen=True):
    state: str
    error: str | None


class LeaderWriter:
    """The leader's side: the snapshot hash and the feed status, every ``every_s``."""

    def __init__(
        self, redis: Redis, state: MarketState, tracker: FeedStatusTracker, every_s: float = 0.2
    ) -> None:
        self._redis = redis
        self._state = state
        self._tracker = tracker
        self._every = every_s
        self._written: dict[str, tuple[int, int]] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.write()
            except (RedisError, OSError) as exc:
                log.debug("could not write the market snapshot: %s", exc)
                self._written.clear()  # write everything again once Redis is back
            await asyncio.sleep(self._every)

    async def write(self) -> None:
        fields: dict[str, bytes] = {}
        for st in self._state:
            quote, trade = st.last_quote, st.last_trade
            mark = (id(quote), id(trade))
            if self._written.get(st.symbol) == mark:
                continue
            self._written[st.symbol] = mark
            if quote is not None:
                fields[f"Q.{st.symbol}"] = _CODEC.encode(quote)
            if trade is not None:
                fields[f"T.{st.symbol}"] = _CODEC.encode(trade)
        status = self._tracker.snapshot()
        encoded = msgspec.msgpack.encode(_Status(status.state.value, status.last_error))
        ttl_ms = max(2_000, int(self._every * 10_000))
        async with self._redis.pipeline(transaction=False) as pipe:
            if fields:
                pipe.hset(MARKET_KEY, mapping=fields)  # type: ignore[arg-type]
            pipe.set(STATUS_KEY, encoded, px=ttl_ms)
            await pipe.execute()


class FollowerCopy:
    """A follower's side: applies the bus's market events to this process's state and
    mirrors the leader's feed status. ``detach`` when this process is elected (its own
    ingest then applies what it publishes)."""

    def __init__(
        self,
        redis: Redis,
        bus: Bus,
        state: MarketState,
        tracker: FeedStatusTracker,
        symbols: tuple[str, ...],
        *,
        bus_connected: Callable[[], bool],
        every_s: float = 1.0,
    ) -> None:
        self._redis = redis
        self._bus = bus
        self._state = state
        self._tracker = tracker
        self._topics = [t for s in symbols for t in topics_for(s)]
        self._bus_connected = bus_connected
        self._every = every_s
        self._task: asyncio.Task[None] | None = None
        self._stale_snapshot = True
        self._attached = False

    def attach(self) -> None:
        self._attached = True
        for topic in self._topics:
            self._bus.subscribe(topic, self._apply)
        self._task = asyncio.create_task(self._follow(), name="follower-copy")

    def detach(self) -> None:
        self._attached = False
        for topic in self._topics:
            self._bus.unsubscribe(topic, self._apply)
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_all([task])

    def on_connection(self, connected: bool) -> None:
        """The bus's Redis link changed: what was missed meanwhile is read again. (On
        the leader, detached, its own feed says how it is.)"""
        self._stale_snapshot = True
        if self._attached and not connected:
            self._down("this server lost its Redis connection")

    def _apply(self, item: Received) -> None:
        if self._state.apply(item):
            self._tracker.count_events(1, item.received_ns)

    async def _follow(self) -> None:
        while True:
            try:
                if self._stale_snapshot and self._bus_connected():
                    await self.load_snapshot()
                await self._mirror_status()
            except (RedisError, OSError) as exc:
                log.debug("follower: Redis unavailable: %s", exc)
                self._stale_snapshot = True
            await asyncio.sleep(self._every)

    async def load_snapshot(self) -> int:
        raw = await self._redis.hgetall(MARKET_KEY)
        applied = 0
        for data in raw.values():
            try:
                item = _CODEC.decode(memoryview(_bytes(data)))
            except msgspec.DecodeError:
                continue
            applied += self._state.apply(item)
        self._stale_snapshot = False
        return applied

    async def _mirror_status(self) -> None:
        if not self._bus_connected():
            self._down("this server lost its Redis connection")
            return
        raw = await self._redis.get(STATUS_KEY)
        if raw is None:
            self._down("no leader holds the feed")
            return
        status = msgspec.msgpack.decode(_bytes(raw), type=_Status)
        if status.state == FeedState.CONNECTED.value:
            self._tracker.connected()
        else:
            self._down(
                f"the leader's feed is {status.state}: {status.error or 'no detail'}",
                FeedState(status.state),
            )

    def _down(self, error: str, state: FeedState = FeedState.DISCONNECTED) -> None:
        """Tell subscribers once per change, not once per check."""
        now = self._tracker.snapshot()
        if now.state is not state or now.last_error != error:
            self._tracker.disconnected(error, self._every, state=state)


def _bytes(value: bytes | str) -> bytes:
    # The client decodes nothing (no decode_responses), but its types allow str.
    return value.encode() if isinstance(value, str) else value
