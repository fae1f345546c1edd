"""The faults of a deployment, each against real processes on loopback: Redis
restarting (briefly, and long enough for the lease to run out), a process's Redis
subscription killed as the server does past its output-buffer limit, PostgreSQL
unavailable for a while, and a graceful stop (SIGTERM)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from streams.polygon_server import start_simulated_server
from tests.support.deployment import (
    MARKET_BUY,
    PLACE,
    Process,
    deployment,
    leader_of,
    next_message,
    process,
    redis_server,
    wait_role,
)
from tests.support.graphql_ws import GraphQLWS, graphql_ws
from tests.support.postgres import with_database
from tests.support.redis import RedisServer
from tests.support.server_process import elite_token, until
from tests.support.tcp_proxy import tcp_proxy
from tests.support.timing import timeout

__all__ = ["redis_server"]  # the fixture

QUOTES = 'subscription { quotes(symbols: ["AMZN"]) { sequence receivedAt } }'
STATUS = "subscription { feedStatus { state lastError } }"


@asynccontextmanager
async def two(db_url: str, redis_url: str, tmp: Path) -> AsyncIterator[tuple[Process, ...]]:
    async with await start_simulated_server(["AMZN"], 11, 40.0) as upstream:
        async with deployment(db_url, redis_url, upstream.url, tmp, ("a", "b")) as procs:
            yield procs


async def fresh_quote(ws: GraphQLWS, op: str, after_ms: float, limit: float) -> None:
    """A quote received after ``after_ms`` (wall clock), on ``op``."""
    async with asyncio.timeout(limit):
        while True:
            message = await next_message(ws, op, limit)
            assert message["type"] == "next", message
            if message["payload"]["data"]["quotes"]["receivedAt"] > after_ms:
                return


async def status_until(ws: GraphQLWS, op: str, connected: bool, limit: float) -> dict[str, Any]:
    async with asyncio.timeout(limit):
        while True:
            message = await next_message(ws, op, limit)
            assert message["type"] == "next", message
            status: dict[str, Any] = message["payload"]["data"]["feedStatus"]
            if (status["state"] == "CONNECTED") is connected:
                return status


@pytest.mark.parametrize("outage_s", [0.5, 5.0], ids=["brief", "past-the-lease"])
async def test_redis_restart_is_announced_then_data_flows_again(
    fresh_database_url: str, redis_server: RedisServer, tmp_path: Path, outage_s: float
) -> None:
    """Briefly: the leader takes its lease back. Past the lease (3 s): the leader steps
    down and exits (its supervisor would start it again), the follower is elected. In
    both, a subscriber on the follower sees feedStatus leave CONNECTED, come back, and
    fresh quotes after."""
    async with two(fresh_database_url, redis_server.url, tmp_path) as (a, b):
        async with graphql_ws(b.ws) as ws:
            status = await ws.subscribe(STATUS)
            await status_until(ws, status, True, timeout(2))
            quotes = await ws.subscribe(QUOTES)
            await next_message(ws, quotes, timeout(2))
            redis_server.stop()
            await status_until(ws, status, False, timeout(1))
            await asyncio.sleep(outage_s)
            RedisServer(redis_server.port).start()
            back = time.time() * 1000
            await status_until(ws, status, True, timeout(2))
            await fresh_quote(ws, quotes, back, timeout(2))
        leader = await leader_of((a, b), timeout(2))
        if outage_s < 3.0:
            assert leader is a, "a brief outage must not move the lease"
        else:
            assert leader is b
            assert await a.server.proc.wait() == 75  # EX_TEMPFAIL: start me again


async def test_a_subscription_killed_by_redis_recovers_by_itself(
    fresh_database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """What Redis does to a subscriber past ``client-output-buffer-limit pubsub``: it
    closes the connection. The follower resubscribes and quotes flow again."""
    async with two(fresh_database_url, redis_server.url, tmp_path) as (_a, b):
        async with graphql_ws(b.ws) as ws:
            quotes = await ws.subscribe(QUOTES)
            await next_message(ws, quotes, timeout(2))
            client = aioredis.Redis.from_url(redis_server.url)
            try:
                killed = await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            finally:
                await client.aclose()
            assert killed >= 1
            await fresh_quote(ws, quotes, time.time() * 1000, timeout(2))


async def test_sigterm_closes_sockets_with_1012_and_hands_the_lease_over(
    fresh_database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    async with two(fresh_database_url, redis_server.url, tmp_path) as (a, b):
        async with graphql_ws(a.ws) as on_a, graphql_ws(b.ws) as on_b:
            quotes_a = await on_a.subscribe(QUOTES)
            await next_message(on_a, quotes_a, timeout(2))
            quotes_b = await on_b.subscribe(QUOTES)
            await next_message(on_b, quotes_b, timeout(2))
            a.server.proc.send_signal(signal.SIGTERM)
            stopped = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await on_a.recv(timeout(2))
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            # Graceful: it exits well within its grace period, with 0.
            async with asyncio.timeout(timeout(2)):
                assert await a.server.proc.wait() == 0
            # The lease was handed over, not left to expire: quotes on b from b itself.
            await wait_role(b, "leader", timeout(1))
            await fresh_quote(on_b, quotes_b, time.time() * 1000, timeout(2))
            handed = time.monotonic() - stopped
            print(f"\nSIGTERM to fresh quotes from the new leader: {handed:.2f} s")
            assert handed < timeout(2)


def _socket_of(url: str) -> tuple[str, str]:
    """The Unix socket of a pgserver URL (``...?host=<dir>``) and the URL's database."""
    parts = urlsplit(url)
    directory = parse_qs(parts.query)["host"][0]
    return f"{directory}/.s.PGSQL.{parts.port or 5432}", parts.path.lstrip("/")


async def test_postgres_unavailable_fails_fast_streams_on_and_loses_nothing(
    fresh_database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """PostgreSQL behind a proxy that is cut for a while: queries that need it fail at
    once with SERVICE_UNAVAILABLE, quotes keep streaming, the alert firings decided
    meanwhile are written once it is back, and the order accepted before is there."""
    target, database = _socket_of(fresh_database_url)
    proxy_dir = tmp_path / "pg"
    proxy_dir.mkdir()
    proxied = with_database(f"postgresql://postgres:@/postgres?host={proxy_dir}", database)
    async with (
        tcp_proxy(target, listen_path=str(proxy_dir / ".s.PGSQL.5432")) as proxy,
        await start_simulated_server(["AMZN"], 13, 40.0) as upstream,
        process("a", proxied, redis_server.url, upstream.url, tmp_path) as a,
    ):
        await wait_role(a, "leader", timeout(3))
        _, token = await elite_token(a.server.http, proxied)
        placed = await a.post(PLACE, token, input=MARKET_BUY)
        assert "errors" not in placed, placed
        alert = await a.post(
            """mutation($i: AlertInput!) { createAlert(input: $i) { id } }""",
            token,
            i={
                "symbol": "AMZN",
                "conditions": [{"left": {"price": "LAST"}, "op": "GREATER_THAN", "value": 1.0}],
                "trigger": {"mode": "EVERY_TIME", "cooldownMs": 0},
            },
        )
        assert "errors" not in alert, alert
        async with graphql_ws(a.ws, payload={"token": token}) as ws:
            quotes = await ws.subscribe(QUOTES)
            await next_message(ws, quotes, timeout(2))
            await proxy.cut()
            cut_ms = time.time() * 1000
            asked = time.monotonic()
            answer = await a.post("{ orders(first: 5) { edges { node { id } } } }", token)
            assert time.monotonic() - asked < timeout(0.5), "must fail fast"
            assert answer["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE", answer
            # Market data does not need the database.
            await fresh_quote(ws, quotes, cut_ms, timeout(2))
            await asyncio.sleep(1.0)  # firings are decided meanwhile
            await proxy.restore()
        status = "{ alertDelivery { decided written pending } }"

        async def delivery() -> dict[str, int]:
            body = await a.post(status, token)
            return body.get("data", {}).get("alertDelivery") or {}

        caught_up = await until(
            delivery,
            lambda d: bool(d) and d["pending"] == 0 and d["written"] >= d["decided"] > 0,
            "every firing decided during the outage to be written",
            timeout(3),
        )
        conn = await asyncpg.connect(proxied)
        try:
            firings = await conn.fetchval(
                "SELECT count(*) FROM alert_events WHERE fired_at >= to_timestamp($1 / 1000.0)",
                cut_ms,
            )
            orders = await conn.fetchval("SELECT count(*) FROM orders")
        finally:
            await conn.close()
        assert firings > 0, caught_up
        assert orders == 1
