"""This process's place in a deployment of several: leader or follower, and where the
leader is.

The leader is whoever holds the Redis lease ``feed`` (``server.delivery.leadership``);
the lease's holder names the leader's address (``TICKGRAPH_ADVERTISE_URL``), so
followers know where to relay. ``serving`` turns true once the leader's stateful core
(``Runtime._start_core``) has started: until then even the elected process answers
what needs the leader with SERVICE_UNAVAILABLE and a retry hint, never with half-built
state.

Losing the lease is fail-stop: the process stops serving and exits (code 75,
"temporary failure") to be started again as a follower by its supervisor. Handing
every piece of in-memory state back (books, working paper orders, forming bars, armed
alerts) and rebuilding it later is what a restart already does, tested; doing it in
place would be a second, rarely exercised path for the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.delivery.leadership import Holder, LeaderElection, Lease, process_id
from server.tasks import cancel_all

log = logging.getLogger(__name__)

#: The exit code of a process that lost the lease (EX_TEMPFAIL: start it again).
DEMOTED_EXIT_CODE = 75


class Node:
    def __init__(
        self,
        redis: Redis,
        *,
        advertise_url: str,
        ttl_ms: int,
        on_elected: Callable[[int], None],
        on_demoted: Callable[[], None],
        on_refenced: Callable[[int], None] | None = None,
        relay_timeout_s: float = 60.0,
        watch_every_s: float = 0.5,
    ) -> None:
        self.url = advertise_url.rstrip("/")
        self._redis = redis
        self.lease = Lease(redis, "feed", ttl_ms)
        self.election = LeaderElection(
            self.lease,
            holder=f"{self.url} {process_id()}",
            on_elected=on_elected,
            on_demoted=on_demoted,
            on_refenced=on_refenced,
        )
        self.serving = False
        #: Set by ``stop``: losing the lease then is the hand-over, not a failure.
        self.stopping = False
        self.leader: str | None = None
        self._watch_every = watch_every_s
        # Relayed operations include placing orders (answered once the broker has) and
        # analyses: a generous timeout, but not an unbounded one.
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(relay_timeout_s, connect=2.0))
        self._watcher: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self.election.is_leader

    def start(self) -> None:
        if self._watcher is not None:
            return
        self.election.start()
        self._watcher = asyncio.create_task(self._watch(), name="leader-watch")

    async def stop(self) -> None:
        """Hand the lease over (a follower takes it within ``retry_s``), then close."""
        self.stopping = True
        await cancel_all([self._watcher])
        self.serving = False
        await self.election.stop()
        await self.http.aclose()

    def relay_target(self) -> str | None:
        """The leader's address when it is another process; ``None`` when this process
        serves (or will: it leads and is starting)."""
        if self.is_leader or self.leader == self.url:
            return None
        return self.leader

    async def refresh(self) -> str | None:
        """Read who leads now (after a relay found the last known leader gone). A Redis
        outage keeps the last known leader: relays go straight to it and need no Redis."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            self.leader = _address(await asyncio.wait_for(self.lease.holder(), 2.0))
        return self.relay_target()

    async def _watch(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._watch_every)


def role_of(node: Node | None) -> str:
    """For /readyz: ``single`` (no REDIS_URL), ``leader`` once serving, else ``follower``."""
    if node is None:
        return "single"
    return "leader" if node.serving else "follower"


def _address(holder: Holder | None) -> str | None:
    if holder is None:
        return None
    url, _, _process = holder.holder.partition(" ")
    return url or None
