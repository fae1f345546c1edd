"""Groups on compiled plans: what is executed, when, and for whom.

A small strawberry schema whose subscriptions return ``Feed``s over a hand-driven
source, joined exactly as the graphql-transport-ws handler joins them (``SUBSCRIBER``
set, strawberry's ``subscribe`` iterated once), writing to fake connections."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from typing import Any

import strawberry

from server.delivery.multiplex import SUBSCRIBER, Feed, Multiplexer, Subscriber
from server.delivery.outbox import Outbox
from tests.server.delivery.test_outbox import FakeWriter, flushed


@dataclass(frozen=True)
class Tick:
    symbol: str
    price: float
    seq: int


class Source:
    """Items pushed by the test to whatever is attached; the current item per symbol."""

    def __init__(self) -> None:
        self.sinks: list[Callable[[Any], None]] = []
        self.current: dict[str, Tick] = {}

    def attach(self, sink: Callable[[Any], None]) -> Callable[[], None]:
        self.sinks.append(sink)
        return lambda: self.sinks.remove(sink)

    def emit(self, tick: Tick) -> None:
        self.current[tick.symbol] = tick
        for sink in list(self.sinks):
            sink(tick)


@strawberry.type
class Quote:
    symbol: str
    price: float
    seq: int
    snapshot: bool

    @strawberry.field
    def doubled(self) -> float:
        return self.price * 2


@strawberry.type
class Slow:
    symbol: str

    @strawberry.field
    async def later(self) -> str:
        return self.symbol


@strawberry.type
class Flaky:
    symbol: str

    @strawberry.field
    def value(self) -> int:
        # Asynchronous now and then: graphql-core would go asynchronous for that event.
        if self.symbol == "ASYNC":

            async def later() -> int:
                return 1

            return later()  # type: ignore[return-value]
        return 1


#: Every item rendered (by any group).
renders: list[Tick] = []


def render_quote(item: Tick, snapshot: bool, _dropped: int) -> Quote:
    renders.append(item)
    return Quote(symbol=item.symbol, price=item.price, seq=item.seq, snapshot=snapshot)


@dataclass
class Context:
    source: Source
    released: list[str] = field(default_factory=list)


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def quotes(
        self, info: strawberry.Info, symbols: list[str], conflate: bool = True
    ) -> AsyncIterable[Quote]:
        source: Source = info.context.source
        wanted = set(symbols)

        def attach(sink: Callable[[Any], None]) -> Callable[[], None]:
            return source.attach(lambda t: sink(t) if t.symbol in wanted else None)

        return Feed(  # type: ignore[return-value]
            attach=attach,
            render=render_quote,
            snapshot=lambda: [source.current[s] for s in symbols if s in source.current],
            key=(lambda t: t.symbol) if conflate else None,
        )

    @strawberry.subscription
    async def slow(self, info: strawberry.Info) -> AsyncIterable[Slow]:
        return Feed(  # type: ignore[return-value]
            attach=info.context.source.attach,
            render=lambda t, _s, _d: Slow(symbol=t.symbol),
            key=None,
        )

    @strawberry.subscription
    async def flaky(self, info: strawberry.Info) -> AsyncIterable[Flaky]:
        return Feed(  # type: ignore[return-value]
            attach=info.context.source.attach,
            render=lambda t, _s, _d: Flaky(symbol=t.symbol),
            key=None,
        )


SCHEMA = strawberry.Schema(query=Query, subscription=Subscription)
QUOTES = "subscription Q($s: [String!]!, $c: Boolean! = true) { quotes(symbols: $s, conflate: $c) { symbol price seq snapshot doubled } }"  # noqa: E501


class Connection:
    def __init__(self, mux: Multiplexer) -> None:
        self.writer = FakeWriter()
        self.outbox = Outbox(self.writer, mux.flusher)

    def data(self, op: str) -> list[Any]:
        return [m["payload"] for m in self.writer.messages if m.get("id") == op]


async def join(
    mux: Multiplexer,
    conn: Connection,
    context: Context,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    op: str = "q",
) -> Subscriber:
    subscriber = Subscriber(
        outbox=conn.outbox,
        operation_id=op,
        query=query,
        variables=variables,
        operation_name=None,
        context=context,
        schema=SCHEMA,
        mux=mux,
    )
    token = SUBSCRIBER.set(subscriber)
    try:
        result = await SCHEMA.subscribe(query, variable_values=variables, context_value=context)
        assert not isinstance(result, list) and not getattr(result, "errors", None), result
        async for unexpected in result:  # type: ignore[union-attr]
            raise AssertionError(unexpected)
    finally:
        SUBSCRIBER.reset(token)
    assert subscriber.member is not None
    return subscriber


async def test_a_conflating_group_executes_the_newest_item_per_key_once_per_flush() -> None:
    mux, source = Multiplexer(), Source()
    conn = Connection(mux)
    await join(mux, conn, Context(source), QUOTES, {"s": ["AMZN", "GOOG"]})
    for n in range(5):
        source.emit(Tick("AMZN", 100.0 + n, n))
    for n in range(3):
        source.emit(Tick("GOOG", 50.0 + n, 10 + n))
    await flushed()
    assert [d["data"]["quotes"]["seq"] for d in conn.data("q")] == [4, 12]
    stats = mux.execution_stats()
    assert stats["plan_executions"] == 2 and stats["superseded"] == 6
    assert stats["compiled_groups"] == 1 and stats["graphql_groups"] == 0
    assert mux.stats()["encoded"] == 8  # every item handled once, by one group


async def test_a_queued_group_executes_every_item_in_order() -> None:
    mux, source = Multiplexer(), Source()
    conn = Connection(mux)
    await join(mux, conn, Context(source), QUOTES, {"s": ["AMZN"], "c": False})
    for n in range(5):
        source.emit(Tick("AMZN", 100.0 + n, n))
    await flushed()
    assert [d["data"]["quotes"]["seq"] for d in conn.data("q")] == [0, 1, 2, 3, 4]
    assert mux.execution_stats()["plan_executions"] == 5


async def test_a_member_joining_while_an_item_waits_for_the_flush_gets_its_snapshot_only() -> None:
    mux, source = Multiplexer(), Source()
    early, late = Connection(mux), Connection(mux)
    context = Context(source)
    await join(mux, early, context, QUOTES, {"s": ["AMZN"]})
    source.emit(Tick("AMZN", 101.0, 1))  # waits for the flush...
    await join(mux, late, context, QUOTES, {"s": ["AMZN"]})  # ...when this one joins
    await flushed()
    assert [
        (d["data"]["quotes"]["seq"], d["data"]["quotes"]["snapshot"]) for d in early.data("q")
    ] == [(1, False)]
    # The joiner's snapshot is that item already: it is not sent to it twice.
    assert [
        (d["data"]["quotes"]["seq"], d["data"]["quotes"]["snapshot"]) for d in late.data("q")
    ] == [(1, True)]
    source.emit(Tick("AMZN", 102.0, 2))
    await flushed()
    assert [d["data"]["quotes"]["seq"] for d in late.data("q")] == [1, 2]


async def test_groups_of_one_document_share_each_payload() -> None:
    """A thousand users of one client document with different symbol lists are a
    thousand groups; an item they all get is executed and encoded once."""
    mux, source = Multiplexer(), Source()
    context = Context(source)
    conns = [Connection(mux) for _ in range(3)]
    for conn, symbols in zip(conns, (["AMZN"], ["AMZN", "GOOG"], ["GOOG", "AMZN"]), strict=True):
        await join(mux, conn, context, QUOTES, {"s": symbols})
    assert mux.stats()["groups"] == 3
    source.emit(Tick("AMZN", 100.0, 1))
    await flushed()
    payloads = [conn.writer.batches[-1][0].split(b',"payload":', 1)[1] for conn in conns]
    assert payloads[0] == payloads[1] == payloads[2]
    stats = mux.execution_stats()
    assert stats["plan_executions"] == 1 and stats["shared"] == 2


async def test_groups_of_other_documents_share_each_rendered_item() -> None:
    mux, source = Multiplexer(), Source()
    context = Context(source)
    documents = [
        QUOTES,
        'subscription { quotes(symbols: ["AMZN"]) { symbol price } }',
        'subscription { quotes(symbols: ["AMZN"]) { seq doubled } }',
    ]
    conns = [Connection(mux) for _ in documents]
    for conn, document in zip(conns, documents, strict=True):
        await join(mux, conn, context, document, {"s": ["AMZN"]} if "$s" in document else None)
    renders.clear()
    source.emit(Tick("AMZN", 100.0, 1))
    await flushed()
    assert renders == [Tick("AMZN", 100.0, 1)]  # once, for three groups
    assert mux.execution_stats()["plan_executions"] == 3  # three different selections
    assert [conn.data("q")[-1]["data"]["quotes"] for conn in conns[1:]] == [
        {"symbol": "AMZN", "price": 100.0},
        {"seq": 1, "doubled": 200.0},
    ]


async def test_an_operation_that_does_not_compile_runs_on_graphql_core_as_before() -> None:
    mux, source = Multiplexer(), Source()
    conn = Connection(mux)
    await join(mux, conn, Context(source), "subscription { slow { symbol later } }")
    source.emit(Tick("AMZN", 1.0, 1))
    await flushed()
    [payload] = conn.data("q")
    assert payload == {
        "data": None,
        "errors": [{"message": "a field below a subscription resolved asynchronously"}],
    }
    stats = mux.execution_stats()
    assert stats["graphql_groups"] == 1 and stats["graphql_executions"] == 1


async def test_an_event_graphql_core_would_execute_asynchronously_is_handed_to_it() -> None:
    mux, source = Multiplexer(), Source()
    conn = Connection(mux)
    await join(mux, conn, Context(source), "subscription { flaky { symbol value } }")
    source.emit(Tick("AMZN", 1.0, 1))
    source.emit(Tick("ASYNC", 1.0, 2))
    source.emit(Tick("GOOG", 1.0, 3))
    await flushed()
    data = conn.data("q")
    assert data[0] == {"data": {"flaky": {"symbol": "AMZN", "value": 1}}}
    assert data[1] == {
        "data": None,
        "errors": [{"message": "a field below a subscription resolved asynchronously"}],
    }
    assert data[2] == {"data": {"flaky": {"symbol": "GOOG", "value": 1}}}
    stats = mux.execution_stats()
    assert stats["compiled_groups"] == 1 and stats["abandoned"] == 1
    assert stats["plan_executions"] == 2 and stats["graphql_executions"] == 1


async def test_a_group_that_forms_again_reuses_its_compiled_plan() -> None:
    mux, source = Multiplexer(), Source()
    context = Context(source)
    for _ in range(2):
        conn = Connection(mux)
        subscriber = await join(mux, conn, context, QUOTES, {"s": ["AMZN"]})
        assert subscriber.member is not None
        subscriber.member.leave()
        assert mux.stats()["groups"] == 0
    assert len(mux.plans._entries) == 1
