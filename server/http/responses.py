"""Answers to requests that never reach execution, and the status codes of results.

GraphQL over HTTP (https://graphql.github.io/graphql-over-http/) gives a client two
media types to ask for:

* ``application/graphql-response+json``: a request error (the document did not parse or
  validate, variables did not coerce, the caller may not run it) is answered with a
  4xx status and no ``data`` entry; a result that has ``data`` is 200.
* ``application/json`` (the legacy type, and what a client gets when it does not ask):
  every GraphQL result is 200, whatever its errors, as older clients expect.

Both get 429 with ``Retry-After`` when the caller's rate is used up (proxies and client
libraries act on it), 401 with ``WWW-Authenticate`` for a credential that is not good,
and a GraphQL-shaped body for every refusal, with a stable ``extensions.code``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from enum import Enum
from typing import Any

import orjson
from starlette.responses import Response

from server.errors import TickgraphError

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


class Style(Enum):
    GRAPHQL_RESPONSE = GRAPHQL_RESPONSE
    JSON = JSON

    @classmethod
    def from_accept(cls, accept: str | None) -> Style:
        if accept and GRAPHQL_RESPONSE in accept.lower():
            return cls.GRAPHQL_RESPONSE
        return cls.JSON


#: The media type the current HTTP request asked for (set per request by the view).
STYLE: ContextVar[Style] = ContextVar("tickgraph_http_style", default=Style.JSON)

#: Status codes for request errors, by ``extensions.code``; anything else is 400.
_REQUEST_ERROR_STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "RATE_LIMITED": 429,
}

#: Codes for the transport's own refusals (strawberry raises them as HTTP errors).
HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def error_document(message: str, extensions: Mapping[str, object]) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": dict(extensions)}]}


def refusal(status: int, message: str, **extensions: object) -> Response:
    """A request refused before GraphQL saw it (malformed body, wrong method...)."""
    code = extensions.pop("code", None) or HTTP_CODES.get(status, "BAD_REQUEST")
    return _json(status, error_document(message, {"code": code, **extensions}))


def error_response(error: TickgraphError) -> Response:
    """A request refused for who is calling: its credential or its rate."""
    status = _REQUEST_ERROR_STATUS.get(error.code, 400)
    if error.code == "INVALID_CREDENTIALS":
        status = 401
    headers: dict[str, str] = {}
    retry_after = error.extensions.get("retryAfter")
    if isinstance(retry_after, int | float):
        # Whole seconds, rounded up: a client that waits this long is let in.
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="tickgraph", error="invalid_token"'
    return _json(status, error_document(error.message, error.extensions), headers)


def is_request_error(result: Mapping[str, Any]) -> bool:
    """A result that never executed: errors, no data, and no error at a field's path."""
    errors: Sequence[Mapping[str, Any]] = result.get("errors") or ()
    return bool(errors) and result.get("data") is None and not any(e.get("path") for e in errors)


def result_status(result: Mapping[str, Any], style: Style) -> tuple[int, dict[str, str]]:
    """Status and headers for an executed (or refused before execution) GraphQL result."""
    if not is_request_error(result):
        return 200, {}
    first = (result.get("errors") or [{}])[0]
    code = (first.get("extensions") or {}).get("code")
    headers: dict[str, str] = {}
    if code == "RATE_LIMITED":
        retry_after = (first.get("extensions") or {}).get("retryAfter")
        if isinstance(retry_after, int | float):
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return 429, headers
    if style is Style.JSON:
        return 200, headers
    return _REQUEST_ERROR_STATUS.get(str(code), 400), headers


def _json(status: int, body: object, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        headers=dict(headers or {}),
        media_type=STYLE.get().value,
    )


__all__ = [
    "GRAPHQL_RESPONSE",
    "HTTP_CODES",
    "JSON",
    "STYLE",
    "Style",
    "error_document",
    "error_response",
    "is_request_error",
    "refusal",
    "result_status",
]
