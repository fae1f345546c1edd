"""The ASGI application: GraphQL (HTTP + graphql-transport-ws), GraphiQL, health probes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from schema import build_schema
from schema.context import Context
from server.runtime import Runtime
from server.settings import Environment, Settings
from streams.feed_status import FeedState

log = logging.getLogger(__name__)

_GRAPHIQL_HTML = (Path(__file__).parent / "static" / "graphiql.html").read_text()


class TickgraphGraphQL(GraphQL[Context, None]):
    def __init__(self, settings: Settings, runtime_ref: dict[str, Runtime]) -> None:
        super().__init__(
            build_schema(production=settings.environment is Environment.PRODUCTION),
            graphql_ide="graphiql" if settings.graphiql else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_s),
        )
        self._runtime_ref = runtime_ref

    @property
    def graphql_ide_html(self) -> str:
        # Our own page: it hands GraphiQL a graphql-ws client, so subscriptions use
        # graphql-transport-ws (strawberry's page would fall back to HTTP multipart).
        return _GRAPHIQL_HTML

    async def get_context(self, request: Any, response: Any = None) -> Context:
        return Context(
            services=self._runtime_ref["runtime"].services, request=request, response=response
        )


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
    )
    app.state.runtime_ref = runtime_ref
    return app
