"""Login throttling: guessing is throttled, the attacker locks themselves out, not the user.

The fake-clock tests run the production numbers (LoginPolicy defaults) on both
backends; one test runs short windows on Redis's own clock.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from server.limits.errors import LimiterUnavailable, RateLimited
from server.limits.limiter import FailMode, Limiter, LockoutPolicy, RedisLimiter
from server.limits.login_throttle import LoginPolicy, LoginThrottle, normalise_email, normalise_ip
from tests.server.limits.helpers import FakeClock, redis_limiter
from tests.support.redis import free_port
from tests.support.timing import SCALE

USER = "alice@example.com"
ATTACKER_IP = "203.0.113.66"
USER_IP = "198.51.100.7"


def ips() -> Iterator[str]:
    """A fresh address per call: an attacker with a botnet."""
    n = 0
    while True:
        n += 1
        yield f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


async def attempt(throttle: LoginThrottle, email: str, ip: str) -> str:
    """One wrong-password attempt: "allowed" if it reached the password check, else the scope."""
    try:
        await throttle.check(email, ip)
    except RateLimited as exc:
        assert exc.retry_after_s > 0
        return str(exc.extensions["scope"])
    await throttle.failed(email, ip)
    return "allowed"


async def rejection(throttle: LoginThrottle, email: str, ip: str) -> RateLimited:
    with pytest.raises(RateLimited) as caught:
        await throttle.check(email, ip)
    return caught.value


async def test_a_thousand_guesses_from_one_ip_get_five_through(
    backend: tuple[Limiter, FakeClock],
) -> None:
    limiter, _ = backend
    throttle = LoginThrottle(limiter)
    outcomes = Counter([await attempt(throttle, USER, ATTACKER_IP) for _ in range(1000)])
    # 5 reach the password check; the source lock refuses the rest of the IP's burst of
    # 50, and the IP limit everything after that.
    assert outcomes == {"allowed": 5, "account_ip": 45, "ip": 950}


async def test_a_thousand_parallel_guesses_get_five_through(
    backend: tuple[Limiter, FakeClock],
) -> None:
    """Failures are recorded only after the password hash; the budget is taken before it."""
    limiter, _ = backend
    throttle = LoginThrottle(limiter)
    ip_pool = ips()
    in_flight = asyncio.Semaphore(100)  # keeps Redis connections (file descriptors) bounded

    async def slow_guess() -> bool:
        async with in_flight:
            try:
                await throttle.check(USER, next(ip_pool))
            except RateLimited:
                return False
            await asyncio.sleep(0.001)  # the password hash, off the event loop
            return True

    allowed = await asyncio.gather(*(slow_guess() for _ in range(1000)))
    assert sum(allowed) == 5


async def test_the_real_user_logs_in_from_another_ip_after_the_lock(
    backend: tuple[Limiter, FakeClock],
) -> None:
    limiter, clock = backend
    throttle = LoginThrottle(limiter)
    for _ in range(1000):
        await attempt(throttle, USER, ATTACKER_IP)

    locked = await rejection(throttle, USER, USER_IP)
    assert locked.extensions["scope"] == "account"
    assert locked.extensions["retryAfter"] == 15 * 60  # time-bounded: the base lock

    # Hammering on while locked extends nothing.
    clock.advance(60)
    for _ in range(100):
        assert await attempt(throttle, USER, ATTACKER_IP) != "allowed"
    assert (await rejection(throttle, USER, USER_IP)).retry_after_s == 14 * 60

    clock.advance(14 * 60)
    await throttle.check(USER, USER_IP)  # the real user, right password
    await throttle.succeeded(USER, USER_IP)

    # The attacker's own address stays locked for this account (1 h from its 5th guess).
    source = await rejection(throttle, USER, ATTACKER_IP)
    assert source.extensions["scope"] == "account_ip"
    assert source.retry_after_s == 60 * 60 - 15 * 60

    # The success reset the account: a few typos later the user still gets in.
    for _ in range(4):
        assert await attempt(throttle, USER, USER_IP) == "allowed"
    await throttle.check(USER, USER_IP)
    await throttle.succeeded(USER, USER_IP)


async def test_the_account_lock_doubles_and_is_capped(
    backend: tuple[Limiter, FakeClock],
) -> None:
    limiter, clock = backend
    throttle = LoginThrottle(limiter)
    botnet = ips()
    for _ in range(5):
        assert await attempt(throttle, USER, next(botnet)) == "allowed"
    locks = []
    for _ in range(5):
        wait = (await rejection(throttle, USER, next(botnet))).retry_after_s
        locks.append(wait)
        clock.advance(wait)
        assert await attempt(throttle, USER, next(botnet)) == "allowed"
    assert locks == [900, 1800, 3600, 3600, 3600]
    # Forgotten 15 minutes after the last lock ends: a fresh budget of five.
    clock.advance(3600 + 15 * 60)
    outcomes = [await attempt(throttle, USER, next(botnet)) for _ in range(6)]
    assert outcomes == ["allowed"] * 5 + ["account"]


async def test_the_attackers_source_lock_escalates_without_touching_the_account(
    backend: tuple[Limiter, FakeClock],
) -> None:
    limiter, clock = backend
    throttle = LoginThrottle(limiter)
    for _ in range(5):
        await attempt(throttle, USER, ATTACKER_IP)
    waits = []
    for _ in range(3):
        wait = (await rejection(throttle, USER, ATTACKER_IP)).retry_after_s
        waits.append(wait)
        clock.advance(wait)
        assert await attempt(throttle, USER, ATTACKER_IP) == "allowed"
        # One guess per lock: the account never locks again, so the user is unaffected.
        await throttle.check(USER, USER_IP)
    assert waits == [3600, 7200, 14400]


async def test_the_ip_limit_covers_all_accounts(backend: tuple[Limiter, FakeClock]) -> None:
    limiter, clock = backend
    throttle = LoginThrottle(limiter)
    for n in range(50):
        assert await attempt(throttle, f"user{n}@example.com", ATTACKER_IP) == "allowed"
    spraying = await rejection(throttle, "user50@example.com", ATTACKER_IP)
    assert spraying.extensions["scope"] == "ip"
    assert spraying.retry_after_s == 1.2  # 50 per minute
    clock.advance(1.2)
    assert await attempt(throttle, "user50@example.com", ATTACKER_IP) == "allowed"
    # A success does not refund the IP: it counts attempts, not failures.
    await throttle.succeeded("user50@example.com", ATTACKER_IP)
    assert (await rejection(throttle, "user51@example.com", ATTACKER_IP)).extensions[
        "scope"
    ] == "ip"


async def test_spellings_of_one_account_and_one_ipv6_subscriber_share_limits(
    backend: tuple[Limiter, FakeClock],
) -> None:
    limiter, _ = backend
    throttle = LoginThrottle(limiter)
    spellings = [" Alice@Example.com", "ALICE@EXAMPLE.COM", "alice@example.com "]
    addresses = ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2:abcd::"]
    for n in range(5):
        assert await attempt(throttle, spellings[n % 3], addresses[n % 3]) == "allowed"
    assert (await rejection(throttle, USER, "2001:db8:1:2::77")).extensions["scope"] == (
        "account_ip"
    )
    assert (await rejection(throttle, USER, "2001:db8:1:3::1")).extensions["scope"] == "account"


def test_normalisation() -> None:
    assert normalise_email("  ÅSA@Example.COM ") == "åsa@example.com"
    assert normalise_email("ＡＢＣ@example.com") == "abc@example.com"  # full-width, NFKC
    assert normalise_ip(" 192.0.2.1 ") == "192.0.2.1"
    assert normalise_ip("::ffff:192.0.2.1") == "192.0.2.1"
    assert normalise_ip("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    other = normalise_ip("testclient")
    assert other.startswith("other:") and other == normalise_ip("testclient")
    assert len(normalise_ip("x" * 10_000)) < 40


async def test_login_fails_closed_when_redis_is_down() -> None:
    client = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    try:
        throttle = LoginThrottle(RedisLimiter(client, fail_mode=FailMode.CLOSED, timeout_s=0.2))
        with pytest.raises(LimiterUnavailable) as caught:
            await throttle.check(USER, USER_IP)
        assert caught.value.extensions["code"] == "UNAVAILABLE"
        with pytest.raises(LimiterUnavailable):
            await throttle.failed(USER, USER_IP)
    finally:
        await client.aclose()


async def test_short_windows_on_redis_time(redis_client: Redis) -> None:
    """The production path (Redis TIME, real sleeps), windows shrunk to fractions of a second."""
    lock_s = 0.3 * SCALE
    policy = LoginPolicy(
        ip_attempts_per_minute=60,
        ip_burst=50,
        account_attempts=5,
        account_window_s=5 * lock_s / 3,  # one attempt back every lock_s / 3
        account_lockout=LockoutPolicy(threshold=5, base_s=lock_s, cap_s=4 * lock_s, forget_s=1),
        source_lockout=LockoutPolicy(threshold=5, base_s=60, cap_s=600, forget_s=600),
    )
    limiter = redis_limiter(redis_client)
    throttle = LoginThrottle(limiter, policy)
    guesses = [await attempt(throttle, USER, ATTACKER_IP) for _ in range(5)]
    assert guesses == ["allowed"] * 5

    locked = await rejection(throttle, USER, USER_IP)
    assert locked.extensions["scope"] == "account"
    assert 0 < locked.retry_after_s <= lock_s
    # The attacker hammers on: its source lock refuses it, and nothing is extended.
    more = Counter([await attempt(throttle, USER, ATTACKER_IP) for _ in range(100)])
    assert more["allowed"] == 0
    wait = await limiter.locked_for(throttle.keys(USER, USER_IP).account_lock)
    await asyncio.sleep(wait + 0.002)
    await throttle.check(USER, USER_IP)
    await throttle.succeeded(USER, USER_IP)
    # The attacker is still refused (by its IP limit and its one-minute source lock).
    assert (await rejection(throttle, USER, ATTACKER_IP)).extensions["scope"] in (
        "ip",
        "account_ip",
    )
    assert await limiter.locked_for(throttle.keys(USER, ATTACKER_IP).source_lock) > 60 - 1
