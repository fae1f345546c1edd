"""Users' own Alpaca accounts: link, unlink, and the brokers that run for them.

``link`` checks the key with Alpaca (``GET /v2/account``) before anything is stored,
seals the secret (``server.auth.sealing``: AES-256-GCM under ``TICKGRAPH_SECRETS_KEY``,
bound to the owner and key id) and starts the user's ``AlpacaBroker`` (its stream, its
reconciliation). The secret is never returned, logged or put in an error: messages name
the key id's first characters at most. Paper by default; ``live`` only when the link
says so. ``unlink`` stops the broker's stream and deletes the sealed secret. Both are
refused while the user has open orders: the orders would be left without a broker
watching them (cancel them first).

After a switch the user's book is rebuilt from the account of the broker they now
trade with (``server.services.orders.current_books``).

Corrections a reconciliation finds (missed events, positions that differ) are logged,
stored in ``broker_corrections`` and listed by ``brokerAccount.corrections``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from brokers.alpaca import AlpacaBroker, Correction, Credentials, Pacing
from brokers.alpaca.errors import BrokerUnavailable, NotSent, Refused, Unauthorized, Uncertain
from brokers.alpaca.rest import AlpacaRest, RestStats
from brokers.port import Broker
from server.auth.sealing import SealError, SecretBox
from server.errors import InvalidInput, TickgraphError
from server.services.orders.current_books import accounts_and_fills
from server.services.orders.routing import BrokerRouter, broker_name
from server.services.orders.service import OrderService
from server.storage.broker_accounts import (
    CorrectionRow,
    corrections_of,
    delete_link,
    load_links,
    record_corrections,
    save_link,
)

log = logging.getLogger(__name__)

KEY_ID = re.compile(r"^[A-Za-z0-9]{8,64}$")
SECRET = re.compile(r"^[\x21-\x7e]{8,128}$")


class LinkingDisabled(TickgraphError):
    code = "LINKING_DISABLED"


class BrokerAuthFailed(TickgraphError):
    code = "BROKER_AUTH_FAILED"


class OpenOrders(TickgraphError):
    code = "OPEN_ORDERS"


@dataclass(frozen=True, slots=True)
class LinkedAccount:
    broker: str
    key_id_hint: str
    live: bool
    linked_at: datetime


def key_hint(key_id: str) -> str:
    return key_id[:4] + "…" if len(key_id) > 4 else "…"


def _context(owner: str, key_id: str) -> bytes:
    return f"broker_accounts/{owner}/{key_id}".encode()


class BrokerAccounts:
    def __init__(
        self,
        pool: asyncpg.Pool,
        router: BrokerRouter,
        orders: OrderService,
        *,
        box: SecretBox | None,
        base_url: str | None = None,
        make_broker: Callable[..., AlpacaBroker] = AlpacaBroker,
    ) -> None:
        self._pool = pool
        self._router = router
        self._orders = orders
        self._box = box
        self._base_url = base_url
        self._make = make_broker
        self._pacing: dict[str, Pacing] = {}  # one limit per Alpaca key, however shared
        #: Every Alpaca REST call of this process, whichever account (for /metrics).
        self.rest_stats = RestStats()
        self._writes: set[asyncio.Task[None]] = set()

    # --- brokers ------------------------------------------------------------------------

    def pacing(self, key_id: str) -> Pacing:
        return self._pacing.setdefault(key_id, Pacing(190))

    def new_broker(self, owner: str | None, credentials: Credentials) -> AlpacaBroker:
        """An Alpaca broker whose corrections are stored for ``owner`` (None: the
        operator's account, whose orders say whose they are)."""
        holder: list[AlpacaBroker] = []

        def on_correction(c: Correction) -> None:
            who = owner if owner is not None else self._owner_of(c.order_id)
            self._store(who, holder[0].name, c)

        def on_positions(positions: dict[str, Any]) -> None:
            self._compare_positions(owner, holder[0], positions)

        broker = self._make(
            credentials,
            pacing=self.pacing(credentials.key_id),
            on_correction=on_correction,
            on_positions=on_positions,
            stats=self.rest_stats,
        )
        holder.append(broker)
        return broker

    def _owner_of(self, order_id: str | None) -> str | None:
        record = self._orders.book.get(order_id) if order_id else None
        return None if record is None else record.meta.owner

    def _store(self, owner: str | None, broker: str, c: Correction) -> None:
        log.warning("broker correction (%s, %s): %s", broker, owner, c.describe())
        row = (owner, broker, c.what, c.order_id, c.kind, c.detail[:500])
        task = asyncio.create_task(record_corrections(self._pool, [row]))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _compare_positions(
        self, owner: str | None, broker: Broker, positions: dict[str, Any]
    ) -> None:
        """Alpaca's positions against the books of the users trading on it."""
        ours: dict[str, Decimal] = {}
        for user, book in self._orders.book.users.items():
            if (owner is None or user == owner) and broker_name(self._router, user) == broker.name:
                for symbol, position in book.account.positions.items():
                    ours[symbol] = ours.get(symbol, Decimal(0)) + position.qty
        theirs = {s: Decimal(str(q)) for s, q in positions.items() if q is not None}
        for symbol in sorted(set(ours) | set(theirs)):
            mine, alpaca = ours.get(symbol, Decimal(0)), theirs.get(symbol, Decimal(0))
            if mine != alpaca:
                detail = f"{symbol}: Alpaca holds {alpaca}, tickgraph's books {mine}"
                self._store(owner, broker.name, Correction("position", None, None, detail))

    async def start(self) -> int:
        """Attach the broker of every linked account (before the order book is restored;
        ``start_streams`` after it, so the first reconciliation sees the restored orders)."""
        links = await load_links(self._pool)
        started = 0
        for row in links:
            if self._box is None:
                log.error("linked accounts exist but TICKGRAPH_SECRETS_KEY is not set")
                break
            try:
                secret = self._box.open(row.secret_sealed, _context(row.owner, row.key_id))
            except SealError:
                log.error("the linked account of %s does not open with this key", row.owner)
                continue
            credentials = Credentials(row.key_id, secret, row.live, self._base_url)
            self._router.attach(row.owner, self.new_broker(row.owner, credentials))
            started += 1
        return started

    def start_streams(self) -> None:
        for broker in [self._router.default, *self._router.linked().values()]:
            if isinstance(broker, AlpacaBroker):
                broker.start()

    def _attach(self, owner: str, credentials: Credentials) -> AlpacaBroker:
        broker = self.new_broker(owner, credentials)
        self._router.attach(owner, broker)
        broker.start()
        return broker

    async def close(self) -> None:
        for owner in list(self._router.linked()):
            broker = self._router.detach(owner)
            if isinstance(broker, AlpacaBroker):
                await broker.close()
        if isinstance(self._router.default, AlpacaBroker):
            await self._router.default.close()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    # --- the use cases ------------------------------------------------------------------

    async def link(self, owner: str, key_id: str, secret: str, *, live: bool) -> LinkedAccount:
        if self._box is None:
            raise LinkingDisabled("this server does not link broker accounts (no secrets key)")
        if not KEY_ID.fullmatch(key_id):
            raise InvalidInput("keyId is 8-64 letters and digits", field="keyId")
        if not SECRET.fullmatch(secret):
            raise InvalidInput("secret is 8-128 printable characters", field="secret")
        self._no_open_orders(owner)
        credentials = Credentials(key_id, secret, live, self._base_url)
        await self._verify(credentials)
        sealed = self._box.seal(secret, _context(owner, key_id))
        row = await save_link(
            self._pool, owner, broker="alpaca", key_id=key_id, sealed=sealed, live=live
        )
        old = self._router.detach(owner)
        if isinstance(old, AlpacaBroker):
            await old.close()
        self._attach(owner, credentials)
        await self._rebuild(owner)
        log.info(
            "user %s linked Alpaca key %s (%s)",
            owner,
            key_hint(key_id),
            "live" if live else "paper",
        )
        return LinkedAccount(
            "alpaca-live" if live else "alpaca", key_hint(row.key_id), live, row.created_at
        )

    async def unlink(self, owner: str) -> bool:
        self._no_open_orders(owner)
        removed = await delete_link(self._pool, owner)
        broker = self._router.detach(owner)
        if isinstance(broker, AlpacaBroker):
            await broker.close()  # the stream stops; the secret is gone with the row
        if removed or broker is not None:
            await self._rebuild(owner)
        return removed

    async def linked(self, owner: str) -> LinkedAccount | None:
        for row in await load_links(self._pool):
            if row.owner == owner:
                name = "alpaca-live" if row.live else "alpaca"
                return LinkedAccount(name, key_hint(row.key_id), row.live, row.created_at)
        return None

    async def corrections(self, owner: str, limit: int) -> list[CorrectionRow]:
        return await corrections_of(self._pool, owner, limit)

    def _no_open_orders(self, owner: str) -> None:
        book = self._orders.book.users.get(owner)
        if book is not None and book.open:
            raise OpenOrders(
                f"you have {len(book.open)} open orders: cancel them first", count=len(book.open)
            )

    async def _verify(self, credentials: Credentials) -> None:
        rest = AlpacaRest(credentials, self.pacing(credentials.key_id), stats=self.rest_stats)
        try:
            await rest.call("GET", "/account")
        except Unauthorized:
            raise BrokerAuthFailed(
                f"Alpaca refused key {key_hint(credentials.key_id)} "
                f"({'live' if credentials.live else 'paper'}): check the key, its secret "
                "and whether it is a paper or a live key"
            ) from None
        except (Uncertain, NotSent, Refused):
            raise BrokerUnavailable("Alpaca cannot be reached now; try again shortly") from None
        finally:
            rest.close()

    async def _rebuild(self, owner: str) -> None:
        """The user's book: the account and fills of the broker they trade with now."""
        self._orders.book.users.pop(owner, None)
        self._orders.forget(owner)
        accounts, fills = await accounts_and_fills(self._pool, self._router)
        if owner in accounts:
            book = self._orders.book.user(owner, accounts[owner])
            for user, fill in fills:
                if user == owner:
                    book.account.apply(fill)
            self._orders.mark_loaded(owner)
