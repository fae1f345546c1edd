"""The fake Alpaca server and the real alpaca-py clients pointed at it.

alpaca-py's ``TradingClient`` is synchronous (``requests``): every call goes through
``asyncio.to_thread`` so the fake, on this event loop, can answer. Its
``TradingStream`` runs its own event loop: ``StreamRecorder`` runs it in a thread, as
its ``run()`` is meant to be used, and hands each trade update to this loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from enum import Enum
from typing import Any, TypeVar

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.models import TradeUpdate
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    StopLossRequest,
    TakeProfitRequest,
)
from alpaca.trading.stream import TradingStream

from tests.support.fake_alpaca import FakeAlpaca
from tests.support.timing import TIMEOUT

T = TypeVar("T")


@pytest.fixture
async def fake() -> AsyncIterator[FakeAlpaca]:
    async with FakeAlpaca() as server:
        yield server


def trading_client(fake: FakeAlpaca, *, retry_wait_s: float | None = None) -> TradingClient:
    """A real ``TradingClient`` for the fake's default account. ``retry_wait_s`` shortens
    alpaca-py's fixed 3 s pause between its own retries (the number of retries and the
    statuses retried stay alpaca-py's)."""
    client = TradingClient(fake.key_id, fake.secret, url_override=fake.base_url)
    if retry_wait_s is not None:
        client._retry_wait = retry_wait_s  # type: ignore[assignment]
    return client


@pytest.fixture
def client(fake: FakeAlpaca) -> TradingClient:
    return trading_client(fake)


def limit_order(
    price: float,
    qty: float = 10,
    *,
    side: OrderSide = OrderSide.BUY,
    tif: TimeInForce = TimeInForce.DAY,
    symbol: str = "AAPL",
    **fields: Any,
) -> LimitOrderRequest:
    return LimitOrderRequest(
        symbol=symbol, qty=qty, side=side, time_in_force=tif, limit_price=price, **fields
    )


def market_order(
    qty: float,
    *,
    side: OrderSide = OrderSide.BUY,
    tif: TimeInForce = TimeInForce.DAY,
    symbol: str = "AAPL",
    **fields: Any,
) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=tif, **fields)


def bracket_exits(
    take_profit: float, stop: float, stop_limit: float | None = None
) -> dict[str, Any]:
    """The fields that make an order a bracket."""
    return {
        "order_class": OrderClass.BRACKET,
        "take_profit": TakeProfitRequest(limit_price=take_profit),
        "stop_loss": StopLossRequest(stop_price=stop, limit_price=stop_limit),
    }


def api_error(error: APIError) -> tuple[int | None, int, str]:
    """(HTTP status, Alpaca code, message) of an error with Alpaca's JSON body."""
    return error.status_code, error.code, error.message


async def call(fn: Callable[..., T], *args: Any) -> T:
    """A blocking alpaca-py call, off the event loop (as the adapter must make it)."""
    return await asyncio.to_thread(fn, *args)


def event_name(update: TradeUpdate) -> str:
    """alpaca-py parses known events into ``TradeEvent`` and leaves the rest strings
    (``done_for_day``, ``order_cancel_rejected``...)."""
    event = update.event
    return event.value if isinstance(event, Enum) else event


class StreamRecorder:
    """A real ``TradingStream`` on its own thread; its updates arrive in ``updates``."""

    def __init__(
        self, fake: FakeAlpaca, *, secret: str | None = None, raw_data: bool = False
    ) -> None:
        self.fake = fake
        self.stream = TradingStream(
            fake.key_id, secret or fake.secret, raw_data=raw_data, url_override=fake.stream_url
        )
        #: ``TradeUpdate`` models, or with ``raw_data`` the messages as received.
        self.updates: asyncio.Queue[Any] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self.stream.run, name="TradingStream")

        async def handler(update: Any) -> None:
            self._loop.call_soon_threadsafe(self.updates.put_nowait, update)

        self.stream.subscribe_trade_updates(handler)

    async def start(self, *, listening: bool = True) -> StreamRecorder:
        self._thread.start()
        if listening:
            await self.fake.wait_for_listeners()
        return self

    async def next(self, timeout: float = TIMEOUT) -> TradeUpdate:
        return await asyncio.wait_for(self.updates.get(), timeout)

    async def events(self, count: int) -> list[tuple[str, str]]:
        """The next ``count`` updates as (event, order id)."""
        return [(event_name(u), str(u.order.id)) for u in [await self.next() for _ in range(count)]]

    def pending(self) -> list[TradeUpdate]:
        out = []
        while not self.updates.empty():
            out.append(self.updates.get_nowait())
        return out

    async def stop(self) -> None:
        """``TradingStream.stop()`` only takes effect when a frame arrives or its 5 s
        receive poll ends; resetting the connection makes that immediate."""
        while True:
            if self.stream._loop is not None:  # run() has got going
                break
            await asyncio.sleep(0.01)
        await asyncio.to_thread(self.stream.stop)
        self.fake.drop_streams()
        await asyncio.to_thread(self._thread.join, TIMEOUT)
        assert not self._thread.is_alive(), "TradingStream did not stop"


@pytest.fixture
async def recorder(fake: FakeAlpaca) -> AsyncIterator[StreamRecorder]:
    rec = StreamRecorder(fake)
    await rec.start()
    try:
        yield rec
    finally:
        await rec.stop()
