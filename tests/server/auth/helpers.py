"""Shared helpers for the identity tests: an instrumented hasher, token forging, audit reads."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypedDict

from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.auth.tokens import AUDIENCE, ISSUER
from server.storage.database import Database


class Argon2Params(TypedDict):
    time_cost: int
    memory_cost: int
    parallelism: int


#: Argon2id at its minimum cost: tests that are not about the parameters stay fast.
CHEAP: Argon2Params = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}

PASSWORD = "correct horse battery"
EMAIL = "ann@example.com"


class CountingHasher(PasswordHasher):
    """A real Argon2 hasher that counts its calls and remembers what it verified against."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._lock = threading.Lock()
        self.hashes = 0
        self.verifies = 0
        self.verified_against: list[str] = []

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        with self._lock:
            self.hashes += 1
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> Any:
        with self._lock:
            self.verifies += 1
            self.verified_against.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)

    def reset(self) -> None:
        with self._lock:
            self.hashes = 0
            self.verifies = 0
            self.verified_against.clear()


class GatedHasher(PasswordHasher):
    """Once ``armed``, hashes block until ``gate`` is set; records how many ran at once.

    (Unarmed, it hashes straight away: ``PasswordHashing`` makes its dummy hash on
    construction.)"""

    def __init__(self) -> None:
        super().__init__(**CHEAP)
        self.armed = False
        self.gate = threading.Event()
        self._lock = threading.Condition()
        self.running = 0
        self.max_running = 0
        self.started = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        if not self.armed:
            return super().hash(password, salt=salt)
        with self._lock:
            self.running += 1
            self.started += 1
            self.max_running = max(self.max_running, self.running)
            self._lock.notify_all()
        try:
            self.gate.wait(30)
            return super().hash(password, salt=salt)
        finally:
            with self._lock:
                self.running -= 1

    def wait_started(self, count: int, timeout: float) -> bool:
        """Block until ``count`` hashes have started (run it in a thread)."""
        with self._lock:
            return self._lock.wait_for(lambda: self.started >= count, timeout)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(
    header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes] | None
) -> str:
    """A compact JWS built by hand, so that tests can make tokens no library would."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    signature = sign(signing_input.encode()) if sign is not None else b""
    return signing_input + "." + b64url(signature)


def eddsa(key: Ed25519PrivateKey) -> Callable[[bytes], bytes]:
    return key.sign


def valid_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
        "tier": "free",
        "scope": "full",
        "adm": False,
        "sid": str(uuid.uuid4()),
        "gen": 0,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


async def audit_rows(db: Database, user_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    """Audit rows oldest first, all or about one user, with ``detail`` decoded."""
    rows = await db.pool.fetch(
        "SELECT user_id, ip, action, detail FROM audit_log "
        "WHERE $1::uuid IS NULL OR user_id = $1 ORDER BY id",
        user_id,
    )
    return [
        {
            "user_id": r["user_id"],
            "ip": r["ip"],
            "action": r["action"],
            "detail": json.loads(r["detail"]),
        }
        for r in rows
    ]


async def actions(db: Database, user_id: uuid.UUID | None = None) -> list[str]:
    return [r["action"] for r in await audit_rows(db, user_id)]
