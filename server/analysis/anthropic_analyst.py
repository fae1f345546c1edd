"""The Anthropic analyst: the Messages API, streamed, with a forced tool call.

One request per analysis (``AsyncAnthropic.messages.stream``): the cached prefix (tool
with the result schema, system prompt, snapshot guide; ``server.analysis.prompt``), then
the snapshot and the question. The tool input streams as JSON pieces; the ``rationale``
field is decoded from them as they arrive (``FieldText``) and yielded as text deltas; at
the end the whole input is validated with msgspec (``parse_assessment``). An input that
does not validate, is cut off at ``max_tokens`` or is a refusal is ``ANALYSIS_INVALID``:
reported, never repaired.

Failure is ``ANALYST_UNAVAILABLE`` (with ``reason`` and, when the provider said,
``retryAfter``): HTTP 429 (``rate_limited``), 529 or an ``overloaded_error`` event
(``overloaded``), other 5xx and ``error`` events (``provider_error``), a refused key or
request (``configuration``, logged for the operator), no answer within the timeouts
(``timeout``), a connection that fails or a stream that ends before ``message_stop``
(``stream_cut``).

Bounds: ``timeout_s`` for each network step (connect, and the gap between two reads:
the API pings an idle stream), ``total_timeout_s`` for the whole analysis, and no hidden
retries by default (``max_retries=0``): the user is watching a live stream, and the
client decides, knowing ``retryAfter``, whether to ask again, instead of the SDK sleeping
up to a minute on a 429 before the first token. The deadline is applied around each
wait for the provider, never around a ``yield``: a timeout must cancel our own wait,
not whatever the consumer happens to be doing.

Cancellation: when the consumer stops iterating (``aclose``) or its task is cancelled,
leaving the ``async with`` closes the HTTP response at once; the connection is
dropped, and the API stops generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import anthropic

from server.analysis.errors import AnalysisInvalid, AnalystUnavailable
from server.analysis.json_stream import FieldText
from server.analysis.port import AnalysisRequest
from server.analysis.pricing import usage_of
from server.analysis.prompt import (
    TOOL_NAME,
    request_messages,
    system_blocks,
    tool_choice,
    tool_definition,
)
from server.analysis.result import (
    AnalystChunk,
    InvalidAssessment,
    TextDelta,
    Usage,
    parse_assessment,
)
from server.settings import DEFAULT_ANTHROPIC_MODEL, Secret

log = logging.getLogger(__name__)

DEFAULT_MODEL = DEFAULT_ANTHROPIC_MODEL
DEFAULT_MAX_TOKENS = 2_048
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_TOTAL_TIMEOUT_S = 120.0
#: The most we believe a ``retry-after`` header (an hour).
_MAX_RETRY_AFTER_S = 3_600.0

_REASON_BY_ERROR_TYPE = {
    "overloaded_error": "overloaded",
    "rate_limit_error": "rate_limited",
    "api_error": "provider_error",
    "timeout_error": "timeout",
    "authentication_error": "configuration",
    "permission_error": "configuration",
    "invalid_request_error": "configuration",
    "not_found_error": "configuration",
    "request_too_large": "configuration",
    "billing_error": "configuration",
}


def end_user_id(user_key: str) -> str:
    """The opaque id sent as ``metadata.user_id`` (a hash: no email, no account id)."""
    return hashlib.sha256(f"tickgraph-analysis:{user_key}".encode()).hexdigest()[:32]


class _Tally:
    """Tokens as the stream reports them (``message_start``, then cumulative
    ``message_delta`` counts)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.input = 0
        self.output = 0
        self.cache_read = 0
        self.cache_write = 0
        self.seen = False

    def start(self, usage: Any) -> None:
        self.seen = True
        self.input = usage.input_tokens or 0
        self.output = usage.output_tokens or 0
        self.cache_read = getattr(usage, "cache_read_input_tokens", None) or 0
        self.cache_write = getattr(usage, "cache_creation_input_tokens", None) or 0

    def delta(self, usage: Any) -> None:
        self.output = usage.output_tokens or self.output
        for name, attr in (
            ("input", "input_tokens"),
            ("cache_read", "cache_read_input_tokens"),
            ("cache_write", "cache_creation_input_tokens"),
        ):
            value = getattr(usage, attr, None)
            if value is not None:
                setattr(self, name, value)

    def usage(self) -> Usage:
        return usage_of(
            self.model,
            input_tokens=self.input,
            output_tokens=self.output,
            cache_read_tokens=self.cache_read,
            cache_write_tokens=self.cache_write,
        )

    def attach(self, exc: AnalystUnavailable | AnalysisInvalid) -> None:
        if self.seen:
            exc.usage = self.usage()


class _Turn:
    """What the streamed response has said so far."""

    def __init__(self, model: str) -> None:
        self.tally = _Tally(model)
        self.prose = FieldText("rationale")
        self.tool_json: list[str] = []
        self.tool_index: int | None = None
        self.stop_reason: str | None = None
        self.finished = False

    def on(self, event: Any) -> str:
        """Take one stream event; return the prose it adds (usually "")."""
        kind = event.type
        if kind == "content_block_delta":
            delta = event.delta
            if delta.type == "input_json_delta" and event.index == self.tool_index:
                self.tool_json.append(delta.partial_json)
                return self.prose.feed(delta.partial_json)
        elif kind == "message_start":
            self.tally.start(event.message.usage)
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use" and block.name == TOOL_NAME:
                self.tool_index = event.index
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason
            self.tally.delta(event.usage)
        elif kind == "message_stop":
            self.finished = True
        return ""


def _retry_after(headers: Any) -> float | None:
    """``retry-after`` (seconds or an HTTP date) or ``retry-after-ms``, bounded."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return min(value, _MAX_RETRY_AFTER_S)
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        value = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(value):
        return None
    return min(max(value, 0.0), _MAX_RETRY_AFTER_S)


def _error_type(body: object) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return None


def _unavailable_from_status(exc: anthropic.APIStatusError) -> AnalystUnavailable:
    status = exc.status_code
    kind = _error_type(exc.body)
    if status == 429:
        reason = "rate_limited"
    elif status == 529:
        reason = "overloaded"
    elif kind is not None and kind in _REASON_BY_ERROR_TYPE:
        reason = _REASON_BY_ERROR_TYPE[kind]
    elif status >= 500 or status < 400:  # < 400: an ``error`` event inside a 200 stream
        reason = "provider_error"
    else:
        reason = "configuration"
    retry_after = _retry_after(getattr(exc.response, "headers", None)) if status >= 400 else None
    if reason == "configuration":
        # Our key or our request was refused: an operator must act. The SDK's message
        # holds the API's error text and request id, never the key.
        log.error("the Anthropic API refused the analysis request (HTTP %s): %s", status, exc)
    else:
        log.warning("Anthropic API unavailable (HTTP %s, %s): %s", status, reason, kind)
    messages = {
        "rate_limited": "the analysis provider is rate limiting us; try again later",
        "overloaded": "the analysis provider is overloaded; try again later",
        "provider_error": "the analysis provider failed while answering",
        "timeout": "the analysis provider timed out",
        "configuration": "the analysis provider refused the request (server configuration)",
    }
    return AnalystUnavailable(messages[reason], reason=reason, retry_after_s=retry_after)


def _is_transport_error(exc: Exception) -> bool:
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "h11")


class AnthropicAnalyst:
    """``Analyst`` on the Anthropic Messages API."""

    def __init__(
        self,
        api_key: str | Secret,
        *,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        total_timeout_s: float = DEFAULT_TOTAL_TIMEOUT_S,
        max_retries: int = 0,
    ) -> None:
        key = api_key.reveal() if isinstance(api_key, Secret) else api_key
        if not key:
            raise ValueError("an Anthropic API key is required")
        self._model = model
        self._max_tokens = max_tokens
        self._total_timeout_s = total_timeout_s
        self._client = anthropic.AsyncAnthropic(
            api_key=key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )
        # Built once: the same bytes every time is what makes the prefix cacheable.
        self._system = system_blocks()
        self._tools = [tool_definition()]
        self._tool_choice = tool_choice()

    def __repr__(self) -> str:
        return f"AnthropicAnalyst(model={self._model!r}, api_key='***')"

    @property
    def label(self) -> str:
        return self._model

    async def aclose(self) -> None:
        await self._client.close()

    async def analyze(self, request: AnalysisRequest) -> AsyncGenerator[AnalystChunk, None]:
        turn = _Turn(self._model)
        try:
            async with contextlib.aclosing(self._texts(request, turn)) as texts:
                async for text in texts:
                    yield TextDelta(text)
        except TimeoutError:
            raise self._fail(
                AnalystUnavailable(
                    f"the analysis provider did not finish within {self._total_timeout_s:g} s",
                    reason="timeout",
                ),
                turn.tally,
            ) from None
        except anthropic.APIStatusError as exc:
            raise self._fail(_unavailable_from_status(exc), turn.tally) from None
        except anthropic.APIConnectionError as exc:
            timed_out = isinstance(exc, anthropic.APITimeoutError)
            log.warning("Anthropic API connection failed: %s", type(exc).__name__)
            raise self._fail(
                AnalystUnavailable(
                    "the analysis provider timed out"
                    if timed_out
                    else "the connection to the analysis provider failed",
                    reason="timeout" if timed_out else "stream_cut",
                ),
                turn.tally,
            ) from None
        except ValueError as exc:
            # The SDK's stream helper parses the tool input as it grows and raises
            # ValueError when it is not JSON: the model's answer is malformed.
            raise self._fail(
                AnalysisInvalid(
                    f"the analyst's answer is not valid JSON: {exc}"[:300], reason="malformed"
                ),
                turn.tally,
            ) from None
        except Exception as exc:
            if not _is_transport_error(exc):
                raise
            # Older SDKs let the HTTP library's own errors through (a dropped connection
            # mid-body is httpx's RemoteProtocolError there).
            log.warning("Anthropic stream broke: %s", type(exc).__name__)
            raise self._fail(
                AnalystUnavailable(
                    "the connection to the analysis provider failed", reason="stream_cut"
                ),
                turn.tally,
            ) from None
        if not turn.finished:
            raise self._fail(
                AnalystUnavailable(
                    "the analysis stream ended before the answer was complete",
                    reason="stream_cut",
                ),
                turn.tally,
            )
        yield self._assessment(turn)
        yield turn.tally.usage()

    async def _texts(self, request: AnalysisRequest, turn: _Turn) -> AsyncGenerator[str, None]:
        """The request's stream, as the prose pieces it carries; ``turn`` keeps the rest.
        Every wait for the provider is bounded by the overall deadline."""
        deadline = asyncio.get_running_loop().time() + self._total_timeout_s
        kwargs: dict[str, Any] = {}
        if request.end_user:
            kwargs["metadata"] = {"user_id": request.end_user}
        manager: Any = self._client.messages.stream(
            model=self._model,
            max_tokens=self._max_tokens,
            system=self._system,  # type: ignore[arg-type]
            tools=self._tools,  # type: ignore[arg-type]
            tool_choice=self._tool_choice,  # type: ignore[arg-type]
            messages=request_messages(request.snapshot, request.question),  # type: ignore[arg-type]
            **kwargs,
        )
        async with asyncio.timeout_at(deadline):
            stream = await manager.__aenter__()
        try:
            events = stream.__aiter__()
            while True:
                async with asyncio.timeout_at(deadline):
                    try:
                        event = await events.__anext__()
                    except StopAsyncIteration:
                        return
                text = turn.on(event)
                if text:
                    yield text
        finally:
            # Closes the HTTP response: on completion, on failure, and when the consumer
            # stops listening (this generator is closed at its ``yield``).
            await manager.__aexit__(None, None, None)

    def _assessment(self, turn: _Turn) -> AnalystChunk:
        tally, stop_reason, tool_input = turn.tally, turn.stop_reason, "".join(turn.tool_json)
        if stop_reason == "max_tokens":
            raise self._fail(
                AnalysisInvalid(
                    f"the analysis was cut off at the {self._max_tokens}-token limit",
                    reason="truncated",
                ),
                tally,
            )
        if stop_reason == "refusal":
            raise self._fail(
                AnalysisInvalid("the analyst declined to answer", reason="refused"), tally
            )
        if turn.tool_index is None:
            raise self._fail(
                AnalysisInvalid("the analyst gave no structured answer", reason="no_tool_call"),
                tally,
            )
        try:
            return parse_assessment(tool_input or "{}")
        except InvalidAssessment as exc:
            what = "is not valid JSON" if exc.malformed else "does not fit the result schema"
            raise self._fail(
                AnalysisInvalid(
                    f"the analyst's answer {what}: {exc}"[:500],
                    reason="malformed" if exc.malformed else "schema",
                ),
                tally,
            ) from None

    @staticmethod
    def _fail(
        exc: AnalystUnavailable | AnalysisInvalid, tally: _Tally
    ) -> AnalystUnavailable | AnalysisInvalid:
        tally.attach(exc)
        return exc
