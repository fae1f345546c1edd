"""Your own Alpaca account: link it, see it (never its secret), unlink it.

``linkBrokerAccount`` is account management: a signed-in session only, never an API
key. The secret goes in and is never returned or echoed in an error.
"""

from __future__ import annotations

import strawberry

from schema.context import Info
from schema.scalars import Timestamp
from server.errors import Unavailable
from server.services.broker_accounts import BrokerAccounts, LinkedAccount


def _accounts(info: Info) -> BrokerAccounts:
    accounts = info.context.services.broker_accounts
    if accounts is None:
        raise Unavailable("broker accounts are not available on this server")
    return accounts


@strawberry.type(description="A correction a reconciliation with your broker recorded.")
class BrokerCorrection:
    what: str = strawberry.field(
        description="`missed_event` (an order event the stream did not deliver) or "
        "`position` (the broker's position differs from tickgraph's books)."
    )
    order_id: strawberry.ID | None
    kind: str | None = strawberry.field(description="The order event, for `missed_event`.")
    detail: str
    recorded_at: Timestamp


@strawberry.type(description="Your linked broker account. Its secret is never shown.")
class BrokerAccount:
    broker: str = strawberry.field(description="`alpaca` (paper) or `alpaca-live`.")
    key_id_hint: str = strawberry.field(description="The first characters of the key id.")
    live: bool
    linked_at: Timestamp
    _owner: strawberry.Private[str]

    @classmethod
    def of(cls, owner: str, linked: LinkedAccount) -> BrokerAccount:
        return cls(
            broker=linked.broker,
            key_id_hint=linked.key_id_hint,
            live=linked.live,
            linked_at=Timestamp(linked.linked_at.timestamp() * 1000),
            _owner=owner,
        )

    @strawberry.field(description="What reconciliations found, newest first.")
    async def corrections(self, info: Info, limit: int = 50) -> list[BrokerCorrection]:
        rows = await _accounts(info).corrections(self._owner, max(1, min(limit, 500)))
        return [
            BrokerCorrection(
                what=r.what,
                order_id=strawberry.ID(r.order_id) if r.order_id else None,
                kind=r.kind,
                detail=r.detail,
                recorded_at=Timestamp(r.recorded_at.timestamp() * 1000),
            )
            for r in rows
        ]


@strawberry.input(description="An Alpaca API key and its secret.")
class BrokerAccountInput:
    key_id: str
    secret: str = strawberry.field(description="Stored encrypted; never returned or logged.")
    live: bool = strawberry.field(
        default=False,
        description="Trade with real money. Paper unless this is true (the key must be a "
        "live key then).",
    )


@strawberry.type
class BrokerAccountsQuery:
    @strawberry.field(description="Your linked broker account; null: you trade with the default.")
    async def broker_account(self, info: Info) -> BrokerAccount | None:
        owner = info.context.caller.owner()
        linked = await _accounts(info).linked(owner)
        return None if linked is None else BrokerAccount.of(owner, linked)


@strawberry.type
class BrokerAccountsMutation:
    @strawberry.mutation(
        description="Trade through your own Alpaca account from now on (paper unless "
        "`live`). The key is checked with Alpaca first. Refused while you have open orders."
    )
    async def link_broker_account(self, info: Info, input: BrokerAccountInput) -> BrokerAccount:
        owner = info.context.caller.owner()
        linked = await _accounts(info).link(owner, input.key_id, input.secret, live=input.live)
        return BrokerAccount.of(owner, linked)

    @strawberry.mutation(
        description="Stop trading through your Alpaca account: its stream stops and its "
        "secret is deleted. False if none was linked. Refused while you have open orders."
    )
    async def unlink_broker_account(self, info: Info) -> bool:
        return await _accounts(info).unlink(info.context.caller.owner())
