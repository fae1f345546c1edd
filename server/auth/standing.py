"""Where each account stands now, so that revocation reaches credentials in use.

An access token is verified without the database, so on its own it would stay good
until it expires, whatever happened to the account meanwhile. Every token therefore
names its session (``sid``) and the account's token generation (``gen``), and every
request checks them against the account's *standing*: its current generation, tier,
role, whether it is disabled, and which sessions were revoked recently.

Reading the standing from PostgreSQL on every request would cost a query each, so
each process keeps it in memory and keeps it true by listening: the database itself
announces every change on the ``tickgraph_auth`` channel (triggers in migration 0005,
so no code path can change an account without telling), and ``StandingListener``
updates this cache and tells the open WebSockets (``server.websocket.connections``).

The cache is only trusted while the listener is connected. Until it first connects,
and whenever its connection drops, every lookup reads the database (correct, slower);
on reconnecting, the cache is emptied, the sessions revoked within the last access-token
lifetime are reloaded, and every open socket is checked again, since announcements made
while it was away are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from server.auth.principal import TIERS, Tier

log = logging.getLogger(__name__)

CHANNEL = "tickgraph_auth"
#: Accounts whose standing is kept in memory at once (least recently used goes first).
DEFAULT_CAPACITY = 100_000


@dataclass(frozen=True, slots=True)
class Standing:
    generation: int
    tier: Tier
    is_admin: bool
    disabled: bool


@dataclass(frozen=True, slots=True)
class AuthChange:
    """One announcement from the database: ``kind`` is ``user``, ``key`` or ``session``."""

    kind: str
    user_id: uuid.UUID
    #: The API key (``key``) or the session (``session``) concerned.
    subject: uuid.UUID | None = None

    @classmethod
    def parse(cls, payload: str) -> AuthChange | None:
        try:
            doc = json.loads(payload)
            kind = doc["k"]
            user = uuid.UUID(doc["u"])
            subject = doc.get("id") or doc.get("s")
            return cls(kind, user, uuid.UUID(subject) if subject else None)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed %s announcement", CHANNEL)
            return None


class AccountStanding:
    """The standing of accounts, cached while the listener vouches for it."""

    def __init__(
        self, pool: Any, *, session_memory_s: float, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        self._pool = pool
        #: How long a revoked session must be remembered: an access token of it lives
        #: at most this long.
        self._session_memory_s = session_memory_s
        self._capacity = capacity
        self._users: OrderedDict[uuid.UUID, Standing | None] = OrderedDict()
        self._revoked_sessions: dict[uuid.UUID, float] = {}
        #: Set by the listener while it is connected.
        self.trusted = False

    async def standing(self, user_id: uuid.UUID) -> Standing | None:
        """The account's standing; ``None`` if it no longer exists."""
        if self.trusted and user_id in self._users:
            self._users.move_to_end(user_id)
            return self._users[user_id]
        row = await self._pool.fetchrow(
            "SELECT token_generation, tier, is_admin, disabled_at IS NOT NULL AS disabled "
            "FROM users WHERE id = $1",
            user_id,
        )
        found = (
            Standing(row["token_generation"], row["tier"], row["is_admin"], row["disabled"])
            if row is not None and row["tier"] in TIERS
            else None
        )
        if self.trusted:
            self._remember(user_id, found)
        return found

    async def session_revoked(self, session_id: uuid.UUID) -> bool:
        if self.trusted:
            expiry = self._revoked_sessions.get(session_id)
            return expiry is not None and expiry > time.monotonic()
        revoked: bool = await self._pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM refresh_tokens "
            "WHERE family_id = $1 AND revoked_at IS NOT NULL)",
            session_id,
        )
        return revoked

    def apply(self, change: AuthChange) -> None:
        """Take an announcement into account (also called directly by the process that
        made the change, so that it holds here before the mutation answers)."""
        if change.kind == "user":
            self._users.pop(change.user_id, None)
        elif change.kind == "session" and change.subject is not None:
            self._forget_expired()
            self._revoked_sessions[change.subject] = time.monotonic() + self._session_memory_s

    async def reload(self) -> None:
        """Start over from the database (the listener has just (re)connected)."""
        self._users.clear()
        rows = await self._pool.fetch(
            "SELECT family_id, extract(epoch FROM now() - max(revoked_at)) AS age "
            "FROM refresh_tokens WHERE revoked_at > now() - $1::interval GROUP BY family_id",
            timedelta(seconds=self._session_memory_s),
        )
        now = time.monotonic()
        self._revoked_sessions = {
            r["family_id"]: now + self._session_memory_s - float(r["age"]) for r in rows
        }

    def _remember(self, user_id: uuid.UUID, standing: Standing | None) -> None:
        self._users[user_id] = standing
        self._users.move_to_end(user_id)
        while len(self._users) > self._capacity:
            self._users.popitem(last=False)

    def _forget_expired(self) -> None:
        now = time.monotonic()
        if len(self._revoked_sessions) > 1024:
            self._revoked_sessions = {s: e for s, e in self._revoked_sessions.items() if e > now}


Connect = Callable[[], Awaitable[Any]]
OnChange = Callable[[AuthChange], Awaitable[None]]


class StandingListener:
    """Keeps ``standing`` true: LISTENs on ``tickgraph_auth`` on a connection of its own,
    reconnects with backoff, and tells ``on_change`` (the open sockets) of every change;
    ``on_resync`` after each (re)connection, when announcements may have been missed."""

    def __init__(
        self,
        connect: Connect,
        standing: AccountStanding,
        on_change: OnChange,
        on_resync: Callable[[], Awaitable[None]],
        *,
        backoff_max_s: float = 5.0,
    ) -> None:
        self._connect = connect
        self._standing = standing
        self._on_change = on_change
        self._on_resync = on_resync
        self._backoff_max_s = backoff_max_s
        self._lost = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Set once the listener has connected and resynchronised at least once.
        self.ready = asyncio.Event()

    async def run(self) -> None:
        delay = 0.1
        while True:
            conn = None
            try:
                conn = await self._connect()
                self._lost.clear()
                conn.add_termination_listener(lambda _c: self._lost.set())
                await conn.add_listener(CHANNEL, self._notified)
                # Listening first, then reloading: a change made in between is both in
                # the reload and announced, never in neither.
                await self._standing.reload()
                self._standing.trusted = True
                await self._on_resync()
                self.ready.set()
                delay = 0.1
                await self._lost.wait()
                log.warning("lost the %s listener connection; reconnecting", CHANNEL)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s listener unavailable (%s); retrying in %.1f s", CHANNEL, exc, delay)
            finally:
                self._standing.trusted = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2.0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._backoff_max_s)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        change = AuthChange.parse(payload)
        if change is None:
            return
        self._standing.apply(change)
        task = asyncio.ensure_future(self._on_change(change))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


__all__ = ["CHANNEL", "AccountStanding", "AuthChange", "Standing", "StandingListener"]
