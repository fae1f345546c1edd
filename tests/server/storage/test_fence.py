"""The leader's fence (migration 0010, ``server.storage.fence``) against a real
PostgreSQL: once a newer leader has claimed, every write of the older one to the
tables only the leader writes fails, statements under way finish first, and processes
that never claimed (one alone, followers) are not checked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from server.storage.database import Database
from server.storage.fence import DEPOSED, Deposed, claim
from tests.support.postgres import settings_for
from tests.support.timing import TIMEOUT

FENCED = "DELETE FROM orders WHERE false"  # a statement trigger fires for no rows too


@asynccontextmanager
async def process(url: str, tmp: Path, name: str) -> AsyncIterator[Database]:
    async with await Database.open(settings_for(url, tmp / name)) as db:
        yield db


async def test_a_newer_claim_fails_every_later_write_of_the_older_leader(
    fresh_database_url: str, tmp_path: Path
) -> None:
    async with (
        process(fresh_database_url, tmp_path, "a") as a,
        process(fresh_database_url, tmp_path, "b") as b,
    ):
        await claim(a, 5, "a")
        await a.pool.execute(FENCED)
        await claim(b, 6, "b")
        with pytest.raises(asyncpg.PostgresError) as refused:
            await a.pool.execute(FENCED)
        assert refused.value.sqlstate == DEPOSED
        assert "no longer leads" in str(refused.value)
        await b.pool.execute(FENCED)
        # Claiming below the current fence is refused: a stale leader cannot take back.
        with pytest.raises(Deposed):
            await claim(a, 4, "a")


async def test_a_claim_waits_for_the_older_leaders_statement_under_way(
    fresh_database_url: str, tmp_path: Path
) -> None:
    async with (
        process(fresh_database_url, tmp_path, "a") as a,
        process(fresh_database_url, tmp_path, "b") as b,
    ):
        await claim(a, 1, "a")
        async with a.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await conn.execute(FENCED)
            claiming = asyncio.create_task(claim(b, 2, "b"))
            done, _ = await asyncio.wait({claiming}, timeout=0.3)
            assert not done, "the claim must wait for the write under way"
            await tx.commit()  # the older leader's write is final before b reads
        async with asyncio.timeout(TIMEOUT):
            await claiming


async def test_processes_that_never_claimed_are_not_checked(
    fresh_database_url: str, tmp_path: Path
) -> None:
    async with (
        process(fresh_database_url, tmp_path, "a") as a,
        process(fresh_database_url, tmp_path, "b") as b,
    ):
        await claim(a, 3, "a")
        await b.pool.execute(FENCED)
