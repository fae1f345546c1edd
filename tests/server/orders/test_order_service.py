"""The order service against a real PostgreSQL and the paper broker, without a server:
reservations under concurrency, the ledger as the account's source of truth, and
restarts that rebuild exactly what was in memory."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
import pytest_asyncio

from brokers.paper import PaperBroker, PaperConfig
from server.delivery.bus import InProcessBus
from server.limits.limiter import InProcessLimiter
from server.limits.tiers import ELITE, PRO
from server.market.directory import SymbolDirectory
from server.market.state import MarketState
from server.services.orders.book import OrderBook
from server.services.orders.ledger import OrderLedger, orders_topic
from server.services.orders.market import MarketAccess
from server.services.orders.requests import TradingConfig
from server.services.orders.restore import restore
from server.services.orders.service import OrderService
from server.storage.database import Database
from server.storage.order_reads import load_fills
from server.trading.account import fold_account
from server.trading.calendar import CONTINUOUS
from server.trading.errors import InsufficientBuyingPower, OrderNotFound
from streams.events import Quote, Received, Trade

NOW = 1_780_000_000_000
OWNER = "11111111-1111-1111-1111-111111111111"


@pytest_asyncio.fixture
async def pool(database: Database) -> AsyncIterator[asyncpg.Pool]:
    """The migrated database's pool."""
    yield database.pool


class Desk:
    """A service over a market the test moves by hand."""

    def __init__(self, pool: asyncpg.Pool, state: MarketState | None = None) -> None:
        self.state = state or MarketState()
        self.bus = InProcessBus()
        self.broker = PaperBroker(config=PaperConfig(calendar=CONTINUOUS))
        self.ledger = OrderLedger(pool, self.bus)
        self.clock = NOW
        self.q = 0
        self.service = OrderService(
            pool,
            book=OrderBook(Decimal(100_000)),
            ledger=self.ledger,
            broker=self.broker,
            market=MarketAccess(self.state, SymbolDirectory(["AMZN", "MSFT"])),
            limiter=InProcessLimiter(),
            config=TradingConfig(calendar=CONTINUOUS),
            now_ms=lambda: self.clock,
        )

    def tick(self, symbol: str, bid: float, ask: float, last: float | None = None) -> None:
        self.clock += 10
        self.q += 1
        quote = Quote(sym=symbol, bp=bid, ap=ask, t=self.clock, bs=500, ask_size=500, q=self.q)
        items = [Received(quote, self.clock * 1_000_000)]
        if last is not None:
            items.append(Received(Trade(sym=symbol, p=last, s=100, t=self.clock, q=self.q), 0))
        for item in items:
            self.state.apply(item)
            self.broker.on_market_event(item.event)


def limit_doc(side: str, qty: str, price: str, symbol: str = "AMZN") -> dict[str, object]:
    return {
        "symbol": symbol,
        "side": side,
        "type": "limit",
        "timeInForce": "gtc",
        "qty": qty,
        "limitPrice": price,
    }


async def test_concurrent_orders_never_spend_the_same_buying_power(pool: asyncpg.Pool) -> None:
    desk = Desk(pool)
    desk.ledger.start()
    desk.tick("AMZN", 99.99, 100.01, 100.0)
    # Each order reserves $30,000 of the $100,000 cash account (pro: cash multiplier is
    # 2, so use a tier whose multiplier we know: elite is 2x; 2 x 100k / 30k = 6).
    results = await asyncio.gather(
        *(desk.service.place(OWNER, ELITE, limit_doc("BUY", "300", "99.00")) for _ in range(20)),
        return_exceptions=True,
    )
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(accepted) == 6, refused[:1]
    assert all(isinstance(r, InsufficientBuyingPower) for r in refused)
    assert await pool.fetchval("SELECT count(*) FROM orders") == 6
    await desk.ledger.close()


async def test_the_ledger_rebuilds_exactly_what_was_in_memory(pool: asyncpg.Pool) -> None:
    rng = random.Random(7)
    desk = Desk(pool)
    desk.ledger.start()
    price = 100.0
    desk.tick("AMZN", price - 0.01, price + 0.01, price)
    desk.tick("MSFT", price - 0.01, price + 0.01, price)
    placed = []
    for step in range(300):
        symbol = rng.choice(["AMZN", "MSFT"])
        price = max(50.0, price + rng.choice([-0.05, 0.0, 0.05]))
        desk.tick(symbol, round(price - 0.01, 2), round(price + 0.01, 2), round(price, 2))
        if step % 3 == 0:
            side = rng.choice(["BUY", "SELL"])
            offset = rng.choice([-0.10, -0.02, 0.0, 0.02, 0.10])
            limit = f"{round(price + offset, 2):.2f}"
            try:
                records = await desk.service.place(
                    OWNER, PRO, limit_doc(side, str(rng.randint(1, 20)), limit, symbol)
                )
                placed.append(records[0].order.id)
            except Exception as exc:  # refusals (short sales in a cash account...) are fine
                assert getattr(exc, "extensions", None), exc
        if step % 17 == 0 and placed:
            try:
                await desk.service.cancel(OWNER, rng.choice(placed))
            except Exception as exc:
                assert getattr(exc, "extensions", None), exc
    await desk.ledger.close()
    before = desk.service.book.user(OWNER)
    # What the ledger says, folded independently.
    fills = [f for _, f in await load_fills(pool, OWNER)]
    folded = fold_account(Decimal(100_000), fills)
    assert folded.cash == before.account.cash
    assert folded.positions == before.account.positions
    assert folded.realized_pnl == before.account.realized_pnl
    # A restart: a new book from the ledger, with the same open orders.
    again = Desk(pool, desk.state)
    again.ledger.start()
    await restore(pool, again.service)
    after = again.service.book.user(OWNER)
    assert after.account.cash == before.account.cash
    assert after.account.positions == before.account.positions
    assert set(after.open) == set(before.open)
    for order_id, record in before.open.items():
        restored = after.open[order_id].state
        assert (restored.status, restored.filled_qty, restored.qty) == (
            record.state.status,
            record.state.filled_qty,
            record.state.qty,
        )
    await again.ledger.close()


async def test_order_updates_are_published_after_commit_with_increasing_cursors(
    pool: asyncpg.Pool,
) -> None:
    desk = Desk(pool)
    seen: list[int] = []
    desk.bus.subscribe(orders_topic(OWNER), lambda item: seen.append(item.seq))
    desk.ledger.start()
    desk.tick("AMZN", 99.99, 100.01, 100.0)
    [record] = await desk.service.place(OWNER, PRO, limit_doc("BUY", "5", "99.50"))
    desk.tick("AMZN", 99.40, 99.45, 99.45)  # the ask crosses the limit: a fill
    await desk.ledger.close()
    assert seen == sorted(seen) and len(seen) == len(set(seen)) >= 2
    stored = await pool.fetch(
        "SELECT seq, kind FROM order_events WHERE order_id = $1 ORDER BY seq", record.order.id
    )
    assert [r["seq"] for r in stored] == seen
    assert stored[-1]["kind"] == "fill"
    status = await pool.fetchval("SELECT status FROM orders WHERE id = $1", record.order.id)
    assert status == "filled"


async def test_someone_elses_order_is_not_found(pool: asyncpg.Pool) -> None:
    desk = Desk(pool)
    desk.ledger.start()
    desk.tick("AMZN", 99.99, 100.01, 100.0)
    [record] = await desk.service.place(OWNER, PRO, limit_doc("BUY", "5", "99.50"))
    with pytest.raises(OrderNotFound):
        await desk.service.cancel("22222222-2222-2222-2222-222222222222", record.order.id)
    with pytest.raises(OrderNotFound):
        await desk.service.cancel(OWNER, "no-such-order")
    await desk.ledger.close()


async def test_a_resting_order_fills_after_a_restart(pool: asyncpg.Pool) -> None:
    desk = Desk(pool)
    desk.ledger.start()
    desk.tick("AMZN", 99.99, 100.01, 100.0)
    [resting] = await desk.service.place(OWNER, PRO, limit_doc("BUY", "5", "99.50"))
    [partial] = await desk.service.place(OWNER, PRO, limit_doc("BUY", "800", "99.80"))
    desk.tick("AMZN", 99.70, 99.80, 99.80)  # 500 shown at the ask: a partial fill
    await desk.ledger.close()
    assert partial.state.filled_qty == 500
    again = Desk(pool, desk.state)
    again.clock = desk.clock
    again.ledger.start()
    await restore(pool, again.service)
    again.tick("AMZN", 99.40, 99.45, 99.45)  # crosses both limits
    await again.ledger.close()
    statuses = dict(
        await pool.fetch(
            "SELECT id, status FROM orders WHERE id = ANY($1::text[])",
            [resting.order.id, partial.order.id],
        )
    )
    assert statuses == {resting.order.id: "filled", partial.order.id: "filled"}
    fill_ids = await pool.fetch(
        "SELECT fill_id FROM order_events WHERE order_id = $1 AND fill_id IS NOT NULL ORDER BY seq",
        partial.order.id,
    )
    assert [r["fill_id"] for r in fill_ids] == [f"{partial.order.id}-1", f"{partial.order.id}-2"]
    assert again.service.book.user(OWNER).account.positions["AMZN"].qty == 805
