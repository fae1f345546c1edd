"""The ASGI application: GraphQL (HTTP + graphql-transport-ws), GraphiQL, health probes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute

from server.http.view import TickgraphGraphQL
from server.runtime import Runtime
from server.settings import Settings
from server.websocket.guard import RequestBodyLimit
from streams.feed_status import FeedState

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Starlette:
    runtime_ref: dict[str, Runtime] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            runtime_ref["runtime"] = await Runtime.start(settings)
        except Exception as exc:
            log.error("start-up failed: %s", exc)
            raise
        try:
            yield
        finally:
            await runtime_ref.pop("runtime").stop()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        runtime = runtime_ref.get("runtime")
        if runtime is None:
            return JSONResponse({"ready": False, "reason": "starting"}, status_code=503)
        db_ok = await runtime.database.ping()
        feed = runtime.services.feed_status.snapshot()
        feed_ok = feed.state is FeedState.CONNECTED
        body = {
            "ready": db_ok and feed_ok,
            "database": "ok" if db_ok else "unreachable",
            "feed": {"source": feed.source, "state": feed.state.value},
        }
        return JSONResponse(body, status_code=200 if db_ok and feed_ok else 503)

    async def root(request: Request) -> Response:
        return RedirectResponse("/graphql")

    graphql = TickgraphGraphQL(settings, runtime_ref)
    app = Starlette(
        routes=[
            Route("/", root),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
        ],
        lifespan=lifespan,
        middleware=[Middleware(RequestBodyLimit, max_bytes=settings.max_request_bytes)],
    )
    app.state.runtime_ref = runtime_ref
    return app
