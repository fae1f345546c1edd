"""One correlation id per HTTP request and per WebSocket connection, in every log line
written on its behalf and in the errors it is shown.

The id lives in a context variable set by ``CorrelationMiddleware`` (the outermost ASGI
layer) before the app runs. asyncio copies the context into every task a handler
creates, so a subscription's task, a resolver and the error reporter all see the id of
the request or connection they serve; the feed, the writers and the clocks run in
tasks created at start-up and log without one. ``CorrelationFilter`` copies the id onto
each log record (JSON lines get a ``cid`` field, text lines show ``[cid]``), and the
response carries it back in ``X-Request-ID`` so a user's report can be matched to the
log.

The id is ours, never the client's: an id taken from a header would let a caller
forge entries that look like another request's.
"""

from __future__ import annotations

import logging
import secrets
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The current request's or connection's id; None outside of one.
CORRELATION_ID: ContextVar[str | None] = ContextVar("correlation_id", default=None)
HEADER = b"x-request-id"


def new_id() -> str:
    # 12 bytes: unique enough to find one request among billions, short enough to read.
    return secrets.token_hex(12)


def current() -> str | None:
    return CORRELATION_ID.get()


class CorrelationFilter(logging.Filter):
    """Stamps each record with ``cid`` (the current id, if any)."""

    def filter(self, record: logging.LogRecord) -> bool:
        cid = CORRELATION_ID.get()
        if cid is not None and not hasattr(record, "cid"):
            record.cid = cid
        return True


class CorrelationMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        cid = new_id()
        token = CORRELATION_ID.set(cid)
        start = "http.response.start" if kind == "http" else "websocket.accept"

        async def send_with_id(message: Message) -> None:
            if message["type"] == start:
                headers = list(message.get("headers", ()))
                headers.append((HEADER, cid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            CORRELATION_ID.reset(token)
