"""Which account a user's book is at start-up: the one of the broker they trade with now.

A user who traded on the paper broker and then linked an Alpaca account (or a
deployment that moved from paper to the operator's Alpaca account) has fills of both in
the ledger. The book holds one account per user, so it is rebuilt from the account and
the fills of the user's current broker only; the other account stays in the ledger,
whole, for when the user switches back.
"""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from brokers.port import Broker
from server.services.orders.routing import broker_name
from server.storage.broker_accounts import load_all_accounts, load_fills_by_broker
from server.storage.order_rows import fill_from_doc
from server.trading.events import Fill


async def accounts_and_fills(
    pool: asyncpg.Pool, broker: Broker
) -> tuple[dict[str, Decimal], list[tuple[str, Fill]]]:
    accounts = {
        owner: Decimal(str(cash))
        for owner, name, cash in await load_all_accounts(pool)
        if broker_name(broker, owner) == name
    }
    fills = [
        (owner, fill_from_doc(doc))
        for owner, name, doc in await load_fills_by_broker(pool)
        if broker_name(broker, owner) == name
    ]
    return accounts, fills
