"""What the compiler does with what the market schema does not have yet: interfaces and
unions, resolvers that take info or arguments, permission classes, a decimal money
scalar, enums, nested lists; and what it refuses (asynchronous resolvers). Payloads
are compared with graphql-core's byte for byte, over random selections and events
of this schema too."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable
from decimal import Decimal
from typing import Annotated, Any, NewType

import pytest
import strawberry
from graphql import parse
from hypothesis import given
from hypothesis import strategies as st
from strawberry.permission import BasePermission
from strawberry.schema.config import StrawberryConfig

from server.delivery.compiled import Plan, Unsupported, compile_plan
from server.delivery.execution import Execution, ExecutionStats, plain_errors
from tests.support.selections import (
    Document,
    compiled_and_reference,
    exactness_settings,
    executor_for,
    outcome,
    subscription_documents,
    values,
)

#: The shape the orders work will give money: a decimal, sent as a string.
Money = NewType("Money", Decimal)
SCALARS = {
    Money: strawberry.scalar(
        name="Money", description="A decimal amount, as a string.", serialize=str,
        parse_value=Decimal,
    )
}  # fmt: skip


@strawberry.enum
class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


class Allowed(BasePermission):
    message = "not allowed"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return getattr(source, "qty", 0) != 13


@strawberry.interface
class Node:
    id: strawberry.ID


@strawberry.type
class Order(Node):
    price: Money
    qty: int
    side: Side
    tags: list[list[int | None]]
    note: str | None

    @strawberry.field
    def notional(self) -> Money:
        return Money(self.price * self.qty)

    @strawberry.field
    def where(self, info: strawberry.Info) -> str:
        return f"{info.field_name}@{'.'.join(map(str, info.path.as_list()))}"

    @strawberry.field
    def scaled(self, factor: int = 2) -> int:
        return self.qty * factor

    @strawberry.field(permission_classes=[Allowed])
    def guarded(self) -> str:
        return "ok"


@strawberry.type
class Fill(Node):
    order: Order
    at: float
    sides: list[Side]


Event = Annotated[Order | Fill, strawberry.union("Event")]


@strawberry.type
class Envelope:
    event: Event
    node: Node
    events: list[Event]
    maybe: Order | None
    orders: list[Order | None] | None


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def envelopes(self) -> AsyncIterable[Envelope]:
        raise NotImplementedError  # events are fed to the plan directly
        yield  # pragma: no cover

    @strawberry.subscription
    async def orders(self, account: str) -> AsyncIterable[Order]:
        raise NotImplementedError
        yield  # pragma: no cover


SCHEMA = strawberry.Schema(
    query=Query, subscription=Subscription, config=StrawberryConfig(scalar_map=SCALARS)
)
GRAPHQL_SCHEMA = SCHEMA._schema
ROOT_ARGS = {"envelopes": "", "orders": '(account: "a1")'}


@st.composite
def cases(draw: st.DrawFn) -> tuple[Document, list[Any]]:
    document = draw(subscription_documents(GRAPHQL_SCHEMA, ROOT_ARGS, max_depth=4))
    sub = GRAPHQL_SCHEMA.subscription_type
    assert sub is not None
    root_type = sub.fields[document.root_field].type
    events = draw(st.lists(values(GRAPHQL_SCHEMA, root_type, 5), min_size=1, max_size=3))
    return document, events


@exactness_settings(300)
@given(cases())
def test_compiled_payload_is_graphql_cores_on_abstract_types_and_resolvers(
    case: tuple[Document, list[Any]],
) -> None:
    document, events = case
    compiled, reference = compiled_and_reference(SCHEMA, document)
    assert compiled.plan is not None, compiled.unsupported
    for event in events:
        assert outcome(compiled, event) == outcome(reference, event), document.text


def order(**overrides: Any) -> Order:
    fields: dict[str, Any] = {
        "id": "o1",
        "price": Decimal("10.25"),
        "qty": 3,
        "side": Side.BUY,
        "tags": [[1, None], []],
        "note": None,
    }
    fields.update(overrides)
    return Order(**fields)


def test_resolutions_are_told_apart() -> None:
    text = (
        'subscription Op { orders(account: "a1") { id price qty notional where '
        "scaled(factor: 3) guarded side } }"
    )
    compiled, reference = compiled_and_reference(SCHEMA, Document(text, {}, "orders"))
    assert compiled.plan is not None
    # Attributes and a plain method on the fast path; info, arguments and permission
    # classes through the field's own resolver, with a real info object.
    assert compiled.plan.resolutions == {
        "RootValue": 1,
        "Attribute": 4,
        "Method": 1,
        "Generic": 3,
    }
    # Results that depend on the info object (or the context) are this group's own.
    assert compiled.plan.signature is None
    for value in (order(), order(qty=13), order(price="x")):
        assert outcome(compiled, value) == outcome(reference, value)
    assert outcome(compiled, order()) == (
        b'{"data":{"orders":{"id":"o1","price":"10.25","qty":3,"notional":"30.75",'
        b'"where":"where@orders.where","scaled":9,"guarded":"ok","side":"BUY"}}}'
    )


def test_list_indices_reach_resolvers_and_errors() -> None:
    text = "subscription Op { envelopes { orders { where tags } } }"
    compiled, reference = compiled_and_reference(SCHEMA, Document(text, {}, "envelopes"))
    envelope = object.__new__(Envelope)
    object.__setattr__(envelope, "orders", [order(), None, order(tags=[[1, "x"]])])
    mine = outcome(compiled, envelope)
    assert mine == outcome(reference, envelope)
    assert b'"where":"where@envelopes.orders.2.where"' in mine
    assert b'"path":["envelopes","orders",2,"tags",0,1]' in mine


@strawberry.type
class Later:
    @strawberry.field
    async def value(self) -> int:
        return 1


@strawberry.type
class AsyncSubscription:
    @strawberry.subscription
    async def later(self) -> AsyncIterable[Later]:
        raise NotImplementedError
        yield  # pragma: no cover


def test_an_asynchronous_resolver_is_not_compiled() -> None:
    schema = strawberry.Schema(query=Query, subscription=AsyncSubscription)
    built = schema.execution_context_class.build(
        schema._schema, parse("subscription { later { value } }")
    )
    with pytest.raises(Unsupported, match="asynchronously"):
        compile_plan(built, schema)


def test_abstract_values_resolve_or_fail_as_graphql_core_says() -> None:
    text = (
        "subscription Op { envelopes { event { __typename ... on Order { qty } "
        "... on Fill { at order { id } } } node { id __typename } maybe { id } } }"
    )
    compiled, reference = compiled_and_reference(SCHEMA, Document(text, {}, "envelopes"))
    assert compiled.plan is not None and compiled.plan.signature is None
    fill = Fill(id="f1", order=order(), at=1.5, sides=[Side.SELL])

    def envelope(event: Any, node: Any, maybe: Any = None) -> Envelope:
        e = object.__new__(Envelope)
        for name, value in {"event": event, "node": node, "maybe": maybe}.items():
            object.__setattr__(e, name, value)
        return e

    for value in (
        envelope(fill, order()),
        envelope(order(), fill, order()),
        envelope("not an event", order()),  # no object type for it
        envelope(fill, fill, fill),  # a Fill where an Order must be
        envelope(None, order()),  # null where none is allowed
    ):
        assert outcome(compiled, value) == outcome(reference, value)
    assert b"cannot be resolved" in outcome(compiled, envelope("not an event", order()))


class BrokenPlan(Plan):
    """A plan with a bug: it raises what no plan should."""

    def __init__(self) -> None:
        self.signature = None

    def execute(self, root: Any, executor: Any = None) -> Any:
        raise KeyError("a bug")


def test_a_plan_that_fails_is_not_trusted_again(caplog: pytest.LogCaptureFixture) -> None:
    text = 'subscription Op { orders(account: "a1") { id qty } }'
    executor = executor_for(SCHEMA, Document(text, {}, "orders"))
    stats = ExecutionStats()
    execution = Execution(executor, plan=BrokenPlan(), format_errors=plain_errors, stats=stats)
    _, reference = compiled_and_reference(SCHEMA, Document(text, {}, "orders"))
    with caplog.at_level("ERROR"):
        for _ in range(3):
            assert execution.payload(order()) == reference.payload(order())
    assert execution.plan is None
    assert (stats.plan_failures, stats.graphql_executions) == (1, 3)
    assert [r.message for r in caplog.records].count(
        "a compiled plan failed: this group goes to graphql-core"
    ) == 1
