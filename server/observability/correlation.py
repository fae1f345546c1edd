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
forge entries that look like another request's. A proxy of ``TICKGRAPH_TRUSTED_PROXIES``
(the socket's peer, not a forwarded address) may send its own ``X-Request-ID``: that
becomes the *parent* id (``parent`` in JSON lines, ``[parent>cid]`` in text), so the
proxy's log and ours can be joined, and ours stays unforgeable.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from collections.abc import Sequence
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The current request's or connection's id; None outside of one.
CORRELATION_ID: ContextVar[str | None] = ContextVar("correlation_id", default=None)
#: The trusted proxy's id for the request, when it sent one.
PARENT_ID: ContextVar[str | None] = ContextVar("parent_correlation_id", default=None)
HEADER = b"x-request-id"
#: What a parent id may look like (UUIDs, hex, nginx's $request_id, AWS trace ids).
_PARENT = re.compile(r"^[A-Za-z0-9._:=+/-]{1,128}$")


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
            parent = PARENT_ID.get()
            if parent is not None:
                record.parent = parent
        return True


class CorrelationMiddleware:
    """Outermost: ``scope["client"]`` is still the socket's peer here (the proxy-header
    middleware inside rewrites it), which is what decides whether ``X-Request-ID`` is
    believed."""

    def __init__(self, app: ASGIApp, trusted_proxies: Sequence[str] = ()) -> None:
        self.app = app
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]

    def _parent(self, scope: Scope) -> str | None:
        if not self.trusted:
            return None
        client = scope.get("client")
        try:
            peer = ipaddress.ip_address(client[0]) if client else None
        except ValueError:  # a Unix socket's peer has no address
            return None
        if peer is None or not any(peer in network for network in self.trusted):
            return None
        for name, value in scope.get("headers", ()):
            if name == HEADER:
                text = value.decode("latin-1")
                return text if _PARENT.fullmatch(text) else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        cid = new_id()
        token = CORRELATION_ID.set(cid)
        parent_token = PARENT_ID.set(self._parent(scope))
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
            PARENT_ID.reset(parent_token)
