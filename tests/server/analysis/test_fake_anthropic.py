"""The fake Messages API itself: its wire format, as the SDK and a raw client see it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anthropic
import httpx
import pytest

from tests.support.fake_anthropic import API_KEY, FakeAnthropic, Script

TOOLS = [{"name": "t", "description": "d", "input_schema": {"type": "object"}}]
BODY = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 100,
    "tools": TOOLS,
    "tool_choice": {"type": "tool", "name": "t"},
    "messages": [{"role": "user", "content": "hi"}],
}
HEADERS = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        server.answer = lambda body: {"rationale": 'Hello "world"', "n": 1}
        yield server


async def test_raw_server_sent_events(fake: FakeAnthropic) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        response = await http.post("/v1/messages", json={**BODY, "stream": True}, headers=HEADERS)
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in response.text.split("\n\n") if b]
    events = []
    for block in blocks:
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        payload = json.loads(data.removeprefix("data: "))
        assert payload["type"] == name.removeprefix("event: ")
        events.append(payload)
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert (
        events[1]["content_block"]["type"] == "tool_use"
        and events[1]["content_block"]["name"] == "t"
    )
    pieces = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert json.loads("".join(pieces)) == {"rationale": 'Hello "world"', "n": 1}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"]["output_tokens"] > 0
    assert events[0]["message"]["usage"]["input_tokens"] > 0


async def test_the_sdk_without_streaming(fake: FakeAnthropic) -> None:
    client = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=fake.base_url, max_retries=0)
    try:
        message = await client.messages.create(**BODY)  # type: ignore[call-overload]
        [block] = message.content
        assert block.type == "tool_use" and block.input == {"rationale": 'Hello "world"', "n": 1}
        assert message.stop_reason == "tool_use"
        fake.enqueue(Script(text_block="thinking"))
        message = await client.messages.create(**BODY)  # type: ignore[call-overload]
        assert [b.type for b in message.content] == ["text", "tool_use"]
    finally:
        await client.close()


async def test_requests_the_api_would_refuse(fake: FakeAnthropic) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        no_tool = await http.post(
            "/v1/messages",
            json={**BODY, "tool_choice": {"type": "tool", "name": "x"}},
            headers=HEADERS,
        )
        assert no_tool.status_code == 400
        assert no_tool.json()["error"]["type"] == "invalid_request_error"
        no_version = await http.post("/v1/messages", json=BODY, headers={"x-api-key": API_KEY})
        assert no_version.status_code == 400
        wrong_key = await http.post(
            "/v1/messages", json=BODY, headers={**HEADERS, "x-api-key": "no"}
        )
        assert wrong_key.status_code == 401 and wrong_key.json()["type"] == "error"
        bearer = await http.post(
            "/v1/messages",
            json=BODY,
            headers={"authorization": f"Bearer {API_KEY}", "anthropic-version": "2023-06-01"},
        )
        assert bearer.status_code == 200
        nowhere = await http.get("/v1/models", headers=HEADERS)
        assert nowhere.status_code == 404
        fake.enqueue(Script.rate_limited(3))
        limited = await http.post("/v1/messages", json=BODY, headers=HEADERS)
        assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
        assert limited.json()["error"]["type"] == "rate_limit_error"
