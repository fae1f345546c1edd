"""Password policy and Argon2id hashing, off the event loop and bounded.

Hashing
-------
Argon2id with argon2-cffi's defaults (RFC 9106 "low memory" profile: t=3, m=64 MiB,
p=4). One hash takes a few hundred milliseconds of CPU and 64 MiB of memory, so it must
never run on the event loop (every stream would stall) and must not run unbounded in
parallel (a burst of logins would exhaust memory and starve the market-data work).
``PasswordHashing`` runs each hash in a worker thread and admits at most
``max_concurrent`` at a time (default 2: one per core of the target machine); the rest
wait their turn without holding a thread. Login throttling (elsewhere) keeps that queue
short.

Stored hashes are PHC strings that carry their parameters, so raising the cost later only
needs ``needs_rehash``: the next successful login re-hashes with the current parameters.

Unknown accounts
----------------
A login for an email that does not exist verifies the password against a dummy hash made
with the same parameters (``verify_dummy``), so it costs the same time as a wrong
password and the response time does not reveal which emails have accounts.

Policy
------
- At least 10 characters. NIST SP 800-63B asks for at least 8 and recommends length over
  composition rules; 10 adds a margin for a trading account, and there are no "must
  contain a digit" rules (they push users to predictable patterns).
- At most 256 characters. Argon2 itself accepts any length, but every password costs a
  request body, memory and a pre-hash; a cap well above any passphrase or password
  manager output (NIST asks to allow at least 64) stops a 10 MB "password" before it
  reaches the hasher.
- Not the account's email address (the first thing an attacker tries).
- Unicode is normalised (NFKC, as NIST recommends) before checking and hashing, so the
  same password typed on systems that compose accents differently still matches.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from server.auth.errors import InvalidPassword

logger = logging.getLogger(__name__)

T = TypeVar("T")

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
DEFAULT_MAX_CONCURRENT_HASHES = 2


def normalize_password(password: str) -> str:
    """The form that is checked and hashed (NFKC). Callers must check the raw length first
    (``check_password_length``) so an enormous input is not normalised."""
    return unicodedata.normalize("NFKC", password)


def check_password_length(password: str) -> None:
    """Reject a password that is too short or too long. Cheap: call it before anything else."""
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidPassword(
            f"the password is too long: at most {MAX_PASSWORD_LENGTH} characters",
            min_length=MIN_PASSWORD_LENGTH,
            max_length=MAX_PASSWORD_LENGTH,
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidPassword(
            f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters "
            "(a few unrelated words make a good one)",
            min_length=MIN_PASSWORD_LENGTH,
            max_length=MAX_PASSWORD_LENGTH,
        )


def check_password_policy(password: str, *, email: str) -> str:
    """Validate a new password for the account ``email``; return its normalised form.

    Raises ``InvalidPassword`` (code WEAK_PASSWORD) with a message saying what to change.
    """
    check_password_length(password)
    normalized = normalize_password(password)
    # Normalisation can change the length (ligatures expand, for instance).
    check_password_length(normalized)
    if not normalized.strip():
        raise InvalidPassword("the password must not be only spaces")
    if normalized.strip().casefold() == email.strip().casefold():
        raise InvalidPassword("the password must not be your email address")
    return normalized


class PasswordHashing:
    """Argon2id hashing and verification in worker threads, at most ``max_concurrent`` at once.

    ``hasher`` defaults to argon2-cffi's ``PasswordHasher()`` (its recommended parameters);
    tests pass a cheap one. Constructing this object computes the dummy hash once, which
    blocks for one hash: do it at start-up, not per request.
    """

    def __init__(
        self,
        hasher: PasswordHasher | None = None,
        *,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT_HASHES,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.hasher = hasher if hasher is not None else PasswordHasher()
        self.max_concurrent = max_concurrent
        self._slots = asyncio.Semaphore(max_concurrent)
        # A hash of a random password nobody knows, with the current parameters: verifying
        # against it costs exactly what verifying a real password costs.
        self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(32))

    async def hash(self, password: str) -> str:
        """The PHC string of ``password`` (already policy-checked and normalised)."""
        return await self._run(self.hasher.hash, password)

    async def verify(self, stored_hash: str, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash``. A corrupt stored hash is logged and
        counts as a mismatch: the account cannot be logged into until its password is reset,
        which is safer than any alternative."""
        return await self._run(self._verify_sync, stored_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of one verification without any account (unknown email)."""
        await self._run(self._verify_sync, self._dummy_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` was made with other parameters than the current ones."""
        try:
            return self.hasher.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True

    def _verify_sync(self, stored_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash, password)
        except InvalidHashError:
            logger.error("a stored password hash is not a valid Argon2 hash; login refused")
            return False
        except VerificationError:  # includes VerifyMismatchError
            return False

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        await self._slots.acquire()
        try:
            work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        except BaseException:
            self._slots.release()
            raise
        # The slot is given back when the thread finishes, not when the caller stops
        # waiting: a cancelled request must not let more hashes run than allowed.
        work.add_done_callback(self._release)
        # shield: cancelling the caller must not orphan a running thread's slot.
        return await asyncio.shield(work)

    def _release(self, work: asyncio.Future[Any]) -> None:
        self._slots.release()
        if not work.cancelled():
            # Marks the exception (if any) as retrieved when nobody awaits it any more.
            work.exception()
