"""The ``tickgraph`` command as a user runs it: separate processes, real ports."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.support.cli import LISTENING, REPLAY_READY, clean_env, process
from tests.support.data import AMZN_REPLAY, require
from tests.support.graphql_ws import graphql_ws
from tests.support.timing import TIMEOUT

QUOTES = """subscription($s: [String!]!) { quotes(symbols: $s) {
  symbol bidPrice askPrice sequence snapshot } }"""


@asynccontextmanager
async def amzn_replay() -> AsyncIterator[str]:
    """``tickgraph replay`` of the recorded AMZN day at 50x; yields its URL."""
    args = ("replay", str(require(AMZN_REPLAY)), "--port", "0", "--speed", "50")
    async with process(*args, env=clean_env(), ready=REPLAY_READY) as (_, match):
        yield match.group(1)


async def test_bad_setting_exits_2_naming_the_variable() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        env=clean_env(TICKGRAPH_PORT="abc", TICKGRAPH_SYMBOLS="AAPL,not valid"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(TIMEOUT):
        _, err = await proc.communicate()
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2
    assert any(
        line.startswith("tickgraph: configuration error: TICKGRAPH_PORT='abc'") for line in lines
    ), lines
    assert any("TICKGRAPH_SYMBOLS" in line for line in lines), lines


async def test_zero_configuration_serve_streams_the_simulated_market(tmp_path: Path) -> None:
    env = clean_env(TICKGRAPH_DATA_DIR=str(tmp_path / "data"), TICKGRAPH_SIM_SEED="42")
    async with process("serve", "--port", "0", env=env, ready=LISTENING) as (proc, m):
        port = int(m.group(1))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(int(TIMEOUT * 10)):
                ready = await http.get("/readyz")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert ready.json()["feed"] == {"source": "simulated", "state": "connected"}
            page = await http.get("/graphql", headers={"accept": "text/html"})
            assert page.status_code == 200 and "graphiql" in page.text.lower()
        async with graphql_ws(f"ws://127.0.0.1:{port}/graphql") as client:
            op = await client.subscribe(QUOTES, {"s": ["AAPL", "MSFT"]})
            seen = [(await client.next_data(op))["quotes"] for _ in range(20)]
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT):
            code = await proc.wait()
    assert code == 0
    assert {q["symbol"] for q in seen} == {"AAPL", "MSFT"}
    assert all(0 < q["bidPrice"] < q["askPrice"] for q in seen)
    # The embedded database lives where it was told to.
    assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()


async def test_replay_command_feeds_serve_command(tmp_path: Path, postgres_url: str) -> None:
    async with amzn_replay() as upstream_url:
        env = clean_env(
            POLYGON_WS_URL=upstream_url,
            TICKGRAPH_SYMBOLS="AMZN",
            DATABASE_URL=postgres_url,
            TICKGRAPH_DATA_DIR=str(tmp_path),
        )
        async with process("serve", "--port", "0", env=env, ready=LISTENING) as (_, m):
            async with graphql_ws(f"ws://127.0.0.1:{m.group(1)}/graphql") as client:
                op = await client.subscribe(QUOTES, {"s": ["AMZN"]})
                seen = [(await client.next_data(op))["quotes"] for _ in range(10)]
    # AMZN on 2012-06-21 traded between 220.51 and 226.03.
    assert all(q["symbol"] == "AMZN" and 215 < q["bidPrice"] < 230 for q in seen)
    seqs = [q["sequence"] for q in seen]
    assert seqs == sorted(seqs)


async def test_secrets_stay_out_of_logs_even_at_debug(tmp_path: Path, postgres_url: str) -> None:
    secret = "pk-sekrit-0123456789"
    async with amzn_replay() as upstream_url:
        env = clean_env(
            POLYGON_WS_URL=upstream_url,
            POLYGON_API_KEY=secret,
            TICKGRAPH_SYMBOLS="AMZN",
            DATABASE_URL=postgres_url,
            TICKGRAPH_DATA_DIR=str(tmp_path),
            TICKGRAPH_LOG_LEVEL="DEBUG",
            ANTHROPIC_API_KEY="sk-ant-sekrit",
        )
        async with process("serve", "--port", "0", env=env, ready=LISTENING) as (proc, m):
            async with graphql_ws(f"ws://127.0.0.1:{m.group(1)}/graphql") as client:
                op = await client.subscribe(QUOTES, {"s": ["AMZN"]})
                await client.next_data(op)
            proc.send_signal(signal.SIGTERM)
            assert proc.stdout is not None and proc.stderr is not None
            async with asyncio.timeout(TIMEOUT):
                out = (await proc.stdout.read()).decode() + (await proc.stderr.read()).decode()
                await proc.wait()
    assert "feed connected" in out  # the debug log really was captured
    assert secret not in out and "sk-ant-sekrit" not in out


async def test_replay_at_max_speed_waits_for_a_slow_reader_and_loses_nothing() -> None:
    """``--speed max`` is as fast as the client reads: a client that stops reading for
    longer than a paced replay's 10 s slow-consumer limit is waited for, not dropped."""
    import orjson
    import websockets

    from streams.events import Quote, Trade
    from streams.recording import load_events

    expected = sum(type(e) in (Trade, Quote) for e in load_events(require(AMZN_REPLAY)))
    args = ("replay", str(require(AMZN_REPLAY)), "--port", "0", "--speed", "max")
    async with process(*args, env=clean_env(), ready=REPLAY_READY) as (proc, match):
        async with websockets.connect(match.group(1), max_size=None, max_queue=4) as ws:
            await ws.recv()  # connected
            await ws.send(orjson.dumps({"action": "auth", "params": "any"}))
            await ws.recv()  # auth_success
            await ws.send(orjson.dumps({"action": "subscribe", "params": "T.AMZN,Q.AMZN"}))
            await asyncio.sleep(12.0)  # not reading; the kernel and our buffers fill up
            received = 0
            async with asyncio.timeout(TIMEOUT * 6):
                while received < expected:
                    frame = orjson.loads(await ws.recv())
                    received += sum(1 for e in frame if e.get("ev") in ("T", "Q"))
        assert proc.returncode is None
    assert received == expected
