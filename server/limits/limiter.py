"""Where limiter state lives: in this process, or in Redis shared by every process.

Two kinds of state, behind one backend:

- GCRA rate limits (``hit``): one TAT per key, see ``server.limits.gcra``.
- Lock-outs (``strike``/``locked_for``): consecutive failures per key and an
  exponentially growing lock once they reach a threshold (login throttling).

``InProcessLimiter`` keeps both in dictionaries; its limits are per process.
``RedisLimiter`` keeps them in Redis and decides each request in one Lua script,
atomically and with Redis's own clock (``TIME``), so any number of server processes
share exactly one limit per key and their clocks never need to agree.

When Redis cannot be reached (or does not answer within ``timeout_s``) a
``RedisLimiter`` does what its ``fail_mode`` says; there is deliberately no default,
every call site decides:

- ``OPEN``: allow everything. Availability first; nothing is limited meanwhile.
- ``LOCAL``: fall back to an ``InProcessLimiter`` inside this process. Still
  available, and abuse stays bounded (by the number of processes times the limit).
  The right choice for request and order rates.
- ``CLOSED``: raise ``LimiterUnavailable`` (code ``UNAVAILABLE``). The right choice
  for login throttling: a password-guessing window that opens whenever Redis is
  down is worse than logins failing for the length of an outage.

Each outage is logged once as a warning (with the error) and once more when Redis
answers again, not once per request. After a failure Redis is skipped for
``retry_interval_s`` (a circuit breaker), so an outage costs a request at most one
``timeout_s`` per interval instead of one each.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn, Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from server.limits.errors import LimiterUnavailable
from server.limits.gcra import MICROS, Decision, decide_interval, interval_us, validate

log = logging.getLogger(__name__)


def monotonic_us() -> int:
    """The in-process clock: monotonic, so wall-clock adjustments cannot refill buckets."""
    return time.monotonic_ns() // 1000


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """After ``threshold`` failures, lock for ``base_s``, doubling per failure, up to ``cap_s``.

    Strikes are forgotten ``forget_s`` after the later of the last failure and the
    end of the lock, so sitting out a lock does not also wipe the record: the next
    failure after a lock locks again, for twice as long.
    """

    threshold: int
    base_s: float
    cap_s: float
    forget_s: float

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("threshold must be at least 1")
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("need 0 < base_s <= cap_s")
        if self.forget_s <= 0:
            raise ValueError("forget_s must be positive")

    @property
    def base_us(self) -> int:
        return round(self.base_s * MICROS)

    @property
    def cap_us(self) -> int:
        return round(self.cap_s * MICROS)

    @property
    def forget_us(self) -> int:
        return round(self.forget_s * MICROS)

    def lock_us(self, strikes: int) -> int:
        """The lock that ``strikes`` consecutive failures earn (0 below the threshold)."""
        excess = strikes - self.threshold
        if excess < 0:
            return 0
        if excess >= 53:  # base * 2**53 exceeds any sensible cap; skip the huge integer
            return self.cap_us
        return min(self.cap_us, self.base_us << excess)


class RateLimiter(Protocol):
    async def hit(self, key: str, rate_per_s: float, burst: int, cost: int = 1) -> Decision:
        """Decide one request of ``cost`` cells on ``key``; allowed requests are recorded."""
        ...

    async def reset(self, key: str) -> None:
        """Forget everything about ``key`` (its bucket is full again)."""
        ...


class LockoutStore(Protocol):
    async def strike(self, key: str, policy: LockoutPolicy) -> float:
        """Record one failure; return the lock now in force on ``key``, in seconds (0: none)."""
        ...

    async def locked_for(self, key: str) -> float:
        """Seconds until ``key`` is unlocked (0 when it is not locked)."""
        ...

    async def reset(self, key: str) -> None: ...


class Limiter(RateLimiter, LockoutStore, Protocol):
    """A backend with both kinds of state (both implementations here are one)."""


class FailMode(StrEnum):
    OPEN = "open"
    LOCAL = "local"
    CLOSED = "closed"


@dataclass(slots=True)
class _Lockout:
    strikes: int
    locked_until: int
    last_strike: int

    def expires_at(self, forget_us: int) -> int:
        return max(self.last_strike, self.locked_until) + forget_us


_MIN_SWEEP = 1024


class InProcessLimiter:
    """GCRA and lock-out state in dictionaries; limits apply to this process only.

    Every method runs without awaiting, so each decision is atomic on the event loop.

    Memory stays bounded: a key whose bucket is full again (TAT in the past) or whose
    strikes are forgotten is indistinguishable from an unknown key, so it is dropped
    by a sweep that runs whenever the number of keys has doubled since the last one
    (amortised O(1) per request). If more than ``max_keys`` keys are still live, the
    ones closest to recovery are evicted first: that lifts the limits that were about
    to lift anyway, the smallest loosening possible. Use Redis where an attacker
    could create that many live keys.
    """

    def __init__(self, *, clock: Callable[[], int] = monotonic_us, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._clock = clock
        self._max_keys = max_keys
        self._tats: dict[str, int] = {}
        self._lockouts: dict[str, tuple[_Lockout, int]] = {}  # with its forget_us
        self._sweep_at = min(max_keys, _MIN_SWEEP)

    def __len__(self) -> int:
        return len(self._tats) + len(self._lockouts)

    async def hit(self, key: str, rate_per_s: float, burst: int, cost: int = 1) -> Decision:
        return self.hit_now(key, rate_per_s, burst, cost)

    def hit_now(self, key: str, rate_per_s: float, burst: int, cost: int = 1) -> Decision:
        """``hit`` without the coroutine, for synchronous callers."""
        now = self._clock()
        decision = decide_interval(self._tats.get(key), now, interval_us(rate_per_s), burst, cost)
        # A denied request never changes the state, and only a known key can be denied,
        # so only allowed requests can add keys.
        if decision.allowed and cost > 0:
            self._tats[key] = decision.new_tat
            self._after_insert(now)
        return decision

    async def reset(self, key: str) -> None:
        self._tats.pop(key, None)
        self._lockouts.pop(key, None)

    async def strike(self, key: str, policy: LockoutPolicy) -> float:
        now = self._clock()
        entry = self._lockouts.get(key)
        record = entry[0] if entry is not None else None
        if record is None or now >= record.expires_at(policy.forget_us):
            record = _Lockout(strikes=0, locked_until=0, last_strike=now)
        record.strikes += 1
        record.last_strike = now
        lock = policy.lock_us(record.strikes)
        if lock:
            record.locked_until = max(record.locked_until, now + lock)
        self._lockouts[key] = (record, policy.forget_us)
        self._after_insert(now)
        return max(0, record.locked_until - now) / MICROS

    async def locked_for(self, key: str) -> float:
        entry = self._lockouts.get(key)
        if entry is None:
            return 0.0
        return max(0, entry[0].locked_until - self._clock()) / MICROS

    def _after_insert(self, now: int) -> None:
        if len(self) >= self._sweep_at:
            self._sweep(now)

    def _sweep(self, now: int) -> None:
        self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
        self._lockouts = {
            k: (rec, forget)
            for k, (rec, forget) in self._lockouts.items()
            if rec.expires_at(forget) > now
        }
        if len(self) > self._max_keys:
            # Evict down to 3/4 of the cap, so that a full limiter does not sweep on
            # every insertion.
            keep = self._max_keys * 3 // 4
            expiries = [(tat, False, k) for k, tat in self._tats.items()]
            expiries += [(rec.expires_at(f), True, k) for k, (rec, f) in self._lockouts.items()]
            expiries.sort()
            for _, is_lockout, k in expiries[: len(expiries) - keep]:
                if is_lockout:
                    del self._lockouts[k]
                else:
                    del self._tats[k]
        self._sweep_at = min(self._max_keys, max(_MIN_SWEEP, 2 * len(self)))


# The Lua below mirrors ``gcra.decide_interval`` and ``LockoutPolicy.lock_us``
# line for line; the equivalence tests hold them to identical results. Lua numbers
# are doubles: every value here is an integer below 2**53, so the arithmetic is exact,
# and Redis formats numbers passed to redis.call with %.17g, so no digit is lost.
# The optional last argument replaces TIME with a caller's clock: tests only (see
# ``RedisLimiter``); in production TIME is the one clock all processes share. Redis 5+
# replicates scripts by their effects, so reading TIME before writing is allowed.

_GCRA_LUA = """
-- KEYS[1]: the TAT. ARGV: interval_us, burst, cost [, now_us]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[4] then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local start = now
local stored = redis.call('GET', KEYS[1])
if stored then
  local tat = tonumber(stored)
  if tat > now then start = tat end
end
local capacity = interval * burst
local new_tat = start + interval * cost
local allow_at = new_tat - capacity
if now >= allow_at then
  if cost > 0 then
    -- TTL = time until the bucket is full again; after that the key means nothing.
    redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000))
  end
  return {1, new_tat, 0, math.max(0, math.floor((capacity - (new_tat - now)) / interval)),
          new_tat - now}
end
return {0, start, allow_at - now, math.max(0, math.floor((capacity - (start - now)) / interval)),
        start - now}
"""

_LOCKOUT_LUA = """
-- KEYS[1]: hash {n: strikes, u: locked until, t: last strike}, all in µs.
-- ARGV: op ('strike' or 'peek'), threshold, base_us, cap_us, forget_us [, now_us]
local now
if ARGV[6] then
  now = tonumber(ARGV[6])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local rec = redis.call('HMGET', KEYS[1], 'n', 'u', 't')
local n, u, t = 0, 0, now
if rec[1] then
  n = tonumber(rec[1]); u = tonumber(rec[2]); t = tonumber(rec[3])
end
if ARGV[1] == 'peek' then
  return math.max(0, u - now)
end
local threshold = tonumber(ARGV[2])
local base = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local forget = tonumber(ARGV[5])
if now >= math.max(t, u) + forget then
  n = 0; u = 0
end
n = n + 1
t = now
local excess = n - threshold
if excess >= 0 then
  local lock = cap
  if excess < 53 then lock = math.min(cap, base * 2 ^ excess) end
  if now + lock > u then u = now + lock end
end
redis.call('HSET', KEYS[1], 'n', n, 'u', u, 't', t)
redis.call('PEXPIRE', KEYS[1], math.ceil((math.max(t, u) + forget - now) / 1000))
return math.max(0, u - now)
"""


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A script run by its digest (EVALSHA), loaded again whenever Redis lacks it."""

    source: str

    @property
    def sha(self) -> str:
        # SCRIPT LOAD returns exactly this digest, so it is known without a round trip.
        return hashlib.sha1(self.source.encode()).hexdigest()

    async def run(self, client: Redis, key: str, args: Sequence[int | str]) -> object:
        try:
            return await client.evalsha(self.sha, 1, key, *args)
        except NoScriptError:
            # A restarted or failed-over Redis has an empty script cache.
            await client.script_load(self.source)
            return await client.evalsha(self.sha, 1, key, *args)


_GCRA = LuaScript(_GCRA_LUA)
_LOCKOUT = LuaScript(_LOCKOUT_LUA)

#: Failures that mean "Redis is not answering", as opposed to bugs in our calls.
#: ``RedisError`` covers connection, timeout, loading, read-only replica and OOM errors.
OUTAGE_ERRORS = (RedisError, OSError, TimeoutError)

T = TypeVar("T")


class RedisDown(Exception):
    """Internal: Redis did not answer and the fail mode is not CLOSED (the caller degrades)."""


class RedisGuard:
    """Timeouts, outage logging and a short circuit breaker around Redis calls.

    Without the breaker every request during an outage would wait ``timeout_s`` for a
    Redis that is not there (redis-py itself retries a refused connection for seconds);
    after a failure, calls skip Redis for ``retry_interval_s`` and then probe it again.
    """

    def __init__(
        self, what: str, fail_mode: FailMode, timeout_s: float, retry_interval_s: float
    ) -> None:
        self.fail_mode = fail_mode
        self._what = what
        self._timeout_s = timeout_s
        self._retry_interval_s = retry_interval_s
        self._healthy = True
        self._retry_at = 0.0

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` within the timeout; ``RedisDown`` or ``LimiterUnavailable`` if down."""
        if not self._healthy and time.monotonic() < self._retry_at:
            self._down(None)
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await fn()
        except OUTAGE_ERRORS as exc:
            self._down(exc)
        if not self._healthy:
            self._healthy = True
            log.warning("%s: Redis is answering again; limits are shared again", self._what)
        return result

    def _down(self, exc: BaseException | None) -> NoReturn:
        if exc is not None:
            self._retry_at = time.monotonic() + self._retry_interval_s
            if self._healthy:
                # Once per outage, not once per request.
                self._healthy = False
                log.warning(
                    "%s: Redis is not answering (%s: %s); failing %s until it does",
                    self._what,
                    type(exc).__name__,
                    exc,
                    self.fail_mode.value,
                )
        if self.fail_mode is FailMode.CLOSED:
            raise LimiterUnavailable(
                "this limit cannot be checked right now; try again shortly"
            ) from exc
        raise RedisDown from exc


class RedisLimiter:
    """GCRA and lock-outs in Redis, shared exactly by every process using the same Redis.

    ``client`` is owned by the caller (close it yourself). Keys are ``prefix + key``.
    ``clock`` is for tests only: it replaces Redis ``TIME`` so that decisions can be
    compared with an ``InProcessLimiter`` on the same fake clock; leave it ``None``.
    """

    def __init__(
        self,
        client: Redis,
        *,
        fail_mode: FailMode,
        prefix: str = "tickgraph:limit:",
        timeout_s: float = 0.5,
        retry_interval_s: float = 1.0,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._guard = RedisGuard("rate limiter", fail_mode, timeout_s, retry_interval_s)
        #: LOCAL mode's stand-in while Redis is down.
        self._local = InProcessLimiter()

    @property
    def fail_mode(self) -> FailMode:
        return self._guard.fail_mode

    async def load_scripts(self) -> None:
        """Register the scripts now (optional: a missing script is loaded on first use)."""
        for script in (_GCRA, _LOCKOUT):
            await self._client.script_load(script.source)

    async def hit(self, key: str, rate_per_s: float, burst: int, cost: int = 1) -> Decision:
        interval = interval_us(rate_per_s)
        validate(interval, burst, cost)  # a bad call is a bug: raise it, never "fail open"
        try:
            raw = await self._eval(_GCRA, key, (interval, burst, cost))
        except RedisDown:
            if self.fail_mode is FailMode.OPEN:
                return Decision(True, 0, 0, burst - cost, 0)
            return await self._local.hit(key, rate_per_s, burst, cost)
        allowed, new_tat, retry_after, remaining, reset_after = int_reply(raw, 5)
        return Decision(bool(allowed), new_tat, retry_after, remaining, reset_after)

    async def strike(self, key: str, policy: LockoutPolicy) -> float:
        args = ("strike", policy.threshold, policy.base_us, policy.cap_us, policy.forget_us)
        try:
            raw = await self._eval(_LOCKOUT, key, args)
        except RedisDown:
            if self.fail_mode is FailMode.OPEN:
                return 0.0
            return await self._local.strike(key, policy)
        return int_reply([raw], 1)[0] / MICROS

    async def locked_for(self, key: str) -> float:
        try:
            raw = await self._eval(_LOCKOUT, key, ("peek", 0, 0, 0, 0))
        except RedisDown:
            if self.fail_mode is FailMode.OPEN:
                return 0.0
            return await self._local.locked_for(key)
        return int_reply([raw], 1)[0] / MICROS

    async def reset(self, key: str) -> None:
        # The local copy goes too: in LOCAL mode it may hold state from an outage.
        await self._local.reset(key)
        try:
            await self._guard.call(lambda: self._client.delete(self._prefix + key))
        except RedisDown:
            return

    async def _eval(self, script: LuaScript, key: str, args: Sequence[int | str]) -> object:
        argv = [*args] if self._clock is None else [*args, self._clock()]
        return await self._guard.call(lambda: script.run(self._client, self._prefix + key, argv))


def int_reply(raw: object, n: int) -> list[int]:
    """A script's integer replies, checked: anything else is a bug in the script."""
    if isinstance(raw, list) and len(raw) == n and all(isinstance(v, int) for v in raw):
        return raw
    raise TypeError(f"unexpected reply from a limiter script: {raw!r}")
