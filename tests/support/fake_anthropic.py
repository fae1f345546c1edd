"""A local Anthropic Messages API that ``AsyncAnthropic(base_url=...)`` talks to unmodified.

``POST /v1/messages`` with the key (``x-api-key``, or ``Authorization: Bearer`` as newer
SDKs send it) and an ``anthropic-version`` header. Streaming
(``"stream": true``) answers with server-sent events exactly as the API sends them::

    event: message_start
    data: {"type":"message_start","message":{"id":"msg_...","type":"message","role":
           "assistant","content":[],"model":"...","stop_reason":null,"stop_sequence":null,
           "usage":{"input_tokens":..,"cache_creation_input_tokens":..,
                    "cache_read_input_tokens":..,"output_tokens":1}}}

    event: content_block_start      (a tool_use block: id, name, input {})
    event: ping
    event: content_block_delta      ({"type":"input_json_delta","partial_json":"..."})...
    event: content_block_stop
    event: message_delta            ({"delta":{"stop_reason":"tool_use",...},
                                      "usage":{"output_tokens":N}})
    event: message_stop

(a ``text`` block with ``text_delta``s first when a script asks for one). Non-streaming
requests get the whole ``Message``. Errors are the API's: ``{"type":"error","error":
{"type":"rate_limit_error","message":...},"request_id":...}`` with HTTP 429 and
``retry-after``, 529 ``overloaded_error``, 401 ``authentication_error``, 400
``invalid_request_error``; inside a stream, ``event: error``.

The answer is a call of the forced tool with a JSON input: by default a valid
assessment built from the snapshot in the request (its last price quoted in the prose);
``answer`` replaces that builder, and ``Script`` says how to deliver it. Scenarios:
``Script()`` normal, ``Script.slow(s)`` slow tokens, ``Script.rate_limited(n)`` 429 with
retry-after, ``Script.overloaded()`` 529, ``Script.cut(after)`` the connection dropped
mid-stream, ``Script.error_event(after)`` an ``overloaded_error`` event mid-stream,
``Script.malformed(text)`` a tool input that is not a valid assessment.

Prompt caching is simulated: the prefix up to the last ``cache_control`` marker is
written on first use (``cache_creation_input_tokens``) and read for five minutes after
(``cache_read_input_tokens``). Tokens are counted as characters / 4.

Counting what was sent, so tests can prove cancellation: ``requests`` (every request
body), ``deltas_sent`` (content_block_delta events written), ``disconnects`` (streams the
client left before the end: the fake stops writing at once), ``completed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.loopback import LoopbackFake, serving

API_KEY = "sk-ant-test-key"
CACHE_TTL_S = 300.0


@dataclass(frozen=True)
class Script:
    """How the fake answers one request."""

    #: "normal", "http_error", "cut", "error_event".
    kind: str = "normal"
    #: The tool input text to send instead of the answer builder's (verbatim).
    tool_input: str | None = None
    #: Seconds before the first content block, and between two deltas.
    first_delay_s: float = 0.0
    token_delay_s: float = 0.0
    #: Characters of tool input per ``input_json_delta``.
    chunk_chars: int = 12
    #: For "cut" and "error_event": after how many deltas.
    after_deltas: int = 3
    #: For "http_error".
    status: int = 200
    error_type: str = ""
    retry_after: str | None = None
    stop_reason: str = "tool_use"
    #: A text block before the tool call (the API does not send one with a forced tool).
    text_block: str | None = None
    #: A ``ping`` event after every this many deltas (and one before the first).
    ping_every: int = 20

    @classmethod
    def slow(cls, token_delay_s: float, *, chunk_chars: int = 4) -> Script:
        return cls(token_delay_s=token_delay_s, chunk_chars=chunk_chars)

    @classmethod
    def rate_limited(cls, retry_after_s: int = 7) -> Script:
        return cls(
            "http_error", status=429, error_type="rate_limit_error", retry_after=str(retry_after_s)
        )

    @classmethod
    def overloaded(cls) -> Script:
        return cls("http_error", status=529, error_type="overloaded_error")

    @classmethod
    def cut(cls, after_deltas: int = 3) -> Script:
        return cls("cut", after_deltas=after_deltas)

    @classmethod
    def error_event(cls, after_deltas: int = 3) -> Script:
        return cls("error_event", after_deltas=after_deltas)

    @classmethod
    def malformed(cls, tool_input: str) -> Script:
        return cls(tool_input=tool_input)


@dataclass(frozen=True)
class _Reply:
    """One request's answer: what was asked, how to answer, the tool input, the usage."""

    body: dict[str, Any]
    script: Script
    tool_input: str
    usage: dict[str, int]


@dataclass
class Recorded:
    headers: dict[str, str]
    body: dict[str, Any]


_ERROR_MESSAGES = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "overloaded_error": "Overloaded",
    "authentication_error": "invalid x-api-key",
    "invalid_request_error": "invalid request",
    "api_error": "Internal server error",
}


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def snapshot_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """The snapshot JSON in a request's user message, if any."""
    for message in body.get("messages", []):
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [c.get("text", "") for c in content]
        for text in texts:
            start, end = text.find("<snapshot>"), text.rfind("</snapshot>")
            if start >= 0 and end > start:
                found: dict[str, Any] = json.loads(text[start + len("<snapshot>") : end])
                return found
    return None


def default_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A valid, grounded assessment: neutral, quoting the snapshot's last price."""
    snapshot = snapshot_of(body) or {}
    trade = snapshot.get("trade") or {}
    price = trade.get("price")
    subject = snapshot.get("symbol", "the portfolio")
    prose = (
        f"The last trade in {subject} printed at ${price:.2f}. The picture is mixed, so the "
        "stance is neutral and there is no trade idea."
        if isinstance(price, int | float)
        else f"There is no last trade for {subject}; the stance is neutral."
    )
    return {
        "rationale": prose,
        "stance": "neutral",
        "confidence": 40,
        "keyLevels": [],
        "tradeIdea": None,
    }


class FakeAnthropic(LoopbackFake):
    def __init__(self, api_key: str = API_KEY, *, model: str = "claude-sonnet-4-6") -> None:
        self.api_key = api_key
        self.model = model
        self.answer: Callable[[dict[str, Any]], dict[str, Any]] = default_answer
        self.default = Script()
        self._scripts: deque[Script] = deque()
        self.requests: list[Recorded] = []
        self.deltas_sent = 0
        self.events_sent = 0
        self.disconnects = 0
        self.completed = 0
        self.streams_open = 0
        self._cache: dict[str, float] = {}
        #: The "client left" events of the streams being written (set all at shutdown).
        self._live: set[asyncio.Event] = set()

    # --- test API -----------------------------------------------------------------------

    def enqueue(self, *scripts: Script) -> None:
        """Use these for the next requests, one each, before ``default``."""
        self._scripts.extend(scripts)

    # --- lifecycle ----------------------------------------------------------------------

    def _serve(self) -> contextlib.AbstractAsyncContextManager[int]:
        return serving(
            self._app, name="the fake Anthropic API", on_stop=self._stop_streams, interface="asgi3"
        )

    def _stop_streams(self) -> None:
        for left in self._live:
            left.set()

    # --- HTTP ---------------------------------------------------------------------------

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST" or scope["path"] != "/v1/messages":
            await self._error(
                send, 404, "not_found_error", f"{scope['method']} {scope['path']} not found"
            )
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            body = json.loads(raw)
        except ValueError:
            await self._error(send, 400, "invalid_request_error", "body is not JSON")
            return
        self.requests.append(Recorded(headers, body))
        # The API takes the key as x-api-key or as a bearer token (newer SDKs send that).
        presented = headers.get("x-api-key") or headers.get("authorization", "").removeprefix(
            "Bearer "
        )
        if presented != self.api_key:
            await self._error(send, 401, "authentication_error", "invalid x-api-key")
            return
        if not headers.get("anthropic-version"):
            await self._error(
                send, 400, "invalid_request_error", "anthropic-version header is required"
            )
            return
        problem = self._invalid(body)
        if problem:
            await self._error(send, 400, "invalid_request_error", problem)
            return
        script = self._scripts.popleft() if self._scripts else self.default
        if script.kind == "http_error":
            extra = [(b"retry-after", script.retry_after.encode())] if script.retry_after else []
            await self._error(
                send,
                script.status,
                script.error_type,
                _ERROR_MESSAGES.get(script.error_type, "error"),
                extra,
            )
            return
        tool_input = (
            script.tool_input if script.tool_input is not None else json.dumps(self.answer(body))
        )
        usage = self._usage(body)
        reply = _Reply(body, script, tool_input, usage)
        if body.get("stream"):
            await self._stream(reply, receive, send)
        else:
            await self._whole(reply, send)

    @staticmethod
    def _invalid(body: dict[str, Any]) -> str | None:
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model: Field required"
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
            return "max_tokens: Field required"
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return "messages: Field required"
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") == "tool":
            names = {t.get("name") for t in body.get("tools", [])}
            if choice.get("name") not in names:
                return f"tool_choice: tool {choice.get('name')!r} not found in tools"
        return None

    def _usage(self, body: dict[str, Any]) -> dict[str, int]:
        """Input tokens split by the cache: the prefix through the last cache_control
        marker (tools, then system, then messages) is cached for five minutes."""
        parts: list[tuple[str, bool]] = []
        for tool in body.get("tools", []):
            parts.append((json.dumps(tool, sort_keys=True), "cache_control" in tool))
        system = body.get("system", [])
        for block in [{"text": system}] if isinstance(system, str) else system:
            parts.append((block.get("text", ""), "cache_control" in block))
        for message in body.get("messages", []):
            parts.append((json.dumps(message, sort_keys=True), False))
        last_marked = max((i for i, (_, marked) in enumerate(parts) if marked), default=-1)
        prefix = "".join(text for text, _ in parts[: last_marked + 1])
        rest = "".join(text for text, _ in parts[last_marked + 1 :])
        write = read = 0
        if prefix:
            key = f"{body['model']}:{hash(prefix)}"
            now = time.monotonic()
            if self._cache.get(key, 0.0) > now:
                read = _tokens(prefix)
            else:
                write = _tokens(prefix)
            self._cache[key] = now + CACHE_TTL_S
        return {
            "input_tokens": _tokens(rest),
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
            "output_tokens": 1,
        }

    async def _error(
        self,
        send: Any,
        status: int,
        kind: str,
        message: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        request_id = f"req_{uuid.uuid4().hex[:24]}"
        body = json.dumps(
            {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"request-id", request_id.encode()),
            *(extra or []),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _whole(self, reply: _Reply, send: Any) -> None:
        body, script, tool_input, usage = reply.body, reply.script, reply.tool_input, reply.usage
        try:
            parsed: Any = json.loads(tool_input)
        except ValueError:
            parsed = {}
        content: list[dict[str, Any]] = []
        if script.text_block:
            content.append({"type": "text", "text": script.text_block})
        content.append(
            {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:24]}",
                "name": self._tool_name(body),
                "input": parsed,
            }
        )
        message = self._message(
            body, content, script.stop_reason, {**usage, "output_tokens": _tokens(tool_input)}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(message).encode()})
        self.completed += 1

    def _message(
        self,
        body: dict[str, Any],
        content: list[dict[str, Any]],
        stop: str | None,
        usage: dict[str, int],
    ) -> dict[str, Any]:
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "content": content,
            "model": body.get("model", self.model),
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    @staticmethod
    def _tool_name(body: dict[str, Any]) -> str:
        choice = body.get("tool_choice") or {}
        tools = body.get("tools") or [{}]
        return str(choice.get("name") or tools[0].get("name") or "tool")

    async def _stream(self, reply: _Reply, receive: Any, send: Any) -> None:
        left = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    left.set()
                    return

        watcher = asyncio.create_task(watch())
        self.streams_open += 1
        self._live.add(left)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"request-id", f"req_{uuid.uuid4().hex[:24]}".encode()),
                    ],
                }
            )
            finished = await self._events(reply, send, left)
            if finished:
                self.completed += 1
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                self.disconnects += 1
        finally:
            self.streams_open -= 1
            self._live.discard(left)
            watcher.cancel()

    async def _events(self, reply: _Reply, send: Any, left: asyncio.Event) -> bool:
        """Write the stream; False as soon as the client has gone (nothing more is sent)."""
        body, script, tool_input, usage = reply.body, reply.script, reply.tool_input, reply.usage

        async def event(kind: str, data: dict[str, Any]) -> bool:
            if left.is_set():
                return False
            payload = f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
            await send({"type": "http.response.body", "body": payload, "more_body": True})
            self.events_sent += 1
            if kind == "content_block_delta":
                self.deltas_sent += 1
            return True

        async def pause(seconds: float) -> bool:
            """Wait, or stop early when the client leaves (or the fake stops)."""
            if seconds > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(seconds):
                        await left.wait()
            else:
                await asyncio.sleep(0)  # let a disconnect be noticed
            return not left.is_set()

        message = self._message(body, [], None, usage)
        if not await event("message_start", {"type": "message_start", "message": message}):
            return False
        if not await pause(script.first_delay_s):
            return False
        index = 0
        pieces: list[tuple[str, dict[str, Any]]] = []
        if script.text_block:
            for i in range(0, len(script.text_block), script.chunk_chars):
                pieces.append(
                    (
                        "text",
                        {
                            "type": "text_delta",
                            "text": script.text_block[i : i + script.chunk_chars],
                        },
                    )
                )
        for i in range(0, len(tool_input), script.chunk_chars):
            pieces.append(
                (
                    "tool",
                    {
                        "type": "input_json_delta",
                        "partial_json": tool_input[i : i + script.chunk_chars],
                    },
                )
            )
        current: str | None = None
        for sent, (kind, delta) in enumerate(pieces):
            if kind != current:
                if current is not None:
                    if not await event(
                        "content_block_stop", {"type": "content_block_stop", "index": index}
                    ):
                        return False
                    index += 1
                block = (
                    {"type": "text", "text": ""}
                    if kind == "text"
                    else {
                        "type": "tool_use",
                        "id": f"toolu_{uuid.uuid4().hex[:24]}",
                        "name": self._tool_name(body),
                        "input": {},
                    }
                )
                if not await event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": block},
                ):
                    return False
                if index == 0 and not await event("ping", {"type": "ping"}):
                    return False
                current = kind
            if script.kind in ("cut", "error_event") and sent >= script.after_deltas:
                if script.kind == "error_event":
                    # The API ends the stream after an error event.
                    return await event(
                        "error",
                        {
                            "type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded"},
                        },
                    )
                # Drop the connection without ending the chunked body: the client sees
                # an incomplete response, as when a proxy or the network cuts a stream.
                raise _CutStream()
            if not await event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            ):
                return False
            if (
                script.ping_every
                and (sent + 1) % script.ping_every == 0
                and not await event("ping", {"type": "ping"})
            ):
                return False
            if not await pause(script.token_delay_s):
                return False
        if current is not None and not await event(
            "content_block_stop", {"type": "content_block_stop", "index": index}
        ):
            return False
        output = _tokens(tool_input) + (_tokens(script.text_block) if script.text_block else 0)
        if not await event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": script.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output},
            },
        ):
            return False
        return await event("message_stop", {"type": "message_stop"})


class _CutStream(Exception):
    """Raised inside the ASGI app to make uvicorn drop the connection mid-body."""


__all__ = ["API_KEY", "FakeAnthropic", "Script", "default_answer", "snapshot_of"]
