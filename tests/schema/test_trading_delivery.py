"""The trading types on the subscription path: a group's compiled selection plan renders
order updates, positions and the account byte for byte as graphql-core does, with the
exact ``Decimal`` scalar and the domain enums (``server.delivery.compiled``)."""

from __future__ import annotations

from collections.abc import AsyncIterable

import pytest
import strawberry
from strawberry.schema.config import StrawberryConfig

from schema.scalars import SCALARS
from schema.trading import Account, OrderUpdate
from tests.schema.test_trading_types import ORDER_FIELDS, Query
from tests.support.selections import Document, compiled_and_reference, outcome


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def order_updates(self) -> AsyncIterable[OrderUpdate]:
        raise NotImplementedError  # events are fed to the plan directly
        yield  # pragma: no cover

    @strawberry.subscription
    async def account(self) -> AsyncIterable[Account]:
        raise NotImplementedError
        yield  # pragma: no cover


SCHEMA = strawberry.Schema(
    query=Query, subscription=Subscription, config=StrawberryConfig(scalar_map=SCALARS)
)
UPDATE = f"""subscription Op {{ orderUpdates {{ cursor kind reason relatedOrderId stopPrice at
    fill {{ id orderId symbol side qty price commission at }}
    order {{ {ORDER_FIELDS} }} }} }}"""
ACCOUNT = """subscription Op { account { broker startingCash cash equity longMarketValue
    shortMarketValue grossExposure buyingPower multiplier realizedPnl unrealizedPnl
    commissions positions { symbol side qty avgEntryPrice costBasis mark marketValue
    unrealizedPnl unrealizedPnlPercent realizedPnl commissions updatedAt } } }"""


@pytest.mark.parametrize(("text", "root"), [(UPDATE, "orderUpdates"), (ACCOUNT, "account")])
def test_compiled_plans_render_trading_types_as_graphql_core_does(text: str, root: str) -> None:
    compiled, reference = compiled_and_reference(SCHEMA, Document(text, {}, root))
    assert compiled.plan is not None, compiled.unsupported
    query = Query()
    events = query.updates() if root == "orderUpdates" else [query.account()]
    for event in events:
        payload = outcome(compiled, event)
        assert payload == outcome(reference, event)
        assert isinstance(payload, bytes) and b'"errors"' not in payload, payload
        assert b"E+" not in payload and b"E-" not in payload
