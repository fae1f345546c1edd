"""Accounts: register, sign in, refresh, sign out, API keys, tiers, ``me``."""

from __future__ import annotations

import uuid
from datetime import datetime

import strawberry

from schema.analysis_types import AnalysisPreferences, AnalysisQuota
from schema.context import Info
from schema.scalars import Timestamp, uuid_argument
from server.auth.access import Caller
from server.auth.api_keys import ApiKey as ApiKeyRecord
from server.auth.users import TokenPair, UserService
from server.auth.users import User as UserRecord
from server.limits.tiers import Tier as TierRecord
from server.limits.tiers import TierLimits, limits_for

strawberry.enum(TierRecord, name="Tier")


def _ts(dt: datetime | None) -> Timestamp | None:
    return Timestamp(dt.timestamp() * 1000) if dt is not None else None


@strawberry.type(description="What your tier allows.")
class Limits:
    requests_per_minute: int
    concurrent_subscriptions: int
    symbols_streamed: int
    alerts: int
    analyses_per_day: int
    orders_per_minute: int
    query_cost: int

    @classmethod
    def of(cls, t: TierLimits) -> Limits:
        return cls(
            requests_per_minute=t.requests_per_minute,
            concurrent_subscriptions=t.concurrent_subscriptions,
            symbols_streamed=t.symbols_streamed,
            alerts=t.alerts,
            analyses_per_day=t.analyses_per_day,
            orders_per_minute=t.orders_per_minute,
            query_cost=t.query_cost,
        )


@strawberry.type(description="What you use now, against your limits.")
class Usage:
    subscriptions: int
    symbols_streamed: int
    alerts: int
    user_id: strawberry.Private[uuid.UUID]
    tier_limits: strawberry.Private[TierLimits]

    @strawberry.field(
        description="Today's analyses (UTC day) against your daily quota, and their tokens "
        "and estimated cost."
    )
    async def analyses(self, info: Info) -> AnalysisQuota:
        service = info.context.services.analysis
        assert service is not None
        return AnalysisQuota.of(await service.usage(user_id=self.user_id, limits=self.tier_limits))


@strawberry.type
class User:
    id: strawberry.ID
    email: str
    tier: TierRecord
    is_admin: bool
    created_at: Timestamp
    disabled: bool = strawberry.field(
        description="A disabled account cannot sign in or use its keys."
    )

    @classmethod
    def of(cls, u: UserRecord) -> User:
        return cls(
            id=strawberry.ID(str(u.id)),
            email=u.email,
            tier=TierRecord(u.tier),
            is_admin=u.is_admin,
            created_at=_ts(u.created_at),  # type: ignore[arg-type]
            disabled=u.disabled,
        )


@strawberry.type
class Me:
    user: User
    limits: Limits
    usage: Usage

    @strawberry.field(description="Your trading style and risk tolerance, for analyses.")
    async def analysis_preferences(self, info: Info) -> AnalysisPreferences:
        service = info.context.services.analysis
        assert service is not None
        user_id = uuid.UUID(str(self.user.id))
        return AnalysisPreferences.of(await service.preferences(user_id=user_id))


@strawberry.type(
    description="Send accessToken as `Authorization: Bearer ...` (or in the "
    "connection_init payload as `token`); trade refreshToken for a new pair "
    "before it expires. Each refresh token works once."
)
class AuthPayload:
    access_token: str
    access_token_expires_at: Timestamp
    refresh_token: str
    refresh_token_expires_at: Timestamp

    @classmethod
    def of(cls, pair: TokenPair) -> AuthPayload:
        return cls(
            access_token=pair.access_token,
            access_token_expires_at=_ts(pair.access_token_expires_at),  # type: ignore[arg-type]
            refresh_token=pair.refresh_token,
            refresh_token_expires_at=_ts(pair.refresh_token_expires_at),  # type: ignore[arg-type]
        )


@strawberry.type
class ApiKey:
    id: strawberry.ID
    name: str
    prefix: str = strawberry.field(description="The first characters, to recognise the key.")
    scope: str = strawberry.field(description="read or trading.")
    created_at: Timestamp
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None

    @classmethod
    def of(cls, k: ApiKeyRecord) -> ApiKey:
        return cls(
            id=strawberry.ID(str(k.id)),
            name=k.name,
            prefix=k.prefix,
            scope=k.scope,
            created_at=_ts(k.created_at),  # type: ignore[arg-type]
            last_used_at=_ts(k.last_used_at),
            revoked_at=_ts(k.revoked_at),
        )


@strawberry.type
class CreatedApiKey:
    key: ApiKey
    secret: str = strawberry.field(
        description="The key itself, shown only now; send it as `Authorization: Bearer ...`."
    )


def _users(info: Info) -> UserService:
    users = info.context.services.users
    assert users is not None
    return users


def _caller(info: Info) -> Caller:
    return info.context.caller


def _ip(info: Info) -> str | None:
    return info.context.caller.ip


@strawberry.type
class AuthQuery:
    @strawberry.field(description="You, your tier's limits and what you use now.")
    async def me(self, info: Info) -> Me:
        principal = _caller(info).user()
        services = info.context.services
        user = await _users(info).me(principal.user_id)
        usage = await services.access.usage(str(user.id)) if services.access else None
        alerts = services.alerts.engine.open_count(str(user.id)) if services.alerts else 0
        limits = limits_for(TierRecord(user.tier))
        return Me(
            user=User.of(user),
            limits=Limits.of(limits),
            usage=Usage(
                subscriptions=usage.subscriptions if usage else 0,
                symbols_streamed=len(usage.symbols) if usage else 0,
                alerts=alerts,
                user_id=user.id,
                tier_limits=limits,
            ),
        )

    @strawberry.field(description="Your API keys (never their secrets).")
    async def api_keys(self, info: Info) -> list[ApiKey]:
        principal = _caller(info).user()
        return [ApiKey.of(k) for k in await _users(info).list_api_keys(principal.user_id)]


@strawberry.type
class AuthMutation:
    @strawberry.mutation(description="Create an account (free tier).")
    async def register(self, info: Info, email: str, password: str) -> User:
        return User.of(await _users(info).register(email, password, _ip(info)))

    @strawberry.mutation(description="Sign in. Wrong email and wrong password look the same.")
    async def login(self, info: Info, email: str, password: str) -> AuthPayload:
        throttle = info.context.services.login_throttle
        ip = _ip(info) or "?"
        if throttle is not None:
            await throttle.check(email, ip)
        try:
            pair = await _users(info).login(email, password, ip)
        except Exception:
            if throttle is not None:
                await throttle.failed(email, ip)
            raise
        if throttle is not None:
            await throttle.succeeded(email, ip)
        return AuthPayload.of(pair)

    @strawberry.mutation(
        description="Trade a refresh token for a new pair (it works once; "
        "reusing one signs out every session of its family)."
    )
    async def refresh_token(self, info: Info, refresh_token: str) -> AuthPayload:
        return AuthPayload.of(await _users(info).refresh(refresh_token, _ip(info)))

    @strawberry.mutation(description="Sign out: the refresh token's whole family is revoked.")
    async def logout(self, info: Info, refresh_token: str) -> bool:
        await _users(info).logout(refresh_token, _ip(info))
        return True

    @strawberry.mutation(description="Every session is signed out; you get a fresh one.")
    async def change_password(
        self, info: Info, old_password: str, new_password: str
    ) -> AuthPayload:
        principal = _caller(info).account_manager()
        pair = await _users(info).change_password(
            principal.user_id, old_password, new_password, _ip(info)
        )
        return AuthPayload.of(pair)

    @strawberry.mutation(
        description="Sign out every session of your account, on every device: refresh "
        "tokens, access tokens and open WebSockets (closed with 4403) alike. Returns how "
        "many sessions were still open."
    )
    async def logout_everywhere(self, info: Info) -> int:
        principal = _caller(info).account_manager()
        return await _users(info).logout_everywhere(principal.user_id, _ip(info))

    @strawberry.mutation(
        description="A key for a bot: scope read (queries and subscriptions) or trading "
        "(also alert changes and orders). A key can never manage the account."
    )
    async def create_api_key(self, info: Info, name: str, scope: str) -> CreatedApiKey:
        principal = _caller(info).account_manager()
        created = await _users(info).create_api_key(principal.user_id, name, scope, _ip(info))
        return CreatedApiKey(key=ApiKey.of(created.key), secret=created.secret)

    @strawberry.mutation(description="True if an active key of yours was revoked.")
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> bool:
        principal = _caller(info).account_manager()
        return await _users(info).revoke_api_key(
            principal.user_id, uuid_argument(id, "an API key id"), _ip(info)
        )

    @strawberry.mutation(
        description="Administrators: disable (or enable again) an account. Disabling ends "
        "its sessions, keys and open WebSockets at once."
    )
    async def set_user_disabled(self, info: Info, user_id: strawberry.ID, disabled: bool) -> User:
        admin = _caller(info).account_manager()
        user = await _users(info).set_disabled(
            admin.user_id, uuid_argument(user_id, "a user id"), disabled, _ip(info)
        )
        return User.of(user)

    @strawberry.mutation(description="Administrators: change a user's tier.")
    async def set_user_tier(self, info: Info, user_id: strawberry.ID, tier: TierRecord) -> User:
        # The role is checked in the database by the service (a token may predate a
        # grant or a withdrawal); here only that this is a signed-in account.
        admin = _caller(info).account_manager()
        user = await _users(info).set_tier(
            admin.user_id, uuid_argument(user_id, "a user id"), tier.value, _ip(info)
        )
        return User.of(user)
