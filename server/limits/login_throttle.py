"""Login throttling: per IP, per account, and per (account, IP) source.

Call ``check(email, ip)`` before verifying the password (it raises ``RateLimited``
with ``retryAfter``), then exactly one of ``failed`` or ``succeeded``. Unknown
accounts go through the same steps, so throttling reveals nothing about which
accounts exist. Four pieces of state, each with one job (defaults in brackets):

1. IP attempts, GCRA, charged by every ``check`` [50/min, burst 50]: bounds what one
   address can try over all accounts (credential stuffing). It counts attempts, not
   failures, so it is not reset by a success. IPv6 addresses count per /64, the
   block a single subscriber usually gets.
2. Account attempts, GCRA, charged by every ``check`` [5 per 15 min, burst 5]: bounds
   the guesses on one account that can be in flight at once. Failures are only known
   after the slow password hash, so without a budget taken *before* it a thousand
   parallel requests would all be verified before the first failure is recorded.
3. Account lock-out, counted by ``failed`` [5 failures, then 15 min, doubling per
   further failure, capped at 1 h; forgotten 15 min after the last failure or lock].
4. Source lock-out per (account, IP), counted by ``failed`` [5 failures, then 1 h,
   doubling, capped at 24 h; forgotten after 24 h].

``succeeded`` clears 2, 3 and 4 for that account (and that source).

Why an attacker locks *themselves* out and the real user is not locked out for long:
a source or account that is locked is refused in ``check`` before anything is
counted, so hammering from a locked address extends nothing. The attacker's address
gets the long, escalating source lock (4), while the account lock (3) lasts at most
``account_lockout.cap_s`` after the last failure that got through. From one address
the attacker gets 5 guesses and then one per 1 h, 2 h, 4 h ... 24 h; the real user,
from any other address, can log in as soon as the account lock (15 min after those
5 guesses) is over, and their success resets the account. An attacker spread over
many addresses can still keep the account locked (each lapse of the lock lets one
more guess in, at most one per hour once capped); no per-account scheme avoids that
without recognising the user's device, and the cap keeps each lock time-bounded.

Use a backend that fails CLOSED (``RedisLimiter(fail_mode=FailMode.CLOSED)``): while
Redis is down, logins fail with ``UNAVAILABLE`` rather than allowing unlimited
guessing. With an ``InProcessLimiter`` the limits are per process.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import unicodedata
from dataclasses import dataclass, field

from server.limits.errors import RateLimited
from server.limits.limiter import Limiter, LockoutPolicy
from server.limits.tiers import ANONYMOUS

log = logging.getLogger(__name__)


def _default_account_lockout() -> LockoutPolicy:
    return LockoutPolicy(threshold=5, base_s=15 * 60, cap_s=60 * 60, forget_s=15 * 60)


def _default_source_lockout() -> LockoutPolicy:
    return LockoutPolicy(threshold=5, base_s=60 * 60, cap_s=24 * 3600, forget_s=24 * 3600)


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """The numbers; the module docstring explains what each one is for."""

    ip_attempts_per_minute: float = 50
    ip_burst: int = 50
    account_attempts: int = 5
    account_window_s: float = 15 * 60
    account_lockout: LockoutPolicy = field(default_factory=_default_account_lockout)
    source_lockout: LockoutPolicy = field(default_factory=_default_source_lockout)

    def __post_init__(self) -> None:
        if self.ip_attempts_per_minute <= 0 or self.ip_burst < 1:
            raise ValueError("ip_attempts_per_minute and ip_burst must be positive")
        if self.account_attempts < 1 or self.account_window_s <= 0:
            raise ValueError("account_attempts and account_window_s must be positive")


def normalise_email(email: str) -> str:
    """The account identity for throttling: NFKC, trimmed, case-folded.

    ``Alice@Example.com `` and ``alice@example.com`` must share one counter, or an
    attacker would get a fresh budget per spelling.
    """
    return unicodedata.normalize("NFKC", email).strip().casefold()


def normalise_ip(ip: str) -> str:
    """IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 as its /64 network."""
    text = ip.strip()
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        # Not an address (e.g. a test client's "testclient"): still one bucket per value,
        # bounded in length so a caller-controlled string cannot make huge keys.
        return "other:" + hashlib.sha256(text.encode()).hexdigest()[:32]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _account_id(email: str) -> str:
    # Hashed: limiter keys are listed by operators and may sit in Redis for a day;
    # they should not be a list of e-mail addresses.
    return hashlib.sha256(normalise_email(email).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class LoginKeys:
    """The limiter keys of one (account, address) pair."""

    account: str  # the hashed, normalised e-mail
    source: str  # the normalised address
    ip: str
    budget: str
    account_lock: str
    source_lock: str


class LoginThrottle:
    def __init__(self, limiter: Limiter, policy: LoginPolicy | None = None) -> None:
        self._limiter = limiter
        self._policy = policy if policy is not None else LoginPolicy()

    @property
    def policy(self) -> LoginPolicy:
        return self._policy

    async def check(self, email: str, ip: str) -> None:
        """Allow one login attempt, or raise ``RateLimited`` (``extensions.scope`` says why).
        A login attempt is made before any sign-in: its refusals are the anonymous tier's."""
        p = self._policy
        keys = self.keys(email, ip)
        by_ip = await self._limiter.hit(keys.ip, p.ip_attempts_per_minute / 60.0, p.ip_burst)
        if not by_ip.allowed:
            raise RateLimited(
                "too many login attempts from this network; try again later",
                retry_after_s=by_ip.retry_after_s,
                kind="login_ip",
                tier=ANONYMOUS.name,
                scope="ip",
            )
        # Locks are looked at before the budget is charged: a locked caller's attempts
        # must not use up the account's budget for the real user.
        wait = await self._limiter.locked_for(keys.source_lock)
        if wait > 0:
            raise RateLimited(
                "too many failed logins for this account from this network; try again later",
                retry_after_s=wait,
                kind="login_lock",
                tier=ANONYMOUS.name,
                scope="account_ip",
            )
        wait = await self._limiter.locked_for(keys.account_lock)
        if wait > 0:
            raise RateLimited(
                "too many failed logins for this account; try again later",
                retry_after_s=wait,
                kind="login_lock",
                tier=ANONYMOUS.name,
                scope="account",
            )
        budget = await self._limiter.hit(
            keys.budget, p.account_attempts / p.account_window_s, p.account_attempts
        )
        if not budget.allowed:
            raise RateLimited(
                "too many login attempts for this account; try again later",
                retry_after_s=budget.retry_after_s,
                kind="login_account",
                tier=ANONYMOUS.name,
                scope="account",
            )

    async def failed(self, email: str, ip: str) -> None:
        """Record a wrong password (or unknown account) after ``check`` allowed the attempt."""
        keys = self.keys(email, ip)
        source_lock = await self._limiter.strike(keys.source_lock, self._policy.source_lockout)
        account_lock = await self._limiter.strike(keys.account_lock, self._policy.account_lockout)
        # The audit trail of lock-outs; the account appears only as its hash.
        if source_lock > 0:
            log.warning(
                "login: %s locked out of account %s for %.0f s",
                keys.source,
                keys.account,
                source_lock,
            )
        if account_lock > 0:
            log.warning("login: account %s locked for %.0f s", keys.account, account_lock)

    async def succeeded(self, email: str, ip: str) -> None:
        """The user proved who they are: forget their failures (the IP rate stays)."""
        keys = self.keys(email, ip)
        await self._limiter.reset(keys.budget)
        await self._limiter.reset(keys.account_lock)
        await self._limiter.reset(keys.source_lock)

    @staticmethod
    def keys(email: str, ip: str) -> LoginKeys:
        account = _account_id(email)
        source = normalise_ip(ip)
        return LoginKeys(
            account=account,
            source=source,
            ip=f"login:ip:{source}",
            budget=f"login:account:{account}:attempts",
            account_lock=f"login:account:{account}:lock",
            source_lock=f"login:account:{account}:source:{source}",
        )
