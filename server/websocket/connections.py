"""The open WebSocket connections of this process, by account: where revocation lands.

A WebSocket authenticates once, at ``connection_init``, and may then stay open for days.
When its credential stops being good (its API key revoked, its session logged out,
every session ended, the account disabled or gone) it must stop at once: it is closed
with 4403, and its outbox is closed first, synchronously, so not one more message
(a private alert firing included) leaves after the decision. When the account's tier
or role changes, the connection carries on with the new limits.

Changes arrive two ways, and both end in ``recheck``: the mutation that made the change
calls it before answering (so on this process the change holds by the time the client
hears "done"), and the database announces every change to every process
(``server.auth.standing``), whose listener calls it for the account's connections here.
After the listener reconnects (announcements may have been missed), every connection
is checked again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from server.auth.access import Caller
from server.auth.principal import Principal
from server.auth.standing import AuthChange

log = logging.getLogger(__name__)

REVOKED_CODE = 4403


class LiveConnection(Protocol):
    """What the registry needs of a connection (the graphql-transport-ws handler)."""

    @property
    def caller(self) -> Caller: ...

    def retier(self, caller: Caller) -> None:
        """Carry on as ``caller`` (same identity, new tier or role)."""

    def revoke(self, reason: str) -> None:
        """Send nothing more and close with 4403 ``reason``; returns at once."""


#: Checks a principal against the account's standing now: the principal to carry on
#: with (tier and role updated), or None when its credential is no longer good.
Recheck = Callable[[Principal], Awaitable[Principal | None]]


class Connections:
    def __init__(self, recheck: Recheck) -> None:
        self._recheck = recheck
        self._by_user: dict[uuid.UUID, set[LiveConnection]] = {}

    def add(self, connection: LiveConnection) -> None:
        principal = connection.caller.principal
        if principal is not None:
            self._by_user.setdefault(principal.user_id, set()).add(connection)

    def discard(self, connection: LiveConnection) -> None:
        principal = connection.caller.principal
        if principal is None:
            return
        held = self._by_user.get(principal.user_id)
        if held is not None:
            held.discard(connection)
            if not held:
                del self._by_user[principal.user_id]

    def count(self, user_id: uuid.UUID | None = None) -> int:
        if user_id is not None:
            return len(self._by_user.get(user_id, ()))
        return sum(len(held) for held in self._by_user.values())

    async def recheck_user(self, user_id: uuid.UUID) -> None:
        """Check every connection of ``user_id`` against the account's standing now."""
        for connection in list(self._by_user.get(user_id, ())):
            await self._check(connection)

    async def on_change(self, change: AuthChange) -> None:
        """An announcement from the database (any process may have made the change)."""
        await self.recheck_user(change.user_id)

    async def recheck_all(self) -> None:
        """Every connection, after announcements may have been missed."""
        for user_id in list(self._by_user):
            await self.recheck_user(user_id)

    async def _check(self, connection: LiveConnection) -> None:
        principal = connection.caller.principal
        if principal is None:
            return
        try:
            current = await self._recheck(principal)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The database did not answer: keep the connection (the listener will
            # resynchronise everything when it is back), but say so.
            log.warning("could not recheck a connection's credential: %s", exc)
            return
        if current is None:
            self.discard(connection)
            connection.revoke("credential revoked")
        elif current != principal:
            connection.retier(connection.caller.with_principal(current))


__all__ = ["REVOKED_CODE", "Connections", "LiveConnection"]
