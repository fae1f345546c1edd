"""Transport guards in front of GraphQL: WebSocket origins, message and subscription
limits, and the HTTP request body limit.

* **Origin.** Browsers apply no CORS to WebSocket handshakes and send the user's
  cookies, so any page could open a socket to us (cross-site WebSocket hijacking).
  strawberry's view checks ``Origin`` before accepting: no ``Origin`` (not a
  browser) and same-origin handshakes pass, other origins only if listed in the
  view's ``allowed_origins`` (which strawberry normalises as browsers send them), and
  the rest are refused with HTTP 403 before any of our code runs.
* **Message size.** uvicorn's ``ws_max_size`` bounds one incoming WebSocket message
  (after decompression): a larger one closes the socket with 1009 (message too big)
  before it is buffered, and the connection's operations are cleaned up like on
  any disconnect. graphql-transport-ws messages are small (a subscribe is a document
  under the token limit plus its variables), so 64 KiB is plenty.
* **Messages.** Every message must be a JSON object of the graphql-transport-ws shape
  (a known ``type``; for ``subscribe``, a string ``id`` of at most ``MAX_ID_LENGTH``
  characters and a ``payload`` object whose ``query`` is a string, ``variables`` and
  ``extensions`` objects and ``operationName`` a string when present). Anything else
  closes the socket with 4400 and a reason, as the protocol says, without a traceback:
  strawberry alone would crash on a message that is a JSON array or string. JSON is
  decoded with orjson, which refuses nesting past 1,024 levels.
* **Authenticated and charged before anything runs.** ``connection_init`` resolves
  the caller (a credential that fails is charged to the address's anonymous rate, like
  any request; over it, the socket is closed with 1013, try again later); every
  ``subscribe`` is charged to the caller's rate before its document is parsed. A
  subscribe over the rate gets an ``error`` (``RATE_LIMITED``, ``retryAfter``) for its
  id and the socket stays open.
* **Subscriptions per connection.** strawberry's ``max_subscriptions_per_connection``
  answers a ``subscribe`` over the cap with an ``error`` for that id and keeps the
  socket open, but its error has no code; ``GuardedTransportWSHandler`` sends the
  same answer with ``extensions.code = "TOO_MANY_SUBSCRIPTIONS"``.
* **HTTP bodies.** Neither starlette nor strawberry limits a request body: strawberry
  reads it whole into memory before parsing it. ``RequestBodyLimit`` refuses a body
  over the limit with 413, from ``Content-Length`` before reading anything, or as
  soon as a chunked body grows past it.
"""

from __future__ import annotations

from typing import Any, cast

from graphql import GraphQLError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.http.typevars import Context, RootValue
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    Message as ProtocolMessage,
)

from server.auth.access import extra_cost
from server.auth.errors import Unauthenticated
from server.errors import TickgraphError
from server.limits.errors import RateLimited
from server.storage.database import is_outage

SUBSCRIPTIONS_CODE = "TOO_MANY_SUBSCRIPTIONS"
BODY_CODE = "REQUEST_TOO_LARGE"
#: Operation ids are the client's names for its operations; 128 characters is far more
#: than any client uses (graphql-ws sends UUIDs) and keeps them from costing memory.
MAX_ID_LENGTH = 128
TRY_AGAIN_LATER = 1013
FORBIDDEN = 4403
SIGN_IN = "sign in first: send an access token or an API key"

_TYPES = frozenset({"connection_init", "ping", "pong", "subscribe", "complete"})


def malformed(message: object) -> str | None:
    """Why ``message`` is not a graphql-transport-ws message, or None if it is one."""
    if not isinstance(message, dict):
        return "Messages must be JSON objects"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "A message needs a string type"
    if kind not in _TYPES:
        return f"Unknown message type: {kind[:40]}"
    payload = message.get("payload")
    if kind in ("connection_init", "ping", "pong"):
        return None if payload is None or isinstance(payload, dict) else "payload must be an object"
    op_id = message.get("id")
    if not isinstance(op_id, str) or not op_id:
        return f"A {kind} message needs a non-empty string id"
    if len(op_id) > MAX_ID_LENGTH:
        return f"Operation ids are at most {MAX_ID_LENGTH} characters"
    if kind == "complete":
        return None
    if not isinstance(payload, dict):
        return "subscribe needs a payload object"
    if not isinstance(payload.get("query"), str):
        return "subscribe needs payload.query, a string"
    for name in ("variables", "extensions"):
        if payload.get(name) is not None and not isinstance(payload[name], dict):
            return f"payload.{name} must be an object"
    operation_name = payload.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        return "payload.operationName must be a string"
    return None


class GuardedTransportWSHandler(BaseGraphQLTransportWSHandler[Context, RootValue]):
    """strawberry's graphql-transport-ws handler, with a coded subscription-cap error.

    The check is strawberry's own (``len(self.operations)`` against the view's
    ``max_subscriptions_per_connection``, counting every operation in flight), made
    in the same place: after the protocol's 4401 (not acknowledged) and 4409
    (duplicate id) cases, which still close the socket.
    """

    async def handle_message(self, message: ProtocolMessage) -> None:
        problem = malformed(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        """Authenticate the connection before strawberry acknowledges it.

        The credential comes from the payload (``token`` or ``Authorization``) or the
        handshake's ``Authorization`` header. A bad one (including one that is not a
        string), or an anonymous socket while anonymous access is off, is closed with
        4403 and the reason. A credential that fails is charged to the address's rate
        (checking it may cost a database read); an address over its rate, or a
        credential that cannot be checked because the database is down, is closed with
        1013 (try again later). Opening a connection with a good credential is free: its
        work is the operations it then runs, and each of those is charged.
        """
        payload = message.get("payload")
        context = cast(Any, self.context)
        access = context.services.access
        if access is not None and not self.connection_init_received:
            params = payload if isinstance(payload, dict) else {}
            ws = cast(Any, self.websocket).ws
            try:
                caller = await access.caller(
                    ws.headers.get("authorization"), context.caller.ip, params
                )
                if caller.principal is None and not access.allow_anonymous:
                    raise Unauthenticated(SIGN_IN)
            except TickgraphError as exc:
                code = TRY_AGAIN_LATER if isinstance(exc, RateLimited) else FORBIDDEN
                await self._refuse(code, exc.message)
                return
            except Exception as exc:
                if not is_outage(exc):
                    raise
                # The database is down: the credential cannot be checked now.
                await self._refuse(TRY_AGAIN_LATER, "the database is unavailable; try again")
                return
            context.caller = caller
        await super().handle_connection_init(message)

    async def _refuse(self, code: int, reason: str) -> None:
        self.connection_init_received = True
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        await self.websocket.close(code, reason[:120])

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and message["id"] not in self.operations:
            context = cast(Any, self.context)
            access = context.services.access
            if access is not None:
                query = message["payload"]["query"]
                try:
                    await access.count_request(context.caller, 1 + extra_cost(len(query)))
                except TickgraphError as exc:
                    error = GraphQLError(exc.message, extensions=exc.extensions)
                    await self.send_message(
                        {"id": message["id"], "type": "error", "payload": [error.formatted]}
                    )
                    return
        cap = self.max_subscriptions_per_connection
        if (
            cap is not None
            and self.connection_acknowledged
            and message["id"] not in self.operations
            and len(self.operations) >= cap
        ):
            error = GraphQLError(
                f"At most {cap} operations may run at once on one connection; "
                "complete one before starting another.",
                extensions={"code": SUBSCRIPTIONS_CODE, "limit": cap},
            )
            await self.send_message(
                {"id": message["id"], "type": "error", "payload": [error.formatted]}
            )
            return
        await super().handle_subscribe(message)


class _BodyTooLarge(Exception):
    """Raised from ``receive`` inside the application once the body is over the limit."""


class RequestBodyLimit:
    """ASGI middleware: an HTTP request body over ``max_bytes`` gets 413.

    Add it with ``Starlette(middleware=[Middleware(RequestBodyLimit, max_bytes=...)])``:
    starlette places user middleware inside its error middleware, so a body that turns
    out too large while the application reads it becomes a 413 here, not a 500 there.

    The rest of a refused body is left to the server: uvicorn reads and discards
    what is still coming after the response (for at most its keep-alive timeout),
    so a client that sends its whole body before reading the response - as most do -
    gets the 413 rather than a reset connection. Closing at once would make the
    kernel reset the connection over the unread bytes, losing the response.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            # An application that answers before reading the whole body cannot be
            # given a 413 any more; the server drops the connection instead.
            if response_started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = GraphQLError(
            f"The request body is larger than {self.max_bytes} bytes.",
            extensions={"code": BODY_CODE, "maxBytes": self.max_bytes},
        )
        response = JSONResponse({"errors": [error.formatted]}, status_code=413)
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                # The server rejects a malformed Content-Length before we see it;
                # if one gets through, counting the body still applies the limit.
                return None
    return None


__all__ = [
    "BODY_CODE",
    "MAX_ID_LENGTH",
    "SUBSCRIPTIONS_CODE",
    "GuardedTransportWSHandler",
    "RequestBodyLimit",
    "malformed",
]
