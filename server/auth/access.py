"""Who is calling and what they may do: one ``Caller`` per request or connection.

Credentials come from the ``Authorization`` header (HTTP and the WebSocket handshake)
or from the ``connection_init`` payload (``token`` or ``Authorization``): a JWT access
token, or an API key (``tg_...``). No credentials means anonymous, allowed only when
``TICKGRAPH_ALLOW_ANONYMOUS`` is on: read-only market data with the free tier's
limits, keyed by IP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.auth.errors import Forbidden, Unauthenticated
from server.auth.principal import Principal
from server.auth.users import UserService
from server.limits.errors import RateLimited
from server.limits.limiter import RateLimiter
from server.limits.tiers import ANONYMOUS, Tier, TierLimits, limits_for
from server.limits.usage import Lease, SubscriptionQuota

API_KEY_PREFIX = "tg_"


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

    def account_manager(self) -> Principal:
        principal = self.user()
        if not principal.can_manage_account:
            raise Forbidden("an API key cannot manage the account; sign in with a password")
        return principal


def credential_from(
    authorization: str | None, params: Mapping[str, Any] | None = None
) -> str | None:
    """The token or key presented, from ``connection_init`` params or a header."""
    raw: object = None
    if params:
        raw = params.get("token") or params.get("Authorization") or params.get("authorization")
    if raw is None:
        raw = authorization
    if not isinstance(raw, str) or not raw.strip():
        return None
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
    ) -> None:
        self.users = users
        self.limiter = limiter
        self.allow_anonymous = allow_anonymous
        self.quota = quota or SubscriptionQuota()

    async def caller(
        self,
        authorization: str | None,
        ip: str | None,
        params: Mapping[str, Any] | None = None,
    ) -> Caller:
        """Resolve a caller; ``Unauthenticated`` for bad credentials (never anonymous
        instead: a client with an expired token must notice)."""
        credential = credential_from(authorization, params)
        if credential is None:
            return Caller(None, ip, ANONYMOUS)
        if credential.startswith(API_KEY_PREFIX):
            principal = await self.users.authenticate_api_key(credential)
        else:
            principal = self.users.authenticate_access_token(credential)
        return Caller(principal, ip, limits_for(Tier(principal.tier)))

    def admit(self, caller: Caller, *, public_only: bool) -> None:
        """Anonymous callers may use public fields only, and only if allowed."""
        if caller.principal is None and not (self.allow_anonymous and public_only):
            raise Unauthenticated("sign in first: send an access token or an API key")

    async def count_request(self, caller: Caller) -> None:
        limits = caller.limits
        decision = await self.limiter.hit(
            f"req:{caller.rate_key}", limits.requests_per_minute / 60.0, limits.burst
        )
        if not decision.allowed:
            raise RateLimited(
                f"the {limits.name} tier allows {limits.requests_per_minute} requests a minute",
                retry_after_s=decision.retry_after_us / 1e6,
            )

    def subscribe(self, caller: Caller, symbols: list[str]) -> Lease:
        return self.quota.acquire(caller.subject, symbols, caller.limits)
