"""Fixtures for the identity tests: a cheap instrumented hasher and a service on a real
PostgreSQL database (``database`` from tests.support.postgres)."""

from __future__ import annotations

import pytest

from server.auth.passwords import PasswordHashing
from server.auth.tokens import KeyRing
from server.auth.users import UserService
from server.storage.database import Database
from tests.server.auth.helpers import CHEAP, CountingHasher


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher(**CHEAP)


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def service(database: Database, hasher: CountingHasher, keyring: KeyRing) -> UserService:
    service = UserService(database.pool, PasswordHashing(hasher), keyring)
    hasher.reset()  # forget the dummy hash made at construction
    return service
