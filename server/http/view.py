"""``TickgraphGraphQL``: strawberry's ASGI view at ``/graphql``, for HTTP and WebSocket.

What it adds to strawberry's view, and why:

* **Charged before parsing.** Every HTTP request is charged to its caller's request
  rate (``AccessControl.count_request``) before its body is even parsed: work the
  server does for a request, parse and validation included, is work the caller pays
  for, so malformed or refused documents are limited like any other. (WebSocket
  ``subscribe`` messages are charged the same way in ``server.websocket.guard``.)
* **Malformed input is a 400, never a crash.** Bodies are decoded with orjson, which
  refuses nesting deeper than 1,024 levels instead of recursing into a
  ``RecursionError``, and must be JSON objects.
* **GraphQL over HTTP.** Request errors, media types and status codes follow the spec
  (``server.http.responses``): ``application/graphql-response+json`` on request, 429
  with ``Retry-After`` for rate limits, 401 for bad credentials, and a GraphQL error
  document with ``extensions.code`` for every refusal.

WebSocket connections are authenticated at ``connection_init`` by the protocol handler
(``server.websocket.guard``), which has the socket to close with the right code.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

import orjson
from cross_web import HTTPException, StarletteRequestAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult

from schema import build_schema
from schema.context import Context
from server.auth.access import AccessControl, Caller, extra_cost
from server.errors import TickgraphError
from server.http.request_errors import describe
from server.http.responses import (
    GRAPHQL_RESPONSE,
    STYLE,
    Style,
    error_response,
    is_request_error,
    refusal,
    result_status,
)
from server.limits.tiers import ANONYMOUS
from server.runtime import Runtime
from server.scaleout.relay_http import RELAYED, relay, unavailable, wants_leader
from server.settings import Environment, Settings, normalize_origin
from server.storage.database import is_outage
from server.websocket.handler import MultiplexingTransportWSHandler

log = logging.getLogger(__name__)

#: Who the current HTTP request is charged to (set in get_context, read once the body
#: is decoded, to charge the document's size before it is parsed).
_CALLER: ContextVar[tuple[AccessControl, Caller] | None] = ContextVar(
    "tickgraph_http_caller", default=None
)


class TickgraphGraphQL(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = MultiplexingTransportWSHandler[Context, None]

    def __init__(
        self, settings: Settings, runtime_ref: dict[str, Runtime], graphiql_html: str = ""
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

    # -- HTTP -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        token = STYLE.set(Style.from_accept(request.headers.get("accept")))
        charged = _CALLER.set(None)
        try:
            try:
                response = await self._relayed(request) or await self.run(request)
            except HTTPException as exc:
                status = 415 if exc.reason == "Unsupported content type" else exc.status_code
                error = describe(HTTPException(status, exc.reason) if status == 415 else exc)
                response = refusal(status, error.message, **(error.extensions or {}))
            except TickgraphError as exc:
                response = error_response(exc)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                # The database went away while we checked who is calling (revocations
                # cannot be heard): refuse, and say when to come back.
                log.warning("database unavailable for a request: %s: %s", type(exc).__name__, exc)
                response = unavailable("The database is unavailable; try again shortly.")
            await response(scope, receive, send)
        finally:
            _CALLER.reset(charged)
            STYLE.reset(token)

    async def _relayed(self, request: Request) -> Response | None:
        """The leader's answer, when this process is a follower and the request needs
        the leader (``server.scaleout``); ``None`` when it is served here."""
        node = self._runtime_ref["runtime"].services.node
        if node is None or node.serving or not await wants_leader(request):
            return None
        target = node.relay_target()
        if target is None or request.headers.get(RELAYED):
            return unavailable("The server that holds this data is changing; try again.")
        return await relay(node.http, target, request, refresh=node.refresh)

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses nesting past 1,024 levels with a JSONDecodeError (a subclass of
        # json's), where the standard library would recurse into a RecursionError.
        try:
            return orjson.loads(data)
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", "", 0) from None

    def parse_json(self, data: str | bytes) -> Any:
        try:
            decoded = self.decode_json(data)
        except json.JSONDecodeError:
            raise HTTPException(400, "The request body is not valid JSON.") from None
        if not isinstance(decoded, dict):
            raise HTTPException(400, "The request must be a JSON object.")
        return decoded

    async def parse_http_body(self, request: Any) -> Any:
        data = await super().parse_http_body(request)
        charged = _CALLER.get()
        query = getattr(data, "query", None)
        if charged is not None and isinstance(query, str):
            access, caller = charged
            await access.count_request(caller, extra_cost(len(query)))
        return data

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def get_context(self, request: Any, response: Any = None) -> Context:
        services = self._runtime_ref["runtime"].services
        access = services.access
        assert access is not None
        ip = request.client.host if request.client else None
        if isinstance(request, WebSocket):
            # connection_init may still bring the credentials: on_ws_connect decides.
            caller = Caller(None, ip, ANONYMOUS)
        else:
            # Unauthenticated and RateLimited propagate to __call__ (401, 429).
            caller = await access.caller(request.headers.get("authorization"), ip)
            if not self.should_render_graphql_ide(StarletteRequestAdapter(request)):
                # One unit now, before anything is read; the document's size is charged
                # once the body is decoded, before GraphQL parses it (parse_http_body).
                await access.count_request(caller)
                _CALLER.set((access, caller))
        return Context(services=services, caller=caller, request=request, response=response)

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        processed = await super().process_result(request, result)
        if STYLE.get() is Style.GRAPHQL_RESPONSE and is_request_error(processed):
            # The spec: a request error has no data entry at all.
            processed.pop("data", None)
        return processed

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        style = STYLE.get()
        response.media_type = style.value
        response.headers["content-type"] = (
            f"{GRAPHQL_RESPONSE}; charset=utf-8"
            if style is Style.GRAPHQL_RESPONSE
            else "application/json"
        )
        if isinstance(response_data, dict) and not sub_response.status_code:
            status, headers = result_status(response_data, style)
            response.status_code = status
            response.headers.update(headers)
        return response

    # -- WebSocket --------------------------------------------------------------------


__all__ = ["TickgraphGraphQL"]
