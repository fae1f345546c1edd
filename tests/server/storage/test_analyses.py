"""Analyses in PostgreSQL: the quota taken under concurrency, stale rows released, the
answer cache, keyset pagination, usage per day, and preferences on the user."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from server.analysis.check import checked_result
from server.analysis.result import Assessment, Stance, Usage
from server.analysis.snapshot import Preferences, RiskTolerance, Style, encode, fingerprint
from server.errors import InvalidInput
from server.storage import analyses as store
from server.storage.analyses import Refusal, Status
from server.storage.database import Database
from tests.server.analysis.helpers import make_snapshot
from tests.support.users import insert_user

DAY = datetime(2024, 6, 5, tzinfo=UTC)


async def new_user(db: Database) -> uuid.UUID:
    return await insert_user(db.pool)


async def reserve(
    db: Database, user: uuid.UUID, *, limit: int = 5, max_running: int = 10, subject: str = "NVDA"
) -> tuple[uuid.UUID, store.Reservation]:
    analysis_id = uuid.uuid4()
    got = await store.reserve(
        db.pool,
        analysis_id=analysis_id,
        user_id=user,
        subject=subject,
        question="Why?",
        question_key="why?",
        analyst="rule-based",
        limit=limit,
        max_running=max_running,
        day_start=DAY,
        stale_before=DAY - timedelta(days=365),
    )
    return analysis_id, got


def result_for(prose: str = "Price $100.00."):  # type: ignore[no-untyped-def]
    return checked_result(Assessment(prose, Stance.NEUTRAL, 40, []), make_snapshot(), "rule-based")


async def complete(
    db: Database, analysis_id: uuid.UUID, *, usage: Usage | None = None, charged: bool = True
) -> None:
    snapshot = make_snapshot()
    await store.finish(
        db.pool,
        analysis_id,
        status=Status.COMPLETED,
        charged=charged,
        fingerprint=fingerprint(snapshot),
        snapshot_json=encode(snapshot),
        result=result_for(),
        usage=usage or Usage(input_tokens=10, output_tokens=5, cost_usd=Decimal("0.000105")),
    )


async def test_the_quota_counts_charged_and_running_analyses(database: Database) -> None:
    user = await new_user(database)
    first, r1 = await reserve(database, user, limit=2)
    assert r1.refused is None and (r1.used_today, r1.running) == (0, 0)
    _, r2 = await reserve(database, user, limit=2)
    assert r2.refused is None and r2.running == 1
    _, r3 = await reserve(database, user, limit=2)
    assert r3.refused is Refusal.QUOTA  # two running hold both places
    await complete(database, first)
    _, r4 = await reserve(database, user, limit=2)
    assert r4.refused is Refusal.QUOTA and (r4.used_today, r4.running) == (1, 1)


async def test_failures_and_free_answers_are_not_charged(database: Database) -> None:
    user = await new_user(database)
    failed, _ = await reserve(database, user, limit=1)
    await store.finish(
        database.pool,
        failed,
        status=Status.FAILED,
        charged=False,
        error_code="ANALYST_UNAVAILABLE",
        usage=Usage(input_tokens=1200, output_tokens=3, cost_usd=Decimal("0.003645")),
    )
    cached, r = await reserve(database, user, limit=1)
    assert r.refused is None and r.used_today == 0
    await complete(database, cached, charged=False)
    _, again = await reserve(database, user, limit=1)
    assert again.refused is None
    totals = await store.usage_since(database.pool, user_id=user, since=DAY)
    assert (totals.charged, totals.failed, totals.input_tokens) == (0, 1, 1210)
    assert totals.cost_usd == Decimal("0.003750")


async def test_concurrent_reservations_never_pass_the_limit(database: Database) -> None:
    user = await new_user(database)
    results = await asyncio.gather(*(reserve(database, user, limit=3) for _ in range(20)))
    assert sum(1 for _, r in results if r.refused is None) == 3
    count = await database.pool.fetchval("SELECT count(*) FROM analyses WHERE user_id = $1", user)
    assert count == 3


async def test_running_at_once_is_capped(database: Database) -> None:
    user = await new_user(database)
    await reserve(database, user, max_running=1)
    _, refused = await reserve(database, user, max_running=1)
    assert refused.refused is Refusal.CONCURRENCY


async def test_a_stale_running_row_is_released(database: Database) -> None:
    user = await new_user(database)
    stale, _ = await reserve(database, user, limit=1)
    await database.pool.execute(
        "UPDATE analyses SET created_at = now() - interval '1 hour' WHERE id = $1", stale
    )
    analysis_id = uuid.uuid4()
    got = await store.reserve(
        database.pool,
        analysis_id=analysis_id,
        user_id=user,
        subject="NVDA",
        question="",
        question_key="",
        analyst="rule-based",
        limit=1,
        max_running=1,
        day_start=datetime.now(UTC) - timedelta(days=1),
        stale_before=datetime.now(UTC) - timedelta(minutes=5),
    )
    assert got.refused is None
    row = await store.get(database.pool, user_id=user, analysis_id=stale)
    assert row is not None and row.status is Status.FAILED and row.error_code == "ABANDONED"


async def test_finish_happens_once_and_round_trips(database: Database) -> None:
    user = await new_user(database)
    analysis_id, _ = await reserve(database, user)
    await complete(database, analysis_id)
    # A late cancellation record does not overwrite the completed analysis.
    await store.finish(database.pool, analysis_id, status=Status.CANCELLED, charged=False)
    row = await store.get(database.pool, user_id=user, analysis_id=analysis_id)
    assert row is not None and row.status is Status.COMPLETED and row.charged
    assert row.snapshot == make_snapshot()
    assert row.fingerprint == fingerprint(make_snapshot())
    assert row.result == result_for()
    assert row.usage == Usage(input_tokens=10, output_tokens=5, cost_usd=Decimal("0.000105"))
    assert row.question == "Why?" and row.finished_at is not None
    # Scoped by user: someone else's id finds nothing.
    assert (
        await store.get(database.pool, user_id=await new_user(database), analysis_id=analysis_id)
        is None
    )


async def test_the_cache_finds_a_recent_identical_answer(database: Database) -> None:
    user = await new_user(database)
    analysis_id, _ = await reserve(database, user)
    await complete(database, analysis_id)
    fp = fingerprint(make_snapshot())
    found = await store.find_cached(
        database.pool,
        subject="NVDA",
        fingerprint=fp,
        question_key="why?",
        analyst="rule-based",
        since=datetime.now(UTC) - timedelta(minutes=1),
    )
    assert found == result_for()
    for change in (
        {"subject": "AMZN"},
        {"fingerprint": "0" * 64},
        {"question_key": "why not?"},
        {"analyst": "claude-sonnet-4-6"},
        {"since": datetime.now(UTC) + timedelta(seconds=1)},
        {"since": await database.pool.fetchval("SELECT created_at FROM analyses")},
    ):
        query = {
            "subject": "NVDA",
            "fingerprint": fp,
            "question_key": "why?",
            "analyst": "rule-based",
            "since": datetime.now(UTC) - timedelta(minutes=1),
            **change,
        }
        assert await store.find_cached(database.pool, **query) is None, change


async def test_keyset_pagination_newest_first(database: Database) -> None:
    user = await new_user(database)
    ids = []
    for _ in range(7):
        analysis_id, _ = await reserve(database, user, limit=100)
        await complete(database, analysis_id)
        ids.append(analysis_id)
    failed, _ = await reserve(database, user, limit=100)
    await store.finish(database.pool, failed, status=Status.FAILED, charged=False)
    # Same created_at for several rows: the id breaks the tie, nothing is skipped or repeated.
    await database.pool.execute("UPDATE analyses SET created_at = $2 WHERE user_id = $1", user, DAY)
    seen: list[uuid.UUID] = []
    after = None
    while True:
        items, more = await store.page(database.pool, user_id=user, after=after, first=3)
        seen += [i.id for i in items]
        if not more:
            break
        after = items[-1].cursor
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    everything, _ = await store.page(
        database.pool, user_id=user, after=None, first=20, statuses=tuple(Status)
    )
    assert len(everything) == 8
    with pytest.raises(InvalidInput, match="invalid cursor"):
        await store.page(database.pool, user_id=user, after="not-a-cursor!", first=3)


async def test_preferences_live_on_the_user(database: Database) -> None:
    user = await new_user(database)
    assert await store.get_preferences(database.pool, user_id=user) == Preferences()
    prefs = Preferences(Style.DAY, RiskTolerance.HIGH)
    assert await store.set_preferences(database.pool, user_id=user, preferences=prefs)
    assert await store.get_preferences(database.pool, user_id=user) == prefs
    assert await store.set_preferences(database.pool, user_id=user, preferences=Preferences())
    assert await store.get_preferences(database.pool, user_id=user) == Preferences()
    assert not await store.set_preferences(database.pool, user_id=uuid.uuid4(), preferences=prefs)


async def test_the_database_refuses_what_slips_past(database: Database) -> None:
    import asyncpg

    user = await new_user(database)
    with pytest.raises(asyncpg.CheckViolationError):
        await database.pool.execute("UPDATE users SET analysis_style = 'scalp' WHERE id = $1", user)
    analysis_id, _ = await reserve(database, user)
    with pytest.raises(asyncpg.CheckViolationError):
        await database.pool.execute(
            "UPDATE analyses SET status = 'completed', finished_at = now() WHERE id = $1",
            analysis_id,
        )
