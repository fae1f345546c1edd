"""tickgraph's graphql-transport-ws handler.

strawberry's protocol handling (with the guards of ``server.websocket.guard``), plus the
connection's life as an authenticated session (registered with
``server.websocket.connections`` once acknowledged, so that revoking its credential or
changing its tier reaches it; closed with 4403 when its access token expires), and two
things that make subscriptions multiplexed (``server.delivery.multiplex``):

* every outgoing message goes through the connection's ``Outbox``, so protocol
  messages and subscription data share one ordered, bounded, batched write path;
* each operation's task knows which subscriber it runs for (``SUBSCRIBER``), so a
  subscription resolver's ``Feed`` joins its group instead of executing per subscriber;
  strawberry's pipeline then ends (its ``complete`` is held back and the id kept), and
  the operation's task only waits, holding the membership, until the subscription ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, cast

import orjson
from graphql import GraphQLError
from strawberry.http.typevars import Context, RootValue
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    CompleteMessage,
    ConnectionInitMessage,
    Message,
)

from server.auth.access import Caller
from server.delivery.multiplex import SUBSCRIBER, Multiplexer, Subscriber
from server.delivery.outbox import Outbox
from server.delivery.registry import SocketCounts
from server.scaleout.fields import needs_leader
from server.scaleout.relay_http import RELAYED
from server.scaleout.relay_ws import Upstream, unavailable
from server.websocket.connections import REVOKED_CODE, Connections
from server.websocket.frames import writer_for
from server.websocket.guard import SUBSCRIPTIONS_CODE, GuardedTransportWSHandler


class MultiplexingTransportWSHandler(GuardedTransportWSHandler[Context, RootValue]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # tickgraph's view gives a schema.context.Context and starlette's adapter.
        services = cast(Any, self.context).services
        self.mux: Multiplexer = services.mux
        self.outbox = Outbox(writer_for(cast(Any, self.websocket).ws), self.mux.flusher)
        self._subscribers: dict[str, Subscriber] = {}
        self._connections: Connections | None = services.connections
        self._sockets: SocketCounts = services.sockets
        self._expiry: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None
        self.revoked = False
        # With several processes: operations this one cannot serve go to the leader.
        self._node = services.node
        self._init_payload: dict[str, Any] | None = None
        self._upstream: Upstream | None = None

    async def handle(self) -> None:
        sockets = self._sockets
        sockets.opened += 1
        sockets.open += 1
        try:
            await super().handle()
        finally:
            sockets.open -= 1

    # -- the connection as a session ---------------------------------------------------

    @property
    def caller(self) -> Caller:
        caller: Caller = cast(Any, self.context).caller
        return caller

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        payload = message.get("payload")
        self._init_payload = payload if isinstance(payload, dict) else None
        await super().handle_connection_init(message)
        if not self.connection_acknowledged or self.revoked:
            return
        if self._connections is not None:
            self._connections.add(self)
        principal = self.caller.principal
        expires = principal.token_expires_at if principal else None
        if expires is not None:
            # The client reconnects with a fresh access token (4403: authenticate again).
            delay = max(0.0, expires.timestamp() - time.time())
            self._expiry = asyncio.get_running_loop().call_later(
                delay, self.revoke, "token expired"
            )

    def retier(self, caller: Caller) -> None:
        """Same identity, new tier or role: later operations get the new limits."""
        cast(Any, self.context).caller = caller

    def revoke(self, reason: str) -> None:
        """Stop now: nothing more leaves (the outbox closes at once, before any await),
        every operation ends, and the socket closes with 4403 ``reason``."""
        if self.revoked:
            return
        self.revoked = True
        self.outbox.close()
        if self._upstream is not None:
            self._upstream.active.clear()  # nothing more is passed on
        for subscriber in self._subscribers.values():
            if subscriber.member is not None:
                subscriber.member.leave()
        self._closing = asyncio.ensure_future(self._close(reason))

    async def _close(self, reason: str) -> None:
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        with contextlib.suppress(Exception):
            await self.websocket.close(code=REVOKED_CODE, reason=reason)

    async def send_message(self, message: Message) -> None:
        if message["type"] == "complete" and self._parked(message["id"]):
            # strawberry's pipeline ended after the feed joined its group; the
            # subscription itself goes on (see run_operation).
            return
        await self.outbox.send_and_wait(orjson.dumps(message))

    def forget_id(self, id: str) -> None:
        if not self._parked(id):
            super().forget_id(id)

    def _parked(self, operation_id: str) -> bool:
        subscriber = self._subscribers.get(operation_id)
        return subscriber is not None and subscriber.member is not None

    async def run_operation(self, operation: Operation[Context, RootValue]) -> None:
        subscriber = Subscriber(
            outbox=self.outbox,
            operation_id=operation.id,
            query=operation.query,
            variables=operation.variables,
            operation_name=operation.operation_name,
            context=self.context,
            schema=self.schema,
            mux=self.mux,
        )
        # The task has its own copy of the context: this is seen only by this operation.
        SUBSCRIBER.set(subscriber)
        self._subscribers[operation.id] = subscriber
        try:
            # Validation, limits, admission and the resolver, per subscriber, as
            # strawberry runs them; returns once a subscription's feed has joined.
            await super().run_operation(operation)
            member = subscriber.member
            if member is None:
                return
            try:
                # Until the client completes (the task is cancelled), disconnects
                # (likewise), or the feed ends the subscription with an error.
                await member.ended
            except Exception as exc:
                await self._end_with_error(operation.id, exc)
            finally:
                member.leave()
        finally:
            if self._subscribers.get(operation.id) is subscriber:
                del self._subscribers[operation.id]

    async def _end_with_error(self, operation_id: str, exc: Exception) -> None:
        """What strawberry sends when a stream raises: the error, then ``complete``."""
        self._subscribers.pop(operation_id, None)
        self.operations.pop(operation_id, None)
        error = GraphQLError(str(exc), original_error=exc)
        errors = getattr(self.schema, "format_event_errors", None)
        formatted = errors([error]) if errors is not None else [error.formatted]
        next_message = {
            "id": operation_id,
            "type": "next",
            "payload": {"data": None, "errors": formatted},
        }
        await self.outbox.send_and_wait(orjson.dumps(next_message))
        await self.send_message({"id": operation_id, "type": "complete"})

    @staticmethod
    def _get_pre_execution_close_reason(error: GraphQLError) -> str | None:
        """Never close the socket over one operation's document: a syntax error or an
        operationName that matches nothing is that operation's ``error`` (with
        GRAPHQL_PARSE_FAILED or OPERATION_RESOLUTION_FAILURE, see
        ``schema.request_errors``), as over HTTP, and the client's other subscriptions
        on the socket go on. strawberry would close with 4400."""
        return None

    async def handle_complete(self, message: CompleteMessage) -> None:
        upstream = self._upstream
        if upstream is not None and message["id"] in upstream.active:
            await upstream.complete(message["id"])
            return
        # Stop this operation's data now: its task ends at its next turn, and nothing
        # may be sent for the id after the client completed it.
        operation = self.operations.get(message["id"])
        if operation is not None:
            self.outbox.drop(operation.id)
        await super().handle_complete(message)

    async def handle_subscribe(self, message: Any) -> None:
        if self.revoked:
            return
        node = self._node
        if node is not None and self.connection_acknowledged and not node.serving:
            payload = message.get("payload") or {}
            query, name = payload.get("query"), payload.get("operationName")
            if isinstance(query, str) and needs_leader(
                query, name if isinstance(name, str) else None
            ):
                await self._relay(message["id"], payload)
                return
        await super().handle_subscribe(message)

    # -- relayed to the leader (server.scaleout) -----------------------------------------

    async def _relay(self, operation_id: str, payload: dict[str, Any]) -> None:
        upstream = self._upstream
        relayed = upstream.active if upstream is not None else set()
        if operation_id in self.operations or operation_id in relayed:
            reason = f"Subscriber for {operation_id} already exists"
            await self.websocket.close(code=4409, reason=reason)
            return
        cap = self.max_subscriptions_per_connection
        if cap is not None and len(self.operations) + len(relayed) >= cap:
            error = GraphQLError(
                f"At most {cap} operations may run at once on one connection; "
                "complete one before starting another.",
                extensions={"code": SUBSCRIPTIONS_CODE, "limit": cap},
            )
            message = {"id": operation_id, "type": "error", "payload": [error.formatted]}
            await self.outbox.send_and_wait(orjson.dumps(message))
            return
        node = self._node
        assert node is not None
        target = node.relay_target()
        if target is None or cast(Any, self.context).request.headers.get(RELAYED):
            text = "The server that holds this data is changing; subscribe again."
            await self.outbox.send_and_wait(unavailable(operation_id, text))
            return
        if upstream is None or upstream.leader != target or upstream.closed:
            if upstream is not None:
                await upstream.close()
            client = cast(Any, self.context).request.client
            upstream = self._upstream = Upstream(
                target,
                self._init_payload,
                self.outbox.send_and_wait,
                client_ip=client.host if client is not None else None,
            )
        await upstream.subscribe(operation_id, payload)

    async def shutdown(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        if self._upstream is not None:
            await self._upstream.close()
        if self._connections is not None:
            self._connections.discard(self)
        try:
            await super().shutdown()
        finally:
            self.outbox.close()
