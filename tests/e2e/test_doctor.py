"""``tickgraph doctor`` as an operator runs it: a separate process, against real
PostgreSQL and Redis, the Polygon-protocol server, the fake Alpaca, and ports where
nothing listens. One line per finding, a failing status on failure, no secret printed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from server.auth.tokens import KEY_FILE_NAME, KeyRing
from server.storage.database import Database
from server.storage.migrations import load_migrations
from streams.polygon_server import PolygonProtocolServer, start_simulated_server
from tests.support.cli import clean_env, run_cli
from tests.support.fake_alpaca import FakeAlpaca
from tests.support.postgres import settings_for
from tests.support.redis import free_port

#: The migrations this version ships.
SHIPPED = len(load_migrations())

FAKE_SECRET = "doctor-secret-" + "x" * 30


@contextlib.asynccontextmanager
async def feed(api_keys: list[str] | None = None) -> AsyncIterator[PolygonProtocolServer]:
    server = await start_simulated_server(["AAPL"], 1, 10.0, api_keys=api_keys)
    try:
        yield server
    finally:
        await server.close()


def by_area(out: str) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for line in out.splitlines():
        status, area, message = line.split(None, 2)
        found.setdefault(area, []).append((status, message))
    return found


async def test_everything_reachable_is_ok(
    fresh_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    await (await Database.open(settings_for(fresh_database_url, tmp_path))).close()
    async with feed() as upstream, FakeAlpaca(secret=FAKE_SECRET) as alpaca:
        env = clean_env(
            DATABASE_URL=fresh_database_url,
            REDIS_URL=redis_url,
            POLYGON_WS_URL=upstream.url,
            ALPACA_API_KEY_ID=alpaca.key_id,
            ALPACA_API_SECRET_KEY=FAKE_SECRET,
            ALPACA_BASE_URL=alpaca.base_url,
            TICKGRAPH_DATA_DIR=str(tmp_path),
        )
        code, out, err = await run_cli("doctor", "--strict", env=env)
    assert code == 0, out + err
    found = by_area(out)
    assert list(found) == ["configuration", "database", "redis", "feed", "broker"]
    assert all(status == "ok" for lines in found.values() for status, _ in lines), out
    assert f"migrations current ({SHIPPED} applied)" in found["database"][0][1]
    assert "answers PING (Redis 7." in found["redis"][0][1]
    assert found["feed"][0][1] == f"replay at {upstream.url} reachable, authenticated"
    assert "account ACTIVE" in found["broker"][0][1]
    assert FAKE_SECRET not in out + err


async def test_each_unreachable_service_is_one_failing_line(
    postgres_url: str, tmp_path: Path
) -> None:
    dead = free_port()
    async with FakeAlpaca() as alpaca:
        env = clean_env(
            DATABASE_URL=f"postgresql://tickgraph:{FAKE_SECRET}@127.0.0.1:{dead}/tickgraph",
            REDIS_URL=f"redis://:{FAKE_SECRET}@127.0.0.1:{dead}/0",
            POLYGON_WS_URL=f"ws://127.0.0.1:{dead}/stocks",
            ALPACA_API_KEY_ID=alpaca.key_id,
            ALPACA_API_SECRET_KEY=FAKE_SECRET,  # not the fake's secret
            ALPACA_BASE_URL=alpaca.base_url,
            TICKGRAPH_DATA_DIR=str(tmp_path),
        )
        code, out, err = await run_cli("doctor", "--timeout", "2", env=env)
    assert code == 1
    found = by_area(out)
    assert [found[a][0][0] for a in ("database", "redis", "feed", "broker")] == ["fail"] * 4, out
    assert f"127.0.0.1:{dead}" in found["database"][0][1]
    assert "refused the credentials (401)" in found["broker"][0][1]
    assert FAKE_SECRET not in out + err
    assert len(out.splitlines()) == 5  # one line each


async def test_a_refused_feed_key_and_pending_migrations(
    fresh_database_url: str, tmp_path: Path
) -> None:
    async with feed(api_keys=["the-right-key-123"]) as upstream:
        env = clean_env(
            DATABASE_URL=fresh_database_url,  # never migrated
            POLYGON_WS_URL=upstream.url,
            POLYGON_API_KEY="the-wrong-key-456",
            TICKGRAPH_DATA_DIR=str(tmp_path),
        )
        code, out, _ = await run_cli("doctor", env=env)
    found = by_area(out)
    assert code == 1
    assert found["feed"] == [("fail", f"{upstream.url}: the API key was refused (auth_failed)")]
    status, message = found["database"][0]
    assert status == "warn" and f"{SHIPPED} migration(s) pending (0001_core.sql," in message
    assert "the-wrong-key-456" not in out


async def test_invalid_and_insecure_settings(tmp_path: Path) -> None:
    code, out, _ = await run_cli(
        "doctor", env=clean_env(TICKGRAPH_PORT="eighty", TICKGRAPH_DATA_DIR=str(tmp_path))
    )
    assert code == 1
    assert out.splitlines()[0].startswith("fail  configuration TICKGRAPH_PORT='eighty': ")
    assert out.splitlines()[-1].startswith("fail  doctor")

    KeyRing.load_or_create(tmp_path / KEY_FILE_NAME)
    os.chmod(tmp_path / KEY_FILE_NAME, 0o644)
    env = clean_env(
        TICKGRAPH_ENV="production",
        TICKGRAPH_METRICS="true",
        TICKGRAPH_DATA_DIR=str(tmp_path),
    )
    code, out, _ = await run_cli("doctor", env=env)
    assert code == 1
    problems = [m for s, m in by_area(out)["configuration"] if s == "fail"]
    assert any("readable by others (mode 0644)" in m for m in problems), out
    assert any("without TICKGRAPH_METRICS_TOKEN" in m for m in problems), out
    warnings = [m for s, m in by_area(out)["configuration"] if s == "warn"]
    assert any("embedded PostgreSQL is for development" in m for m in warnings), out
