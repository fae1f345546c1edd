"""API keys: long-lived credentials for programs, limited to a scope.

A key looks like ``tg_1a2b3c4d_<43 random characters>``. The part up to the second
underscore is its *prefix*: random, separate from the secret, stored in clear and shown
in listings so the user can tell keys apart. The plaintext is returned once, at creation;
only its SHA-256 digest is stored (256 random bits need no slow hash), and a presented key
is found by looking its digest up, so no comparison ever runs over the secret itself and
response times say nothing about how much of a guess was right.

Scopes: ``read`` (market data, own orders/positions/alerts) and ``trading`` (read plus
placing and cancelling orders). Neither can manage the account (password, keys): only a
login can.

``last_used_at`` is written at most once a minute per key: a program polling several
times a second must not turn every read into a write.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeAlias

import asyncpg

from server.auth.audit import audit
from server.auth.errors import Unauthenticated
from server.auth.principal import API_KEY_SCOPES, ApiKeyScope, Tier
from server.errors import InvalidInput, LimitExceeded

#: A pool or a connection (so callers can use these inside their own transaction).
Executor: TypeAlias = Any

KEY_MARKER = "tg_"
SECRET_BYTES = 32
#: Our keys are 55 characters; longer input is refused before hashing or querying.
MAX_API_KEY_LENGTH = 128
MAX_NAME_LENGTH = 100
DEFAULT_MAX_KEYS_PER_USER = 25
LAST_USED_RESOLUTION = timedelta(minutes=1)

INVALID_API_KEY = "INVALID_API_KEY"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as listed: never its secret."""

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    scope: ApiKeyScope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    key: ApiKey
    #: The full key; shown to the user once and never retrievable again.
    secret: str


@dataclass(frozen=True, slots=True)
class ApiKeyIdentity:
    """Who a presented key belongs to, with the owner's current tier and role."""

    key_id: uuid.UUID
    user_id: uuid.UUID
    tier: Tier
    is_admin: bool
    scope: ApiKeyScope


_COLUMNS = "id, user_id, name, prefix, scope, created_at, last_used_at, revoked_at"


def _api_key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        prefix=row["prefix"],
        scope=row["scope"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def generate_api_key() -> tuple[str, str]:
    """A new ``(key, prefix)``."""
    prefix = f"{KEY_MARKER}{secrets.token_hex(4)}"
    return f"{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}", prefix


def check_api_key_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise InvalidInput("give the API key a name, e.g. the program that will use it")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidInput(f"the API key name is too long: at most {MAX_NAME_LENGTH} characters")
    if any(not ch.isprintable() for ch in cleaned):
        raise InvalidInput("the API key name must not contain control characters")
    return cleaned


def check_api_key_scope(scope: str) -> ApiKeyScope:
    for allowed in API_KEY_SCOPES:
        if scope == allowed:
            return allowed
    raise InvalidInput(
        f"unknown API key scope {scope[:20]!r}: use one of {', '.join(API_KEY_SCOPES)}",
        allowed=list(API_KEY_SCOPES),
    )


async def create_api_key(
    pool: Any,
    *,
    user_id: uuid.UUID,
    name: str,
    scope: str,
    ip: str | None = None,
    max_per_user: int = DEFAULT_MAX_KEYS_PER_USER,
) -> CreatedApiKey:
    """Create a key (audited as 'api_key.create'); ``LimitExceeded`` if the user already has
    ``max_per_user`` active keys. The count and the insert run under a per-user advisory
    lock, so concurrent creates cannot slip past the limit."""
    name = check_api_key_name(name)
    checked_scope = check_api_key_scope(scope)
    secret, prefix = generate_api_key()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('api_keys:' || $1))", str(user_id)
        )
        count = await conn.fetchval(
            "SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL", user_id
        )
        if count >= max_per_user:
            raise LimitExceeded(
                f"at most {max_per_user} active API keys per user; revoke one first",
                limit=max_per_user,
            )
        row = await conn.fetchrow(
            f"INSERT INTO api_keys (id, user_id, name, prefix, key_hash, scope) "
            f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
            uuid.uuid4(),
            user_id,
            name,
            prefix,
            hash_api_key(secret),
            checked_scope,
        )
        key = _api_key(row)
        await audit(
            conn,
            "api_key.create",
            user_id=user_id,
            ip=ip,
            key_id=key.id,
            prefix=prefix,
            scope=checked_scope,
        )
    return CreatedApiKey(key, secret)


async def list_api_keys(
    db: Executor, *, user_id: uuid.UUID, include_revoked: bool = False
) -> list[ApiKey]:
    """The user's keys, oldest first (without secrets: there are none to give)."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM api_keys WHERE user_id = $1 "
        f"AND ($2 OR revoked_at IS NULL) ORDER BY created_at, id",
        user_id,
        include_revoked,
    )
    return [_api_key(r) for r in rows]


async def revoke_api_key(
    pool: Any, *, user_id: uuid.UUID, key_id: uuid.UUID, ip: str | None = None
) -> ApiKey | None:
    """Revoke one of ``user_id``'s keys (audited as 'api_key.revoke'); the revoked key, or
    ``None`` if the user has no such active key (another user's key id included)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"UPDATE api_keys SET revoked_at = now() "
            f"WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING {_COLUMNS}",
            key_id,
            user_id,
        )
        if row is None:
            return None
        key = _api_key(row)
        await audit(
            conn, "api_key.revoke", user_id=user_id, ip=ip, key_id=key.id, prefix=key.prefix
        )
    return key


async def authenticate_api_key(db: Executor, key: str) -> ApiKeyIdentity:
    """The identity of a presented key; ``Unauthenticated`` if unknown or revoked."""
    if not isinstance(key, str) or not key.startswith(KEY_MARKER) or len(key) > MAX_API_KEY_LENGTH:
        raise Unauthenticated("invalid API key", reason=INVALID_API_KEY)
    row = await db.fetchrow(
        "SELECT k.id, k.user_id, k.scope, u.tier, u.is_admin, "
        "(k.last_used_at IS NULL OR k.last_used_at < now() - $2::interval) AS stale "
        "FROM api_keys k JOIN users u ON u.id = k.user_id "
        "WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        hash_api_key(key),
        LAST_USED_RESOLUTION,
    )
    if row is None:
        raise Unauthenticated("invalid API key", reason=INVALID_API_KEY)
    if row["stale"]:
        # The condition is repeated so that of concurrent requests only one writes.
        await db.execute(
            "UPDATE api_keys SET last_used_at = now() WHERE id = $1 "
            "AND (last_used_at IS NULL OR last_used_at < now() - $2::interval)",
            row["id"],
            LAST_USED_RESOLUTION,
        )
    return ApiKeyIdentity(
        key_id=row["id"],
        user_id=row["user_id"],
        tier=row["tier"],
        is_admin=row["is_admin"],
        scope=row["scope"],
    )
