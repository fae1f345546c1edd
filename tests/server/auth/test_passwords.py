"""Password policy and hashing: the real Argon2id defaults, the bound on concurrent hashes
(also under cancellation), the dummy hash, and what never reaches the hasher."""

from __future__ import annotations

import asyncio
import logging

import pytest
from argon2 import PasswordHasher

from server.auth.errors import InvalidPassword
from server.auth.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    PasswordHashing,
    check_password_policy,
)
from tests.server.auth.helpers import CHEAP, CountingHasher, GatedHasher
from tests.support.timing import TIMEOUT


async def test_real_defaults_are_argon2id_with_the_recommended_parameters() -> None:
    hashing = PasswordHashing()  # argon2-cffi's PasswordHasher() defaults
    stored = await hashing.hash("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert await hashing.verify(stored, "correct horse battery")
    assert not await hashing.verify(stored, "correct horse batterY")
    assert not hashing.needs_rehash(stored)


def test_policy_accepts_reasonable_passwords_and_normalises_them() -> None:
    assert check_password_policy("x" * MIN_PASSWORD_LENGTH, email="a@b.co") == "x" * 10
    assert check_password_policy("y" * MAX_PASSWORD_LENGTH, email="a@b.co") == "y" * 256
    # No composition rules: a passphrase of lower-case words is fine.
    check_password_policy("purple monkey dishwasher", email="a@b.co")
    # Unicode: the decomposed form (e + combining acute) is stored as the composed one.
    assert check_password_policy("cafe\u0301 au lait!", email="a@b.co") == "café au lait!"


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short", "too short"),
        ("x" * 9, "too short"),
        ("x" * 257, "too long"),
        ("x" * 10_000_000, "too long"),
        (" " * 12, "only spaces"),
        ("Ann@Example.com", "email"),
        ("  ann@example.com ", "email"),
    ],
)
def test_policy_rejections_say_what_to_change(password: str, fragment: str) -> None:
    with pytest.raises(InvalidPassword, match=fragment) as info:
        check_password_policy(password, email="ann@example.com")
    assert info.value.code == "WEAK_PASSWORD"


async def test_at_most_max_concurrent_hashes_run_at_once() -> None:
    gated = GatedHasher()
    hashing = PasswordHashing(gated, max_concurrent=2)
    gated.armed = True
    tasks = [asyncio.create_task(hashing.hash(f"password-{i}")) for i in range(5)]
    assert await asyncio.to_thread(gated.wait_started, 2, TIMEOUT)
    await asyncio.sleep(0.1)  # room for a third to start if the bound were broken
    assert gated.started == 2
    gated.gate.set()
    async with asyncio.timeout(TIMEOUT):
        results = await asyncio.gather(*tasks)
    assert len(set(results)) == 5
    assert gated.max_running == 2


async def test_a_cancelled_caller_keeps_its_slot_until_the_thread_finishes() -> None:
    gated = GatedHasher()
    hashing = PasswordHashing(gated, max_concurrent=1)
    gated.armed = True
    first = asyncio.create_task(hashing.hash("first-password"))
    assert await asyncio.to_thread(gated.wait_started, 1, TIMEOUT)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # The first thread still runs: a second hash must wait for it.
    second = asyncio.create_task(hashing.hash("second-password"))
    await asyncio.sleep(0.1)
    assert gated.started == 1
    gated.gate.set()
    async with asyncio.timeout(TIMEOUT):
        await second
    assert gated.max_running == 1


async def test_dummy_verification_costs_one_real_verification() -> None:
    counting = CountingHasher(**CHEAP)
    hashing = PasswordHashing(counting)
    assert counting.hashes == 1  # the dummy, made once at construction
    counting.reset()
    await hashing.verify_dummy("whatever-they-typed")
    assert (counting.hashes, counting.verifies) == (0, 1)
    dummy = counting.verified_against[0]
    # Same parameters as real hashes, so the same cost.
    assert not counting.check_needs_rehash(dummy)
    assert dummy.startswith("$argon2id$v=19$m=8,t=1,p=1$")


async def test_rehash_is_needed_when_parameters_change() -> None:
    old = PasswordHashing(PasswordHasher(**CHEAP))
    new = PasswordHashing(PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    stored = await old.hash("correct horse battery")
    assert not old.needs_rehash(stored)
    assert new.needs_rehash(stored)
    # Still verifies: the parameters travel with the hash.
    assert await new.verify(stored, "correct horse battery")


async def test_a_corrupt_stored_hash_is_a_logged_mismatch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hashing = PasswordHashing(PasswordHasher(**CHEAP))
    with caplog.at_level(logging.ERROR, logger="server.auth.passwords"):
        assert not await hashing.verify("not-a-hash", "correct horse battery")
    assert "not a valid Argon2 hash" in caplog.text
    assert hashing.needs_rehash("not-a-hash")


def test_max_concurrent_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        PasswordHashing(PasswordHasher(**CHEAP), max_concurrent=0)
