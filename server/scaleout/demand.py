"""What every process's clients want streamed reaches the leader's upstream feed.

The universe (``TICKGRAPH_SYMBOLS``) is always subscribed upstream. Any other symbol is
wanted while some client of some process streams it: each process keeps its own set in
Redis (``{tickgraph:demand}:<process>``, a set expiring after ``ttl_ms`` unless
refreshed, written whenever it changes), and the leader subscribes upstream to the
union of every live process's set and drops a symbol once nobody's set has it. A
process that dies stops wanting after its ttl. While Redis cannot be read, the leader
keeps what it has subscribed (it never shrinks on missing information).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_PROCESSES = "{tickgraph:demand}:processes"


def _key(process: str) -> str:
    return f"{{tickgraph:demand}}:{process}"


class Demand:
    def __init__(
        self,
        redis: Redis,
        process: str,
        universe: Iterable[str],
        *,
        want: Callable[[set[str]], None],
        unwant: Callable[[set[str]], None],
        ttl_ms: int = 10_000,
        every_s: float = 0.5,
    ) -> None:
        self._redis = redis
        self._process = process
        self._universe = frozenset(universe)
        self._want = want
        self._unwant = unwant
        self._ttl_ms = ttl_ms
        self._every = every_s
        self.local: set[str] = set()
        #: Upstream subscriptions beyond the universe (on the leader).
        self.upstream: set[str] = set()
        self.leading = False
        self._changed = asyncio.Event()
        self._remote: set[str] = set()

    def on_interest(self, symbol: str, wanted: bool) -> None:
        """``MarketHub.on_interest``: the first subscriber of a symbol, or the last gone."""
        if symbol in self._universe:
            return
        (self.local.add if wanted else self.local.discard)(symbol)
        if self.leading:
            self._apply(self._remote | self.local)  # our own clients need not wait
        self._changed.set()

    async def run(self) -> None:
        published_at = 0.0
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._every):
                    await self._changed.wait()
            changed = self._changed.is_set()
            self._changed.clear()
            try:
                if changed or loop.time() - published_at > self._ttl_ms / 3000:
                    await self._publish()
                    published_at = loop.time()
                if self.leading:
                    self._remote = await self._read()
                    self._apply(self._remote | self.local)
            except (RedisError, OSError) as exc:
                log.debug("subscription demand: Redis unavailable: %s", exc)
                self._changed.set()  # publish again once it is back

    async def _publish(self) -> None:
        key = _key(self._process)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if self.local:
                pipe.sadd(key, *sorted(self.local))
                pipe.pexpire(key, self._ttl_ms)
                pipe.sadd(_PROCESSES, self._process)
            await pipe.execute()

    async def _read(self) -> set[str]:
        processes = await self._redis.smembers(_PROCESSES)
        wanted: set[str] = set()
        for raw in processes:
            process = raw.decode() if isinstance(raw, bytes) else str(raw)
            members = await self._redis.smembers(_key(process))
            if not members:
                await self._redis.srem(_PROCESSES, process)
            wanted |= {m.decode() if isinstance(m, bytes) else str(m) for m in members}
        return wanted - self._universe

    def _apply(self, wanted: set[str]) -> None:
        new, gone = wanted - self.upstream, self.upstream - wanted
        if new:
            self._want(new)
        if gone:
            self._unwant(gone)
        self.upstream = set(wanted)
