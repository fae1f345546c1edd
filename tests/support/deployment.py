"""Several real ``tickgraph serve`` processes sharing one Redis and one PostgreSQL, for
the scale-out tests: each on its own port, advertising it, with the signing keys an
operator would give them all."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.auth.tokens import KeyRing
from tests.support.graphql_ws import GraphQLWS
from tests.support.redis import RedisServer, free_port
from tests.support.server_process import Server, server_env, tickgraph, until
from tests.support.timing import timeout

PLACE = """mutation($input: OrderInput!) { placeOrder(input: $input) { id status } }"""
MARKET_BUY = {"symbol": "AMZN", "side": "BUY", "type": "MARKET", "timeInForce": "DAY", "qty": "3"}


@dataclass
class Process:
    name: str
    port: int
    server: Server

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    async def role(self) -> str:
        """``leader``, ``follower`` (from /readyz), ``starting`` or ``down``."""
        if self.server.proc.returncode is not None:
            return "down"
        try:
            body = (await self.server.http.get("/readyz")).json()
        except httpx.HTTPError:
            return "down"
        role: str = body.get("role", "starting")
        return role

    async def post(self, query: str, token: str, **variables: Any) -> dict[str, Any]:
        answer = await self.server.http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {token}"},
        )
        body: dict[str, Any] = answer.json()
        return body


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A Redis of the test's own, to stop and restart."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()
        server.remove()


def shared_keys(tmp: Path) -> str:
    path = tmp / "keys.pem"
    if not path.exists():
        KeyRing.load_or_create(path)
    return path.read_text()


@asynccontextmanager
async def process(
    name: str, db_url: str, redis_url: str, upstream: str, tmp: Path, **extra: str
) -> AsyncIterator[Process]:
    port = free_port()
    (tmp / name).mkdir(parents=True, exist_ok=True)
    env = server_env(
        db_url,
        upstream,
        tmp / name,
        REDIS_URL=redis_url,
        TICKGRAPH_ADVERTISE_URL=f"http://127.0.0.1:{port}",
        TICKGRAPH_TRADING_CALENDAR="continuous",
        TICKGRAPH_JWT_PRIVATE_KEYS=shared_keys(tmp),
        **extra,
    )
    async with tickgraph(env, tmp / f"{name}.log", port=port) as server:
        yield Process(name, port, server)


async def wait_role(proc: Process, role: str, limit: float) -> None:
    await until(proc.role, lambda r: r == role, f"{proc.name} to be {role}", limit)


async def leader_of(procs: tuple[Process, ...], limit: float) -> Process:
    async def roles() -> list[str]:
        return [await p.role() for p in procs]

    found = await until(roles, lambda r: "leader" in r, "a leader", limit)
    return procs[found.index("leader")]


@asynccontextmanager
async def deployment(
    db_url: str, redis_url: str, upstream: str, tmp: Path, names: tuple[str, ...], **extra: str
) -> AsyncIterator[tuple[Process, ...]]:
    """The first process leads (started alone, waited for), the others follow."""
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            process(names[0], db_url, redis_url, upstream, tmp, **extra)
        )
        await wait_role(first, "leader", timeout(3))
        rest = await asyncio.gather(
            *(
                stack.enter_async_context(process(n, db_url, redis_url, upstream, tmp, **extra))
                for n in names[1:]
            )
        )
        for proc in rest:
            await wait_role(proc, "follower", timeout(1))
        yield (first, *rest)


async def next_message(ws: GraphQLWS, op: str, limit: float) -> dict[str, Any]:
    """The next message for ``op`` (pings answered), whatever its type."""
    while True:
        message = await ws.recv(limit)
        if message.get("type") == "ping":
            await ws.send({"type": "pong"})
            continue
        if message.get("id") == op:
            return message
