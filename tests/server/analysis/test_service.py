"""The analysis service end to end below GraphQL: real PostgreSQL, the real history and
market state, the offline analyst and the real ``AsyncAnthropic`` against the fake API."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from server.analysis.errors import AnalysisInvalid, AnalystUnavailable, IdeaNotActionable
from server.analysis.result import ResultReady, TextDelta, Usage, Verdict
from server.analysis.service import AnalysisService
from server.analysis.snapshot import (
    AccountView,
    PortfolioSnapshot,
    Preferences,
    RiskTolerance,
    Style,
    SymbolSnapshot,
    fingerprint,
)
from server.errors import InvalidInput, InvalidSymbol, LimitExceeded
from server.limits.errors import RateLimited
from server.limits.tiers import ANONYMOUS, FREE, PRO
from server.storage import alerts as alert_store
from server.storage.analyses import Status
from tests.server.analysis.conftest import Env, anthropic_for, long_, new_user
from tests.server.analysis.helpers import eventually, stop_order
from tests.support.fake_anthropic import FakeAnthropic, Script
from tests.support.timing import TIMEOUT


async def run(
    service: AnalysisService,
    user: uuid.UUID,
    symbol: str | None = "NVDA",
    question: str = "",
    limits: Any = PRO,
) -> list[Any]:
    return [
        c
        async for c in service.stream(user_id=user, limits=limits, symbol=symbol, question=question)
    ]


def shape(chunks: list[Any]) -> list[str]:
    out: list[str] = []
    for c in chunks:
        name = type(c).__name__
        if not out or out[-1] != name or name != "TextDelta":
            out.append(name)
    return out


# ------------------------------------------------------------------ offline analyst


async def test_offline_analysis_streams_checks_and_stores(env: Env) -> None:
    service = env.make()
    user = await new_user(env.db)
    chunks = await run(service, user)
    assert shape(chunks) == ["TextDelta", "ResultReady", "Usage"]
    ready: ResultReady = chunks[-2]
    assert ready.result.analyst == "rule-based"
    assert ready.result.check.verdict is Verdict.PASSED, ready.result.check
    assert "".join(c.text for c in chunks if isinstance(c, TextDelta)) == ready.result.rationale
    assert isinstance(ready.snapshot, SymbolSnapshot) and ready.snapshot.symbol == "NVDA"
    assert ready.fingerprint == fingerprint(ready.snapshot)
    stored = await service.get(user_id=user, analysis_id=uuid.UUID(ready.analysis_id))
    assert stored.status is Status.COMPLETED and stored.charged and not stored.cached
    assert stored.snapshot == ready.snapshot and stored.result == ready.result
    usage = await service.usage(user_id=user, limits=PRO)
    assert (usage.analyses_used, usage.analyses_remaining) == (1, 99)
    assert usage.resets_at.isoformat() == "2024-06-06T00:00:00+00:00"


async def test_the_same_snapshot_gives_the_same_bytes(env: Env) -> None:
    service = env.make(cache_ttl_s=0)  # no cache: both are computed
    user = await new_user(env.db)
    encoder = msgspec.json.Encoder()

    def payload(chunks: list[Any]) -> list[bytes]:
        return [
            encoder.encode(
                msgspec.structs.replace(c, analysis_id="-") if isinstance(c, ResultReady) else c
            )
            for c in chunks
        ]

    first, second = await run(service, user), await run(service, user)
    assert payload(first) == payload(second)


async def test_a_portfolio_review_snapshots_every_position(env: Env) -> None:
    service = env.make()
    user = await new_user(env.db)
    env.book.accounts[user] = AccountView(Decimal(100_000), Decimal(40_000))
    env.book.positions[user] = [
        long_("AAPL", 50, "180.00", 190.0),
        long_("MSFT", 20, "400.00", 410.0),
        long_("NVDA", 30, "100.00", 120.0),
    ]
    env.book.orders[user] = [stop_order("NVDA-1", "sell", "30", "110.00")]
    chunks = await run(service, user, symbol=None)
    ready: ResultReady = chunks[-2]
    snapshot = ready.snapshot
    assert isinstance(snapshot, PortfolioSnapshot)
    assert [h.symbol for h in snapshot.holdings] == ["AAPL", "MSFT", "NVDA"]
    nvda = snapshot.holdings[2]
    assert nvda.position_risk is not None and nvda.position_risk.protective_stop == Decimal(
        "110.00"
    )
    assert all(len(s.bars) <= 5 for h in snapshot.holdings for s in h.series)
    assert snapshot.exposure.gross == Decimal("21300.00")
    assert ready.result.trade_idea is None
    assert ready.result.check.verdict is Verdict.PASSED, ready.result.check


async def test_preferences_and_alerts_reach_the_snapshot(env: Env) -> None:
    service = env.make()
    user = await new_user(env.db)
    await service.set_preferences(
        user_id=user, preferences=Preferences(Style.DAY, RiskTolerance.LOW)
    )
    await alert_store.insert_alert(
        env.db.pool,
        alert_id=uuid.uuid4(),
        owner=str(user),
        symbol="NVDA",
        definition={
            "symbol": "NVDA",
            "conditions": [{"left": "LAST", "op": "crossingUp", "value": 999.5}],
        },
        enabled=True,
        expires_at=None,
        max_per_owner=10,
    )
    chunks = await run(service, user)
    snapshot = chunks[-2].snapshot
    assert snapshot.preferences == Preferences(Style.DAY, RiskTolerance.LOW)
    assert [s.timeframe for s in snapshot.series] == ["5m", "1d"]
    assert [a.levels for a in snapshot.alerts] == [(999.5,)]


async def test_an_order_from_the_idea(env: Env) -> None:
    service = env.make()
    user = await new_user(env.db)
    env.book.accounts[user] = AccountView(Decimal(50_000), Decimal(50_000))
    for symbol in ("NVDA", "AAPL", "MSFT", "AMZN"):
        ready = (await run(service, user, symbol=symbol))[-2]
        if ready.result.trade_idea is not None:
            break
    else:
        # The simulated history is a fixed function of (seed, symbol, bar start) and the
        # clock is fixed: this cannot change from one run to the next.
        pytest.fail("the offline analyst gave no trade idea for any of the four symbols")
    idea = ready.result.trade_idea
    order = await service.order_from_idea(user_id=user, analysis_id=uuid.UUID(ready.analysis_id))
    assert order["symbol"] == symbol and order["side"] == idea.side
    assert order["orderClass"] == "bracket" and order["type"] == "limit"
    assert Decimal(order["qty"]) >= 1  # type: ignore[arg-type]
    explicit = await service.order_from_idea(
        user_id=user, analysis_id=uuid.UUID(ready.analysis_id), qty=Decimal(3)
    )
    assert explicit["qty"] == "3"
    other = await new_user(env.db)
    with pytest.raises(Exception, match="no analysis"):
        await service.order_from_idea(user_id=other, analysis_id=uuid.UUID(ready.analysis_id))


async def test_no_idea_no_order(env: Env, fake: FakeAnthropic) -> None:
    service = env.make(anthropic_for(fake))
    user = await new_user(env.db)
    ready = (await run(service, user))[-2]  # the fake's default answer has no idea
    with pytest.raises(IdeaNotActionable, match="no trade idea"):
        await service.order_from_idea(user_id=user, analysis_id=uuid.UUID(ready.analysis_id))


# ------------------------------------------------------------------ Anthropic analyst


async def test_anthropic_analysis_streams_in_order_and_records_usage(
    env: Env, fake: FakeAnthropic
) -> None:
    fake.default = Script.slow(0.0, chunk_chars=6)
    service = env.make(anthropic_for(fake))
    user = await new_user(env.db)
    chunks = await run(service, user, question="Is it a buy?")
    assert shape(chunks) == ["TextDelta", "ResultReady", "Usage"]
    ready, usage = chunks[-2], chunks[-1]
    assert ready.result.analyst == "claude-sonnet-4-6"
    assert ready.result.check.verdict is Verdict.PASSED
    assert usage.input_tokens > 0 and not usage.cached
    stored = await service.get(user_id=user, analysis_id=uuid.UUID(ready.analysis_id))
    assert stored.usage == usage and stored.question == "Is it a buy?"
    today = await service.usage(user_id=user, limits=FREE)
    assert today.analyses_used == 1 and today.output_tokens == usage.output_tokens
    assert today.cost_usd == usage.cost_usd


async def test_unverified_figures_reach_the_result(env: Env, fake: FakeAnthropic) -> None:
    fake.answer = lambda body: {
        "rationale": "Resistance at $987.65 caps it; the last trade was at the usual level.",
        "stance": "bearish",
        "confidence": 55,
        "keyLevels": [],
        "tradeIdea": None,
    }
    service = env.make(anthropic_for(fake))
    ready = (await run(service, await new_user(env.db)))[-2]
    assert ready.result.check.verdict is Verdict.UNVERIFIED_FIGURES
    assert [f.text for f in ready.result.check.unverified_figures] == ["$987.65"]


async def test_an_identical_request_is_served_from_the_cache(env: Env, fake: FakeAnthropic) -> None:
    service = env.make(anthropic_for(fake), cache_ttl_s=60)
    user = await new_user(env.db)
    first = await run(service, user, question="Trend?")
    requests = len(fake.requests)
    second = await run(service, user, question="  trend?  ")  # the same question
    assert len(fake.requests) == requests  # no tokens
    assert shape(second) == shape(first)
    assert second[-1] == Usage(cached=True)
    assert second[-2].result == first[-2].result
    assert [c for c in second if isinstance(c, TextDelta)]
    today = await service.usage(user_id=user, limits=PRO)
    assert (today.analyses_used, today.cached) == (1, 1)
    # Another user asking the same about the same snapshot shares the answer.
    await run(service, await new_user(env.db), question="trend?")
    assert len(fake.requests) == requests
    # After the time to live, or with another question, the analyst is asked again.
    env.clock.t_s += 61
    await run(service, user, question="Trend?")
    await run(service, user, question="Momentum?")
    assert len(fake.requests) == requests + 2


async def test_an_answer_that_does_not_validate_is_invalid_and_free(
    env: Env, fake: FakeAnthropic
) -> None:
    fake.enqueue(
        Script.malformed(
            json.dumps({"rationale": "Up.", "stance": "moon", "confidence": 9, "keyLevels": []})
        )
    )
    service = env.make(anthropic_for(fake))
    user = await new_user(env.db)
    got: list[Any] = []
    with pytest.raises(AnalysisInvalid) as info:
        async for chunk in service.stream(user_id=user, limits=FREE, symbol="NVDA"):
            got.append(chunk)
    assert info.value.extensions["code"] == "ANALYSIS_INVALID"
    assert [type(c) for c in got] == [TextDelta]  # the prose had started
    page = await service.history(user_id=user, include_failed=True)
    [row] = page.items
    assert row.status is Status.FAILED and row.error_code == "ANALYSIS_INVALID" and not row.charged
    assert row.usage.output_tokens > 0  # what it cost is recorded
    today = await service.usage(user_id=user, limits=FREE)
    assert (today.analyses_used, today.analyses_remaining, today.failed) == (0, 5, 1)
    assert (await service.history(user_id=user)).items == []  # history shows completed ones


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (Script.rate_limited(9), "rate_limited"),
        (Script.overloaded(), "overloaded"),
        (Script.cut(after_deltas=4), "stream_cut"),
        (Script.error_event(after_deltas=4), "overloaded"),
    ],
)
async def test_provider_failures_are_unavailable_and_not_charged(
    env: Env, fake: FakeAnthropic, script: Script, reason: str
) -> None:
    fake.enqueue(script)
    service = env.make(anthropic_for(fake))
    user = await new_user(env.db)
    with pytest.raises(AnalystUnavailable) as info:
        await run(service, user, limits=FREE)
    assert info.value.reason == reason
    if reason == "rate_limited":
        assert info.value.extensions["retryAfter"] == 9.0
    today = await service.usage(user_id=user, limits=FREE)
    assert (today.analyses_used, today.failed) == (0, 1)
    # The quota is intact: the next request goes through.
    assert shape(await run(service, user, limits=FREE)) == ["TextDelta", "ResultReady", "Usage"]


async def test_closing_the_stream_closes_the_upstream_stream(env: Env, fake: FakeAnthropic) -> None:
    fake.enqueue(Script.slow(0.02, chunk_chars=4))
    service = env.make(anthropic_for(fake))
    user = await new_user(env.db)
    stream = service.stream(user_id=user, limits=PRO, symbol="NVDA")
    texts = 0
    async for chunk in stream:
        texts += isinstance(chunk, TextDelta)
        if texts == 3:
            break
    await stream.aclose()
    await eventually(lambda: fake.disconnects == 1, "the fake sees the client leave")
    sent = fake.deltas_sent
    await asyncio.sleep(0.2)
    assert fake.deltas_sent == sent and fake.completed == 0
    await service.aclose()  # the cancellation is recorded in the background
    [row] = (await service.history(user_id=user, include_failed=True)).items
    assert row.status is Status.CANCELLED
    assert row.charged  # the analyst had started writing


async def test_cancelling_before_the_first_token_is_not_charged(
    env: Env, fake: FakeAnthropic
) -> None:
    fake.enqueue(Script(first_delay_s=TIMEOUT))
    service = env.make(anthropic_for(fake))
    user = await new_user(env.db)
    task = asyncio.create_task(run(service, user))
    await eventually(lambda: fake.streams_open == 1, "the stream opens")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: fake.disconnects == 1, "the fake sees the client leave")
    await service.aclose()
    [row] = (await service.history(user_id=user, include_failed=True)).items
    assert row.status is Status.CANCELLED and not row.charged


# ------------------------------------------------------------------ admission


async def test_the_daily_quota(env: Env) -> None:
    service = env.make()
    user = await new_user(env.db)
    await run(service, user, question="question 0", limits=FREE)
    # A cached answer is free: it does not use one of the five.
    assert (await run(service, user, question="question 0", limits=FREE))[-1].cached
    for i in range(1, FREE.analyses_per_day):
        await run(service, user, question=f"question {i}", limits=FREE)
    with pytest.raises(RateLimited) as info:
        await run(service, user, question="one more", limits=FREE)
    assert info.value.extensions["code"] == "RATE_LIMITED"
    # 15:30 in New York is 19:30 UTC: 4.5 hours to the reset at 00:00 UTC.
    assert info.value.extensions["retryAfter"] == 4.5 * 3600
    # The quota is checked first: once it is used up, not even a cached answer is served.
    with pytest.raises(RateLimited):
        await run(service, user, question="question 0", limits=FREE)
    today = await service.usage(user_id=user, limits=FREE)
    assert (today.analyses_used, today.analyses_remaining, today.cached) == (5, 0, 1)
    # A new UTC day starts a new count.
    env.clock.t_s += 5 * 3600
    await run(service, user, question="tomorrow", limits=FREE)


async def test_tiers_without_analyses_and_bad_input(env: Env) -> None:
    service = env.make()
    user = await new_user(env.db)
    with pytest.raises(LimitExceeded, match="includes no analyses"):
        await run(service, user, limits=ANONYMOUS)
    with pytest.raises(InvalidInput, match="at most 1000 characters"):
        await run(service, user, question="x" * 1001)
    with pytest.raises(InvalidSymbol):
        await run(service, user, symbol="not a symbol")
    assert (await service.history(user_id=user, include_failed=True)).items == []


async def test_a_symbol_without_any_data_is_refused_and_free(env: Env) -> None:
    class NoHistory:
        async def bars(self, *a: Any, **k: Any) -> list[Any]:
            return []

        async def range(self, *a: Any, **k: Any) -> list[Any]:
            return []

    service = env.make(history=NoHistory())
    user = await new_user(env.db)
    with pytest.raises(InvalidSymbol, match="no market data for ZZZZ"):
        await run(service, user, symbol="ZZZZ")
    today = await service.usage(user_id=user, limits=PRO)
    assert (today.analyses_used, today.failed) == (0, 1)


async def test_analyses_at_once_are_capped(env: Env, fake: FakeAnthropic) -> None:
    fake.enqueue(Script(first_delay_s=TIMEOUT))
    service = env.make(anthropic_for(fake), max_running=1)
    user = await new_user(env.db)
    task = asyncio.create_task(run(service, user))
    await eventually(lambda: fake.streams_open == 1, "the stream opens")
    with pytest.raises(LimitExceeded, match="at most 1 analyses may run at once"):
        await run(service, user, question="another")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_requested_without_a_subscription(env: Env) -> None:
    service = env.make()
    user = await new_user(env.db)
    analysis_id = await service.request(user_id=user, limits=PRO, symbol="AAPL")

    async def done() -> bool:
        return (await service.get(user_id=user, analysis_id=analysis_id)).status is Status.COMPLETED

    await eventually(done, "the analysis completes")
    stored = await service.get(user_id=user, analysis_id=analysis_id)
    assert stored.result is not None and stored.subject == "AAPL"


async def test_history_pages_newest_first(env: Env) -> None:
    service = env.make()
    user = await new_user(env.db)
    for i in range(5):
        env.clock.t_s += 1
        await run(service, user, question=f"q{i}")
    page = await service.history(user_id=user, first=2)
    assert [a.question for a in page.items] == ["q4", "q3"] and page.has_next_page
    rest = await service.history(user_id=user, first=10, after=page.end_cursor)
    assert [a.question for a in rest.items] == ["q2", "q1", "q0"] and not rest.has_next_page
    with pytest.raises(InvalidInput):
        await service.history(user_id=user, first=0)


async def test_shutdown_cancels_background_analyses_without_charging(
    env: Env, fake: FakeAnthropic
) -> None:
    fake.enqueue(Script.slow(0.05, chunk_chars=4))
    service = env.make(anthropic_for(fake))
    user = await new_user(env.db)
    analysis_id = await service.request(user_id=user, limits=FREE, symbol="NVDA")
    await eventually(lambda: fake.deltas_sent > 10, "the analysis is writing")
    await service.aclose()
    stored = await service.get(user_id=user, analysis_id=analysis_id)
    assert stored.status is Status.CANCELLED and not stored.charged
    await eventually(lambda: fake.disconnects == 1, "the upstream stream is closed")
