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

from graphql import GraphQLError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.http.typevars import Context, RootValue
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage

SUBSCRIPTIONS_CODE = "TOO_MANY_SUBSCRIPTIONS"
BODY_CODE = "REQUEST_TOO_LARGE"


class GuardedTransportWSHandler(BaseGraphQLTransportWSHandler[Context, RootValue]):
    """strawberry's graphql-transport-ws handler, with a coded subscription-cap error.

    The check is strawberry's own (``len(self.operations)`` against the view's
    ``max_subscriptions_per_connection``, counting every operation in flight), made
    in the same place: after the protocol's 4401 (not acknowledged) and 4409
    (duplicate id) cases, which still close the socket.
    """

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
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
    "SUBSCRIPTIONS_CODE",
    "GuardedTransportWSHandler",
    "RequestBodyLimit",
]
