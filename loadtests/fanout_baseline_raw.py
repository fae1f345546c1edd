"""The "raw" fan-out baseline: the ceiling of this stack (Python, asyncio, ``websockets``).

No GraphQL at all. The server speaks just enough graphql-transport-ws for the harness's
subscribers (``connection_init`` -> ``connection_ack``, ``subscribe``, ``complete``,
``ping`` -> ``pong``), reads only ``payload.variables.s`` (the symbols) of a subscribe,
and for each upstream quote encodes ONE ``next`` frame per operation id with orjson, of
the same shape as tickgraph's answer to the harness's query::

    {"id":"1","type":"next","payload":{"data":{"quotes":
        {"symbol":"AMZN","receivedAt":1718000000000.123,"snapshot":false}}}}

(with ``"exchangeTime"`` after ``receivedAt`` when the query selects it: the only thing
of the query it looks at)

and hands it to ``websockets.broadcast`` for every subscriber with that id. Nothing per
subscriber happens in Python beyond what ``broadcast`` itself does (frame the bytes,
write them to the transport), so this is as fast as fan-out gets on this stack.

``broadcast`` has no backpressure: a subscriber that does not read would make its
transport buffer grow without bound. A sweeper looks at every connection's write buffer
a few times a second and stops sending to one above ``HIGH_WATER`` bytes until it is
below ``LOW_WATER`` again; those quotes are counted as dropped. Cheap (no check per
message) and it keeps the slow-client scenario from measuring only a memory leak.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed

from streams.events import Quote

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
SWEEP_INTERVAL_S = 0.1


def next_frame(
    op_id: str, quote: Quote, received_ms: float, snapshot: bool, *, timed: bool = False
) -> bytes:
    """One ``next`` message as tickgraph sends it for ``{ symbol receivedAt snapshot }``,
    or with ``timed`` for ``{ symbol receivedAt exchangeTime snapshot }``."""
    fields: dict[str, Any]
    if timed:
        fields = {
            "symbol": quote.sym,
            "receivedAt": received_ms,
            "exchangeTime": float(quote.t),
            "snapshot": snapshot,
        }
    else:
        fields = {"symbol": quote.sym, "receivedAt": received_ms, "snapshot": snapshot}
    return orjson.dumps({"id": op_id, "type": "next", "payload": {"data": {"quotes": fields}}})


@dataclass(frozen=True, slots=True)
class Operation:
    """What a frame depends on: the operation id, and whether it selects exchangeTime."""

    id: str
    timed: bool = False


#: symbol -> operation -> connections.
Routes = dict[str, dict[Operation, set[ServerConnection]]]


def _add(routes: Routes, symbol: str, op: Operation, ws: ServerConnection) -> None:
    routes.setdefault(symbol, {}).setdefault(op, set()).add(ws)


def _discard(routes: Routes, symbol: str, op: Operation, ws: ServerConnection) -> None:
    by_op = routes.get(symbol)
    if by_op is None:
        return
    conns = by_op.get(op)
    if conns is None:
        return
    conns.discard(ws)
    if not conns:
        del by_op[op]
        if not by_op:
            del routes[symbol]


@dataclass
class _Connection:
    ws: ServerConnection
    #: operation id -> (operation, symbols).
    operations: dict[str, tuple[Operation, tuple[str, ...]]] = field(default_factory=dict)
    congested: bool = False


class RawFanout:
    """Routes quotes to subscribers; one instance per server."""

    def __init__(self) -> None:
        self.live: Routes = {}
        self.congested: Routes = {}
        self.connections: dict[ServerConnection, _Connection] = {}
        self.last: dict[str, tuple[Quote, float]] = {}  # symbol -> last quote, receivedAt
        self.sent = 0
        self.dropped = 0
        self.congestion_events = 0

    # --- the hot path ------------------------------------------------------------------

    def on_quote(self, quote: Quote, received_ms: float) -> None:
        symbol = quote.sym
        self.last[symbol] = (quote, received_ms)
        by_op = self.live.get(symbol)
        if by_op:
            for op, conns in by_op.items():
                frame = next_frame(op.id, quote, received_ms, False, timed=op.timed)
                broadcast(conns, frame, text=True)
                self.sent += len(conns)
        stalled = self.congested.get(symbol)
        if stalled:
            self.dropped += sum(len(conns) for conns in stalled.values())

    # --- subscriptions -----------------------------------------------------------------

    def subscribe(self, ws: ServerConnection, op: Operation, symbols: Iterable[str]) -> None:
        conn = self.connections[ws]
        self.complete(ws, op.id)
        wanted = tuple(dict.fromkeys(symbols))
        conn.operations[op.id] = (op, wanted)
        routes = self.congested if conn.congested else self.live
        for symbol in wanted:
            # The snapshot first, then live quotes: no await in between, so nothing
            # can slip in before it.
            last = self.last.get(symbol)
            if last is not None and not conn.congested:
                frame = next_frame(op.id, last[0], last[1], True, timed=op.timed)
                broadcast((ws,), frame, text=True)
            _add(routes, symbol, op, ws)

    def complete(self, ws: ServerConnection, op_id: str) -> None:
        conn = self.connections[ws]
        op, symbols = conn.operations.pop(op_id, (None, ()))
        if op is None:
            return
        for symbol in symbols:
            _discard(self.live, symbol, op, ws)
            _discard(self.congested, symbol, op, ws)

    def attach(self, ws: ServerConnection) -> None:
        self.connections[ws] = _Connection(ws)

    def detach(self, ws: ServerConnection) -> None:
        conn = self.connections.get(ws)
        if conn is None:
            return
        for op_id in tuple(conn.operations):
            self.complete(ws, op_id)
        del self.connections[ws]

    # --- congestion --------------------------------------------------------------------

    def sweep(self) -> None:
        """Move connections between the live and the congested routes by write buffer size."""
        for conn in self.connections.values():
            transport = conn.ws.transport
            buffered = transport.get_write_buffer_size() if transport is not None else 0
            if not conn.congested and buffered > HIGH_WATER:
                conn.congested = True
                self.congestion_events += 1
                self._move(conn, self.live, self.congested)
            elif conn.congested and buffered < LOW_WATER:
                conn.congested = False
                self._move(conn, self.congested, self.live)

    def _move(self, conn: _Connection, source: Routes, target: Routes) -> None:
        for op, symbols in conn.operations.values():
            for symbol in symbols:
                _discard(source, symbol, op, conn.ws)
                _add(target, symbol, op, conn.ws)

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.sweep()

    def stats(self) -> dict[str, int]:
        return {
            "connections": len(self.connections),
            "sent": self.sent,
            "dropped": self.dropped,
            "congestion_events": self.congestion_events,
        }

    # --- the protocol ------------------------------------------------------------------

    async def handle(self, ws: ServerConnection) -> None:
        """One graphql-transport-ws connection."""
        self.attach(ws)
        try:
            async for message in ws:
                await self._on_message(ws, message)
        except ConnectionClosed:
            pass
        finally:
            self.detach(ws)

    async def _on_message(self, ws: ServerConnection, message: str | bytes) -> None:
        try:
            msg: Any = orjson.loads(message)
        except orjson.JSONDecodeError:
            await ws.close(4400, "invalid JSON")
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "connection_init":
            await ws.send('{"type":"connection_ack"}')
        elif kind == "ping":
            await ws.send('{"type":"pong"}')
        elif kind == "subscribe":
            op_id = str(msg.get("id", ""))
            payload = msg.get("payload") or {}
            symbols = (payload.get("variables") or {}).get("s")
            query = str(payload.get("query", ""))
            if "quotes(" not in query or not isinstance(symbols, list):
                error = [{"message": "the raw baseline serves quotes(symbols: $s) only"}]
                await ws.send(
                    orjson.dumps({"id": op_id, "type": "error", "payload": error}), text=True
                )
                return
            op = Operation(op_id, timed="exchangeTime" in query)
            self.subscribe(ws, op, (str(s) for s in symbols))
        elif kind == "complete":
            self.complete(ws, str(msg.get("id", "")))
