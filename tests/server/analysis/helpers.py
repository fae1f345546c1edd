"""Deterministic market inputs for analysis tests: bars, live state, positions, orders."""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal

from server.analysis.snapshot import (
    NO_PREFERENCES,
    AlertView,
    NewsItem,
    OrderView,
    PositionView,
    Preferences,
    SymbolSnapshot,
)
from server.analysis.snapshot_build import SymbolInputs, symbol_snapshot, timeframes_for
from server.market.bars import BarBook
from server.market.state import MarketState, SymbolState
from server.market.timeframes import Bar, Timeframe
from streams.events import Quote, Received, Trade
from tests.support.timing import TIMEOUT

#: 2024-06-05 15:30 New York (a Wednesday, in the session).
NOW_MS = 1_717_615_800_000


def walk_bars(
    symbol: str,
    timeframe: Timeframe,
    count: int,
    *,
    end_ms: int = NOW_MS,
    last_close: float = 100.0,
    drift: float = 0.0,
    seed: int = 7,
) -> list[Bar]:
    """``count`` closed bars ending before ``end_ms``, a seeded random walk that ends at
    ``last_close`` (walked backwards, so the newest close is exactly that)."""
    rng = random.Random(seed)
    size = timeframe.millis or 86_400_000
    closes = [last_close]
    for _ in range(count - 1):
        step = rng.gauss(drift, 0.01)
        closes.append(closes[-1] / (1 + step))
    closes.reverse()
    out: list[Bar] = []
    first_start = timeframe.bucket(end_ms - 1)[0] - (count - 1) * size - size
    for i, close in enumerate(closes):
        start, end = timeframe.bucket(first_start + i * size)
        open_ = closes[i - 1] if i else close * (1 - 0.002)
        high = max(open_, close) * (1 + rng.uniform(0, 0.004))
        low = min(open_, close) * (1 - rng.uniform(0, 0.004))
        volume = rng.randint(10_000, 200_000)
        out.append(
            Bar(
                symbol,
                timeframe,
                start,
                end,
                open_,
                high,
                low,
                close,
                volume,
                (high + low + close) / 3,
                100,
                final=True,
            )
        )
    return out


def live_state(
    symbol: str,
    price: float,
    *,
    t_ms: int = NOW_MS,
    spread: float = 0.02,
    trades: Sequence[float] = (),
) -> SymbolState:
    market = MarketState()
    for i, p in enumerate([*trades, price]):
        t = t_ms - (len(trades) - i) * 1000
        market.apply(Received(Trade(symbol, p, 100 + i, t, q=i + 1), t * 1_000_000))
    market.apply(
        Received(
            Quote(
                symbol,
                round(price - spread / 2, 4),
                round(price + spread / 2, 4),
                t_ms,
                bs=3,
                ask_size=5,
                q=1,
            ),
            0,
        )
    )
    state = market.get(symbol)
    assert state is not None
    return state


def day_bar(symbol: str, prices: Sequence[float], *, t_ms: int = NOW_MS) -> Bar | None:
    """The forming day bar of these prints (one a second, ending at ``t_ms``), as the
    live bar book builds it."""
    book = BarBook([Timeframe.D1])
    for i, p in enumerate(prices):
        book.on_trade(symbol, t_ms - (len(prices) - 1 - i) * 1000, p, 100 + i)
    return book.day(symbol)


def long_position(symbol: str, qty: str, entry: str, last: float) -> PositionView:
    q, e = Decimal(qty), Decimal(entry)
    mark = Decimal(repr(last))
    value = (q * mark).quantize(Decimal("0.01"))
    return PositionView(symbol, "long", q, e, value, (value - q * e).quantize(Decimal("0.01")))


def stop_order(order_id: str, side: str, qty: str, stop: str) -> OrderView:
    return OrderView(order_id, side, "stop", Decimal(qty), "accepted", stop_price=Decimal(stop))  # type: ignore[arg-type]


def make_snapshot(
    symbol: str = "NVDA",
    price: float = 100.0,
    *,
    drift: float = 0.0,
    seed: int = 7,
    preferences: Preferences = NO_PREFERENCES,
    position: PositionView | None = None,
    orders: Sequence[OrderView] = (),
    alerts: Sequence[AlertView] = (),
    news: Sequence[NewsItem] = (),
    equity: Decimal | None = None,
    bars: int = 250,
) -> SymbolSnapshot:
    signal, context = timeframes_for(preferences.style)
    prints = (price * 0.99, price * 1.01)
    inputs = SymbolInputs(
        symbol=symbol,
        state=live_state(symbol, price, trades=prints),
        day=day_bar(symbol, [*prints, price]),
        bars={
            signal: walk_bars(
                symbol, signal, bars, last_close=price * 0.998, drift=drift, seed=seed
            ),
            context: walk_bars(
                symbol, context, bars, last_close=price * 0.99, drift=drift, seed=seed + 1
            ),
        },
        position=position,
        orders=orders,
        alerts=alerts,
        news=news,
        preferences=preferences,
        equity=equity,
        taken_at_ms=NOW_MS,
    )
    return symbol_snapshot(inputs)


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Wait until ``check()`` (plain or async) is true; fail with ``what`` after TIMEOUT."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                got = check()
                if inspect.isawaitable(got):
                    got = await got
                if got:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for: {what}") from None
