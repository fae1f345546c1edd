"""Who is calling and what they may do: one ``Caller`` per request or connection.

Credentials come from the ``Authorization`` header (HTTP and the WebSocket handshake)
or from the ``connection_init`` payload (``token`` or ``Authorization``): a JWT access
token, or an API key (``tg_...``). No credentials means anonymous, allowed only when
``TICKGRAPH_ALLOW_ANONYMOUS`` is on: read-only market data with the free tier's
limits, keyed by IP.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.auth.errors import Forbidden, Unauthenticated
from server.auth.principal import Principal
from server.auth.users import UserService
from server.limits.errors import RateLimited
from server.limits.limiter import RateLimiter
from server.limits.shared_quota import SharedQuota
from server.limits.tiers import ANONYMOUS, Tier, TierLimits, limits_for
from server.limits.usage import Lease, SubscriptionQuota, Usage

API_KEY_PREFIX = "tg_"
#: A request costs one unit of its caller's rate, plus one per started KiB of GraphQL
#: document past the first: parsing and validating a document costs time in proportion
#: to its size (about 13 ms for a 2,000-token one), so a caller's burst buys about the
#: same server time whatever it sends. (Variables are decoded by orjson, a hundred
#: times cheaper per byte, and bounded by the body limit: they are not counted.)
UNIT_BYTES = 1024


def extra_cost(document_chars: int) -> int:
    """Units a document costs beyond the request's own one."""
    return max(0, document_chars - 1) // UNIT_BYTES


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal | None
    ip: str | None
    limits: TierLimits

    @property
    def rate_key(self) -> str:
        return f"u:{self.principal.user_id}" if self.principal else f"ip:{self.ip or '?'}"

    @property
    def subject(self) -> str:
        """Whose quota a subscription counts against."""
        return str(self.principal.user_id) if self.principal else f"ip:{self.ip or '?'}"

    @property
    def query_cost_budget(self) -> int:
        return self.limits.query_cost

    def user(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated("sign in first: send an access token or an API key")
        return self.principal

    def owner(self) -> str:
        """The owner id of user data (alerts, orders...)."""
        return str(self.user().user_id)

    def with_principal(self, principal: Principal) -> Caller:
        """The same caller as ``principal`` now stands (its tier's limits)."""
        return Caller(principal, self.ip, limits_for(Tier(principal.tier)))

    def account_manager(self) -> Principal:
        principal = self.user()
        if not principal.can_manage_account:
            raise Forbidden("an API key cannot manage the account; sign in with a password")
        return principal


def credential_from(
    authorization: str | None, params: Mapping[str, Any] | None = None
) -> str | None:
    """The token or key presented, from ``connection_init`` params or a header.

    Presenting something that cannot be a credential (a number, an object, an empty
    string) is a bad credential, not anonymity: a client that sends ``{"token": 42}``
    must learn that it is refused, not be served as an anonymous caller.
    """
    raw: object = None
    if params:
        for name in ("token", "Authorization", "authorization"):
            if name in params and params[name] is not None:
                raw = params[name]
                break
    if raw is None:
        raw = authorization
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise Unauthenticated("the credential must be a non-empty string", reason="INVALID_TOKEN")
    scheme, _, rest = raw.strip().partition(" ")
    return rest.strip() if rest and scheme.lower() in ("bearer", "apikey") else raw.strip()


class AccessControl:
    def __init__(
        self,
        users: UserService,
        limiter: RateLimiter,
        *,
        allow_anonymous: bool,
        quota: SubscriptionQuota | None = None,
        shared: SharedQuota | None = None,
    ) -> None:
        self.users = users
        self.limiter = limiter
        self.allow_anonymous = allow_anonymous
        self.quota = shared.local if shared is not None else quota or SubscriptionQuota()
        #: With several processes: the quota counted over all of them.
        self.shared = shared

    async def caller(
        self,
        authorization: str | None,
        ip: str | None,
        params: Mapping[str, Any] | None = None,
    ) -> Caller:
        """Resolve a caller; ``Unauthenticated`` for bad credentials (never anonymous
        instead: a client with an expired token must notice).

        A credential that fails is charged to the address's anonymous rate before the
        error is raised: checking a key costs a database read, and guessing must be
        limited like any other request."""
        try:
            credential = credential_from(authorization, params)
            if credential is None:
                return Caller(None, ip, ANONYMOUS)
            if credential.startswith(API_KEY_PREFIX):
                principal = await self.users.authenticate_api_key(credential)
            else:
                principal = await self.users.authenticate_access_token(credential)
        except Unauthenticated:
            await self.count_request(Caller(None, ip, ANONYMOUS))
            raise
        return Caller(principal, ip, limits_for(Tier(principal.tier)))

    async def recheck(self, principal: Principal) -> Principal | None:
        """``principal`` as its credential stands now (current tier and role), or None
        if the credential is no longer good: the session ended, every session was
        ended, the API key was revoked, the account is disabled or gone."""
        users = self.users
        standing = await users.standing.standing(principal.user_id)
        if standing is None or standing.disabled:
            return None
        if principal.via == "token":
            if principal.generation != standing.generation:
                return None
            if principal.session_id is not None and await users.standing.session_revoked(
                principal.session_id
            ):
                return None
        elif principal.api_key_id is None or not await self._key_active(principal.api_key_id):
            return None
        return dataclasses.replace(principal, tier=standing.tier, is_admin=standing.is_admin)

    async def _key_active(self, key_id: uuid.UUID) -> bool:
        active: bool | None = await self.users.pool.fetchval(
            "SELECT revoked_at IS NULL FROM api_keys WHERE id = $1", key_id
        )
        return bool(active)

    async def count_request(self, caller: Caller, cost: int = 1) -> None:
        """Charge ``cost`` units (one request, plus ``extra_cost`` of its document) to
        the caller's rate; ``RateLimited`` when it is used up."""
        limits = caller.limits
        cost = min(cost, limits.burst)
        if cost <= 0:
            return
        decision = await self.limiter.hit(
            f"req:{caller.rate_key}", limits.requests_per_minute / 60.0, limits.burst, cost
        )
        if not decision.allowed:
            raise RateLimited(
                f"the {limits.name} tier allows {limits.requests_per_minute} requests a minute",
                retry_after_s=decision.retry_after_us / 1e6,
                kind="requests",
                tier=limits.name,
            )

    async def subscribe(self, caller: Caller, symbols: list[str]) -> Lease:
        if self.shared is not None:
            return await self.shared.acquire(caller.subject, symbols, caller.limits)
        return self.quota.acquire(caller.subject, symbols, caller.limits)

    async def usage(self, user_id: str) -> Usage:
        if self.shared is not None:
            return await self.shared.usage(user_id)
        return self.quota.usage(user_id)
