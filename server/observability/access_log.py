"""One log line per HTTP request (and per WebSocket connection, when it ends).

``GET /graphql 200 3.2ms`` with ``method``, ``path``, ``status``, ``duration_ms`` and
``client`` as fields (JSON lines), and the correlation id like every line. It is cheap:
a clock read at both ends and one record, no body is looked at; the query string is
left out (it may hold a token). Probes and scrapers (``/healthz``, ``/readyz``,
``/metrics``) call every few seconds and are left out unless
``TICKGRAPH_ACCESS_LOG_PROBES`` is on.

A client can send requests as fast as it likes, so the lines go through a budget of
their own (``BURST`` lines, then ``RATE`` a second, the suppressed count on the next
line) rather than the per-message throttle of other lines, which would keep one line a
second of an access log and make it useless.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCESS_LOGGER = "tickgraph.access"
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
BURST = 2000
RATE = 500.0

log = logging.getLogger(ACCESS_LOGGER)


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, *, probes: bool = False) -> None:
        self.app = app
        self.probes = probes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (
            kind not in ("http", "websocket")
            or (not self.probes and scope.get("path") in PROBES)
            or not log.isEnabledFor(logging.INFO)
        ):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind in ("http.response.start", "websocket.http.response.start"):
                status = int(message["status"])
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close" and not status:
                status = 403  # closed before accepting: the handshake is refused
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            ms = (time.perf_counter() - start) * 1000.0
            client = scope.get("client")
            method = scope.get("method", "GET") if kind == "http" else "WS"
            log.info(
                "%s %s %d %.1fms",
                method,
                scope.get("path", ""),
                status or 500,  # the app raised before answering: the server answers 500
                ms,
                extra={
                    "method": method,
                    "path": scope.get("path", ""),
                    "status": status or 500,
                    "duration_ms": round(ms, 2),
                    "client": client[0] if client else None,
                },
            )
