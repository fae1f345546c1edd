"""The ASGI application: GraphQL (HTTP + graphql-transport-ws), GraphiQL and the files
it loads, health probes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from schema import build_schema
from schema.context import Context
from server.auth.access import Caller
from server.auth.errors import Unauthenticated
from server.errors import TickgraphError
from server.http_errors import error_response
from server.limits.tiers import ANONYMOUS
from server.runtime import Runtime
from server.settings import Environment, Settings, normalize_origin
from server.web import assets as web_assets
from server.web.graphiql import page as graphiql_page
from server.websocket.guard import RequestBodyLimit
from server.websocket.handler import MultiplexingTransportWSHandler
from streams.feed_status import FeedState

log = logging.getLogger(__name__)

#: The vendored files have their version in their URL: a browser may keep them.
_IMMUTABLE = {"cache-control": "public, max-age=31536000, immutable"}


class TickgraphGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = MultiplexingTransportWSHandler[Context, None]

    def __init__(
        self, settings: Settings, runtime_ref: dict[str, Runtime], graphiql_html: str
    ) -> None:
        super().__init__(
            build_schema(production=settings.environment is Environment.PRODUCTION),
            graphql_ide="graphiql" if settings.graphiql else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_s),
        )
        self._runtime_ref = runtime_ref
        self._graphiql_html = graphiql_html
        self.max_subscriptions_per_connection = settings.ws_max_subscriptions
        # Browsers send cookies with cross-site WebSocket handshakes and apply no CORS:
        # only same-origin pages, non-browser clients and listed origins may connect.
        self.allowed_origins = frozenset(normalize_origin(o) for o in settings.ws_allowed_origins)

    @property
    def graphql_ide_html(self) -> str:
        # Our own page (server.web.graphiql): its files come from this server, and it
        # hands GraphiQL a graphql-ws client, so subscriptions use graphql-transport-ws
        # (strawberry's page loads a CDN and would fall back to HTTP multipart).
        return self._graphiql_html

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        # A request strawberry refuses gets GraphQL-shaped JSON, not plain text.
        try:
            return await super().run(request, context, root_value)
        except HTTPException as exc:
            if isinstance(request, WebSocket):
                raise
            return error_response(exc)

    async def get_context(self, request: Any, response: Any = None) -> Context:
        services = self._runtime_ref["runtime"].services
        assert services.access is not None
        ip = request.client.host if request.client else None
        authorization = request.headers.get("authorization")
        if isinstance(request, WebSocket):
            # connection_init may still bring the credentials: on_ws_connect decides.
            caller = Caller(None, ip, ANONYMOUS)
        else:
            try:
                caller = await services.access.caller(authorization, ip)
            except Unauthenticated as exc:
                # The cause carries the error's code into the response's body.
                raise HTTPException(401, exc.message) from exc
        return Context(services=services, caller=caller, request=request, response=response)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate a WebSocket at ``connection_init``: the token in the payload
        (``token`` or ``Authorization``) or the handshake's header. A bad credential is
        refused with 4403; a good token's socket is closed (4403) when it expires."""
        access = context.services.access
        assert access is not None
        ws: WebSocket = context.request
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        try:
            caller = await access.caller(ws.headers.get("authorization"), context.caller.ip, params)
            if caller.principal is None:
                access.admit(caller, public_only=True)
        except TickgraphError as exc:
            raise ConnectionRejectionError({"message": exc.message, **exc.extensions}) from None
        context.caller = caller
        expires = caller.principal.token_expires_at if caller.principal else None
        if expires is not None:
            delay = max(0.0, expires.timestamp() - time.time())
            # The loop keeps the timer until it fires; closing an already closed
            # socket is a no-op, so nothing needs cancelling on disconnect.
            asyncio.get_running_loop().call_later(delay, _schedule_close, ws)
        unset: UnsetType = UNSET
        return unset


#: Close tasks while they run (asyncio may collect an unreferenced running task).
_closing: set[asyncio.Task[None]] = set()


def _schedule_close(ws: WebSocket) -> None:
    task = asyncio.ensure_future(_close_expired(ws))
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _close_expired(ws: WebSocket) -> None:
    # The client reconnects with a fresh access token (4403: authenticate again).
    with contextlib.suppress(Exception):
        await ws.close(code=4403, reason="token expired")


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
            runtime_ref["runtime"] = await Runtime.start(settings)
        except Exception as exc:
            log.error("start-up failed: %s", exc)
            raise
        try:
            yield
        finally:
            await runtime_ref.pop("runtime").stop()

    assets: web_assets.Assets | web_assets.AssetsUnavailable = web_assets.Assets(vendor_dir, {})
    graphiql_html, graphiql_problem = "", None
    if settings.graphiql:
        try:
            assets = web_assets.load(vendor_dir)
        except web_assets.AssetsUnavailable as problem:
            assets = problem
        graphiql_html, graphiql_problem = graphiql_page(assets)
        if graphiql_problem is not None:
            log.warning("GraphiQL is unavailable: %s (%s)", graphiql_problem, web_assets.FIX_HINT)

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

    graphql = TickgraphGraphQL(settings, runtime_ref, graphiql_html)
    app = Starlette(
        routes=[
            Route("/", root),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
            Route(web_assets.URL_PREFIX + "/{path:path}", vendor),
        ],
        lifespan=lifespan,
        middleware=[Middleware(RequestBodyLimit, max_bytes=settings.max_request_bytes)],
    )
    app.state.runtime_ref = runtime_ref
    #: Why GraphiQL cannot work (its files are missing), or None; the CLI says so.
    app.state.graphiql_problem = graphiql_problem
    return app
