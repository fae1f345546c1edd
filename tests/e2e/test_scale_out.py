"""Three real ``tickgraph serve`` processes, one Redis, one PostgreSQL: a user cannot
tell which process they are connected to.

- ticks the leader ingested reach a quotes subscriber on a follower;
- an alert created through one follower fires exactly once to a subscriber on another;
- an order placed on the leader, and one relayed from a follower, stream their fills
  to a subscriber on a follower;
- the leader killed with SIGKILL: another process takes the lease, subscribers on the
  survivors receive quotes again within the issue's 5 s, and what needs the leader is
  served again.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from streams.polygon_server import start_simulated_server
from tests.support.deployment import (
    MARKET_BUY,
    PLACE,
    Process,
    deployment,
    process,
    redis_server,
    wait_role,
)
from tests.support.graphql_ws import GraphQLWS, graphql_ws
from tests.support.redis import RedisServer
from tests.support.server_process import elite_token, until
from tests.support.timing import timeout

__all__ = ["redis_server"]  # the fixture

QUOTES = 'subscription { quotes(symbols: ["AMZN"]) { symbol bidPrice askPrice } }'
ALERT_EVENTS = "subscription { alertEvents { alertId symbol key } }"
ORDER_UPDATES = (
    "subscription { orderUpdates { cursor kind order { id status } fill { qty price } } }"
)
ORDER_UPDATES_AFTER = (
    "subscription($after: String) { orderUpdates(after: $after) "
    "{ cursor kind order { id status } fill { qty price } } }"
)
CREATE_ALERT = """mutation($i: AlertInput!) { createAlert(input: $i) { id } }"""
FEED_TOPICS = "{ feedStatus { topics } }"
MSFT_QUOTES = 'subscription { quotes(symbols: ["MSFT"]) { symbol bidPrice } }'
GAPS = '{ barGaps(symbol: "AMZN") { from to reason } }'


async def next_of(ws: GraphQLWS, op: str, limit: float) -> dict[str, Any]:
    return await ws.next_data(op, timeout=limit)


@asynccontextmanager
async def three(db_url: str, redis_url: str, tmp: Path) -> AsyncIterator[tuple[Process, ...]]:
    async with await start_simulated_server(["AMZN"], 7, 40.0) as upstream:
        async with deployment(db_url, redis_url, upstream.url, tmp, ("a", "b", "c")) as procs:
            yield procs


async def test_three_processes_serve_one_market(
    fresh_database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    async with three(fresh_database_url, redis_server.url, tmp_path) as (a, b, c):
        _, token = await elite_token(a.server.http, fresh_database_url)
        auth = {"authorization": f"Bearer {token}"}
        async with (
            graphql_ws(b.ws, payload={"token": token}) as on_b,
            graphql_ws(c.ws, payload={"token": token}) as on_c,
        ):
            # Exactly one process leads; each exports its Redis bus.
            for proc, leads in ((a, 1.0), (b, 0.0), (c, 0.0)):
                text = (await proc.server.http.get("/metrics")).text
                assert f"tickgraph_leader {leads}" in text, proc.name
                assert "tickgraph_bus_connected 1.0" in text, proc.name

            # Ticks the leader ingested, on a follower (the current quote first).
            quotes = await on_b.subscribe(QUOTES)
            first = (await next_of(on_b, quotes, timeout(2)))["quotes"]
            assert first["symbol"] == "AMZN"
            await on_b.complete(quotes)

            # A quote query on a follower is served from its own copy.
            quote = await b.server.http.post(
                "/graphql", json={"query": '{ quote(symbol: "AMZN") { bidPrice } }'}, headers=auth
            )
            assert quote.json()["data"]["quote"]["bidPrice"] is not None

            # An alert created through C fires exactly once to a subscriber on B.
            events = await on_b.subscribe(ALERT_EVENTS)
            cond = [{"left": {"price": "LAST"}, "op": "GREATER_THAN", "value": 1.0}]
            made = await c.server.http.post(
                "/graphql",
                json={
                    "query": CREATE_ALERT,
                    "variables": {"i": {"symbol": "AMZN", "conditions": cond}},
                },
                headers=auth,
            )
            alert_id = made.json()["data"]["createAlert"]["id"]
            fired = (await next_of(on_b, events, timeout(3)))["alertEvents"]
            assert fired["alertId"] == alert_id
            with pytest.raises(TimeoutError):
                # A ONCE alert: nothing more, from any process.
                extra = await next_of(on_b, events, 1.5)
                raise AssertionError(f"fired twice: {extra}")

            # An order placed on the leader, and one through follower C, stream their
            # fills to a subscriber on follower B.
            updates = await on_b.subscribe(ORDER_UPDATES)
            placed = []
            for proc in (a, c):
                answer = await proc.server.http.post(
                    "/graphql",
                    json={"query": PLACE, "variables": {"input": MARKET_BUY}},
                    headers=auth,
                )
                body = answer.json()
                assert "errors" not in body, body
                placed.append(body["data"]["placeOrder"]["id"])
            filled: set[str] = set()
            cursors: list[str] = []
            while filled != set(placed):
                update = (await next_of(on_b, updates, timeout(3)))["orderUpdates"]
                cursors.append(update["cursor"])
                if update["kind"] == "FILL":
                    assert update["fill"]["qty"] == "3"
                    filled.add(update["order"]["id"])
            assert len(cursors) == len(set(cursors)), "an update came twice"
            await on_b.complete(updates)

            # Resumed on C from the last cursor B received, while another order is
            # placed through B: what came meanwhile first, nothing twice, no gap.
            answer = await b.post(PLACE, token, input=MARKET_BUY)
            assert "errors" not in answer, answer
            third = answer["data"]["placeOrder"]["id"]
            resumed = await on_c.subscribe(ORDER_UPDATES_AFTER, {"after": cursors[-1]})
            seen: list[dict[str, Any]] = []
            while not any(u["kind"] == "FILL" and u["order"]["id"] == third for u in seen):
                seen.append((await next_of(on_c, resumed, timeout(3)))["orderUpdates"])
            assert all(u["order"]["id"] == third for u in seen), seen
            resumed_cursors = [u["cursor"] for u in seen]
            assert len(resumed_cursors) == len(set(resumed_cursors))
            assert not set(resumed_cursors) & set(cursors)


async def test_the_leader_killed_another_takes_over_and_quotes_flow_again(
    fresh_database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    async with three(fresh_database_url, redis_server.url, tmp_path) as (a, b, c):
        _, token = await elite_token(b.server.http, fresh_database_url)
        auth = {"authorization": f"Bearer {token}"}
        async with graphql_ws(c.ws, payload={"token": token}) as on_c:
            quotes = await on_c.subscribe(QUOTES)
            await next_of(on_c, quotes, timeout(2))
            a.server.proc.send_signal(signal.SIGKILL)
            killed, killed_ms = time.monotonic(), time.time() * 1000
            await a.server.proc.wait()
            # Quotes again on the surviving follower, from the new leader.
            while True:
                message = await on_c.recv(timeout(2))
                if message.get("type") == "next" and time.monotonic() - killed > 0.2:
                    break
            gap = time.monotonic() - killed
            print(f"\nquotes resumed on a survivor {gap:.2f} s after the leader's SIGKILL")
            assert gap <= 5.0 * max(1.0, timeout(0.1)), f"quotes stopped for {gap:.1f} s"
            roles = {p.name: await p.role() for p in (b, c)}
            assert sorted(roles.values()) == ["follower", "leader"], roles

            # The new leader announces the window nobody ingested on the bars stream.
            # (Here "start": the dead leader had stored no bar yet, so the gap runs from
            # the day's start; with stored bars it is a "restart" from the last one.)
            # It is recorded with the new leader's first trade.
            async def gaps() -> list[dict[str, Any]]:
                body = await b.post(GAPS, token)
                return list((body.get("data") or {}).get("barGaps") or [])

            await until(
                gaps,
                lambda found: any(g["from"] <= killed_ms <= g["to"] for g in found),
                "the gap of the takeover on barGaps",
                timeout(2),
            )
            # What needs the leader works again, on either survivor.
            for proc in (b, c):
                answer = await proc.server.http.post(
                    "/graphql",
                    json={"query": PLACE, "variables": {"input": MARKET_BUY}},
                    headers=auth,
                )
                assert "errors" not in answer.json(), answer.json()


async def test_a_followers_symbol_outside_the_universe_is_subscribed_upstream_while_wanted(
    fresh_database_url: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The leader subscribes upstream to what any process's clients stream, and drops it
    when the last one leaves."""
    extra = {"POLYGON_API_KEY": "any-key-the-fake-accepts"}
    async with await start_simulated_server(["AMZN", "MSFT"], 5, 40.0) as upstream:
        url = upstream.url
        async with process("a", fresh_database_url, redis_server.url, url, tmp_path, **extra) as a:
            await wait_role(a, "leader", timeout(3))
            # A symbol this deployment knows (as Polygon's reference data would add it),
            # outside the universe it always streams.
            conn = await asyncpg.connect(fresh_database_url)
            try:
                await conn.execute(
                    "INSERT INTO symbols (symbol, source) VALUES ('MSFT', 'reference')"
                )
            finally:
                await conn.close()
            async with process(
                "b", fresh_database_url, redis_server.url, url, tmp_path, **extra
            ) as b:
                await wait_role(b, "follower", timeout(1))

                async def topics() -> list[str]:
                    body = await a.server.http.post("/graphql", json={"query": FEED_TOPICS})
                    return list(body.json()["data"]["feedStatus"]["topics"])

                assert "Q.MSFT" not in await topics()
                async with graphql_ws(b.ws) as on_b:
                    op = await on_b.subscribe(MSFT_QUOTES)
                    first = (await next_of(on_b, op, timeout(3)))["quotes"]
                    assert first["symbol"] == "MSFT"
                    assert "Q.MSFT" in await topics()
                    await on_b.complete(op)
                await until(topics, lambda t: "Q.MSFT" not in t, "MSFT dropped", timeout(2))
