"""Joining a deployment at start-up (with ``REDIS_URL``): the Redis bus, the election,
this process's copy of the market, and what happens when it is elected or loses the
lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from server.delivery.hub import MarketHub
from server.delivery.redis_bus import RedisBus
from server.delivery.redis_wire import market_codecs
from server.market.state import MarketState
from server.scaleout.demand import Demand
from server.scaleout.event_stream import StreamReader, StreamWriter
from server.scaleout.market_copy import FollowerCopy, LeaderWriter
from server.scaleout.node import DEMOTED_EXIT_CODE, Node
from server.settings import Settings
from server.storage.database import Database
from server.storage.fence import claim
from server.storage.order_rows import StoredEntry
from server.tasks import cancel_all
from streams.feed_status import FeedStatusTracker
from streams.polygon_feed import PolygonFeed
from streams.polygon_protocol import topics_for

log = logging.getLogger(__name__)


class ExitStatus:
    """The process's exit code, read by the CLI once the server has stopped."""

    code = 0


def redis_bus(settings: Settings, stack: contextlib.AsyncExitStack) -> RedisBus:
    assert settings.redis_url is not None
    bus = RedisBus(settings.redis_url.reveal(), market_codecs())
    bus.start()
    stack.push_async_callback(bus.close)
    return bus


def advertised(settings: Settings) -> str:
    if settings.advertise_url:
        return settings.advertise_url
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        import socket

        host = socket.gethostname()
    return f"http://{host}:{settings.port}"


@dataclass
class Parts:
    """What a member of a deployment drives, built by ``Runtime``."""

    redis: Redis
    bus: RedisBus
    state: MarketState
    tracker: FeedStatusTracker
    database: Database
    #: The leader's notices of committed events, and the order ledger's recent entries.
    notices: StreamWriter
    recent: dict[str, deque[StoredEntry]]
    start_core: Callable[[], Awaitable[None]]
    #: The upstream feed (run by the leader) and the hub whose interest it follows.
    feed: PolygonFeed
    hub: MarketHub


async def join(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    parts: Parts,
    request_exit: Callable[[], None] | None = None,
) -> Node:
    """This process as a member of the deployment: a follower until elected, then the
    leader. It campaigns once ``Node.start`` is called, when the server listens
    (``Runtime.serving``): building the app blocks the event loop for seconds on a busy
    machine, and a lease held meanwhile would run out unrenewed."""
    member = _Member(settings, parts, request_exit or _terminate)
    await member.reader.start()
    member.start()
    # Stopped before the core; the lease itself is handed over by ``Node.stop``, which
    # the caller runs after the core has stopped and its writers have drained.
    stack.push_async_callback(member.close)
    return member.node


class _Member:
    def __init__(self, settings: Settings, parts: Parts, stop: Callable[[], None]) -> None:
        self.parts = parts
        self._stop = stop
        bus = parts.bus
        self.copy = FollowerCopy(
            parts.redis,
            bus,
            parts.state,
            parts.tracker,
            settings.symbols,
            bus_connected=lambda: bus.connected,
        )
        self.writer = LeaderWriter(parts.redis, parts.state, parts.tracker)
        # Until elected, committed order updates and alerts come from the leader.
        self.reader = StreamReader(parts.redis, parts.database.pool, bus, parts.recent)
        self.tasks: list[asyncio.Task[None]] = []
        self.elected = False
        self.node = Node(
            parts.redis,
            advertise_url=advertised(settings),
            ttl_ms=settings.leader_ttl_ms,
            on_elected=self.on_elected,
            on_demoted=self.on_demoted,
            on_refenced=self.on_refenced,
        )
        bus.on_connection = self.copy.on_connection
        self.copy.attach()
        feed = parts.feed
        self.demand = Demand(
            parts.redis,
            self.node.election.holder_id.rsplit(" ", 1)[-1],
            settings.symbols,
            want=lambda symbols: feed.want(t for s in symbols for t in topics_for(s)),
            unwant=lambda symbols: feed.unwant(t for s in symbols for t in topics_for(s)),
        )
        parts.hub.on_interest = self.demand.on_interest

    def start(self) -> None:
        self._spawn(self.demand.run(), "subscription-demand")

    def _spawn(self, work: Awaitable[None], name: str) -> None:
        self.tasks.append(asyncio.ensure_future(work))
        self.tasks[-1].set_name(name)

    def _fail(self) -> None:
        self.node.serving = False
        _stopping(DEMOTED_EXIT_CODE)
        self._stop()

    def on_elected(self, fence: int) -> None:
        self.elected = True
        self.parts.bus.fence = fence  # readers refuse what an older leader still publishes
        self.copy.detach()  # this process's ingest applies what it publishes from now on
        self._spawn(self._become_leader(fence), "become-leader")

    async def _become_leader(self, fence: int) -> None:
        parts = self.parts
        try:
            # First make every write of an older leader fail, then rebuild from what
            # it wrote (server.storage.fence).
            await claim(parts.database, fence, self.node.election.holder_id)
            # What the old leader committed last is delivered here before this
            # process commits anything itself; from here on it announces.
            await self.reader.stop()
            await self.reader.catch_up()
            parts.notices.enabled = True
            self.demand.leading = True
            self._spawn(parts.notices.run(), "event-stream-writer")
            await parts.start_core()
        except Exception:
            log.exception("elected, but the core did not start; stepping down")
            self._fail()
            return
        self._spawn(self.writer.run(), "market-snapshot")
        self.node.serving = True
        log.info("serving as the leader (fence %d)", self.node.election.fence)

    def on_refenced(self, fence: int) -> None:
        # Redis lost the lease and we took it back with a new token: publish with it,
        # and make it the database's fence too.
        self.parts.bus.fence = fence
        self._spawn(self._refence(fence), "refence")

    async def _refence(self, fence: int) -> None:
        try:
            await claim(self.parts.database, fence, self.node.election.holder_id)
        except Exception:
            log.exception("could not claim the new fence %d; stepping down", fence)
            self._fail()

    def on_demoted(self) -> None:
        self.parts.bus.fence = 0
        if not self.elected or self.node.stopping:
            return  # never led, or handing over at shutdown
        # Elected once: the core runs or is starting, and only a restart puts it down.
        log.warning("lost the leader's lease: this process stops, to restart as a follower")
        self._fail()

    async def close(self) -> None:
        await self.reader.stop()
        await cancel_all(self.tasks)
        await self.copy.close()


def _stopping(code: int) -> None:
    ExitStatus.code = code


def _terminate() -> None:
    """A graceful stop, as on SIGTERM: WebSockets closed with 1012 (service restart),
    so clients reconnect to another process; the writers drain."""
    os.kill(os.getpid(), signal.SIGTERM)
