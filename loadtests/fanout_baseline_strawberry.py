# strawberry.field(...)/subscription(...) with arguments are typed as returning Any.
# mypy: disable-error-code="untyped-decorator"
"""The "strawberry" fan-out baseline: the naive GraphQL subscription path.

A plain ``strawberry.Schema`` (no extensions) on strawberry's ASGI app under uvicorn, as a
first GraphQL server would be written: ``quotes(symbols)`` is one async generator per
subscriber reading its own ``asyncio.Queue``, which the upstream reader feeds by looping
over the subscribers of each quote's symbol. strawberry then executes the selection and
JSON-encodes the result once per subscriber per event: the cost the multiplexed fan-out
of tickgraph exists to avoid. The ``Quote`` type has tickgraph's fields (large numbers as
``Float``), built once per upstream quote and shared by every subscriber.

Queues are bounded and drop their oldest quote when full (counted in ``dropped``), so a
saturated or slow subscriber costs a fixed amount of memory rather than all of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, Iterable

import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from streams.events import Quote as QuoteEvent

#: Quotes queued per subscriber: a saturated subscriber's quotes are at most this stale
#: (in its own delivery rate), and its memory bounded.
QUEUE_SIZE = 64


@strawberry.type(description="Top of book, as tickgraph's Quote (large numbers as Float).")
class Quote:
    symbol: str
    bid_price: float
    bid_size: float
    bid_exchange: int
    ask_price: float
    ask_size: float
    ask_exchange: int
    condition: int
    indicators: list[int]
    tape: int
    sequence: float
    exchange_time: float
    received_at: float
    snapshot: bool

    @classmethod
    def of(cls, q: QuoteEvent, received_ms: float) -> Quote:
        return cls(
            symbol=q.sym,
            bid_price=q.bp,
            bid_size=float(q.bs),
            bid_exchange=q.bx,
            ask_price=q.ap,
            ask_size=float(q.ask_size),
            ask_exchange=q.ax,
            condition=q.c,
            indicators=list(q.i),
            tape=q.z,
            sequence=float(q.q),
            exchange_time=float(q.t),
            received_at=received_ms,
            snapshot=False,
        )


class Subscriber:
    """One subscription's bounded queue: a full queue loses its oldest quote."""

    __slots__ = ("hub", "queue", "symbols")

    def __init__(self, hub: Hub, symbols: tuple[str, ...], size: int) -> None:
        self.hub = hub
        self.symbols = symbols
        self.queue: asyncio.Queue[Quote] = asyncio.Queue(size)

    def put(self, quote: Quote) -> None:
        queue = self.queue
        if queue.full():
            queue.get_nowait()
            self.hub.dropped += 1
        queue.put_nowait(quote)


class Hub:
    """Subscribers by symbol, the last quote of each symbol, and what was dropped."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self.subscribers: dict[str, set[Subscriber]] = {}
        self.last: dict[str, Quote] = {}
        self.published = 0
        self.dropped = 0

    def on_quote(self, event: QuoteEvent, received_ms: float) -> None:
        quote = Quote.of(event, received_ms)
        self.last[event.sym] = quote
        for sub in self.subscribers.get(event.sym, ()):
            sub.put(quote)
            self.published += 1

    def attach(self, symbols: Iterable[str]) -> Subscriber:
        sub = Subscriber(self, tuple(dict.fromkeys(symbols)), self.queue_size)
        for symbol in sub.symbols:
            self.subscribers.setdefault(symbol, set()).add(sub)
        return sub

    def detach(self, sub: Subscriber) -> None:
        for symbol in sub.symbols:
            subs = self.subscribers.get(symbol)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self.subscribers[symbol]

    def stats(self) -> dict[str, int]:
        return {
            "subscriptions": len({s for subs in self.subscribers.values() for s in subs}),
            "published": self.published,
            "dropped": self.dropped,
        }


@strawberry.type
class Query:
    @strawberry.field(description="Always true: the baseline has no queries of interest.")
    def ok(self) -> bool:
        return True


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Quotes: the last one of each symbol first, then all.")
    async def quotes(
        self, info: strawberry.Info[dict[str, Hub], None], symbols: list[str]
    ) -> AsyncGenerator[Quote, None]:
        hub = info.context["hub"]
        sub = hub.attach(symbols)
        try:
            for symbol in sub.symbols:
                last = hub.last.get(symbol)
                if last is not None:
                    yield dataclasses.replace(last, snapshot=True)
            while True:
                yield await sub.queue.get()
        finally:
            hub.detach(sub)


SCHEMA = strawberry.Schema(query=Query, subscription=Subscription)


class BaselineGraphQL(GraphQL[dict[str, Hub], None]):
    """strawberry's ASGI app, graphql-transport-ws only, with the hub in the context."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(
            SCHEMA,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self.hub = hub

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> dict[str, Hub]:
        return {"hub": self.hub}
