"""Many analyses streaming at once through a real server, and what they do to the
market-data fan-out, measured in the same run.

    python -m loadtests.analysis_streams [--streams 200] [--window 8] [--database-url URL]

``tickgraph serve`` runs as a subprocess, fed by the simulated market over the Polygon
protocol, with the Anthropic analyst pointed at the local fake Messages API (this
process), which streams each answer in ~40 pieces ``--token-delay`` apart (0.25 s: an
analysis stays open about ten seconds, as a model's would). Quote subscribers (in a
process of their own, so the analysis clients' work never delays their reads) measure
the fan-out: quotes delivered per second and the latency from the server's receipt
(``receivedAt``) to the client.

The simulated market runs in a process of its own too.

Three windows of ``--window`` seconds: before (no analyses), during (``--streams``
analyses open at every moment: each one that ends is replaced at once) and after. The
figures (JSON on stdout): per window the delivered quote rate, the latency p50/p99 and
the server's CPU (cores), the ratio of the rate during to the mean of before and after,
and the analyses' first-chunk latency, completed count and chunk rate. Quotes conflate
per symbol for a reader the server cannot keep up with, so a busy server shows first
as fewer deliveries (each one fresh), then as latency. Target: the fan-out slows by at
most 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

from loadtests.analysis_bench import pct, postgres_url, summary_ms
from loadtests.fanout_server import sample_process, start_target
from streams.polygon_server import start_simulated_server
from tests.support.accounts import LOGIN, PASSWORD, sign_up
from tests.support.fake_anthropic import API_KEY, FakeAnthropic, Script

SYMBOLS = ("AMZN", "MSFT", "AAPL", "NVDA", "TSLA", "META", "GOOG", "SPY")
QUOTES = "subscription($s: [String!]!) { quotes(symbols: $s) { symbol receivedAt } }"
ANALYZE = """subscription($s: String!, $q: String) { analysis(symbol: $s, question: $q) {
  text result { stance check { verdict } } usage { outputTokens } } }"""
PROTOCOL = "graphql-transport-ws"
#: Streams per user (TICKGRAPH_ANALYSIS_MAX_RUNNING on the server under test).
PER_USER = 40


# ------------------------------------------------------------------ quote subscribers


def _text(message: dict[str, Any]) -> str:
    return orjson.dumps(message).decode()  # graphql-transport-ws speaks text frames


async def _quote_clients(url: str, n: int, conn: Connection) -> None:
    """Subscribers of every symbol's quotes; on "measure S" from the parent, the
    deliveries and latencies of the next S seconds."""
    latencies: list[float] = []
    counting = False

    async def one() -> None:
        async with websockets.connect(url, subprotocols=[PROTOCOL], max_queue=None) as ws:  # type: ignore[list-item]
            await ws.send(_text({"type": "connection_init", "payload": {}}))
            await ws.recv()
            payload = {"query": QUOTES, "variables": {"s": list(SYMBOLS)}}
            await ws.send(_text({"id": "1", "type": "subscribe", "payload": payload}))
            async for raw in ws:
                msg = orjson.loads(raw)
                if msg["type"] == "ping":
                    await ws.send(_text({"type": "pong"}))
                elif msg["type"] == "next" and counting:
                    received = msg["payload"]["data"]["quotes"]["receivedAt"]
                    latencies.append(time.time() * 1000 - received)

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "stop":
            break
        seconds = float(command.split()[1])
        latencies.clear()
        counting = True
        await asyncio.sleep(seconds)
        counting = False
        got = list(latencies)
        conn.send(
            {
                "deliveries_per_s": round(len(got) / seconds, 1),
                "latency_ms_p50": round(pct(got, 50), 2) if got else None,
                "latency_ms_p99": round(pct(got, 99), 2) if got else None,
            }
        )
    for task in tasks:
        task.cancel()


def _quote_process(url: str, n: int, conn: Connection) -> None:
    asyncio.run(_quote_clients(url, n, conn))


async def _upstream(rate: float, conn: Connection) -> None:
    async with await start_simulated_server(list(SYMBOLS), seed=3, rate=rate) as upstream:
        conn.send(upstream.port)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)


def _upstream_process(rate: float, conn: Connection) -> None:
    """The simulated market in a process of its own: the analysis clients and the fake
    API in this one must not slow what the server is fed."""
    asyncio.run(_upstream(rate, conn))


# ------------------------------------------------------------------ analysis streams


async def _users(http: httpx.AsyncClient, db_url: str, count: int) -> list[str]:
    """``count`` elite users, signed in (their tokens)."""
    import asyncpg

    conn = await asyncpg.connect(db_url)
    tokens = []
    try:
        for _ in range(count):
            user = await sign_up(http)
            await conn.execute(
                "UPDATE users SET tier = 'elite' WHERE id = $1", uuid.UUID(user["id"])
            )
            login = await http.post(
                "/graphql",
                json={"query": LOGIN, "variables": {"e": user["email"], "p": PASSWORD}},
            )
            tokens.append(login.json()["data"]["login"]["accessToken"])
    finally:
        await conn.close()
    return tokens


class Streams:
    """``n`` analyses open at every moment until ``stop``; each that ends is replaced."""

    def __init__(self, url: str, tokens: list[str], n: int) -> None:
        self.url, self.tokens, self.n = url, tokens, n
        self.firsts: list[float] = []
        self.completed = 0
        self.failed = 0
        self.chunks = 0
        self._stop = asyncio.Event()
        self._questions = 0

    async def _slot(self, i: int) -> None:
        token = self.tokens[i // PER_USER]
        async with websockets.connect(self.url, subprotocols=[PROTOCOL], max_queue=None) as ws:  # type: ignore[list-item]
            await ws.send(_text({"type": "connection_init", "payload": {"token": token}}))
            await ws.recv()
            op = 0
            while not self._stop.is_set():
                op += 1
                self._questions += 1
                variables = {"s": SYMBOLS[i % len(SYMBOLS)], "q": f"q{self._questions}"}
                payload = {"query": ANALYZE, "variables": variables}
                start = time.perf_counter()
                await ws.send(_text({"id": str(op), "type": "subscribe", "payload": payload}))
                first = True
                async for raw in ws:
                    msg = orjson.loads(raw)
                    if msg["type"] == "ping":
                        await ws.send(_text({"type": "pong"}))
                        continue
                    if msg["type"] == "complete":
                        self.completed += 1
                        break
                    if msg["type"] == "error" or "errors" in msg.get("payload", {}):
                        self.failed += 1
                        if msg["type"] == "error":
                            break
                        continue
                    self.chunks += 1
                    if first:
                        self.firsts.append(time.perf_counter() - start)
                        first = False

    async def run(self) -> None:
        await asyncio.gather(*(self._slot(i) for i in range(self.n)))

    def stop(self) -> None:
        self._stop.set()


# ------------------------------------------------------------------ the run


async def main(args: argparse.Namespace) -> dict[str, Any]:
    users = -(-args.streams // PER_USER)
    spawn = multiprocessing.get_context("spawn")
    feed, feed_child = spawn.Pipe()
    market = spawn.Process(target=_upstream_process, args=(args.rate, feed_child))
    market.start()
    loop = asyncio.get_running_loop()
    port = await loop.run_in_executor(None, feed.recv)
    async with (
        postgres_url(args.database_url) as db_url,
        FakeAnthropic() as fake,
    ):
        # Each answer in ~40 pieces ``token_delay`` apart (a model writes its answer
        # over seconds: 0.25 s keeps a stream open about ten).
        fake.default = Script(token_delay_s=args.token_delay, chunk_chars=8)
        data_dir = Path(tempfile.mkdtemp(prefix="tickgraph-streams-"))
        env = {
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": fake.base_url,
            "TICKGRAPH_ANALYSIS_MAX_RUNNING": str(PER_USER),
            "TICKGRAPH_ANALYSIS_CACHE_TTL": "0",
        }
        url = f"ws://127.0.0.1:{port}/stocks"
        async with start_target(
            "tickgraph", url, SYMBOLS, data_dir, database_url=db_url, extra_env=env
        ) as target:
            async with httpx.AsyncClient(base_url=target.http_url, timeout=60) as http:
                tokens = await _users(http, db_url, users)
            parent, child = spawn.Pipe()
            quotes = spawn.Process(
                target=_quote_process, args=(target.ws_url, args.subscribers, child)
            )
            quotes.start()
            try:
                await asyncio.sleep(args.warmup)

                async def measure() -> dict[str, Any]:
                    before = sample_process(target.pid)
                    parent.send(f"measure {args.window}")
                    got: dict[str, Any] = await asyncio.get_running_loop().run_in_executor(
                        None, parent.recv
                    )
                    after = sample_process(target.pid)
                    if before and after:
                        got["server_cpu"] = round((after.cpu_s - before.cpu_s) / args.window, 3)
                    return got

                quiet_before = await measure()
                streams = Streams(target.ws_url, tokens, args.streams)
                running = asyncio.create_task(streams.run())
                await asyncio.sleep(2.0)  # every slot open
                started = streams.completed
                busy = await measure()
                done_in_window = streams.completed - started
                streams.stop()
                await running
                quiet_after = await measure()
            finally:
                parent.send("stop")
                await loop.run_in_executor(None, quotes.join, 10)
    feed.send("stop")
    await loop.run_in_executor(None, market.join, 10)
    quiet_rate = (quiet_before["deliveries_per_s"] + quiet_after["deliveries_per_s"]) / 2
    return {
        "streams": args.streams,
        "quote_subscribers": args.subscribers,
        "window_s": args.window,
        "fanout": {"before": quiet_before, "during": busy, "after": quiet_after},
        "fanout_rate_ratio": round(busy["deliveries_per_s"] / quiet_rate, 3)
        if quiet_rate
        else None,
        "analyses": {
            "completed_in_window": done_in_window,
            "completed_total": streams.completed,
            "failed": streams.failed,
            "first_chunk_ms": summary_ms(streams.firsts),
            "chunks": streams.chunks,
        },
        "fake_deltas_sent": fake.deltas_sent,
    }


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--subscribers", type=int, default=20)
    p.add_argument("--rate", type=float, default=100.0, help="events/s per symbol upstream")
    p.add_argument("--window", type=float, default=8.0)
    p.add_argument("--token-delay", type=float, default=0.25, help="seconds between pieces")
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--database-url")
    args = p.parse_args()
    print(json.dumps(asyncio.run(main(args)), indent=2))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        cli()
