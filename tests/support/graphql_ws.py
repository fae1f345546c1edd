"""A small graphql-transport-ws client on plain ``websockets``, for tests.

It speaks the protocol exactly (connection_init/ack, subscribe/next/error/complete,
ping/pong) and never hides a protocol error: unexpected messages fail the test.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from tests.support.timing import TIMEOUT

PROTOCOL = "graphql-transport-ws"


class GraphQLWS:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        message: dict[str, Any] = orjson.loads(raw)
        return message

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": payload or {}})
        ack = await self.recv()
        assert ack["type"] == "connection_ack", ack
        return ack

    async def subscribe(
        self, query: str, variables: dict[str, Any] | None = None, op_id: str | None = None
    ) -> str:
        op_id = op_id or str(next(self._ids))
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        await self.send({"id": op_id, "type": "subscribe", "payload": payload})
        return op_id

    async def complete(self, op_id: str) -> None:
        await self.send({"id": op_id, "type": "complete"})

    async def next_data(self, op_id: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The data of the next ``next`` message for ``op_id`` (pings are answered)."""
        while True:
            msg = await self.recv(timeout)
            if msg["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            assert msg.get("id") == op_id, msg
            assert msg["type"] == "next", msg
            assert "errors" not in msg["payload"], msg
            data: dict[str, Any] = msg["payload"]["data"]
            return data


@asynccontextmanager
async def graphql_ws(
    url: str, *, init: bool = True, payload: dict[str, Any] | None = None, **kwargs: Any
) -> AsyncIterator[GraphQLWS]:
    # An unbounded receive queue: with a bounded one, a client that stops calling recv()
    # stops reading the socket and never sees the close frame (close then takes
    # close_timeout). Tests that want a slow reader pass max_queue themselves.
    kwargs.setdefault("max_queue", None)
    async with connect(url, subprotocols=[PROTOCOL], open_timeout=TIMEOUT, **kwargs) as ws:  # type: ignore[list-item]
        client = GraphQLWS(ws)
        if init:
            await client.init(payload)
        yield client
