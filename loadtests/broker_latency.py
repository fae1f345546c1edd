"""Added latency of the Alpaca path: ``placeOrder`` sent → its ``orderUpdates`` NEW
received, with the paper broker and with the operator's Alpaca account on the fake
Alpaca server, in the same run.

    python -m loadtests.broker_latency [--orders 40] [--rounds 4]

Two real servers (uvicorn, an embedded PostgreSQL database each, a simulated market on
a local Polygon-protocol server), one user each, subscribed to ``orderUpdates`` over a
real WebSocket. Orders are resting limit buys, one at a time, left resting; rounds
alternate paper and Alpaca so drift in machine load hits both. The Alpaca path adds:
the REST call on a worker thread (alpaca-py, requests), the fake's HTTP handling, the
venue's acknowledgement coming back on the ``trade_updates`` WebSocket, the tracker. The
fake answers on loopback, so network time to Alpaca (tens of ms from most places) is
not in these figures: add your round trip to Alpaca to the Alpaca medians.
Prints one JSON object (ms: p50, p90, max per broker; medians' difference and ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

from server.settings import MarketSource, PolygonEndpoint, Secret, Settings
from streams.polygon_server import start_simulated_server
from tests.support.accounts import LOGIN, PASSWORD, bearer, sign_up
from tests.support.fake_alpaca import FakeAlpaca
from tests.support.graphql_ws import graphql_ws
from tests.support.server import RunningServer, running_server

PLACE = """mutation($input: OrderInput!) { placeOrder(input: $input) { id } }"""
UPDATES = "subscription { orderUpdates { kind order { id } } }"


async def _database(admin_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.asynccontextmanager
async def _server(admin_url: str, upstream_port: int, **extra: Any) -> AsyncIterator[RunningServer]:
    settings = dataclasses.replace(
        Settings(),
        database_url=Secret(await _database(admin_url)),
        data_dir=Path(tempfile.mkdtemp(prefix="tickgraph-bench-")),
        symbols=("AMZN",),
        market_source=MarketSource.POLYGON,
        polygon_api_key=Secret("bench"),
        polygon_endpoint=PolygonEndpoint(f"127.0.0.1:{upstream_port}", False, "stocks"),
        trading_calendar="continuous",
        **extra,
    )
    async with running_server(settings) as server:
        yield server


async def _trader(http: httpx.AsyncClient, server: RunningServer) -> str:
    user = await sign_up(http)
    await server.runtime.database.pool.execute(
        "UPDATE users SET tier = 'elite' WHERE id = $1", uuid.UUID(user["id"])
    )
    login = await http.post(
        "/graphql", json={"query": LOGIN, "variables": {"e": user["email"], "p": PASSWORD}}
    )
    return str(login.json()["data"]["login"]["accessToken"])


async def _last_price(server: RunningServer) -> Decimal:
    state = server.runtime.services.state
    async with asyncio.timeout(30):
        while True:
            s = state.get("AMZN")
            if s is not None and s.last_trade is not None:
                return Decimal(repr(s.last_trade.event.p))  # type: ignore[union-attr]
            await asyncio.sleep(0.05)


async def _measure(server: RunningServer, orders: int) -> list[float]:
    out = []
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as http:
        token = await _trader(http, server)
        far = str((await _last_price(server) * Decimal("0.95")).quantize(Decimal("0.01")))
        doc = {
            "symbol": "AMZN",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "qty": "1",
            "limitPrice": far,
        }
        async with graphql_ws(server.ws, payload={"token": token}) as ws:
            op = await ws.subscribe(UPDATES)
            for _ in range(orders):
                start = time.perf_counter()
                placed = await http.post(
                    "/graphql",
                    json={"query": PLACE, "variables": {"input": doc}},
                    headers=bearer(token),
                )
                body = placed.json()
                if not body.get("data"):
                    raise RuntimeError(f"placeOrder failed: {body.get('errors')}")
                order_id = body["data"]["placeOrder"]["id"]
                while True:
                    update = (await ws.next_data(op))["orderUpdates"]
                    if update["order"]["id"] == order_id and update["kind"] == "NEW":
                        break
                out.append((time.perf_counter() - start) * 1000)
    return out


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "max_ms": round(ordered[-1], 2),
    }


async def run(args: Any, admin_url: str) -> dict[str, Any]:
    paper: list[float] = []
    alpaca: list[float] = []
    async with (
        await start_simulated_server(["AMZN"], seed=5, rate=50.0) as upstream,
        FakeAlpaca(rate_limit=100_000) as fake,
    ):
        extra = {
            "alpaca_api_key_id": Secret(fake.key_id),
            "alpaca_api_secret_key": Secret(fake.secret),
            "alpaca_base_url": fake.base_url,
        }
        async with (
            _server(admin_url, upstream.port) as paper_server,
            _server(admin_url, upstream.port, **extra) as alpaca_server,
        ):
            for _ in range(args.rounds):
                paper += await _measure(paper_server, args.orders)
                alpaca += await _measure(alpaca_server, args.orders)
    p, a = _stats(paper), _stats(alpaca)
    return {
        "paper": p,
        "alpaca_fake": a,
        "added_p50_ms": round(a["p50_ms"] - p["p50_ms"], 2),
        "ratio_p50": round(a["p50_ms"] / p["p50_ms"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    # A fresh user per round (the elite tier's burst is 60 orders); 4 x 40 requests stay
    # under the 190 a minute the adapter allows itself per Alpaca account, which would
    # otherwise be measured instead of the path.
    parser.add_argument("--orders", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pgserver import get_server
    pg = get_server(Path(tempfile.mkdtemp(prefix="tickgraph-bench-pg-")), cleanup_mode="delete")
    try:
        results = asyncio.run(run(args, str(pg.get_uri())))
    finally:
        pg.cleanup()
    print(
        json.dumps(
            {
                "benchmark": "broker_latency",
                "measure": "placeOrder sent -> orderUpdates NEW received",
                "orders_per_round": args.orders,
                "rounds": args.rounds,
                **results,
                "python": sys.version.split()[0],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
