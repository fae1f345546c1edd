"""Accounts and sessions against a real PostgreSQL: registration, login (and what it does
not reveal), refresh rotation and reuse detection, logout, password change, tiers, and
the audit trail of each."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from server.auth.errors import (
    EmailTaken,
    Forbidden,
    InvalidCredentials,
    InvalidEmail,
    InvalidPassword,
    Unauthenticated,
    UserNotFound,
)
from server.auth.passwords import PasswordHashing
from server.auth.refresh import (
    REFRESH_TOKEN_EXPIRED,
    REFRESH_TOKEN_REVOKED,
    purge_expired_refresh_tokens,
)
from server.auth.tokens import KeyRing
from server.auth.users import AuthSettings, TokenPair, UserService, normalize_email, set_admin
from server.errors import InvalidInput
from server.settings import Settings
from server.storage.database import Database
from tests.server.auth.helpers import (
    CHEAP,
    EMAIL,
    PASSWORD,
    CountingHasher,
    actions,
    audit_rows,
)
from tests.support.timing import TIMEOUT

IP = "203.0.113.7"


async def stored_hash(db: Database, user_id: uuid.UUID) -> str:
    value: str = await db.pool.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)
    return value


async def refresh_fails(service: UserService, token: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        await service.refresh(token)
    return info.value


# -- registration -----------------------------------------------------------------------


async def test_register_login_me(service: UserService, database: Database) -> None:
    user = await service.register(" Ann@Example.com ", PASSWORD, ip=IP)
    assert user.email == "Ann@Example.com"
    assert (user.tier, user.is_admin) == ("free", False)

    pair = await service.login("ann@example.COM", PASSWORD, ip=IP)
    principal = await service.authenticate_access_token(pair.access_token)
    assert principal.user_id == user.id
    assert (principal.tier, principal.is_admin, principal.scope, principal.via) == (
        "free",
        False,
        "full",
        "token",
    )
    assert principal.token_expires_at == pair.access_token_expires_at
    remaining = pair.access_token_expires_at - datetime.now(UTC)
    assert timedelta(minutes=14) < remaining <= timedelta(minutes=15)
    refresh_left = pair.refresh_token_expires_at - datetime.now(UTC)
    assert timedelta(days=29) < refresh_left <= timedelta(days=30)

    assert await service.me(user.id) == user
    rows = await audit_rows(database, user.id)
    assert [(r["action"], r["ip"]) for r in rows] == [
        ("user.register", IP),
        ("login.success", IP),
    ]


async def test_the_same_address_in_another_case_is_taken(service: UserService) -> None:
    await service.register(EMAIL, PASSWORD)
    with pytest.raises(EmailTaken) as info:
        await service.register("  ANN@example.com", "another good password")
    assert info.value.code == "EMAIL_TAKEN"


@pytest.mark.parametrize(
    "email",
    [
        "",
        "ann",
        "ann@",
        "@example.com",
        "ann@example",
        "ann smith@example.com",
        "ann@exa mple.com",
        "ann@@example.com",
        "ann\x00@example.com",
        "ann@example.com\u200b\n",
        "' OR 1=1 --",
        "x" * 65 + "@example.com",
        "ann@" + "x" * 250 + ".com",
        "x" * 10_000_000,
    ],
)
async def test_malformed_emails_are_refused_before_hashing(
    service: UserService, hasher: CountingHasher, email: str
) -> None:
    with pytest.raises(InvalidEmail) as info:
        await service.register(email, PASSWORD)
    assert info.value.code == "INVALID_EMAIL"
    assert hasher.hashes == 0


def test_email_normalisation() -> None:
    assert normalize_email("  Ann.Smith+tg@Example.COM\t") == (
        "Ann.Smith+tg@Example.COM",
        "ann.smith+tg@example.com",
    )
    # Quotes and dashes are legal in addresses and are just data.
    assert normalize_email("o'brien--@example.com")[1] == "o'brien--@example.com"


async def test_weak_passwords_are_refused_before_hashing(
    service: UserService, hasher: CountingHasher
) -> None:
    for password in ("short", EMAIL.upper(), "x" * 10_000_000):
        with pytest.raises(InvalidPassword) as info:
            await service.register(EMAIL, password)
        assert info.value.code == "WEAK_PASSWORD"
    assert hasher.hashes == 0


async def test_sql_looking_input_is_only_data(service: UserService, database: Database) -> None:
    sqlish = "' OR 1=1 --"
    # As an email: not an address.
    with pytest.raises(InvalidEmail):
        await service.register(sqlish, PASSWORD)
    with pytest.raises(InvalidCredentials):
        await service.login(sqlish, sqlish)
    # As a password (11 characters: allowed) and inside a legal address: stored and
    # compared literally.
    user = await service.register("o'brien--@example.com", sqlish)
    await service.login("o'brien--@example.com", sqlish)
    with pytest.raises(InvalidCredentials):
        await service.login("o'brien--@example.com", "' OR '1'='1")
    with pytest.raises(InvalidCredentials):
        await service.login(EMAIL, sqlish)
    assert await database.pool.fetchval("SELECT count(*) FROM users") == 1
    assert (await service.me(user.id)).email == "o'brien--@example.com"


# -- login ------------------------------------------------------------------------------


async def test_unknown_email_and_wrong_password_look_the_same(
    service: UserService, hasher: CountingHasher, database: Database
) -> None:
    user = await service.register(EMAIL, PASSWORD)
    hasher.reset()

    with pytest.raises(InvalidCredentials) as unknown:
        await service.login("nobody@example.com", PASSWORD, ip=IP)
    assert (hasher.hashes, hasher.verifies) == (0, 1)
    dummy = hasher.verified_against[0]

    with pytest.raises(InvalidCredentials) as wrong:
        await service.login(EMAIL, "not the password", ip=IP)
    assert (hasher.hashes, hasher.verifies) == (0, 2)

    assert (unknown.value.code, unknown.value.message, unknown.value.extensions) == (
        wrong.value.code,
        wrong.value.message,
        wrong.value.extensions,
    )
    assert unknown.value.code == "INVALID_CREDENTIALS"
    # The unknown email was checked against the dummy hash, which has the parameters of
    # real hashes (so the same cost) and belongs to nobody.
    assert dummy != await stored_hash(database, user.id)
    assert not hasher.check_needs_rehash(dummy)

    failures = [r for r in await audit_rows(database) if r["action"] == "login.failure"]
    assert [(r["user_id"], r["detail"]["reason"]) for r in failures] == [
        (None, "unknown_email"),
        (user.id, "wrong_password"),
    ]
    assert failures[0]["detail"]["email"] == "nobody@example.com"


async def test_a_huge_password_never_reaches_the_hasher(
    service: UserService, hasher: CountingHasher, database: Database
) -> None:
    user = await service.register(EMAIL, PASSWORD)
    hasher.reset()
    huge = "x" * 10_000_000
    with pytest.raises(InvalidCredentials):
        await service.login(EMAIL, huge)
    with pytest.raises(InvalidCredentials):
        await service.login("nobody@example.com", huge)
    with pytest.raises(InvalidPassword):
        await service.change_password(user.id, PASSWORD, huge)
    with pytest.raises(InvalidCredentials):
        await service.change_password(user.id, huge, "a fine new password")
    assert (hasher.hashes, hasher.verifies) == (0, 0)
    reasons = [r["detail"]["reason"] for r in await audit_rows(database) if "fail" in r["action"]]
    assert reasons == ["password_too_long", "password_too_long", "too_long"]


async def test_login_rehashes_when_the_parameters_changed(
    database: Database, keyring: KeyRing
) -> None:
    old = UserService(database.pool, PasswordHashing(PasswordHasher(**CHEAP)), keyring)
    user = await old.register(EMAIL, PASSWORD)
    assert (await stored_hash(database, user.id)).startswith("$argon2id$v=19$m=8,t=1,p=1$")

    stronger = CountingHasher(time_cost=2, memory_cost=16, parallelism=1)
    new = UserService(database.pool, PasswordHashing(stronger), keyring)
    stronger.reset()
    await new.login(EMAIL, PASSWORD)
    assert (stronger.verifies, stronger.hashes) == (1, 1)
    assert (await stored_hash(database, user.id)).startswith("$argon2id$v=19$m=16,t=2,p=1$")
    # Not a password change.
    assert (await new.me(user.id)).password_changed_at == user.password_changed_at

    await new.login(EMAIL, PASSWORD)
    assert (stronger.verifies, stronger.hashes) == (2, 1)  # up to date: no second rehash


async def test_real_default_parameters_end_to_end(database: Database, keyring: KeyRing) -> None:
    service = UserService(database.pool, PasswordHashing(), keyring)
    user = await service.register(EMAIL, PASSWORD)
    assert (await stored_hash(database, user.id)).startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    pair = await service.login(EMAIL, PASSWORD)
    assert (await service.authenticate_access_token(pair.access_token)).user_id == user.id


async def test_unicode_forms_of_one_password_match(service: UserService) -> None:
    await service.register(EMAIL, "caf\u00e9 au lait 42")  # é composed
    await service.login(EMAIL, "cafe\u0301 au lait 42")  # e + combining accent


# -- refresh and logout -----------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(
    service: UserService, database: Database
) -> None:
    user = await service.register(EMAIL, PASSWORD)
    first = await service.login(EMAIL, PASSWORD)
    second = await service.refresh(first.refresh_token, ip=IP)
    assert second.refresh_token != first.refresh_token
    assert (await service.authenticate_access_token(second.access_token)).user_id == user.id
    third = await service.refresh(second.refresh_token)

    # The first token was used: presenting it again is reuse.
    error = await refresh_fails(service, first.refresh_token)
    assert error.extensions["reason"] == REFRESH_TOKEN_REVOKED
    # The whole family is gone, including the newest token.
    await refresh_fails(service, third.refresh_token)

    rows = await audit_rows(database, user.id)
    assert [r["action"] for r in rows] == [
        "user.register",
        "login.success",
        "token.refresh",
        "token.refresh",
        "token.reuse_detected",
    ]
    assert rows[2]["ip"] == IP
    assert rows[-1]["detail"]["sessions_ended"] == 1


async def test_reuse_revokes_only_that_family(service: UserService) -> None:
    await service.register(EMAIL, PASSWORD)
    phone = await service.login(EMAIL, PASSWORD)
    laptop = await service.login(EMAIL, PASSWORD)
    await service.refresh(phone.refresh_token)
    await refresh_fails(service, phone.refresh_token)  # reuse on the phone's session
    await service.refresh(laptop.refresh_token)  # the laptop's session is untouched


async def test_concurrent_refreshes_with_one_token_succeed_once(service: UserService) -> None:
    await service.register(EMAIL, PASSWORD)
    pair = await service.login(EMAIL, PASSWORD)
    async with asyncio.timeout(TIMEOUT):
        results = await asyncio.gather(
            *(service.refresh(pair.refresh_token) for _ in range(5)), return_exceptions=True
        )
    winners = [r for r in results if isinstance(r, TokenPair)]
    losers = [r for r in results if isinstance(r, Unauthenticated)]
    assert (len(winners), len(losers)) == (1, 4)
    # The losers presented a used token, which is reuse: the winner's successor is revoked
    # too (clients must not refresh one session concurrently).
    await refresh_fails(service, winners[0].refresh_token)


async def test_expired_refresh_token(service: UserService, database: Database) -> None:
    await service.register(EMAIL, PASSWORD)
    pair = await service.login(EMAIL, PASSWORD)
    await database.pool.execute(
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second'"
    )
    error = await refresh_fails(service, pair.refresh_token)
    assert error.extensions["reason"] == REFRESH_TOKEN_EXPIRED
    # Purging removes it once it has been expired long enough.
    assert await purge_expired_refresh_tokens(database.pool, older_than=timedelta(0)) == 1


async def test_refresh_with_garbage(service: UserService) -> None:
    for token in ("", "nope", "x" * 10_000, "' OR 1=1 --"):
        await refresh_fails(service, token)


async def test_logout_ends_one_session(service: UserService, database: Database) -> None:
    user = await service.register(EMAIL, PASSWORD)
    phone = await service.login(EMAIL, PASSWORD)
    laptop = await service.login(EMAIL, PASSWORD)
    await service.logout(phone.refresh_token, ip=IP)
    error = await refresh_fails(service, phone.refresh_token)
    assert error.extensions["reason"] == REFRESH_TOKEN_REVOKED
    await service.refresh(laptop.refresh_token)
    # Logging out again, or with nonsense, is not an error.
    await service.logout(phone.refresh_token)
    await service.logout("nonsense")
    logouts = [r for r in await audit_rows(database, user.id) if r["action"] == "logout"]
    assert [r["detail"]["sessions_ended"] for r in logouts] == [1, 0]
    assert logouts[0]["ip"] == IP


# -- password change --------------------------------------------------------------------


async def test_change_password_ends_every_other_session(
    service: UserService, database: Database
) -> None:
    user = await service.register(EMAIL, PASSWORD)
    phone = await service.login(EMAIL, PASSWORD)
    laptop = await service.login(EMAIL, PASSWORD)

    with pytest.raises(InvalidCredentials, match="current password is wrong"):
        await service.change_password(user.id, "not the password", "a fine new password")
    with pytest.raises(InvalidPassword):
        await service.change_password(user.id, PASSWORD, "short")
    await service.refresh(laptop.refresh_token)  # failed attempts changed nothing

    fresh = await service.change_password(user.id, PASSWORD, "a fine new password", ip=IP)
    await refresh_fails(service, phone.refresh_token)
    await refresh_fails(service, laptop.refresh_token)
    await service.refresh(fresh.refresh_token)  # the caller's new session works

    with pytest.raises(InvalidCredentials):
        await service.login(EMAIL, PASSWORD)
    await service.login(EMAIL, "a fine new password")
    assert (await service.me(user.id)).password_changed_at > user.password_changed_at

    rows = await audit_rows(database, user.id)
    change = [r for r in rows if r["action"] == "password.change"]
    assert len(change) == 1
    assert change[0]["detail"] == {"sessions_ended": 2}  # the phone's and the laptop's
    assert change[0]["ip"] == IP
    assert [r["detail"]["reason"] for r in rows if r["action"] == "password.change_failure"] == [
        "wrong_password"
    ]


# -- tiers and admins -------------------------------------------------------------------


async def test_only_admins_change_tiers(service: UserService, database: Database) -> None:
    boss = await service.register("boss@example.com", PASSWORD)
    ann = await service.register(EMAIL, PASSWORD)
    ann_session = await service.login(EMAIL, PASSWORD)

    with pytest.raises(Forbidden) as info:
        await service.set_tier(ann.id, ann.id, "elite")
    assert info.value.code == "FORBIDDEN"
    assert (await service.me(ann.id)).tier == "free"

    assert (await set_admin(database.pool, boss.id, True)) is not None
    updated = await service.set_tier(boss.id, ann.id, "pro", ip=IP)
    assert updated.tier == "pro"
    with pytest.raises(InvalidInput, match="unknown tier"):
        await service.set_tier(boss.id, ann.id, "platinum")
    with pytest.raises(UserNotFound):
        await service.set_tier(boss.id, uuid.uuid4(), "pro")

    # The tier is the account's current one, also for a token issued before the change.
    assert (await service.authenticate_access_token(ann_session.access_token)).tier == "pro"
    refreshed = await service.refresh(ann_session.refresh_token)
    assert (await service.authenticate_access_token(refreshed.access_token)).tier == "pro"

    ann_rows = await audit_rows(database, ann.id)
    assert [r["action"] for r in ann_rows if r["action"].startswith("tier")] == [
        "tier.change_denied",
        "tier.change",
    ]
    change = next(r for r in ann_rows if r["action"] == "tier.change")
    assert change["detail"] == {"by": str(boss.id), "old": "free", "new": "pro"}
    assert "admin.change" in await actions(database, boss.id)

    boss_session = await service.login("boss@example.com", PASSWORD)
    assert (await service.authenticate_access_token(boss_session.access_token)).is_admin


async def test_a_deleted_account(service: UserService, database: Database) -> None:
    user = await service.register(EMAIL, PASSWORD)
    pair = await service.login(EMAIL, PASSWORD)
    await database.pool.execute("DELETE FROM users WHERE id = $1", user.id)
    with pytest.raises(Unauthenticated, match="no longer exists"):
        await service.me(user.id)
    await refresh_fails(service, pair.refresh_token)  # its tokens went with it
    # The audit trail survives the account.
    assert "login.success" in await actions(database, user.id)


def test_lifetimes_come_from_the_settings() -> None:
    settings = Settings.from_env(
        {"TICKGRAPH_ACCESS_TOKEN_TTL": "300", "TICKGRAPH_REFRESH_TOKEN_TTL": "86400"}
    )
    auth = AuthSettings.from_settings(settings)
    assert (auth.access_token_ttl, auth.refresh_token_ttl) == (
        timedelta(minutes=5),
        timedelta(days=1),
    )
