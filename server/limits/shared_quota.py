"""Subscription quotas counted per deployment, not per process (with ``REDIS_URL``).

A tier's limits (concurrent subscriptions, distinct symbols streamed) hold for a user
across every process: otherwise a client could hold the limit once per process behind
the load balancer. Each process keeps counting its own subscriptions exactly as alone
(``SubscriptionQuota``, synchronous, released when a subscription ends) and publishes
its count per user to Redis: one key per user and process, ``"<count> <symbols>"``,
expiring after ``ttl_ms`` unless refreshed, so a process that dies stops counting by
itself. An acquire runs one script that adds up the other processes' keys for the
user, refuses if the new total is over a limit, and otherwise writes this process's
new count, atomically per user (all of a user's keys share a hash tag).

With Redis unreachable, acquires are checked against this process's count alone (and
logged once per outage): limits degrade to per-process, subscriptions keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from redis.asyncio import Redis

from server.errors import LimitExceeded
from server.limits.limiter import FailMode, LuaScript, RedisDown, RedisGuard, int_reply
from server.limits.tiers import TierLimits
from server.limits.usage import Lease, SubscriptionQuota, Usage
from server.locks import KeyedLocks

log = logging.getLogger(__name__)

#: ARGV[8]: what the script does besides adding up.
_ACQUIRE, _WRITE, _READ = "1", "0", "2"

_QUOTA_LUA = """
local prefix, me, count, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local sub_limit, sym_limit, mine, mode = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], ARGV[8]
local seen, distinct, total = {}, 0, 0
local function add(n, list)
  total = total + n
  for s in string.gmatch(list, '[^,]+') do
    if not seen[s] then seen[s] = true; distinct = distinct + 1 end
  end
end
for _, proc in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if proc ~= me then
    local v = redis.call('GET', prefix .. proc)
    if v then
      local sep = string.find(v, ' ', 1, true)
      add(tonumber(string.sub(v, 1, sep - 1)), string.sub(v, sep + 1))
    else
      redis.call('SREM', KEYS[1], proc)
    end
  end
end
if mode == '2' then return {0, total, distinct} end
local others, others_distinct = total, distinct
add(count, mine)
if mode == '1' then
  if total > sub_limit then return {1, others, others_distinct} end
  if distinct > sym_limit then return {2, others, others_distinct} end
end
if count == 0 then
  redis.call('DEL', prefix .. me)
  redis.call('SREM', KEYS[1], me)
else
  redis.call('SET', prefix .. me, count .. ' ' .. mine, 'PX', ttl)
  redis.call('SADD', KEYS[1], me)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return {0, total, distinct}
"""
_QUOTA = LuaScript(_QUOTA_LUA)


class SharedQuota:
    """The deployment-wide check around this process's ``SubscriptionQuota``."""

    def __init__(
        self,
        local: SubscriptionQuota,
        redis: Redis,
        process: str,
        *,
        ttl_ms: int = 30_000,
        timeout_s: float = 0.5,
    ) -> None:
        self.local = local
        self._redis = redis
        self._process = process
        self._ttl_ms = ttl_ms
        self._guard = RedisGuard("subscription quota", FailMode.LOCAL, timeout_s, 1.0)
        self._locks = KeyedLocks()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        local.on_change = self._changed

    async def acquire(self, user_id: str, symbols: Iterable[str], limits: TierLimits) -> Lease:
        """As ``SubscriptionQuota.acquire``, over every process of the deployment."""
        async with self._locks(user_id):  # one script per user at a time: it sees our count
            return await self._acquire(user_id, symbols, limits)

    async def _acquire(self, user_id: str, symbols: Iterable[str], limits: TierLimits) -> Lease:
        before = self.local.usage(user_id)
        lease = self.local.acquire(user_id, symbols, limits)  # this process's limits first
        try:
            code, others, others_distinct = await self._run(user_id, _ACQUIRE, limits)
        except RedisDown:
            return lease  # degraded to this process's count (the guard logs it once)
        except BaseException:
            lease.release()
            raise
        if code == 0:
            return lease
        lease.release()
        if code == 1:
            open_now = others + before.subscriptions
            raise LimitExceeded(
                f"the {limits.name} tier allows {limits.concurrent_subscriptions} concurrent "
                f"subscriptions and {open_now} are open on all your connections; end one first",
                resource="subscriptions",
                limit=limits.concurrent_subscriptions,
                current=open_now,
            )
        raise LimitExceeded(
            f"the {limits.name} tier streams at most {limits.symbols_streamed} distinct "
            "symbols at once, counting all your connections",
            resource="symbols",
            limit=limits.symbols_streamed,
            current=others_distinct,
        )

    async def usage(self, user_id: str) -> Usage:
        """The user's subscriptions over the deployment (this process's symbols)."""
        mine = self.local.usage(user_id)
        try:
            _, others, _ = await self._run(user_id, _READ, None)
        except RedisDown:
            return mine
        return Usage(mine.subscriptions + others, mine.symbols)

    async def run(self) -> None:
        """Write released counts soon, and refresh every count before it expires."""
        refresh_every = self._ttl_ms / 3000
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(refresh_every):
                    await self._wake.wait()
            self._wake.clear()
            users = self._dirty if self._dirty else set(self.local.users())
            self._dirty = set()
            for user_id in users:
                try:
                    await self._run(user_id, _WRITE, None)
                except RedisDown:
                    break  # written again at the next refresh
                except Exception:
                    log.exception("could not publish the subscription count of a user")

    def _changed(self, user_id: str) -> None:
        self._dirty.add(user_id)
        self._wake.set()

    async def _run(
        self, user_id: str, mode: str, limits: TierLimits | None
    ) -> tuple[int, int, int]:
        usage = self.local.usage(user_id)
        tag = f"{{tickgraph:quota:{user_id}}}"
        args = (
            f"{tag}:",
            self._process,
            usage.subscriptions,
            self._ttl_ms,
            limits.concurrent_subscriptions if limits else 0,
            limits.symbols_streamed if limits else 0,
            ",".join(sorted(usage.symbols)),
            mode,
        )
        raw = await self._guard.call(lambda: _QUOTA.run(self._redis, f"{tag}:members", args))
        code, total, distinct = int_reply(raw, 3)
        return code, total, distinct
