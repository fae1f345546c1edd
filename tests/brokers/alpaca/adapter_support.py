"""An ``AlpacaBroker`` on the fake Alpaca, its events collected for assertions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal

from brokers.alpaca import AlpacaBroker, AlpacaConfig, Correction, Credentials, Pacing, RestConfig
from server.trading.events import OrderEvent
from server.trading.model import Order, OrderSpec, OrderType, Side, TimeInForce
from server.trading.states import EventKind
from tests.support.fake_alpaca import FakeAlpaca
from tests.support.timing import TIMEOUT

FAST = AlpacaConfig(
    rest=RestConfig(connect_timeout_s=1.0, read_timeout_s=1.0), submit_deadline_s=2.0
)


class Collected:
    def __init__(self) -> None:
        self.events: list[OrderEvent] = []
        self.corrections: list[Correction] = []
        self._changed = asyncio.Event()

    def on_event(self, event: OrderEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def on_correction(self, correction: Correction) -> None:
        self.corrections.append(correction)

    def kinds(self, order_id: str) -> list[EventKind]:
        return [e.kind for e in self.events if e.order_id == order_id]

    async def until(self, check: Callable[[], bool], what: str) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    async def kind(self, order_id: str, kind: EventKind) -> OrderEvent:
        await self.until(lambda: kind in self.kinds(order_id), f"{kind} of {order_id}")
        return next(e for e in self.events if e.order_id == order_id and e.kind is kind)


def credentials(fake: FakeAlpaca) -> Credentials:
    return Credentials(fake.key_id, fake.secret, base_url=fake.base_url)


@asynccontextmanager
async def alpaca_broker(
    fake: FakeAlpaca,
    *,
    config: AlpacaConfig = FAST,
    pacing: Pacing | None = None,
    start: bool = True,
) -> AsyncIterator[tuple[AlpacaBroker, Collected]]:
    got = Collected()
    broker = AlpacaBroker(
        credentials(fake), config=config, pacing=pacing, on_correction=got.on_correction
    )
    broker.set_listener(got.on_event)
    if start:
        broker.start()
        await asyncio.wait_for(broker.stream.connected.wait(), TIMEOUT)
    try:
        yield broker, got
    finally:
        await broker.close()


_ids = iter(range(1, 10**9))


def order(
    qty: str = "10",
    *,
    type: OrderType = OrderType.MARKET,
    side: Side = Side.BUY,
    limit: str | None = None,
    symbol: str = "AAPL",
    tif: TimeInForce = TimeInForce.DAY,
) -> Order:
    spec = OrderSpec(
        symbol,
        side,
        type,
        tif,
        qty=Decimal(qty),
        limit_price=None if limit is None else Decimal(limit),
    )
    return Order(f"ord{next(_ids):06d}x{id(spec) % 10**6}", spec, created_ms=1_700_000_000_000)
