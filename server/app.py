"""The ASGI application: GraphQL (HTTP + graphql-transport-ws), the trading board at
``/``, GraphiQL and the files they load, health probes, Prometheus metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from server.http.view import TickgraphGraphQL
from server.observability.access_log import AccessLogMiddleware
from server.observability.correlation import CorrelationMiddleware
from server.observability.endpoint import metrics_routes
from server.runtime import Runtime
from server.scaleout.node import role_of
from server.settings import Settings
from server.web import assets as web_assets
from server.web.board import URL_PREFIX as BOARD_PREFIX
from server.web.board import Board
from server.web.graphiql import page as graphiql_page
from server.websocket.guard import RequestBodyLimit
from streams.feed_status import FeedState

log = logging.getLogger(__name__)

#: The vendored files have their version in their URL: a browser may keep them.
_IMMUTABLE = {"cache-control": "public, max-age=31536000, immutable"}


@dataclass(frozen=True, slots=True)
class _Pages:
    """What the app serves to browsers, built once at start-up from the installed
    front-end files (a missing file is explained on the page, not a crash)."""

    assets: web_assets.Assets | web_assets.AssetsUnavailable
    board: Board | None
    graphiql_html: str
    graphiql_problem: web_assets.AssetsUnavailable | None

    @classmethod
    def load(cls, settings: Settings, vendor_dir: Path) -> _Pages:
        assets: web_assets.Assets | web_assets.AssetsUnavailable = web_assets.Assets(vendor_dir, {})
        if settings.graphiql or settings.board:
            try:
                assets = web_assets.load(vendor_dir)
            except web_assets.AssetsUnavailable as problem:
                assets = problem
        board = Board.load(assets) if settings.board else None
        if board is not None and board.problem is not None:
            log.warning("the board is unavailable: %s (%s)", board.problem, web_assets.FIX_HINT)
        graphiql_html, graphiql_problem = "", None
        if settings.graphiql:
            graphiql_html, graphiql_problem = graphiql_page(assets)
            if graphiql_problem is not None:
                log.warning(
                    "GraphiQL is unavailable: %s (%s)", graphiql_problem, web_assets.FIX_HINT
                )
        return cls(assets, board, graphiql_html, graphiql_problem)


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    vendor_dir: Path = web_assets.VENDOR_DIR,
) -> Starlette:
    """The application. With ``runtime`` (started by the caller, who also stops it),
    the lifespan only hands it over; without, the lifespan starts and stops one."""
    runtime_ref: dict[str, Runtime] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if runtime is not None:
            runtime_ref["runtime"] = runtime
            try:
                yield
            finally:
                runtime_ref.pop("runtime", None)
            return
        try:
            runtime_ref["runtime"] = started = await Runtime.start(settings)
        except Exception as exc:
            log.error("start-up failed: %s", exc)
            raise
        started.serving()
        try:
            yield
        finally:
            await runtime_ref.pop("runtime").stop()

    pages = _Pages.load(settings, vendor_dir)
    assets, board = pages.assets, pages.board

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
            "role": role_of(runtime.services.node),
        }
        return JSONResponse(body, status_code=200 if db_ok and feed_ok else 503)

    async def root(request: Request) -> Response:
        if board is not None:
            return board.page()
        if settings.graphiql:
            return RedirectResponse("/graphql")
        return JSONResponse({"graphql": "/graphql", "health": "/healthz", "ready": "/readyz"})

    async def vendor(request: Request) -> Response:
        # Only the files of the manifest, each checked at start-up (server.web.assets).
        path = cast(str, request.path_params["path"])
        asset = assets.by_path(path) if isinstance(assets, web_assets.Assets) else None
        if asset is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(
            vendor_dir / asset.path, headers={**_IMMUTABLE, "x-content-type-options": "nosniff"}
        )

    async def board_file(request: Request) -> Response:
        if board is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return board.file(request, cast(str, request.path_params["path"]))

    graphql = TickgraphGraphQL(settings, runtime_ref, pages.graphiql_html)
    routes = [
        Route("/", root),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/graphql", graphql),
        WebSocketRoute("/graphql", graphql),
        Route(web_assets.URL_PREFIX + "/{path:path}", vendor),
        Route(BOARD_PREFIX + "/{path:path}", board_file),
    ]
    app = Starlette(
        routes=[*routes, *metrics_routes(settings, lambda: runtime_ref.get("runtime"))],
        lifespan=lifespan,
        # Outermost first: the correlation id is set before anything else runs or logs.
        middleware=_middleware(settings),
    )
    app.state.runtime_ref = runtime_ref
    #: Why GraphiQL cannot work (its files are missing), or None; the CLI says so.
    app.state.graphiql_problem = pages.graphiql_problem
    #: Why the board cannot work, or None (also None when it is off).
    app.state.board_problem = board.problem if board is not None else None
    return app


def _middleware(settings: Settings) -> list[Middleware]:
    """Outermost first: the correlation id (it sees the socket's peer, which decides
    whether a proxy's X-Request-ID is believed), then X-Forwarded-For/-Proto from the
    trusted proxies only, then the access log (with the client's address as forwarded)."""
    layers = [Middleware(CorrelationMiddleware, trusted_proxies=settings.trusted_proxies)]
    if settings.trusted_proxies:
        # Here rather than uvicorn's own option, which runs before any of our layers.
        layers.append(
            Middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
        )
    if settings.access_log:
        layers.append(Middleware(AccessLogMiddleware, probes=settings.access_log_probes))
    layers.append(Middleware(RequestBodyLimit, max_bytes=settings.max_request_bytes))
    return layers
