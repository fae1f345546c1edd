"""Refresh tokens: opaque, stored hashed, rotated on every use, revoked by family.

A refresh token is 256 random bits (``secrets.token_urlsafe(32)``). Only its SHA-256
digest is stored: a slow password hash protects guessable secrets, and these cannot be
guessed, so a plain digest is enough and keeps the lookup a single indexed equality.

Rotation: exchanging a token marks it used and issues its successor in the same
*family* (one family per login), in one transaction that locks the token's row
(``SELECT ... FOR UPDATE``), so two concurrent refreshes with the same token cannot both
succeed: the second waits, then sees the token used.

Reuse detection: a used token presented again means two parties hold it (a thief, or the
owner after a thief refreshed first). Which one is which cannot be told, so the whole
family is revoked, including the newest token, and both must log in again. There is
deliberately no grace period for a client that refreshes twice at once: clients must
serialise their refreshes (one in flight per session).

Logout revokes the family of the presented token; a password change revokes every family
of the user (server.auth.users).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from server.auth.audit import audit
from server.auth.errors import Unauthenticated
from server.auth.principal import Tier

#: A pool or a connection (so callers can use these inside their own transaction).
Executor: TypeAlias = Any

DEFAULT_REFRESH_TOKEN_TTL = timedelta(days=30)
REFRESH_TOKEN_BYTES = 32
#: token_urlsafe(32) is 43 characters; anything much longer is not one of ours and is
#: refused before it is hashed or sent to the database.
MAX_REFRESH_TOKEN_LENGTH = 128

#: Reasons in ``Unauthenticated.extensions["reason"]``.
INVALID_REFRESH_TOKEN = "INVALID_REFRESH_TOKEN"
REFRESH_TOKEN_EXPIRED = "REFRESH_TOKEN_EXPIRED"
REFRESH_TOKEN_REVOKED = "REFRESH_TOKEN_REVOKED"


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class IssuedRefreshToken:
    #: The plaintext: handed to the client once, never stored.
    token: str
    id: uuid.UUID
    family_id: uuid.UUID
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RefreshedSession:
    """The outcome of a successful rotation: whose session it is, and its next token."""

    user_id: uuid.UUID
    tier: Tier
    is_admin: bool
    #: The account's token generation, for the new access token.
    generation: int
    refresh: IssuedRefreshToken


async def issue_refresh_token(
    db: Executor,
    *,
    user_id: uuid.UUID,
    ttl: timedelta = DEFAULT_REFRESH_TOKEN_TTL,
    family_id: uuid.UUID | None = None,
) -> IssuedRefreshToken:
    """Store and return a new token; a new family (a new session) unless ``family_id``."""
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    token_id = uuid.uuid4()
    family = family_id if family_id is not None else uuid.uuid4()
    # The database clock decides expiry (issue and check), so processes with skewed clocks
    # agree.
    expires_at = await db.fetchval(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at) "
        "VALUES ($1, $2, $3, $4, now() + $5::interval) RETURNING expires_at",
        token_id,
        user_id,
        family,
        hash_refresh_token(token),
        ttl,
    )
    return IssuedRefreshToken(token, token_id, family, expires_at)


async def rotate_refresh_token(
    pool: Any,
    token: str,
    *,
    ttl: timedelta = DEFAULT_REFRESH_TOKEN_TTL,
    ip: str | None = None,
) -> RefreshedSession:
    """Exchange ``token`` for its successor (audited as 'token.refresh').

    Raises ``Unauthenticated`` for an unknown, expired or revoked token; for a token that
    was already used, revokes its family (audited as 'token.reuse_detected') and raises.
    """
    if not _plausible(token):
        raise Unauthenticated("invalid refresh token", reason=INVALID_REFRESH_TOKEN)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT r.id, r.user_id, r.family_id, r.used_at, r.revoked_at, "
            "r.expires_at <= now() AS expired, u.tier, u.is_admin, u.token_generation, "
            "u.disabled_at IS NOT NULL AS disabled "
            "FROM refresh_tokens r JOIN users u ON u.id = r.user_id "
            "WHERE r.token_hash = $1 FOR UPDATE OF r",
            hash_refresh_token(token),
        )
        if row is None:
            failure = Unauthenticated("invalid refresh token", reason=INVALID_REFRESH_TOKEN)
        elif row["revoked_at"] is not None:
            failure = _revoked()
        elif row["used_at"] is not None:
            ended = await revoke_family(conn, row["family_id"])
            await audit(
                conn,
                "token.reuse_detected",
                user_id=row["user_id"],
                ip=ip,
                family_id=row["family_id"],
                token_id=row["id"],
                sessions_ended=ended,
            )
            # Falls through to commit: the revocation must stick although we fail.
            failure = _revoked()
        elif row["expired"]:
            failure = Unauthenticated("refresh token expired", reason=REFRESH_TOKEN_EXPIRED)
        elif row["disabled"]:
            failure = Unauthenticated("this account is disabled", reason="ACCOUNT_DISABLED")
        else:
            await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE id = $1", row["id"])
            successor = await issue_refresh_token(
                conn, user_id=row["user_id"], ttl=ttl, family_id=row["family_id"]
            )
            await audit(
                conn,
                "token.refresh",
                user_id=row["user_id"],
                ip=ip,
                family_id=row["family_id"],
            )
            return RefreshedSession(
                user_id=row["user_id"],
                tier=row["tier"],
                is_admin=row["is_admin"],
                generation=row["token_generation"],
                refresh=successor,
            )
    raise failure


async def logout_refresh_token(
    pool: Any, token: str, *, ip: str | None = None
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """Revoke the family (the session) of ``token`` (audited as 'logout').

    The (user, session) found, or None. Idempotent; a token that was already revoked or
    used still ends its session, so logging out with a stale token works.
    """
    if not _plausible(token):
        return None
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1",
            hash_refresh_token(token),
        )
        if row is None:
            return None
        ended = await revoke_family(conn, row["family_id"])
        await audit(
            conn,
            "logout",
            user_id=row["user_id"],
            ip=ip,
            family_id=row["family_id"],
            sessions_ended=ended,
        )
        return row["user_id"], row["family_id"]


async def revoke_family(db: Executor, family_id: uuid.UUID) -> int:
    """Revoke every token of one session (used ones too, so they read as revoked rather
    than as reuse later). 1 if the session was still alive, else 0."""
    return await _revoke(db, "family_id", family_id)


async def revoke_user_refresh_tokens(db: Executor, user_id: uuid.UUID) -> int:
    """Revoke every token of every session of ``user_id``; how many sessions were alive."""
    return await _revoke(db, "user_id", user_id)


async def _revoke(db: Executor, column: str, value: uuid.UUID) -> int:
    # ``column`` is one of the two literals above, never input.
    # A live session has exactly one unused, unexpired token: counting those counts sessions.
    count: int = await db.fetchval(
        f"WITH revoked AS (UPDATE refresh_tokens SET revoked_at = now() "
        f"WHERE {column} = $1 AND revoked_at IS NULL RETURNING used_at, expires_at) "
        f"SELECT count(*) FROM revoked WHERE used_at IS NULL AND expires_at > now()",
        value,
    )
    return count


async def purge_expired_refresh_tokens(
    db: Executor, *, older_than: timedelta = timedelta(days=7)
) -> int:
    """Delete tokens that expired more than ``older_than`` ago; how many.

    Expired tokens are refused anyway; keeping them a while longer keeps reuse of a
    recently expired token visible as reuse in the audit trail.
    """
    status: str = await db.execute(
        "DELETE FROM refresh_tokens WHERE expires_at < now() - $1::interval", older_than
    )
    return int(status.rsplit(" ", 1)[1])


def _plausible(token: object) -> bool:
    return isinstance(token, str) and 0 < len(token) <= MAX_REFRESH_TOKEN_LENGTH


def _revoked() -> Unauthenticated:
    return Unauthenticated(
        "this session has ended (logged out, password changed or the token was reused); "
        "log in again",
        reason=REFRESH_TOKEN_REVOKED,
    )
