"""Orders through GraphQL into PostgreSQL with the paper broker: throughput against a
bare ``asyncpg`` insert of the same rows, latency at a paced rate, and the time from
the quote that crosses a resting limit to the fill frame at a WebSocket subscriber.

    python -m loadtests.orders_bench [--clients 32] [--users 8] [--seconds 4] [--rounds 3]
                                     [--rate 500] [--paced-seconds 10] [--fills 200]

One run starts, on this machine:

* a temporary PostgreSQL (pgserver; ``DATABASE_URL`` to use another), whose ``fsync``,
  ``synchronous_commit`` and ``wal_sync_method`` are reported as read from the server;
* a scripted upstream speaking Polygon's protocol (``streams.polygon_server``) quoting one
  symbol, ``BNCH``, at 10.00 x 10.01, whose quotes the benchmark sends itself;
* ``tickgraph serve`` in its own process (``loadtests.orders_bench_server``: the elite
  tier's request and order rates raised, see there), ``continuous`` trading calendar.

Then, with ``--users`` elite users (signed up through the API, promoted by SQL):

1. Throughput, ``--rounds`` times alternately: ``--clients`` closed-loop clients placing
   1-share GTC buy limits at 9.50 (they rest) through ``placeOrder`` over HTTP for
   ``--seconds``; and the same number of asyncpg connections running the server's own
   insert (``server.storage.orders.insert_request``: the order and its outbox row, one
   transaction per order) for as long. Medians of orders/s, and their ratio. The server
   path does more per order than the baseline (auth, parse, risk, the broker, and the
   ledger's group commit it waits for): the ratio is the cost of all of that.
2. Latency: an open loop at ``--rate`` orders/s for ``--paced-seconds``, each round trip
   timed from its scheduled send (a late send counts against the server, no coordinated
   omission); p50/p99/max.
3. Quote to fill: ``--fills`` times, a buy limit at 10.00 rests under the 10.01 ask, the
   upstream sends a quote asking 9.99, and the time from just before that frame is
   handed to the upstream's socket writer to the ``orderUpdates`` FILL frame arriving at
   a WebSocket subscriber of the same user; p50/p99/max.

It prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from websockets.asyncio.client import connect

from loadtests.processes import bench_database, listening_server
from server.storage.order_rows import OrderMeta
from server.storage.orders import insert_request
from server.trading.model import Order, OrderSpec, OrderType, Side, TimeInForce
from streams.events import MarketEvent, Quote, Trade
from streams.polygon_server import PolygonProtocolServer

HERE = Path(__file__).resolve().parents[1]
SYMBOL = "BNCH"
BID, ASK = 10.00, 10.01
CROSSING_ASK = 9.99
RESTING_PRICE = "9.50"  # 5% under the bid: inside the 10% order price band, never crossed
FILL_PRICE = "10.00"  # at the bid: rests under 10.01, crossed by an ask of 9.99

REGISTER = "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { id } }"
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
PLACE = """mutation($input: OrderInput!) { placeOrder(input: $input) { id status } }"""
UPDATES = "subscription { orderUpdates { kind order { id } } }"
PASSWORD = "orders bench password 1"


def progress(message: str) -> None:
    print(f"orders_bench: {message}", file=sys.stderr, flush=True)


def percentiles(samples_ms: Sequence[float]) -> dict[str, float | int | None]:
    if len(samples_ms) < 2:
        return {"count": len(samples_ms), "p50": None, "p99": None, "max": None}
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {
        "count": len(samples_ms),
        "p50": round(cuts[49], 3),
        "p99": round(cuts[98], 3),
        "max": round(max(samples_ms), 3),
    }


def limit(price: str) -> dict[str, Any]:
    return {
        "symbol": SYMBOL,
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "qty": "1",
        "limitPrice": price,
    }


# -- the scripted upstream --------------------------------------------------------------------


class ScriptedSource:
    """Frames the benchmark hands over, sent as soon as the pump takes them."""

    hold_when_paused = False
    unpaced = False

    def __init__(self) -> None:
        self.frames: asyncio.Queue[Sequence[MarketEvent]] = asyncio.Queue()

    async def next_frame(self) -> Sequence[MarketEvent] | None:
        return await self.frames.get()

    def pause(self) -> None:
        pass

    def on_subscribe(self, channel: str, symbol: str) -> None:
        pass

    def quote(self, bid: float, ask: float) -> None:
        now = time.time_ns() // 1_000_000
        self.frames.put_nowait([Quote(sym=SYMBOL, bp=bid, ap=ask, t=now, bs=100, ask_size=100)])

    def trade(self, price: float) -> None:
        now = time.time_ns() // 1_000_000
        self.frames.put_nowait([Trade(sym=SYMBOL, p=price, s=100, t=now)])


async def keep_quoting(source: ScriptedSource) -> None:
    """The resting quote twice a second, so the symbol never goes stale."""
    while True:
        source.quote(BID, ASK)
        await asyncio.sleep(0.5)


# -- the server -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(database_url: str, upstream: str) -> AsyncIterator[str]:
    with tempfile.TemporaryDirectory(prefix="tickgraph-orders-") as data_dir:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TICKGRAPH_", "POLYGON_", "DATABASE_URL", "REDIS_URL"))
        }
        env |= {
            "DATABASE_URL": database_url,
            "POLYGON_WS_URL": upstream,
            "TICKGRAPH_SYMBOLS": SYMBOL,
            "TICKGRAPH_TRADING_CALENDAR": "continuous",
            "TICKGRAPH_DATA_DIR": data_dir,
            "TICKGRAPH_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(HERE),
        }
        async with listening_server(
            ["-m", "loadtests.orders_bench_server", "serve", "--port", "0"], cwd=HERE, env=env
        ) as address:
            yield address


async def gql(http: httpx.AsyncClient, query: str, token: str | None, **v: Any) -> dict[str, Any]:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    response = await http.post("/graphql", json={"query": query, "variables": v}, headers=headers)
    body: dict[str, Any] = response.json()
    return body


async def elite_user(http: httpx.AsyncClient, db: Any) -> tuple[str, str]:
    """A new user promoted to elite; returns (id, token)."""
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    registered = await gql(http, REGISTER, None, e=email, p=PASSWORD)
    user_id = registered["data"]["register"]["id"]
    await db.execute("UPDATE users SET tier = 'elite' WHERE id = $1", uuid.UUID(user_id))
    login = await gql(http, LOGIN, None, e=email, p=PASSWORD)
    return user_id, login["data"]["login"]["accessToken"]


async def place(http: httpx.AsyncClient, token: str, price: str) -> dict[str, Any]:
    body = await gql(http, PLACE, token, input=limit(price))
    if "errors" in body:
        code = (body["errors"][0].get("extensions") or {}).get("code", "error")
        raise PlaceError(str(code), body["errors"][0].get("message", ""))
    order: dict[str, Any] = body["data"]["placeOrder"]
    return order


class PlaceError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class Connection:
    """One keep-alive HTTP/1.1 connection to ``/graphql``, one request at a time.

    The load is sent with this rather than httpx: under 32 concurrent requests httpx's
    pool cost the client a whole core while the server idled (measured: server at ~3%
    CPU, orders/s bounded by the client), so the benchmark measured httpx."""

    def __init__(self, address: str) -> None:
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, query: str, token: str, **variables: Any) -> dict[str, Any]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        body = orjson.dumps({"query": query, "variables": variables})
        head = (
            f"POST /graphql HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        try:
            writer.write(head.encode() + body)
            headers = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            match = re.search(r"\r\ncontent-length: *(\d+)", headers)
            if match is None:
                raise ConnectionError(f"no content-length in {headers[:200]!r}")
            data: dict[str, Any] = orjson.loads(await reader.readexactly(int(match.group(1))))
        except BaseException:
            self.close()
            raise
        if "connection: close" in headers:
            self.close()
        return data

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def place_on(conn: Connection, token: str, price: str) -> dict[str, Any]:
    body = await conn.post(PLACE, token, input=limit(price))
    if "errors" in body:
        code = (body["errors"][0].get("extensions") or {}).get("code", "error")
        raise PlaceError(str(code), body["errors"][0].get("message", ""))
    order: dict[str, Any] = body["data"]["placeOrder"]
    return order


#: What a broken connection raises (counted, and the connection is reopened).
TRANSPORT_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)


async def until_tradable(http: httpx.AsyncClient, tokens: Sequence[str]) -> None:
    """The server has the symbol's quote and trade, and every user's account is open:
    one resting order each, one user at a time (a user's first orders placed at once
    hit a race that this benchmark does not measure: see RESULTS.md)."""
    async with asyncio.timeout(60):
        while True:
            try:
                await place(http, tokens[0], RESTING_PRICE)
                break
            except PlaceError:
                await asyncio.sleep(0.2)
    for token in tokens[1:]:
        await place(http, token, RESTING_PRICE)


# -- 1. throughput ----------------------------------------------------------------------------


async def graphql_throughput(
    address: str, tokens: Sequence[str], clients: int, seconds: float
) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds

    async def client(i: int) -> None:
        token = tokens[i % len(tokens)]
        conn = Connection(address)
        try:
            while time.perf_counter() < deadline:
                try:
                    order = await place_on(conn, token, RESTING_PRICE)
                    outcomes[order["status"]] += 1
                except PlaceError as exc:
                    outcomes[exc.code] += 1
                except TRANSPORT_ERRORS as exc:
                    outcomes[type(exc).__name__] += 1
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    accepted = sum(n for status, n in outcomes.items() if status in ("NEW", "PENDING_NEW"))
    return {"orders_per_s": round(accepted / elapsed, 1), "outcomes": dict(outcomes)}


async def bare_throughput(
    url: str, owners: Sequence[str], connections: int, seconds: float
) -> dict[str, Any]:
    """The server's own insert (order + outbox row, one transaction each), nothing else."""
    pool = await asyncpg.create_pool(url, min_size=connections, max_size=connections)
    spec = OrderSpec(
        symbol=SYMBOL,
        side=Side.BUY,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        qty=Decimal(1),
        limit_price=Decimal(RESTING_PRICE),
    )
    count = 0
    try:
        deadline = time.perf_counter() + seconds

        async def writer(i: int) -> None:
            nonlocal count
            meta = OrderMeta(owners[i % len(owners)], "paper", Decimal(RESTING_PRICE))
            async with pool.acquire() as conn:
                while time.perf_counter() < deadline:
                    order = Order(uuid.uuid4().hex, spec, time.time_ns() // 1_000_000)
                    async with conn.transaction():
                        outbox = await insert_request(conn, [order], [meta], digest=os.urandom(32))
                    assert outbox is not None
                    count += 1

        started = time.perf_counter()
        await asyncio.gather(*(writer(i) for i in range(connections)))
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    return {"orders_per_s": round(count / elapsed, 1)}


# -- 2. latency at a paced rate -----------------------------------------------------------------


async def paced_latency(
    address: str, tokens: Sequence[str], rate: float, seconds: float, connections: int = 64
) -> dict[str, Any]:
    samples: list[float] = []
    outcomes: Counter[str] = Counter()
    total = int(rate * seconds)
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    pool = [Connection(address) for _ in range(connections)]
    for conn in pool:
        idle.put_nowait(conn)

    async def one(i: int, due: float) -> None:
        conn = await idle.get()  # waiting for a connection counts: timed from ``due``
        try:
            order = await place_on(conn, tokens[i % len(tokens)], RESTING_PRICE)
            outcomes[order["status"]] += 1
            samples.append((time.perf_counter() - due) * 1000)
        except PlaceError as exc:
            outcomes[exc.code] += 1
        except TRANSPORT_ERRORS as exc:
            outcomes[type(exc).__name__] += 1
        finally:
            idle.put_nowait(conn)

    tasks = []
    start = time.perf_counter() + 0.05
    try:
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
    finally:
        for conn in pool:
            conn.close()
    elapsed = time.perf_counter() - start
    return {
        "offered_per_s": rate,
        "achieved_per_s": round(total / elapsed, 1),
        "latency_ms": percentiles(samples),
        "outcomes": dict(outcomes),
    }


# -- 3. quote to fill -------------------------------------------------------------------------


async def quote_to_fill(
    address: str, token: str, source: ScriptedSource, fills: int
) -> dict[str, Any]:
    samples: list[float] = []
    marketable = 0
    async with (
        httpx.AsyncClient(base_url=f"http://{address}", timeout=60) as http,
        connect(f"ws://{address}/graphql", subprotocols=["graphql-transport-ws"]) as ws,  # type: ignore[list-item]
    ):
        await ws.send(
            orjson.dumps({"type": "connection_init", "payload": {"token": token}}).decode()
        )
        ack = orjson.loads(await ws.recv())
        assert ack["type"] == "connection_ack", ack
        await ws.send(
            orjson.dumps({"id": "1", "type": "subscribe", "payload": {"query": UPDATES}}).decode()
        )

        async def next_update() -> dict[str, Any]:
            while True:
                msg = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
                if msg["type"] == "ping":
                    await ws.send(orjson.dumps({"type": "pong"}).decode())
                    continue
                assert msg["type"] == "next" and "errors" not in msg["payload"], msg
                update: dict[str, Any] = msg["payload"]["data"]["orderUpdates"]
                return update

        while len(samples) < fills:
            order = await place(http, token, FILL_PRICE)
            if order["status"] not in ("NEW", "PENDING_NEW"):
                marketable += 1  # the restoring quote had not arrived yet
            else:
                # Drain this order's acceptance updates before the crossing quote.
                await asyncio.sleep(0.005)
                while True:
                    with contextlib.suppress(TimeoutError):
                        update = await asyncio.wait_for(next_update(), 0.05)
                        continue
                    break
                sent = time.perf_counter()
                source.quote(BID - 0.02, CROSSING_ASK)
                while True:
                    update = await next_update()
                    if update["kind"] == "FILL" and update["order"]["id"] == order["id"]:
                        samples.append((time.perf_counter() - sent) * 1000)
                        break
            source.quote(BID, ASK)
            await asyncio.sleep(0.02)  # the restoring quote reaches the server first
    return {"latency_ms": percentiles(samples), "placed_marketable": marketable}


# -- the run ----------------------------------------------------------------------------------


async def pg_durability(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        return {
            name: str(await conn.fetchval(f"SHOW {name}"))
            for name in ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes")
        }
    finally:
        await conn.close()


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    source = ScriptedSource()
    upstream = await PolygonProtocolServer(source).start()
    quoting = asyncio.create_task(keep_quoting(source))
    source.trade((BID + ASK) / 2)
    try:
        async with serve(url, f"{upstream.url}") as address:
            db = await asyncpg.connect(url)
            try:
                async with httpx.AsyncClient(base_url=f"http://{address}", timeout=60) as http:
                    users = [await elite_user(http, db) for _ in range(args.users)]
                    await until_tradable(http, [t for _, t in users])
            finally:
                await db.close()
            progress(f"{len(users)} elite users; {SYMBOL} is tradable")
            owners = [u for u, _ in users]
            tokens = [t for _, t in users]
            await graphql_throughput(address, tokens, args.clients, min(1.0, args.seconds))
            rounds = []
            for _ in range(args.rounds):
                bare = await bare_throughput(url, owners, args.clients, args.seconds)
                graphql = await graphql_throughput(address, tokens, args.clients, args.seconds)
                rounds.append({"graphql": graphql, "bare_asyncpg": bare})
                progress(f"round {len(rounds)}: graphql {graphql} bare {bare}")
            g = statistics.median(r["graphql"]["orders_per_s"] for r in rounds)
            b = statistics.median(r["bare_asyncpg"]["orders_per_s"] for r in rounds)
            paced = await paced_latency(address, tokens, args.rate, args.paced_seconds)
            progress(f"paced: {paced}")
            fill = await quote_to_fill(address, tokens[0], source, args.fills)
    finally:
        quoting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await quoting
        await upstream.close()
    return {
        "throughput": {
            "clients": args.clients,
            "users": args.users,
            "seconds": args.seconds,
            "graphql_orders_per_s": g,
            "bare_asyncpg_orders_per_s": b,
            "ratio": round(g / b, 3) if b else None,
            "targets": "graphql >= 1000/s and >= 0.5x bare",
            "rounds": rounds,
        },
        "paced": {**paced, "target": "p99 <= 50 ms at 500/s"},
        "quote_to_fill": {**fill, "target": "p99 <= 10 ms"},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--fills", type=int, default=200)
    args = parser.parse_args(argv)
    with bench_database("tickgraph-orders-pg-") as url:
        durability = asyncio.run(pg_durability(url))
        results = asyncio.run(run(args, url))
    print(
        json.dumps(
            {
                "benchmark": "orders_bench",
                "postgres": durability,
                **results,
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
