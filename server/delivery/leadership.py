"""One upstream feed per deployment: a leader elected by a Redis lease.

Polygon allows one WebSocket per API key and evicts the older of two, so exactly one
process may hold the feed. That process holds a lease:

* **Acquire**: ``SET lease value NX PX ttl`` inside a script that also draws a
  **fencing token**, ``max(INCR fence, Redis's clock in ms)``. The clock term keeps
  tokens increasing even if Redis restarts without persistence and forgets the
  counter (unless its clock goes back), so a reader that saw token *n* never has to
  accept a smaller one from a new leader.
* **Renew**: every ``ttl/3``, ``PEXPIRE`` only if the lease still holds our value
  (compare-and-set in a script). The holder counts its lease valid until the time
  it *sent* the last successful command plus the ttl, minus a margin for clock rate
  differences; if it cannot renew before then (Redis unreachable, or the loop was
  paused) it steps down on its own, without waiting to hear from Redis.
* **Redis restarted without persistence** forgets the lease while its holder still
  leads: campaigns then wait one ttl (a *quiet* key, set when the fence counter is
  found missing) and the holder takes the lease back at its next renewal, so a Redis
  restart does not move the feed (``Lease.acquire``).
* **Release** on a clean stop (compare-and-delete), so a follower takes over at its
  next attempt instead of after the ttl.
* **Fencing**: the leader stamps its token on what it publishes
  (``RedisBus.fence``); readers refuse tokens below the highest they have seen. A
  leader paused past its lease that wakes up and publishes is therefore ignored.

Followers try to acquire every ``retry_s``: a dead leader is replaced within
``ttl + retry_s`` (3.5 s with the defaults), a cleanly stopped one within ``retry_s``.
Keys use one hash tag, so the scripts also run on a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  local sep = string.find(current, ' ', 1, true)
  if sep and string.sub(current, sep + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(current, 1, sep - 1))
  end
  return 0
end
if ARGV[3] == '0' then
  if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
  if redis.call('SETNX', KEYS[2], 0) == 1 then
    redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
    return 0
  end
end
local now = redis.call('TIME')
local clock = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local fence = redis.call('INCR', KEYS[2])
if fence < clock then
  fence = clock
  redis.call('SET', KEYS[2], fence)
end
redis.call('SET', KEYS[1], fence .. ' ' .. ARGV[1], 'PX', ARGV[2])
return fence
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease, as stored in Redis: the fencing token and the holder's id."""

    fence: int
    holder: str

    @classmethod
    def parse(cls, raw: bytes | str) -> Holder:
        text = raw.decode() if isinstance(raw, bytes) else raw
        fence, _, holder = text.partition(" ")
        return cls(int(fence), holder)


def process_id() -> str:
    """A readable id that is unique even for two processes with one pid (containers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """The Redis side of one named lease (no timing policy: see ``LeaderElection``)."""

    def __init__(self, redis: Redis, name: str, ttl_ms: int) -> None:
        self._redis = redis
        self.key = f"{{tickgraph:lease:{name}}}:holder"
        self.fence_key = f"{{tickgraph:lease:{name}}}:fence"
        self.quiet_key = f"{{tickgraph:lease:{name}}}:quiet"
        self.ttl_ms = ttl_ms
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self, holder: str, *, take_back: bool = False) -> int:
        """The fencing token if the lease was free and is now ours, else 0. A lease that
        is already ``holder``'s is ours with its token: an acquire whose reply was lost
        (timed out on a busy loop after Redis ran it) must not leave the lease held by
        a process that does not know it, and nobody leading until it expires.

        A Redis without the fence counter is new, or restarted and lost its data: the
        lease may still be held by a process that cannot know it was forgotten. A
        campaign then starts a quiet period of one ttl in which only ``take_back`` (the
        holder renewing, ``LeaderElection``) may acquire: a Redis restart does not move
        the lease, while a new deployment waits one ttl for its first leader."""
        fence = await self._acquire(
            keys=[self.key, self.fence_key, self.quiet_key],
            args=[holder, self.ttl_ms, "1" if take_back else "0"],
        )
        return int(fence)

    async def renew(self, holder: Holder) -> bool:
        value = f"{holder.fence} {holder.holder}"
        return bool(await self._renew(keys=[self.key], args=[value, self.ttl_ms]))

    async def release(self, holder: Holder) -> bool:
        return bool(await self._release(keys=[self.key], args=[f"{holder.fence} {holder.holder}"]))

    async def holder(self) -> Holder | None:
        raw = await self._redis.get(self.key)
        return Holder.parse(raw) if raw is not None else None


class LeaderElection:
    """Campaigns for a lease between ``start`` and ``stop``; reports changes of role.

    ``on_elected(fence)`` and ``on_demoted()`` are synchronous and must only start or
    stop work (create or cancel tasks); they run on the election's task.
    """

    def __init__(
        self,
        lease: Lease,
        *,
        holder: str | None = None,
        on_elected: Callable[[int], None],
        on_demoted: Callable[[], None],
        on_refenced: Callable[[int], None] | None = None,
        retry_s: float = 0.5,
        margin: float = 0.1,
    ) -> None:
        self._lease = lease
        self.holder_id = holder or process_id()
        self._on_elected = on_elected
        self._on_demoted = on_demoted
        self._on_refenced = on_refenced
        self._ttl = lease.ttl_ms / 1000
        self._retry = retry_s
        # Renew three times per ttl; count the lease valid a little shorter than
        # Redis does, for clock rate differences and scheduling delay.
        self._renew_every = self._ttl / 3
        self._valid_for = self._ttl * (1 - margin)
        self._held: Holder | None = None
        self._deadline = 0.0
        self._next_renew = 0.0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def fence(self) -> int:
        """Our fencing token while we lead, else 0."""
        held = self._held
        return held.fence if held is not None and self.is_leader else 0

    @property
    def is_leader(self) -> bool:
        return self._held is not None and time.monotonic() < self._deadline

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lease-{self._lease.key}")

    async def stop(self) -> None:
        """Stop campaigning; if we lead, step down and hand the lease back."""
        self._stopping = True
        task, self._task = self._task, None
        while task is not None and not task.done():
            # Python 3.11's wait_for can swallow a cancellation that arrives as the
            # awaited call completes: cancel until the task has really ended (its loop
            # also ends by itself once ``_stopping`` is set).
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task}, timeout=self._retry)
        held, self._held = self._held, None
        if held is None:
            return
        self._notify_demoted()
        try:
            await asyncio.wait_for(self._lease.release(held), self._ttl)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not release %s (it expires by itself): %s", self._lease.key, exc)

    async def _run(self) -> None:
        while not self._stopping:
            if self._held is None:
                await self._campaign()
            else:
                await self._hold()

    async def _campaign(self) -> None:
        sent = time.monotonic()
        try:
            fence = await asyncio.wait_for(self._lease.acquire(self.holder_id), self._ttl)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("leader election: cannot reach Redis: %s", exc)
            fence = 0
        if not fence:
            await asyncio.sleep(self._retry)
            return
        self._held = Holder(fence, self.holder_id)
        self._deadline = sent + self._valid_for
        self._next_renew = sent + self._renew_every
        log.info("leader election: elected for %s (fence %d)", self._lease.key, fence)
        try:
            self._on_elected(fence)
        except Exception:
            log.exception("leader election: on_elected failed; stepping down")
            held, self._held = self._held, None
            self._notify_demoted()
            if held is not None:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    await asyncio.wait_for(self._lease.release(held), self._ttl)
            await asyncio.sleep(self._retry)

    async def _hold(self) -> None:
        held = self._held
        assert held is not None
        # Wake for the next renewal, or at the deadline at the latest: stepping down
        # must happen before Redis lets the lease expire and elects someone else.
        wait = min(self._next_renew, self._deadline) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        sent = time.monotonic()
        if sent >= self._deadline:
            self._step_down("the lease ran out before it could be renewed")
            return
        try:
            renewed = await asyncio.wait_for(self._lease.renew(held), self._deadline - sent)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("leader election: renewal failed: %s", exc)
            if time.monotonic() >= self._deadline:
                self._step_down("the lease ran out while Redis was unreachable")
            else:
                self._next_renew = time.monotonic() + min(self._retry, self._renew_every)
            return
        if not renewed:
            if not await self._take_back(held, sent):
                self._step_down("another process holds the lease")
            return
        self._deadline = sent + self._valid_for
        self._next_renew = sent + self._renew_every

    async def _take_back(self, held: Holder, sent: float) -> bool:
        """Redis restarted without persistence and forgot the lease while we still
        held it: take it again at once if nobody else has (with a new, higher fence,
        reported through ``on_refenced``). Campaigns of other processes wait one ttl
        after Redis lost the lease (``Lease.acquire``), so we get it back first."""
        if self._on_refenced is None:
            return False
        try:
            if await asyncio.wait_for(self._lease.holder(), self._deadline - sent) is not None:
                return False
            fence = await asyncio.wait_for(
                self._lease.acquire(held.holder, take_back=True), self._deadline - time.monotonic()
            )
        except (RedisError, OSError, TimeoutError, ValueError):
            return False
        if not fence:
            return False
        self._held = Holder(fence, held.holder)
        self._deadline = sent + self._valid_for
        self._next_renew = sent + self._renew_every
        log.warning(
            "leader election: %s was lost by Redis; taken back (fence %d)", self._lease.key, fence
        )
        self._on_refenced(fence)
        return True

    def _step_down(self, reason: str) -> None:
        log.warning("leader election: stepping down from %s: %s", self._lease.key, reason)
        self._held = None
        self._notify_demoted()

    def _notify_demoted(self) -> None:
        try:
            self._on_demoted()
        except Exception:
            log.exception("leader election: on_demoted failed")
