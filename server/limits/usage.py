"""Per-user usage: concurrent subscriptions and symbols, and daily counters.

``SubscriptionQuota`` counts what is open *in this process*: a subscription lives on
one WebSocket, in one process, and is released when it ends. With several processes
(``REDIS_URL``), ``server.limits.shared_quota`` adds the other processes' counts, so a
user cannot hold a tier's limit once per process.

Daily counters (analyses per day) are different: a user could otherwise get the daily
quota once per process, and again after every restart. ``InProcessDailyCounter`` is
for a single process (development, tests); ``RedisDailyCounter`` shares the counts
between processes and restarts (one atomic script per take; keys expire after the day).
Days are UTC days by the server's wall clock: a quota that resets at 00:00 UTC is easy
to state and does not depend on a market calendar.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from server.errors import LimitExceeded
from server.limits.errors import RateLimited
from server.limits.limiter import FailMode, LuaScript, RedisDown, RedisGuard, int_reply
from server.limits.tiers import TierLimits

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class Usage:
    subscriptions: int
    symbols: frozenset[str]


class _UserUsage:
    __slots__ = ("subscriptions", "symbols")

    def __init__(self) -> None:
        self.subscriptions = 0
        # Symbol -> number of this user's open subscriptions that stream it, so that
        # a symbol shared by two subscriptions counts once and is freed with the last.
        self.symbols: Counter[str] = Counter()


class Lease:
    """One open subscription's share of the quota; ``release`` it when the stream ends."""

    __slots__ = ("_quota", "_released", "symbols", "user_id")

    def __init__(self, quota: SubscriptionQuota, user_id: str, symbols: frozenset[str]) -> None:
        self._quota = quota
        self._released = False
        self.user_id = user_id
        self.symbols = symbols

    @property
    def released(self) -> bool:
        return self._released

    def release(self) -> None:
        """Give the share back. Idempotent: cleanup paths may race to call it."""
        if self._released:
            return
        self._released = True
        self._quota._release(self)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class SubscriptionQuota:
    """Concurrent subscriptions and distinct streamed symbols per user, in this process."""

    def __init__(self) -> None:
        self._users: dict[str, _UserUsage] = {}
        #: Told the user whose count went down (``shared_quota`` publishes it).
        self.on_change: Callable[[str], None] | None = None

    def users(self) -> list[str]:
        """Users with a subscription open in this process."""
        return list(self._users)

    def acquire(self, user_id: str, symbols: Iterable[str], limits: TierLimits) -> Lease:
        """Take one subscription streaming ``symbols``, or raise ``LimitExceeded``.

        Nothing is taken when it raises. Symbols the user already streams elsewhere
        do not count again.
        """
        wanted = frozenset(symbols)
        usage = self._users.get(user_id)
        open_now = usage.subscriptions if usage is not None else 0
        streamed = set(usage.symbols) if usage is not None else set()
        if open_now >= limits.concurrent_subscriptions:
            raise LimitExceeded(
                f"the {limits.name} tier allows {limits.concurrent_subscriptions} "
                f"concurrent subscriptions and {open_now} are open; end one first",
                resource="subscriptions",
                limit=limits.concurrent_subscriptions,
                current=open_now,
            )
        distinct = len(streamed | wanted)
        if distinct > limits.symbols_streamed:
            raise LimitExceeded(
                f"the {limits.name} tier streams at most {limits.symbols_streamed} distinct "
                f"symbols at once; this subscription would make {distinct}",
                resource="symbols",
                limit=limits.symbols_streamed,
                current=len(streamed),
            )
        if usage is None:
            usage = self._users[user_id] = _UserUsage()
        usage.subscriptions += 1
        usage.symbols.update(wanted)
        return Lease(self, user_id, wanted)

    def usage(self, user_id: str) -> Usage:
        usage = self._users.get(user_id)
        if usage is None:
            return Usage(0, frozenset())
        return Usage(usage.subscriptions, frozenset(usage.symbols))

    def _release(self, lease: Lease) -> None:
        usage = self._users[lease.user_id]
        usage.subscriptions -= 1
        usage.symbols.subtract(lease.symbols)
        for symbol in lease.symbols:
            if usage.symbols[symbol] <= 0:
                del usage.symbols[symbol]
        if usage.subscriptions == 0:
            del self._users[lease.user_id]  # idle users cost no memory
        if self.on_change is not None:
            self.on_change(lease.user_id)


class DailyCounter(Protocol):
    async def take(self, key: str, limit: int, *, what: str, tier: str = "") -> int:
        """Use one of ``limit`` for today; return how many are left.

        Raises ``RateLimited`` (``retryAfter``: until 00:00 UTC) when today's are used
        up, and ``LimitExceeded`` when ``limit`` is 0. ``what`` names the thing counted
        in the error message ("analyses"); ``tier`` whose limit it is (it labels the
        refusal in /metrics).
        """
        ...


def _day_and_reset(now_s: float) -> tuple[int, float]:
    """Today's UTC day number and the seconds until the next UTC midnight."""
    day = int(now_s // DAY_S)
    return day, (day + 1) * DAY_S - now_s


def _refuse_none_included(limit: int, what: str) -> None:
    """A tier with none of ``what`` gets a clear "not included", not "retry tomorrow"."""
    if limit <= 0:
        raise LimitExceeded(f"this tier includes no {what}", resource=what, limit=0)


def _exhausted(limit: int, what: str, until_reset_s: float, tier: str) -> RateLimited:
    return RateLimited(
        f"the daily limit of {limit} {what} is used up; it resets at 00:00 UTC",
        retry_after_s=until_reset_s,
        kind=f"daily_{what}",
        tier=tier,
        scope=what,
        limit=limit,
    )


class InProcessDailyCounter:
    """Daily counts in this process only (development, tests, single-process servers)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._day = 0
        self._used: dict[str, int] = {}

    async def take(self, key: str, limit: int, *, what: str, tier: str = "") -> int:
        _refuse_none_included(limit, what)
        day, until_reset = _day_and_reset(self._clock())
        if day != self._day:
            # A new day: every count starts again (and yesterday's keys go away).
            self._day = day
            self._used.clear()
        used = self._used.get(key, 0)
        if used >= limit:
            raise _exhausted(limit, what, until_reset, tier)
        self._used[key] = used + 1
        return limit - used - 1


_DAILY_LUA = """
-- KEYS[1]: today's count. ARGV: limit, ttl_ms. Returns {allowed, used after}.
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
  return {0, used}
end
used = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, used}
"""

_DAILY = LuaScript(_DAILY_LUA)

#: Keys outlive their day by this much, so processes whose clocks differ by a few
#: seconds around midnight still find the same count.
_DAY_SLACK_S = 3600


class RedisDailyCounter:
    """Daily counts shared by every process: key ``prefix + key + ":" + day``.

    The day comes from this process's wall clock (a script may only touch keys it is
    given, so the day must be in the key name before Redis is asked). Refused takes
    do not count. ``fail_mode`` as for ``RedisLimiter`` (OPEN reports ``limit`` left,
    since nothing is known); analyses call a paid model, so ``CLOSED`` suits them.
    """

    def __init__(
        self,
        client: Redis,
        *,
        fail_mode: FailMode,
        prefix: str = "tickgraph:daily:",
        timeout_s: float = 0.5,
        retry_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._guard = RedisGuard("daily counter", fail_mode, timeout_s, retry_interval_s)
        self._local = InProcessDailyCounter(clock=clock)

    async def take(self, key: str, limit: int, *, what: str, tier: str = "") -> int:
        _refuse_none_included(limit, what)
        day, until_reset = _day_and_reset(self._clock())
        redis_key = f"{self._prefix}{key}:{day}"
        ttl_ms = round((until_reset + _DAY_SLACK_S) * 1000)
        try:
            raw = await self._guard.call(
                lambda: _DAILY.run(self._client, redis_key, (limit, ttl_ms))
            )
        except RedisDown:
            if self._guard.fail_mode is FailMode.OPEN:
                return limit
            return await self._local.take(key, limit, what=what, tier=tier)
        allowed, used = int_reply(raw, 2)
        if not allowed:
            raise _exhausted(limit, what, until_reset, tier)
        return limit - used
