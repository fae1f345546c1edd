"""A long-lived subscription must not retain memory per event (graphql-core 3.3's
per-event executors share a memo keyed by per-event objects)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncGenerator

import strawberry
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from schema.executor import PerEventMemoExecutor

EVENTS = 2_000


@strawberry.type
class Tick:
    symbol: str
    price: float


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def ticks(self) -> AsyncGenerator[Tick, None]:
        for i in range(EVENTS):
            yield Tick(symbol="AMZN", price=float(i))


async def retained_bytes(executor: type[StrawberryGraphQLCoreExecutionContext]) -> int:
    schema = strawberry.Schema(
        query=Query, subscription=Subscription, execution_context_class=executor
    )
    stream = await schema.subscribe("subscription { ticks { symbol price } }")
    seen = 0
    async for result in stream:  # type: ignore[union-attr]
        assert not result.errors
        seen += 1
        if seen == 100:  # warm-up done: measure what the next events leave behind
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
        if seen == EVENTS - 1:
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
    assert seen == EVENTS
    return after - before


async def test_events_leave_nothing_behind() -> None:
    leaky = await retained_bytes(StrawberryGraphQLCoreExecutionContext)
    fixed = await retained_bytes(PerEventMemoExecutor)
    # graphql-core's own executor keeps ~100+ bytes per event; ours keeps ~nothing.
    assert leaky > 100 * (EVENTS - 200), leaky
    assert fixed < 20_000, fixed
