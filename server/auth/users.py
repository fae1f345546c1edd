"""Accounts and sessions: registration, login, refresh, logout, password change, tiers,
and turning a presented credential into a ``Principal``.

Decisions
---------
- Account enumeration. Login never tells whether an email has an account: an unknown
  email and a wrong password give the same error (INVALID_CREDENTIALS) after the same
  work (one Argon2 verification, against a dummy hash for an unknown email). Registration
  does say EMAIL_TAKEN: without an email-verification flow, the only way to hide it would
  be to answer "check your inbox" and send nothing, which leaves a user who mistyped
  nothing to go on. The leak is bounded by the per-IP rate limits on registration, and a
  taken address costs the same time as a free one (the password is hashed first), so
  there is no timing side channel on top of the explicit answer.
- Password change revokes every session (all refresh-token families) of the account,
  including the caller's, and moves the account's token generation on, which ends every
  access token already issued; then it starts one new session for the caller and
  returns its tokens: whoever changed the password proved they know it, every other
  device (maybe a thief's) must log in again. "Log out everywhere" does the same without
  the new session, and so does disabling an account.
- Access tokens are checked against the account's standing on every use
  (``server.auth.standing``: generation, session, disabled, current tier and role), so
  revocation and tier changes apply to tokens already issued, and the open WebSockets
  of the account hear of it from the database. ``set_tier`` checks the admin flag in
  the database, not in the caller's token.
- Login failures that cannot be a correct password (an over-long password, a malformed
  email) are refused at once, without the hasher: that reveals nothing about any account.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from server.auth.api_keys import (
    DEFAULT_MAX_KEYS_PER_USER,
    ApiKey,
    CreatedApiKey,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from server.auth.api_keys import authenticate_api_key as lookup_api_key
from server.auth.audit import Executor, audit
from server.auth.errors import (
    EmailTaken,
    Forbidden,
    InvalidCredentials,
    InvalidEmail,
    Unauthenticated,
    UserNotFound,
)
from server.auth.passwords import (
    MAX_PASSWORD_LENGTH,
    PasswordHashing,
    check_password_policy,
    normalize_password,
)
from server.auth.principal import TIERS, Principal, Tier
from server.auth.refresh import (
    DEFAULT_REFRESH_TOKEN_TTL,
    issue_refresh_token,
    logout_refresh_token,
    revoke_user_refresh_tokens,
    rotate_refresh_token,
)
from server.auth.standing import AccountStanding, AuthChange
from server.auth.tokens import DEFAULT_ACCESS_TOKEN_TTL, AccessTokens, KeyRing
from server.errors import InvalidInput
from server.settings import Settings

#: RFC 5321 limits: 254 characters in all, 64 before the "@".
MAX_EMAIL_LENGTH = 254
MAX_EMAIL_LOCAL_LENGTH = 64
# Deliberately loose (the only real check of an address is mail reaching it): something,
# an "@", a domain with a dot, no spaces.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")

UNKNOWN_USER = "UNKNOWN_USER"
ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
SESSION_REVOKED = "SESSION_REVOKED"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    access_token_ttl: timedelta = DEFAULT_ACCESS_TOKEN_TTL
    refresh_token_ttl: timedelta = DEFAULT_REFRESH_TOKEN_TTL
    max_api_keys_per_user: int = DEFAULT_MAX_KEYS_PER_USER

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthSettings:
        """The lifetimes configured by TICKGRAPH_ACCESS_TOKEN_TTL / _REFRESH_TOKEN_TTL."""
        return cls(
            access_token_ttl=timedelta(seconds=settings.access_token_ttl_s),
            refresh_token_ttl=timedelta(seconds=settings.refresh_token_ttl_s),
        )


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    email: str
    tier: Tier
    is_admin: bool
    created_at: datetime
    updated_at: datetime
    password_changed_at: datetime
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    access_token_expires_at: datetime
    #: Opaque; single use: every refresh returns the next one.
    refresh_token: str
    refresh_token_expires_at: datetime


_USER_COLUMNS = (
    "id, email, tier, is_admin, created_at, updated_at, password_changed_at, "
    "disabled_at IS NOT NULL AS disabled"
)


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        email=row["email"],
        tier=row["tier"],
        is_admin=row["is_admin"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        password_changed_at=row["password_changed_at"],
        disabled=row["disabled"],
    )


def normalize_email(email: str) -> tuple[str, str]:
    """``(as typed but trimmed, normalised)``; ``InvalidEmail`` if it cannot be an address.

    The normalised form (lower-cased) is what identifies the account: ``Ann@X.com`` and
    ``ann@x.com`` are one account. Lower-casing the local part is not what RFC 5321 says,
    but no mainstream provider treats case as significant, and two accounts differing only
    in case would be a support and phishing hazard.
    """
    if not isinstance(email, str) or len(email) > 4 * MAX_EMAIL_LENGTH:
        raise InvalidEmail("enter an email address like name@example.com")
    display = email.strip()
    if (
        len(display) > MAX_EMAIL_LENGTH
        or not _EMAIL.fullmatch(display)
        or len(display.rpartition("@")[0]) > MAX_EMAIL_LOCAL_LENGTH
        or not display.isprintable()
    ):
        raise InvalidEmail("enter an email address like name@example.com")
    return display, display.lower()


async def get_user(db: Executor, user_id: uuid.UUID) -> User | None:
    row = await db.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id)
    return _user(row) if row else None


async def set_admin(
    pool: Any, user_id: uuid.UUID, is_admin: bool, *, ip: str | None = None
) -> User | None:
    """Grant or withdraw the admin role (for the command line and tests: there is
    deliberately no API for it). Audited as 'admin.change'. ``None`` for an unknown user."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"UPDATE users SET is_admin = $2, updated_at = now() WHERE id = $1 "
            f"RETURNING {_USER_COLUMNS}",
            user_id,
            is_admin,
        )
        if row is None:
            return None
        await audit(conn, "admin.change", user_id=user_id, ip=ip, is_admin=is_admin)
    return _user(row)


class UserService:
    """Every account operation, on ``pool`` (an asyncpg pool)."""

    def __init__(
        self,
        pool: Any,
        hasher: PasswordHashing,
        keyring: KeyRing,
        settings: AuthSettings | None = None,
        standing: AccountStanding | None = None,
    ) -> None:
        self.pool = pool
        self.hasher = hasher
        self.settings = settings if settings is not None else AuthSettings()
        self.tokens = AccessTokens(keyring, ttl=self.settings.access_token_ttl)
        #: Untrusted (every lookup reads the database) until a listener vouches for it.
        self.standing = standing or AccountStanding(
            pool, session_memory_s=self.settings.access_token_ttl.total_seconds()
        )
        #: Told of every change this process makes to someone's access, before the
        #: method returns (the runtime points it at the open WebSockets). Other
        #: processes hear of it from the database.
        self.on_change: Callable[[AuthChange], Awaitable[None]] | None = None

    async def _announce(self, change: AuthChange) -> None:
        self.standing.apply(change)
        if self.on_change is not None:
            await self.on_change(change)

    # -- accounts ---------------------------------------------------------------------

    async def register(self, email: str, password: str, ip: str | None = None) -> User:
        """Create an account (tier 'free'). ``InvalidEmail``, ``InvalidPassword``
        (WEAK_PASSWORD) or ``EmailTaken``. Audited as 'user.register'."""
        display, normalized = normalize_email(email)
        checked = check_password_policy(password, email=normalized)
        password_hash = await self.hasher.hash(checked)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    f"INSERT INTO users (id, email, email_normalized, password_hash) "
                    f"VALUES ($1, $2, $3, $4) RETURNING {_USER_COLUMNS}",
                    uuid.uuid4(),
                    display,
                    normalized,
                    password_hash,
                )
                await audit(conn, "user.register", user_id=row["id"], ip=ip)
        except asyncpg.UniqueViolationError:
            raise EmailTaken(
                "an account with this email address already exists: log in instead"
            ) from None
        return _user(row)

    async def me(self, user_id: uuid.UUID) -> User:
        user = await get_user(self.pool, user_id)
        if user is None:
            # A valid token for a deleted account.
            raise Unauthenticated("this account no longer exists", reason=UNKNOWN_USER)
        return user

    async def set_tier(
        self, admin_user_id: uuid.UUID, user_id: uuid.UUID, tier: str, ip: str | None = None
    ) -> User:
        """Change a user's tier; only an admin (per the database, now) may. Audited as
        'tier.change' on the target user, with the admin's id."""
        if tier not in TIERS:
            raise InvalidInput(
                f"unknown tier {tier[:20]!r}: use one of {', '.join(TIERS)}", allowed=list(TIERS)
            )
        await self._require_admin(
            admin_user_id, ip, "tier.change_denied", target=user_id, tier=tier
        )
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchval("SELECT tier FROM users WHERE id = $1 FOR UPDATE", user_id)
            if old is None:
                raise UserNotFound("no such user")
            row = await conn.fetchrow(
                f"UPDATE users SET tier = $2, updated_at = now() WHERE id = $1 "
                f"RETURNING {_USER_COLUMNS}",
                user_id,
                tier,
            )
            await audit(
                conn,
                "tier.change",
                user_id=user_id,
                ip=ip,
                by=admin_user_id,
                old=old,
                new=tier,
            )
        await self._announce(AuthChange("user", user_id))
        return _user(row)

    # -- sessions ---------------------------------------------------------------------

    async def login(self, email: str, password: str, ip: str | None = None) -> TokenPair:
        """Start a session. ``InvalidCredentials`` for an unknown email and a wrong password
        alike, after the same amount of hashing. Re-hashes a password stored with outdated
        parameters. Audited as 'login.success' / 'login.failure' (with the reason, which
        the caller does not get)."""
        failure = InvalidCredentials("wrong email or password")
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            # No stored password is this long (registration caps it): it cannot match,
            # and hashing megabytes for an answer we know is what a DoS wants.
            await audit(self.pool, "login.failure", ip=ip, reason="password_too_long")
            raise failure
        try:
            _, normalized = normalize_email(email)
        except InvalidEmail:
            await audit(self.pool, "login.failure", ip=ip, reason="malformed_email")
            raise failure from None
        password = normalize_password(password)
        row = await self.pool.fetchrow(
            "SELECT id, tier, is_admin, password_hash, token_generation, "
            "disabled_at IS NOT NULL AS disabled FROM users WHERE email_normalized = $1",
            normalized,
        )
        if row is None:
            await self.hasher.verify_dummy(password)
            await audit(self.pool, "login.failure", ip=ip, reason="unknown_email", email=normalized)
            raise failure
        if not await self.hasher.verify(row["password_hash"], password):
            await audit(
                self.pool, "login.failure", user_id=row["id"], ip=ip, reason="wrong_password"
            )
            raise failure
        if row["disabled"]:
            # Said only to someone who knows the password: it reveals nothing more.
            await audit(self.pool, "login.failure", user_id=row["id"], ip=ip, reason="disabled")
            raise Unauthenticated("this account is disabled", reason=ACCOUNT_DISABLED)
        if self.hasher.needs_rehash(row["password_hash"]):
            new_hash = await self.hasher.hash(password)
            # Only if the password was not changed meanwhile; this is not a password change,
            # so password_changed_at stays.
            await self.pool.execute(
                "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
                row["id"],
                row["password_hash"],
                new_hash,
            )
        async with self.pool.acquire() as conn, conn.transaction():
            pair = await self._start_session(
                conn, row["id"], row["tier"], row["is_admin"], row["token_generation"]
            )
            await audit(conn, "login.success", user_id=row["id"], ip=ip)
        return pair

    async def refresh(self, refresh_token: str, ip: str | None = None) -> TokenPair:
        """Exchange a refresh token for a new pair (rotation; see server.auth.refresh).
        The new access token carries the user's current tier and role."""
        session = await rotate_refresh_token(
            self.pool, refresh_token, ttl=self.settings.refresh_token_ttl, ip=ip
        )
        access = self.tokens.issue(
            user_id=session.user_id,
            tier=session.tier,
            is_admin=session.is_admin,
            session_id=session.refresh.family_id,
            generation=session.generation,
        )
        return TokenPair(
            access.token, access.expires_at, session.refresh.token, session.refresh.expires_at
        )

    async def logout(self, refresh_token: str, ip: str | None = None) -> None:
        """End the session of ``refresh_token``. Always succeeds (logging out twice, or with
        an unknown token, is not an error worth showing)."""
        ended = await logout_refresh_token(self.pool, refresh_token, ip=ip)
        if ended is not None:
            user_id, session_id = ended
            await self._announce(AuthChange("session", user_id, session_id))

    async def change_password(
        self,
        user_id: uuid.UUID,
        old_password: str,
        new_password: str,
        ip: str | None = None,
    ) -> TokenPair:
        """Replace the password, end every session of the account and start a new one for
        the caller (returned). ``InvalidCredentials`` if ``old_password`` is wrong,
        ``InvalidPassword`` if the new one breaks the policy. Audited as 'password.change'
        (or 'password.change_failure')."""
        row = await self.pool.fetchrow(
            "SELECT email_normalized, tier, is_admin, password_hash FROM users WHERE id = $1",
            user_id,
        )
        if row is None:
            raise Unauthenticated("this account no longer exists", reason=UNKNOWN_USER)
        checked = check_password_policy(new_password, email=row["email_normalized"])
        wrong = InvalidCredentials("the current password is wrong")
        if not isinstance(old_password, str) or len(old_password) > MAX_PASSWORD_LENGTH:
            await audit(
                self.pool, "password.change_failure", user_id=user_id, ip=ip, reason="too_long"
            )
            raise wrong
        if not await self.hasher.verify(row["password_hash"], normalize_password(old_password)):
            await audit(
                self.pool,
                "password.change_failure",
                user_id=user_id,
                ip=ip,
                reason="wrong_password",
            )
            raise wrong
        new_hash = await self.hasher.hash(checked)
        async with self.pool.acquire() as conn, conn.transaction():
            # Compare-and-set: if another change won meanwhile, the old password we checked
            # is no longer the current one.
            generation = await conn.fetchval(
                "UPDATE users SET password_hash = $3, password_changed_at = now(), "
                "token_generation = token_generation + 1, updated_at = now() "
                "WHERE id = $1 AND password_hash = $2 RETURNING token_generation",
                user_id,
                row["password_hash"],
                new_hash,
            )
            if generation is None:
                raise wrong
            ended = await revoke_user_refresh_tokens(conn, user_id)
            pair = await self._start_session(
                conn, user_id, row["tier"], row["is_admin"], generation
            )
            await audit(conn, "password.change", user_id=user_id, ip=ip, sessions_ended=ended)
        await self._announce(AuthChange("user", user_id))
        return pair

    async def logout_everywhere(self, user_id: uuid.UUID, ip: str | None = None) -> int:
        """End every session of the account: refresh tokens revoked, access tokens ended
        (the generation moves on), open sockets closed (the database announces it).
        Returns how many sessions ended. Audited as 'logout.everywhere'."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE users SET token_generation = token_generation + 1, updated_at = now() "
                "WHERE id = $1",
                user_id,
            )
            ended = await revoke_user_refresh_tokens(conn, user_id)
            await audit(conn, "logout.everywhere", user_id=user_id, ip=ip, sessions_ended=ended)
        await self._announce(AuthChange("user", user_id))
        return ended

    async def set_disabled(
        self, admin_user_id: uuid.UUID, user_id: uuid.UUID, disabled: bool, ip: str | None = None
    ) -> User:
        """Disable (or enable again) an account; only an admin (per the database) may,
        and not their own. Disabling ends every session and key use at once. Audited as
        'user.disable' / 'user.enable' on the target, with the admin's id."""
        await self._require_admin(admin_user_id, ip, "user.disable_denied", target=user_id)
        if disabled and admin_user_id == user_id:
            raise InvalidInput("administrators cannot disable their own account")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) "
                f"END, updated_at = now() WHERE id = $1 RETURNING {_USER_COLUMNS}",
                user_id,
                disabled,
            )
            if row is None:
                raise UserNotFound("no such user")
            ended = await revoke_user_refresh_tokens(conn, user_id) if disabled else 0
            await audit(
                conn,
                "user.disable" if disabled else "user.enable",
                user_id=user_id,
                ip=ip,
                by=admin_user_id,
                sessions_ended=ended,
            )
        await self._announce(AuthChange("user", user_id))
        return _user(row)

    async def _require_admin(
        self, admin_user_id: uuid.UUID, ip: str | None, denied: str, **detail: object
    ) -> None:
        is_admin = await self.pool.fetchval(
            "SELECT is_admin AND disabled_at IS NULL FROM users WHERE id = $1", admin_user_id
        )
        if not is_admin:
            await audit(self.pool, denied, user_id=admin_user_id, ip=ip, **detail)
            raise Forbidden("only administrators can do this")

    # -- credentials to principals ----------------------------------------------------

    async def authenticate_access_token(self, token: str) -> Principal:
        """The caller behind an access token; ``Unauthenticated`` if it is not valid, or
        no longer: its session was logged out, every session was ended (password change,
        log out everywhere), or the account is disabled or gone. The tier and role are
        the account's current ones, not the token's. Costs no database read while the
        standing listener is connected (``server.auth.standing``)."""
        claims = self.tokens.decode(token)
        standing = await self.standing.standing(claims.user_id)
        if standing is None:
            raise Unauthenticated("this account no longer exists", reason=UNKNOWN_USER)
        if standing.disabled:
            raise Unauthenticated("this account is disabled", reason=ACCOUNT_DISABLED)
        if claims.generation != standing.generation or await self.standing.session_revoked(
            claims.session_id
        ):
            raise Unauthenticated("this session has ended: log in again", reason=SESSION_REVOKED)
        return Principal(
            user_id=claims.user_id,
            tier=standing.tier,
            is_admin=standing.is_admin,
            scope=claims.scope,
            token_expires_at=claims.expires_at,
            via="token",
            session_id=claims.session_id,
            generation=claims.generation,
        )

    async def authenticate_api_key(self, key: str) -> Principal:
        """The caller behind an API key; ``Unauthenticated`` if unknown or revoked, or
        if its account is disabled."""
        identity = await lookup_api_key(self.pool, key)
        standing = await self.standing.standing(identity.user_id)
        if standing is None or standing.disabled:
            raise Unauthenticated("this account is disabled", reason=ACCOUNT_DISABLED)
        return Principal(
            user_id=identity.user_id,
            tier=standing.tier,
            is_admin=standing.is_admin,
            scope=identity.scope,
            token_expires_at=None,
            via="api_key",
            api_key_id=identity.key_id,
        )

    # -- API keys ---------------------------------------------------------------------

    async def create_api_key(
        self, user_id: uuid.UUID, name: str, scope: str, ip: str | None = None
    ) -> CreatedApiKey:
        """A new key; its ``secret`` is shown once. Only a logged-in user (scope 'full')
        should reach this: the resolver must check ``Principal.can_manage_account``."""
        return await create_api_key(
            self.pool,
            user_id=user_id,
            name=name,
            scope=scope,
            ip=ip,
            max_per_user=self.settings.max_api_keys_per_user,
        )

    async def list_api_keys(self, user_id: uuid.UUID) -> list[ApiKey]:
        return await list_api_keys(self.pool, user_id=user_id)

    async def revoke_api_key(
        self, user_id: uuid.UUID, key_id: uuid.UUID, ip: str | None = None
    ) -> bool:
        """Whether an active key of ``user_id`` was revoked (and every connection made
        with it closed, on this process before this returns)."""
        revoked = await revoke_api_key(self.pool, user_id=user_id, key_id=key_id, ip=ip)
        if revoked is None:
            return False
        await self._announce(AuthChange("key", user_id, key_id))
        return True

    async def _start_session(
        self, conn: Executor, user_id: uuid.UUID, tier: Tier, is_admin: bool, generation: int
    ) -> TokenPair:
        refresh = await issue_refresh_token(
            conn, user_id=user_id, ttl=self.settings.refresh_token_ttl
        )
        access = self.tokens.issue(
            user_id=user_id,
            tier=tier,
            is_admin=is_admin,
            session_id=refresh.family_id,
            generation=generation,
        )
        return TokenPair(access.token, access.expires_at, refresh.token, refresh.expires_at)
