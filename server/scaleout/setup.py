"""Joining a deployment at start-up (with ``REDIS_URL``): the Redis bus, the election,
this process's copy of the market, and what happens when it is elected or loses the
lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from server.delivery.redis_bus import RedisBus
from server.delivery.redis_wire import market_codecs
from server.market.state import MarketState
from server.scaleout.market_copy import FollowerCopy, LeaderWriter
from server.scaleout.node import DEMOTED_EXIT_CODE, Node
from server.settings import Settings
from server.storage.database import Database
from server.storage.fence import claim
from streams.feed_status import FeedStatusTracker

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


def join(
    settings: Settings,
    stack: contextlib.AsyncExitStack,
    *,
    redis: Redis,
    bus: RedisBus,
    state: MarketState,
    tracker: FeedStatusTracker,
    database: Database,
    start_core: Callable[[], Awaitable[None]],
    request_exit: Callable[[], None] | None = None,
) -> Node:
    """This process as a member of the deployment: a follower (its market copy fed by
    the bus) until elected; then it starts the core (``start_core``) and only then
    serves what needs the leader. It campaigns once ``Node.start`` is called, when the
    server listens (``Runtime.serving``): building the app blocks the event loop for
    seconds on a busy machine, and a lease held meanwhile would run out unrenewed."""
    copy = FollowerCopy(
        redis, bus, state, tracker, settings.symbols, bus_connected=lambda: bus.connected
    )
    writer = LeaderWriter(redis, state, tracker)
    tasks: list[asyncio.Task[None]] = []
    stop = request_exit or _terminate

    async def become_leader(fence: int) -> None:
        try:
            # First make every write of an older leader fail, then rebuild from what
            # it wrote (server.storage.fence).
            await claim(database, fence, node.election.holder_id)
            await start_core()
        except Exception:
            log.exception("elected, but the core did not start; stepping down")
            _stopping(DEMOTED_EXIT_CODE)
            stop()
            return
        tasks.append(asyncio.create_task(writer.run(), name="market-snapshot"))
        node.serving = True
        log.info("serving as the leader (fence %d)", node.election.fence)

    elected: list[int] = []

    def on_elected(fence: int) -> None:
        elected.append(fence)
        bus.fence = fence  # readers refuse anything an older leader still publishes
        copy.detach()  # this process's ingest applies what it publishes from now on
        tasks.append(asyncio.create_task(become_leader(fence), name="become-leader"))

    async def refence(fence: int) -> None:
        try:
            await claim(database, fence, node.election.holder_id)
        except Exception:
            log.exception("could not claim the new fence %d; stepping down", fence)
            _stopping(DEMOTED_EXIT_CODE)
            stop()

    def on_refenced(fence: int) -> None:
        # Redis lost the lease and we took it back with a new token: publish with it,
        # and make it the database's fence too (the old one would refuse our writes
        # only if someone else had claimed since, which the take-back rules out).
        bus.fence = fence
        tasks.append(asyncio.create_task(refence(fence), name="refence"))

    def on_demoted() -> None:
        bus.fence = 0
        if not elected or node.stopping:
            return  # never led, or handing over at shutdown
        # Elected once: the core runs or is starting, and only a restart puts it down.
        node.serving = False
        log.warning("lost the leader's lease: this process stops, to restart as a follower")
        _stopping(DEMOTED_EXIT_CODE)
        stop()

    node = Node(
        redis,
        advertise_url=advertised(settings),
        ttl_ms=settings.leader_ttl_ms,
        on_elected=on_elected,
        on_demoted=on_demoted,
        on_refenced=on_refenced,
    )
    bus.on_connection = copy.on_connection
    copy.attach()

    async def close() -> None:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await copy.close()

    # Stopped before the core; the lease itself is handed over by ``Node.stop``, which
    # the caller runs after the core has stopped and its writers have drained.
    stack.push_async_callback(close)
    return node


def _stopping(code: int) -> None:
    ExitStatus.code = code


def _terminate() -> None:
    """A graceful stop, as on SIGTERM: WebSockets closed with 1012 (service restart),
    so clients reconnect to another process; the writers drain."""
    os.kill(os.getpid(), signal.SIGTERM)
