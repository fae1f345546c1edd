"""API keys against a real PostgreSQL: created once in clear, stored hashed, scoped,
owner-only revocation, throttled last-use writes, and the owner's current tier."""

from __future__ import annotations

import uuid

import pytest

from server.auth.api_keys import hash_api_key
from server.auth.errors import Unauthenticated
from server.auth.users import AuthSettings, UserService, set_admin
from server.errors import InvalidInput, LimitExceeded
from server.storage.database import Database
from tests.server.auth.helpers import EMAIL, PASSWORD, audit_rows

IP = "198.51.100.4"


async def test_create_list_authenticate_revoke(service: UserService, database: Database) -> None:
    user = await service.register(EMAIL, PASSWORD)
    reader = await service.create_api_key(user.id, "  dashboard ", "read", ip=IP)
    trader = await service.create_api_key(user.id, "bot", "trading")

    assert reader.secret.startswith(reader.key.prefix + "_")
    assert reader.key.prefix.startswith("tg_") and len(reader.key.prefix) == 11
    assert len(reader.secret) >= 50
    assert (reader.key.name, reader.key.scope, reader.key.user_id) == ("dashboard", "read", user.id)

    listed = await service.list_api_keys(user.id)
    assert [(k.id, k.name, k.scope) for k in listed] == [
        (reader.key.id, "dashboard", "read"),
        (trader.key.id, "bot", "trading"),
    ]
    # What the database holds: the digest, never the key or its secret part.
    stored = await database.pool.fetch("SELECT * FROM api_keys")
    for row in stored:
        assert all(
            created.secret[len(created.key.prefix) + 1 :] not in str(value)
            for created in (reader, trader)
            for value in row.values()
        )
    assert {bytes(r["key_hash"]) for r in stored} == {
        hash_api_key(reader.secret),
        hash_api_key(trader.secret),
    }

    read_principal = await service.authenticate_api_key(reader.secret)
    assert (read_principal.user_id, read_principal.scope, read_principal.via) == (
        user.id,
        "read",
        "api_key",
    )
    assert read_principal.token_expires_at is None
    assert not read_principal.can_trade and not read_principal.can_manage_account
    trade_principal = await service.authenticate_api_key(trader.secret)
    assert trade_principal.scope == "trading"
    assert trade_principal.can_trade and not trade_principal.can_manage_account

    assert await service.revoke_api_key(user.id, reader.key.id, ip=IP)
    with pytest.raises(Unauthenticated) as info:
        await service.authenticate_api_key(reader.secret)
    assert info.value.extensions["reason"] == "INVALID_API_KEY"
    assert not await service.revoke_api_key(user.id, reader.key.id)  # already revoked
    assert [k.id for k in await service.list_api_keys(user.id)] == [trader.key.id]
    await service.authenticate_api_key(trader.secret)

    rows = await audit_rows(database, user.id)
    key_rows = [r for r in rows if r["action"].startswith("api_key")]
    assert [(r["action"], r["ip"], r["detail"]["key_id"]) for r in key_rows] == [
        ("api_key.create", IP, str(reader.key.id)),
        ("api_key.create", None, str(trader.key.id)),
        ("api_key.revoke", IP, str(reader.key.id)),
    ]
    assert all(reader.secret not in str(r["detail"]) for r in key_rows)


async def test_only_the_owner_can_revoke(service: UserService) -> None:
    ann = await service.register(EMAIL, PASSWORD)
    bob = await service.register("bob@example.com", PASSWORD)
    key = await service.create_api_key(ann.id, "bot", "trading")
    assert not await service.revoke_api_key(bob.id, key.key.id)
    assert await service.list_api_keys(bob.id) == []
    await service.authenticate_api_key(key.secret)


async def test_a_key_carries_the_owners_current_tier(
    service: UserService, database: Database
) -> None:
    boss = await service.register("boss@example.com", PASSWORD)
    await set_admin(database.pool, boss.id, True)
    ann = await service.register(EMAIL, PASSWORD)
    key = await service.create_api_key(ann.id, "bot", "read")
    assert (await service.authenticate_api_key(key.secret)).tier == "free"
    await service.set_tier(boss.id, ann.id, "elite")
    assert (await service.authenticate_api_key(key.secret)).tier == "elite"


async def test_last_used_is_written_at_most_once_a_minute(
    service: UserService, database: Database
) -> None:
    user = await service.register(EMAIL, PASSWORD)
    key = await service.create_api_key(user.id, "bot", "read")

    async def last_used() -> object:
        return await database.pool.fetchval(
            "SELECT last_used_at FROM api_keys WHERE id = $1", key.key.id
        )

    assert await last_used() is None
    await service.authenticate_api_key(key.secret)
    first = await last_used()
    assert first is not None
    for _ in range(3):
        await service.authenticate_api_key(key.secret)
    assert await last_used() == first

    await database.pool.execute(
        "UPDATE api_keys SET last_used_at = now() - interval '2 minutes' WHERE id = $1",
        key.key.id,
    )
    stale = await last_used()
    await service.authenticate_api_key(key.secret)
    assert await last_used() != stale


@pytest.mark.parametrize(
    "presented",
    ["", "tg_", "tg_00000000_" + "A" * 43, "' OR 1=1 --", "tg_' OR 1=1 --", "tg_" + "x" * 10_000],
)
async def test_unknown_or_malformed_keys_are_refused(service: UserService, presented: str) -> None:
    user = await service.register(EMAIL, PASSWORD)
    await service.create_api_key(user.id, "bot", "read")
    with pytest.raises(Unauthenticated):
        await service.authenticate_api_key(presented)


async def test_names_scopes_and_the_per_user_limit(
    database: Database, service: UserService
) -> None:
    user = await service.register(EMAIL, PASSWORD)
    for name, scope, fragment in [
        ("", "read", "give the API key a name"),
        ("x" * 101, "read", "too long"),
        ("bad\nname", "read", "control characters"),
        ("bot", "admin", "unknown API key scope"),
        ("bot", "full", "unknown API key scope"),
    ]:
        with pytest.raises(InvalidInput, match=fragment):
            await service.create_api_key(user.id, name, scope)

    limited = UserService(
        database.pool, service.hasher, service.tokens.keyring, AuthSettings(max_api_keys_per_user=2)
    )
    first = await limited.create_api_key(user.id, "one", "read")
    await limited.create_api_key(user.id, "two", "read")
    with pytest.raises(LimitExceeded):
        await limited.create_api_key(user.id, "three", "read")
    await limited.revoke_api_key(user.id, first.key.id)  # revoked keys do not count
    await limited.create_api_key(user.id, "three", "read")


async def test_keys_go_with_the_account(service: UserService, database: Database) -> None:
    user = await service.register(EMAIL, PASSWORD)
    key = await service.create_api_key(user.id, "bot", "read")
    await database.pool.execute("DELETE FROM users WHERE id = $1", user.id)
    with pytest.raises(Unauthenticated):
        await service.authenticate_api_key(key.secret)
    assert await database.pool.fetchval("SELECT count(*) FROM api_keys") == 0
    assert not await service.revoke_api_key(user.id, uuid.uuid4())
