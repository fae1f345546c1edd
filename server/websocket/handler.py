"""tickgraph's graphql-transport-ws handler.

strawberry's protocol handling (with the guards of ``server.websocket.guard``), plus two
things that make subscriptions multiplexed (``server.delivery.multiplex``):

* every outgoing message goes through the connection's ``Outbox``, so protocol
  messages and subscription data share one ordered, bounded, batched write path;
* each operation's task knows which subscriber it runs for (``SUBSCRIBER``), so a
  subscription resolver's ``Feed`` joins its group instead of executing per subscriber;
  strawberry's pipeline then ends (its ``complete`` is held back and the id kept), and
  the operation's task only waits, holding the membership, until the subscription ends.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
from graphql import GraphQLError
from strawberry.http.typevars import Context, RootValue
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import Operation
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    CompleteMessage,
    Message,
)

from server.delivery.multiplex import SUBSCRIBER, Multiplexer, Subscriber
from server.delivery.outbox import Outbox
from server.websocket.frames import writer_for
from server.websocket.guard import GuardedTransportWSHandler


class MultiplexingTransportWSHandler(GuardedTransportWSHandler[Context, RootValue]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # tickgraph's view gives a schema.context.Context and starlette's adapter.
        services = cast(Any, self.context).services
        self.mux: Multiplexer = services.mux
        self.outbox = Outbox(writer_for(cast(Any, self.websocket).ws), self.mux.flusher)
        self._subscribers: dict[str, Subscriber] = {}

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
        # Stop this operation's data now: its task ends at its next turn, and nothing
        # may be sent for the id after the client completed it.
        operation = self.operations.get(message["id"])
        if operation is not None:
            self.outbox.drop(operation.id)
        await super().handle_complete(message)

    async def shutdown(self) -> None:
        try:
            await super().shutdown()
        finally:
            self.outbox.close()
