"""Analysis benchmark: what tickgraph adds before the first streamed chunk, and what a
snapshot costs to build.

    python -m loadtests.analysis_bench [--requests 200] [--database-url URL]

Without ``--database-url`` (or ``TEST_DATABASE_URL``) a temporary PostgreSQL is started
with pgserver and deleted afterwards. The Anthropic API is the local fake
(``tests.support.fake_anthropic``) answering with zero model latency.

Figures (JSON on stdout)
    ``first_chunk.offline``: request to first chunk through the service with the offline
    analyst (admission and quota in PostgreSQL, snapshot, cache lookup, analysis), each
    request a cache miss; p50/p99 in ms.
    ``first_chunk.anthropic``: the same through the Anthropic analyst against the fake,
    and, interleaved in the same run, the bare SDK (``AsyncAnthropic.messages.stream``
    with the same request, to its first piece of prose): the provider's own latency.
    ``added_ms`` is the difference, percentile by percentile: what tickgraph adds.
    ``snapshot``: building a portfolio snapshot with 50 positions and 100 active alerts
    (two timeframes of 250 closed bars per holding), the pure build alone and with its
    input gathering, plus one symbol's snapshot, encoding and fingerprint.

``concurrent_streams`` runs N analyses at once and reports their first-chunk latency and
throughput: the server-level benchmark of many streams against the market-data fan-out
calls it with a function that opens one stream.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from server.analysis.anthropic_analyst import AnthropicAnalyst
from server.analysis.indicator_set import BARS_NEEDED
from server.analysis.inputs import LiveMarket
from server.analysis.json_stream import FieldText
from server.analysis.offline import OfflineAnalyst
from server.analysis.port import Analyst
from server.analysis.prompt import request_messages, system_blocks, tool_choice, tool_definition
from server.analysis.service import AnalysisService, AnalysisSettings
from server.analysis.snapshot import (
    AccountView,
    AlertView,
    OrderView,
    PositionView,
    Preferences,
    encode,
    fingerprint,
)
from server.analysis.snapshot_build import (
    PORTFOLIO_BARS_SHOWN,
    SymbolInputs,
    alert_view,
    portfolio_snapshot,
    symbol_snapshot,
)
from server.history.simulated import SimulatedHistory
from server.limits.tiers import ELITE
from server.market.state import MarketState
from server.market.timeframes import Bar, Timeframe
from server.settings import Secret, Settings
from server.storage.database import Database
from streams.events import Quote, Received, Trade
from streams.simulated_market import start_price
from tests.support.fake_anthropic import API_KEY, FakeAnthropic
from tests.support.users import insert_user

NOW_MS = 1_717_615_800_000
POSITIONS = 50
ALERTS = 100


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50": round(statistics.median(ms), 3),
        "p99": round(pct(ms, 99), 3),
        "mean": round(statistics.fmean(ms), 3),
        "max": round(max(ms), 3),
    }


# ------------------------------------------------------------------ inputs


class PrebuiltHistory:
    """History served from memory (as the stored bars would be, without the database)."""

    def __init__(self, bars: dict[tuple[str, Timeframe], list[Bar]]) -> None:
        self._bars = bars

    async def bars(
        self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int
    ) -> list[Bar]:
        return [b for b in self._bars.get((symbol, timeframe), []) if b.end_ms <= end_ms][-count:]

    async def range(
        self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int
    ) -> list[Bar]:
        return []


def symbols(n: int) -> list[str]:
    return [f"S{i:03d}" for i in range(n)]


async def prebuilt(names: Sequence[str]) -> PrebuiltHistory:
    sim = SimulatedHistory()
    out: dict[tuple[str, Timeframe], list[Bar]] = {}
    for symbol in names:
        for tf in (Timeframe.H1, Timeframe.D1):
            out[(symbol, tf)] = await sim.bars(symbol, tf, end_ms=NOW_MS, count=BARS_NEEDED)
    return PrebuiltHistory(out)


def market(names: Sequence[str]) -> MarketState:
    state = MarketState()
    for symbol in names:
        p = start_price(symbol)
        state.apply(Received(Trade(symbol, p, 100, NOW_MS, q=1), NOW_MS * 1_000_000))
        state.apply(Received(Quote(symbol, p - 0.01, p + 0.01, NOW_MS, bs=1, ask_size=1, q=1), 0))
    return state


class BookHoldings:
    def __init__(
        self, positions: list[PositionView], orders: list[OrderView], account: AccountView
    ) -> None:
        self._positions = positions
        self._orders = orders
        self._account = account

    async def position(self, user_id: uuid.UUID, symbol: str) -> PositionView | None:
        return next((p for p in self._positions if p.symbol == symbol), None)

    async def open_orders(self, user_id: uuid.UUID, symbol: str) -> Sequence[OrderView]:
        return [o for o in self._orders if o.id.startswith(symbol)]

    async def positions(self, user_id: uuid.UUID) -> Sequence[PositionView]:
        return self._positions

    async def account(
        self, user_id: uuid.UUID, margin_multiplier: Decimal = Decimal(1)
    ) -> AccountView | None:
        return self._account


class MemoryAlerts:
    def __init__(self, alerts: list[tuple[str, AlertView]]) -> None:
        self._alerts = alerts

    async def active(self, user_id: uuid.UUID) -> Sequence[tuple[str, AlertView]]:
        return self._alerts


def book(names: Sequence[str]) -> tuple[BookHoldings, MemoryAlerts]:
    positions: list[PositionView] = []
    orders: list[OrderView] = []
    for i, symbol in enumerate(names):
        price = Decimal(repr(start_price(symbol)))
        qty = Decimal(10 + i)
        value = (qty * price).quantize(Decimal("0.01"))
        entry = (price * Decimal("0.97")).quantize(Decimal("0.01"))
        positions.append(PositionView(symbol, "long", qty, entry, value, value - qty * entry))
        orders.append(
            OrderView(
                f"{symbol}-stop",
                "sell",
                "stop",
                qty,
                "accepted",
                stop_price=(price * Decimal("0.9")).quantize(Decimal("0.01")),
            )
        )
    alerts = [
        (
            names[i % len(names)],
            alert_view(
                f"alert-{i}",
                {
                    "conditions": [
                        {
                            "left": "LAST",
                            "op": "crossingUp",
                            "value": round(start_price(names[i % len(names)]) * 1.05, 2),
                        }
                    ]
                },
            ),
        )
        for i in range(ALERTS)
    ]
    return BookHoldings(
        positions, orders, AccountView(Decimal(1_000_000), Decimal(200_000))
    ), MemoryAlerts(alerts)


# ------------------------------------------------------------------ database


@contextlib.asynccontextmanager
async def postgres_url(url: str | None) -> AsyncIterator[str]:
    """``url``, or a temporary PostgreSQL's (pgserver), deleted afterwards."""
    if url:
        yield url
        return
    from pgserver.postgres_server import get_server

    workdir = Path(tempfile.mkdtemp(prefix="tickgraph-bench-pg-"))
    server = get_server(workdir / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def database(url: str | None) -> AsyncIterator[Database]:
    async with postgres_url(url) as real_url:
        settings = Settings(database_url=Secret(real_url), data_dir=Path(tempfile.gettempdir()))
        db = await Database.open(settings)
        try:
            yield db
        finally:
            await db.close()


async def new_user(db: Database) -> uuid.UUID:
    return await insert_user(db.pool)


# ------------------------------------------------------------------ measurements


async def first_chunk(stream: AsyncIterator[Any]) -> float:
    """Seconds from now to the stream's first chunk; the stream is then drained."""
    start = time.perf_counter()
    got: float | None = None
    async for _ in stream:
        if got is None:
            got = time.perf_counter() - start
    assert got is not None
    return got


async def concurrent_streams(
    open_stream: Callable[[int], AsyncIterator[Any]], n: int
) -> dict[str, Any]:
    """Run ``n`` streams at once (``open_stream(i)`` opens the i-th); their first-chunk
    latency, total time and chunk rate. For a server-level benchmark that measures the
    market-data fan-out while analyses stream."""
    chunks = 0

    async def one(i: int) -> float:
        nonlocal chunks
        start = time.perf_counter()
        first: float | None = None
        async for _ in open_stream(i):
            chunks += 1
            if first is None:
                first = time.perf_counter() - start
        assert first is not None
        return first

    start = time.perf_counter()
    firsts = await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - start
    return {
        "streams": n,
        "first_chunk_ms": summary_ms(firsts),
        "elapsed_s": round(elapsed, 3),
        "chunks_per_s": round(chunks / elapsed, 1),
    }


_SYSTEM = system_blocks()
_TOOLS = [tool_definition()]
_CHOICE = tool_choice()


async def bare_sdk(
    client: Any, service: AnalysisService, user: uuid.UUID, symbol: str, question: str
) -> float:
    """The provider's own latency: the same request through the SDK alone, to its first
    piece of prose (the snapshot and the request are built beforehand, outside the
    timing)."""
    snapshot = await service.snapshot(user_id=user, subject=symbol)
    messages = request_messages(snapshot, question)
    prose = FieldText("rationale")
    start = time.perf_counter()
    got: float | None = None
    async with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=2048,
        system=_SYSTEM,
        tools=_TOOLS,
        tool_choice=_CHOICE,
        messages=messages,
    ) as stream:
        async for event in stream:
            if (
                got is None
                and event.type == "content_block_delta"
                and event.delta.type == "input_json_delta"
                and prose.feed(event.delta.partial_json)
            ):
                got = time.perf_counter() - start
    assert got is not None
    return got


def make_service(
    db: Database, analyst: Analyst, names: Sequence[str], history: PrebuiltHistory
) -> AnalysisService:
    holdings, alerts = book(names)
    return AnalysisService(
        pool=db.pool,
        analyst=analyst,
        market=LiveMarket(market(names), None, history),
        holdings=holdings,
        alerts=alerts,
        settings=AnalysisSettings(max_running=1_000),
        clock=lambda: NOW_MS / 1000,
    )


async def bench_first_chunk(
    db: Database, requests: int, history: PrebuiltHistory, names: Sequence[str]
) -> dict[str, Any]:
    import anthropic

    offline = make_service(db, OfflineAnalyst(), names, history)
    user = await new_user(db)
    for i in range(5):  # warm-up (imports, connections, prepared statements)
        await first_chunk(
            offline.stream(user_id=user, limits=ELITE, symbol=names[0], question=f"warm {i}")
        )
    offline_times = [
        await first_chunk(
            offline.stream(
                user_id=await new_user(db),
                limits=ELITE,
                symbol=names[i % len(names)],
                question=f"q{i}",
            )
        )
        for i in range(requests)
    ]
    out: dict[str, Any] = {"offline": summary_ms(offline_times)}
    async with FakeAnthropic() as fake:
        analyst = AnthropicAnalyst(
            API_KEY, base_url=fake.base_url, timeout_s=30, total_timeout_s=60
        )
        client = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=fake.base_url, max_retries=0)
        service = make_service(db, analyst, names, history)
        try:
            for i in range(5):
                await first_chunk(
                    service.stream(
                        user_id=user, limits=ELITE, symbol=names[0], question=f"warm {i}"
                    )
                )
                await bare_sdk(client, service, user, names[0], f"warm {i}")
            through, bare = [], []
            for i in range(requests):
                symbol = names[i % len(names)]
                bare.append(await bare_sdk(client, service, user, symbol, f"b{i}"))
                through.append(
                    await first_chunk(
                        service.stream(
                            user_id=await new_user(db),
                            limits=ELITE,
                            symbol=symbol,
                            question=f"a{i}",
                        )
                    )
                )
        finally:
            await analyst.aclose()
            await client.close()
    t, b = summary_ms(through), summary_ms(bare)
    out["anthropic"] = {
        "through_tickgraph": t,
        "bare_sdk": b,
        "added_ms": {"p50": round(t["p50"] - b["p50"], 3), "p99": round(t["p99"] - b["p99"], 3)},
    }
    await offline.aclose()
    return out


async def bench_snapshot(
    db: Database, history: PrebuiltHistory, names: Sequence[str], rounds: int = 10
) -> dict[str, Any]:
    service = make_service(db, OfflineAnalyst(), names, history)
    user = await new_user(db)
    holdings, alerts = book(names)
    state = market(names)
    by_symbol: dict[str, list[AlertView]] = {}
    for symbol, alert in await alerts.active(user):
        by_symbol.setdefault(symbol, []).append(alert)
    bars = {
        s: {
            tf: await history.bars(s, tf, end_ms=NOW_MS, count=BARS_NEEDED)
            for tf in (Timeframe.H1, Timeframe.D1)
        }
        for s in names
    }
    positions = await holdings.positions(user)
    orders = {s: await holdings.open_orders(user, s) for s in names}
    account = await holdings.account(user)

    def build_portfolio() -> Any:
        snapshots = [
            symbol_snapshot(
                SymbolInputs(
                    symbol=p.symbol,
                    state=state.get(p.symbol),
                    bars=bars[p.symbol],
                    position=p,
                    orders=orders[p.symbol],
                    alerts=by_symbol.get(p.symbol, []),
                    preferences=Preferences(),
                    equity=account.equity if account else None,
                    taken_at_ms=NOW_MS,
                    bars_shown=PORTFOLIO_BARS_SHOWN,
                )
            )
            for p in positions
        ]
        return portfolio_snapshot(account, snapshots)

    pure, gathered, encoded, one = [], [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        snapshot = build_portfolio()
        pure.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await service.snapshot(user_id=user, subject="portfolio")
        gathered.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fingerprint(snapshot)
        encoded.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        symbol_snapshot(
            SymbolInputs(
                symbol=names[0],
                state=state.get(names[0]),
                bars=bars[names[0]],
                alerts=by_symbol.get(names[0], []),
                taken_at_ms=NOW_MS,
            )
        )
        one.append(time.perf_counter() - t0)
    return {
        "positions": POSITIONS,
        "alerts": ALERTS,
        "bars_per_timeframe": BARS_NEEDED,
        "portfolio_build_pure_ms": summary_ms(pure),
        "portfolio_with_gathering_ms": summary_ms(gathered),
        "portfolio_encode_and_fingerprint_ms": summary_ms(encoded),
        "portfolio_snapshot_bytes": len(encode(snapshot)),
        "symbol_build_pure_ms": summary_ms(one),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    names = symbols(POSITIONS)
    history = await prebuilt(names)
    async with database(args.database_url or os.environ.get("TEST_DATABASE_URL")) as db:
        return {
            "first_chunk": await bench_first_chunk(db, args.requests, history, names),
            "snapshot": await bench_snapshot(db, history, names),
        }


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    result = asyncio.run(main(args))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    cli()


__all__ = ["Awaitable", "concurrent_streams", "main"]
