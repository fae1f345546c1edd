"""A real ``tickgraph`` server process against a database that outlives it: started,
killed with SIGKILL (or stopped with SIGTERM) and started again, for crash tests."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from tests.support.accounts import LOGIN, PASSWORD, bearer, sign_up
from tests.support.cli import LISTENING, clean_env
from tests.support.timing import TIMEOUT

T = TypeVar("T")


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    http: httpx.AsyncClient
    log: Path


@asynccontextmanager
async def tickgraph(env: dict[str, str], log: Path, port: int = 0) -> AsyncIterator[Server]:
    """``python -m server.cli serve`` with its log in a file (a pipe nobody reads would
    fill up and stall a server logging every decision), on ``port`` (0: any free one)."""
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.cli",
            "serve",
            "--port",
            str(port),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=sink,
        )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT * 6):
            while not (match := LISTENING.search(line := (await proc.stdout.readline()).decode())):
                if not line:  # stdout closed: it exited (or is about to)
                    await proc.wait()
                    text = await asyncio.to_thread(log.read_text)
                    raise AssertionError(f"server exited: {text[-3000:]}")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{match.group(1)}") as http:
            yield Server(proc, http, log)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def until(
    read: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    what: str,
    limit: float,
    every_s: float = 0.05,
) -> T:
    """Poll ``read()`` until ``done`` says yes; fail naming ``what`` after ``limit`` s."""
    try:
        async with asyncio.timeout(limit):
            while True:
                value = await read()
                if done(value):
                    return value
                await asyncio.sleep(every_s)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def server_env(
    db_url: str, upstream_url: str, tmp: Path, symbols: str = "AMZN", **extra: str
) -> dict[str, str]:
    """A server of ``symbols`` fed by ``upstream_url``, on ``db_url``, its data under ``tmp``."""
    return clean_env(
        DATABASE_URL=db_url,
        POLYGON_WS_URL=upstream_url,
        TICKGRAPH_SYMBOLS=symbols,
        TICKGRAPH_DATA_DIR=str(tmp / "data"),
        **extra,
    )


async def gql(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    """The data of a GraphQL operation that must succeed."""
    body = (await http.post("/graphql", json={"query": query, "variables": variables})).json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def elite_token(http: httpx.AsyncClient, db_url: str) -> tuple[str, str]:
    """A signed-up user raised to the elite tier (as an administrator would): its id and
    an access token that carries the tier."""
    account = await sign_up(http)
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "UPDATE users SET tier = 'elite' WHERE id = $1", uuid.UUID(account["id"])
        )
    finally:
        await conn.close()
    login = await gql(http, LOGIN, e=account["email"], p=PASSWORD)
    token: str = login["login"]["accessToken"]
    return str(account["id"]), token


async def elite_user(http: httpx.AsyncClient, db_url: str) -> str:
    """As ``elite_token``, and ``http`` sends the token from now on."""
    _, token = await elite_token(http, db_url)
    http.headers.update(bearer(token))
    return token
