"""The Anthropic analyst with the real ``AsyncAnthropic`` against the local fake API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.analysis.anthropic_analyst import AnthropicAnalyst
from server.analysis.errors import AnalysisInvalid, AnalystUnavailable
from server.analysis.port import AnalysisRequest
from server.analysis.prompt import TOOL_NAME
from server.analysis.result import Assessment, Stance, TextDelta, Usage
from tests.server.analysis.helpers import eventually, make_snapshot
from tests.support.fake_anthropic import API_KEY, FakeAnthropic, Script
from tests.support.timing import TIMEOUT

REQUEST = AnalysisRequest(make_snapshot(), "Is the trend intact?", "user-hash")


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def analyst(fake: FakeAnthropic) -> AsyncIterator[AnthropicAnalyst]:
    a = AnthropicAnalyst(
        API_KEY, base_url=fake.base_url, timeout_s=TIMEOUT, total_timeout_s=TIMEOUT
    )
    yield a
    await a.aclose()


async def collect(analyst: AnthropicAnalyst, request: AnalysisRequest = REQUEST) -> list[Any]:
    return [c async for c in analyst.analyze(request)]


async def test_prose_streams_then_the_assessment_then_usage(
    fake: FakeAnthropic, analyst: AnthropicAnalyst
) -> None:
    chunks = await collect(analyst)
    texts = [c for c in chunks if isinstance(c, TextDelta)]
    assert len(texts) > 3
    assert chunks[: len(texts)] == texts
    assessment, usage = chunks[-2], chunks[-1]
    assert isinstance(assessment, Assessment) and isinstance(usage, Usage)
    assert "".join(t.text for t in texts) == assessment.rationale
    assert assessment.rationale.startswith("The last trade in NVDA printed at $100.00.")
    assert assessment.stance is Stance.NEUTRAL
    assert usage.input_tokens > 0 and usage.output_tokens > 0 and usage.cost_usd is not None
    assert analyst.label == "claude-sonnet-4-6"


async def test_the_request_forces_the_tool_and_marks_the_prefix_for_caching(
    fake: FakeAnthropic, analyst: AnthropicAnalyst
) -> None:
    await collect(analyst)
    body = fake.requests[-1].body
    assert body["stream"] is True and body["model"] == "claude-sonnet-4-6"
    assert body["tool_choice"]["type"] == "tool" and body["tool_choice"]["name"] == TOOL_NAME
    assert body["tools"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["metadata"] == {"user_id": "user-hash"}
    assert "<question>Is the trend intact?</question>" in body["messages"][0]["content"][0]["text"]
    # The first request wrote the prefix to the cache; the next one reads it, cheaper.
    first = (await collect(analyst))[-1]
    again = (await collect(analyst))[-1]
    assert first.cache_read_tokens > 0 and again.cache_write_tokens == 0


async def test_the_cached_prefix_costs_less(fake: FakeAnthropic, analyst: AnthropicAnalyst) -> None:
    writing = (await collect(analyst))[-1]
    reading = (await collect(analyst))[-1]
    assert writing.cache_write_tokens > 0 and writing.cache_read_tokens == 0
    assert reading.cache_read_tokens == writing.cache_write_tokens
    assert reading.cost_usd < writing.cost_usd


async def test_a_tool_input_that_does_not_validate_is_invalid(
    fake: FakeAnthropic, analyst: AnthropicAnalyst
) -> None:
    bad = json.dumps({"rationale": "Up.", "stance": "moon", "confidence": 50, "keyLevels": []})
    fake.enqueue(Script.malformed(bad))
    with pytest.raises(AnalysisInvalid) as info:
        await collect(analyst)
    assert info.value.extensions["code"] == "ANALYSIS_INVALID"
    assert info.value.reason == "schema" and "moon" in info.value.message
    assert info.value.usage is not None and info.value.usage.output_tokens > 0


async def test_json_that_is_not_json_is_invalid(
    fake: FakeAnthropic, analyst: AnthropicAnalyst
) -> None:
    fake.enqueue(Script.malformed('{"rationale": "Up.", "stance": "bull'))
    with pytest.raises(AnalysisInvalid) as info:
        await collect(analyst)
    assert info.value.reason == "malformed"


async def test_truncated_at_max_tokens_is_invalid(
    fake: FakeAnthropic, analyst: AnthropicAnalyst
) -> None:
    fake.enqueue(Script(stop_reason="max_tokens"))
    with pytest.raises(AnalysisInvalid) as info:
        await collect(analyst)
    assert info.value.reason == "truncated"


async def test_a_text_block_before_the_tool_is_not_the_prose(
    fake: FakeAnthropic, analyst: AnthropicAnalyst
) -> None:
    fake.enqueue(Script(text_block="Let me think about this."))
    chunks = await collect(analyst)
    prose = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    assert "think" not in prose and prose.startswith("The last trade")


@pytest.mark.parametrize(
    ("script", "reason", "retry_after"),
    [
        (Script.rate_limited(7), "rate_limited", 7.0),
        (Script.overloaded(), "overloaded", None),
        (Script("http_error", status=500, error_type="api_error"), "provider_error", None),
        (Script.cut(after_deltas=2), "stream_cut", None),
        (Script.error_event(after_deltas=2), "overloaded", None),
    ],
)
async def test_provider_failures_are_unavailable(
    fake: FakeAnthropic,
    analyst: AnthropicAnalyst,
    script: Script,
    reason: str,
    retry_after: float | None,
) -> None:
    fake.enqueue(script)
    got: list[Any] = []
    with pytest.raises(AnalystUnavailable) as info:
        async for chunk in analyst.analyze(REQUEST):
            got.append(chunk)
    exc = info.value
    assert exc.extensions["code"] == "ANALYST_UNAVAILABLE"
    assert exc.reason == reason
    assert exc.extensions.get("retryAfter") == retry_after
    assert not any(isinstance(c, Assessment) for c in got)
    assert len(fake.requests) == 1  # no hidden retries


async def test_a_refused_key_is_a_configuration_problem(fake: FakeAnthropic) -> None:
    wrong = AnthropicAnalyst("sk-ant-wrong", base_url=fake.base_url, timeout_s=TIMEOUT)
    try:
        with pytest.raises(AnalystUnavailable) as info:
            await collect(wrong)
        assert info.value.reason == "configuration"
        assert "sk-ant-wrong" not in info.value.message
    finally:
        await wrong.aclose()


async def test_a_slow_provider_times_out(fake: FakeAnthropic) -> None:
    slow = AnthropicAnalyst(API_KEY, base_url=fake.base_url, timeout_s=TIMEOUT, total_timeout_s=0.3)
    fake.enqueue(Script(first_delay_s=TIMEOUT))
    try:
        with pytest.raises(AnalystUnavailable) as info:
            await collect(slow)
        assert info.value.reason == "timeout"
        # Giving up closed the stream: the fake saw the client leave.
        await eventually(lambda: fake.disconnects == 1, "the fake sees the client leave")
    finally:
        await slow.aclose()


async def test_stopping_early_closes_the_upstream_stream(
    fake: FakeAnthropic, analyst: AnthropicAnalyst
) -> None:
    fake.enqueue(Script.slow(0.02, chunk_chars=4))
    stream = analyst.analyze(REQUEST)
    got = 0
    async for chunk in stream:
        if isinstance(chunk, TextDelta):
            got += 1
            if got == 3:
                break
    await stream.aclose()
    await eventually(lambda: fake.disconnects == 1, "the fake sees the client leave")
    sent = fake.deltas_sent
    await asyncio.sleep(0.2)  # ten more token intervals: nothing more is generated
    assert fake.deltas_sent == sent
    assert fake.completed == 0
    total = len(json.dumps(fake.answer(fake.requests[-1].body))) // 4
    assert sent < total / 2


async def test_cancelling_the_consumer_task_closes_the_upstream_stream(
    fake: FakeAnthropic, analyst: AnthropicAnalyst
) -> None:
    fake.enqueue(Script.slow(0.02, chunk_chars=4))
    first = asyncio.Event()

    async def consume() -> None:
        async for chunk in analyst.analyze(REQUEST):
            if isinstance(chunk, TextDelta):
                first.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(TIMEOUT):
        await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: fake.disconnects == 1, "the fake sees the client leave")
    assert fake.completed == 0
