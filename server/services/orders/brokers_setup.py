"""Which brokers a deployment trades with (the composition root's part for brokers).

- No Alpaca settings: everyone trades with the paper broker.
- ``ALPACA_API_KEY_ID``/``ALPACA_API_SECRET_KEY``: the operator's Alpaca account is the
  default for everyone (a single-account deployment); ``ALPACA_LIVE=true`` makes it the
  live account, paper otherwise; ``ALPACA_BASE_URL`` points at another server (tests).
- ``TICKGRAPH_SECRETS_KEY``: users may link their own Alpaca accounts
  (``server.services.broker_accounts``); they trade there, the rest with the default.
"""

from __future__ import annotations

import asyncpg

from brokers.alpaca import Credentials
from brokers.port import Broker
from server.auth.sealing import SecretBox
from server.services.broker_accounts import BrokerAccounts
from server.services.orders.book import OrderBook
from server.services.orders.routing import BrokerRouter
from server.services.orders.service import OrderService
from server.settings import Settings


def router_for(book: OrderBook, paper: Broker) -> BrokerRouter:
    def owner_of(order_id: str) -> str | None:
        record = book.get(order_id)
        return None if record is None else record.meta.owner

    return BrokerRouter(paper, owner_of)


def broker_accounts(
    settings: Settings, pool: asyncpg.Pool, router: BrokerRouter, service: OrderService
) -> BrokerAccounts:
    """The linked accounts, and the operator's Alpaca account as the default if set."""
    box = SecretBox(settings.secrets_key.reveal()) if settings.secrets_key else None
    accounts = BrokerAccounts(pool, router, service, box=box, base_url=settings.alpaca_base_url)
    key_id, secret = settings.alpaca_api_key_id, settings.alpaca_api_secret_key
    if key_id is not None and secret is not None:
        credentials = Credentials(
            key_id.reveal(), secret.reveal(), settings.alpaca_live, settings.alpaca_base_url
        )
        router.default = accounts.new_broker(None, credentials)
        if router.listener is not None:
            router.default.set_listener(router.listener)
    return accounts
