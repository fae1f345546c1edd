"""Service-level fixtures: a real PostgreSQL, the real history and market state, an
in-memory book of holdings, and the fake Anthropic API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from server.analysis.anthropic_analyst import AnthropicAnalyst
from server.analysis.inputs import LiveMarket, StoredAlerts
from server.analysis.offline import OfflineAnalyst
from server.analysis.port import Analyst
from server.analysis.service import AnalysisService, AnalysisSettings
from server.analysis.snapshot import AccountView, OrderView, PositionView
from server.history.simulated import SimulatedHistory
from server.market.state import MarketState
from server.storage.database import Database
from streams.events import Quote, Received, Trade
from streams.simulated_market import start_price
from tests.server.analysis.helpers import NOW_MS
from tests.support.fake_anthropic import API_KEY, FakeAnthropic
from tests.support.timing import TIMEOUT
from tests.support.users import insert_user


@dataclass
class Book:
    """Holdings kept in memory, as a trading adapter would report them. An order belongs
    to the symbol its id starts with."""

    positions: dict[uuid.UUID, list[PositionView]] = field(default_factory=dict)
    orders: dict[uuid.UUID, list[OrderView]] = field(default_factory=dict)
    accounts: dict[uuid.UUID, AccountView] = field(default_factory=dict)


class Holdings:
    def __init__(self, book: Book) -> None:
        self.book = book

    async def position(self, user_id: uuid.UUID, symbol: str) -> PositionView | None:
        return next((p for p in self.book.positions.get(user_id, []) if p.symbol == symbol), None)

    async def open_orders(self, user_id: uuid.UUID, symbol: str) -> Sequence[OrderView]:
        return [o for o in self.book.orders.get(user_id, []) if o.id.startswith(symbol)]

    async def positions(self, user_id: uuid.UUID) -> Sequence[PositionView]:
        return self.book.positions.get(user_id, [])

    async def account(
        self, user_id: uuid.UUID, margin_multiplier: Decimal = Decimal(1)
    ) -> AccountView | None:
        return self.book.accounts.get(user_id)


class Clock:
    def __init__(self, t_s: float) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


def market_with(*symbols: str) -> MarketState:
    """Each symbol traded and quoted at its simulated start price, at NOW_MS."""
    market = MarketState()
    for symbol in symbols:
        price = start_price(symbol)
        market.apply(Received(Trade(symbol, price, 100, NOW_MS, q=1), NOW_MS * 1_000_000))
        market.apply(
            Received(Quote(symbol, price - 0.01, price + 0.01, NOW_MS, bs=2, ask_size=3, q=1), 0)
        )
    return market


async def new_user(db: Database) -> uuid.UUID:
    return await insert_user(db.pool)


@dataclass
class Env:
    db: Database
    book: Book
    clock: Clock
    market: MarketState
    make: Callable[..., AnalysisService]


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def env(database: Database) -> AsyncIterator[Env]:
    book = Book()
    clock = Clock(NOW_MS / 1000)
    market = market_with("NVDA", "AAPL", "MSFT", "AMZN")
    made: list[tuple[AnalysisService, Analyst]] = []

    def make(
        analyst: Analyst | None = None, *, history: Any = None, **settings: Any
    ) -> AnalysisService:
        service = AnalysisService(
            pool=database.pool,
            analyst=analyst or OfflineAnalyst(),
            market=LiveMarket(market, None, history or SimulatedHistory()),
            holdings=Holdings(book),
            alerts=StoredAlerts(database.pool),
            settings=AnalysisSettings(**settings),
            clock=clock,
        )
        made.append((service, service.analyst))
        return service

    yield Env(database, book, clock, market, make)
    for service, analyst in made:
        await service.aclose()
        if isinstance(analyst, AnthropicAnalyst):
            await analyst.aclose()


def anthropic_for(fake: FakeAnthropic, **kw: Any) -> AnthropicAnalyst:
    return AnthropicAnalyst(
        API_KEY,
        base_url=fake.base_url,
        timeout_s=TIMEOUT,
        total_timeout_s=kw.pop("total", TIMEOUT),
        **kw,
    )


def long_(symbol: str, qty: int, entry: str, mark: float) -> PositionView:
    q, e, m = Decimal(qty), Decimal(entry), Decimal(repr(mark))
    value = (q * m).quantize(Decimal("0.01"))
    return PositionView(symbol, "long", q, e, value, (value - q * e).quantize(Decimal("0.01")))
