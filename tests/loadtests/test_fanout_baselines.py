"""The fan-out baselines end to end: a real replay, the baseline as the harness starts it
(a subprocess that says where it listens), and real graphql-transport-ws clients: the
``websockets`` library, and the harness's own minimal client."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from loadtests.fanout_clients import quotes_query
from loadtests.fanout_pacing import PacedQuoteSource
from loadtests.fanout_server import TargetProcess, start_target, start_upstream
from loadtests.fanout_wire import open_wire
from streams.polygon_server import PolygonProtocolServer
from tests.support.data import AMZN_REPLAY, require
from tests.support.timing import TIMEOUT

SYMBOLS = ("AMZN", "AMZN1")
TIMED = quotes_query(timed=True)


@pytest.fixture
async def upstream() -> AsyncIterator[PolygonProtocolServer]:
    source = PacedQuoteSource(require(AMZN_REPLAY), SYMBOLS, rate=200.0)
    server = await start_upstream(source)
    try:
        yield server
    finally:
        await server.close()


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return message


async def _init(target: TargetProcess) -> ClientConnection:
    ws = await connect(target.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    assert await _recv(ws) == {"type": "connection_ack"}
    return ws


def _stats(target: TargetProcess) -> dict[str, Any]:
    assert target.stats_url is not None
    with urllib.request.urlopen(target.stats_url, timeout=TIMEOUT) as response:
        body: dict[str, Any] = json.loads(response.read())
        return body


@pytest.mark.timeout(30)
async def test_raw_baseline_speaks_enough_graphql_transport_ws(
    upstream: PolygonProtocolServer, tmp_path: Path
) -> None:
    async with start_target("raw", upstream.url, SYMBOLS, tmp_path) as target:
        ws = await _init(target)
        payload = {"query": TIMED, "variables": {"s": ["AMZN1"]}}
        await ws.send(json.dumps({"id": "7", "type": "subscribe", "payload": payload}))
        first = await _recv(ws)
        assert first["id"] == "7" and first["type"] == "next"
        quote = first["payload"]["data"]["quotes"]
        assert set(quote) == {"symbol", "receivedAt", "exchangeTime", "snapshot"}
        assert quote["symbol"] == "AMZN1"
        live = [await _recv(ws) for _ in range(5)]
        quotes = [m["payload"]["data"]["quotes"] for m in live]
        assert all(q["symbol"] == "AMZN1" and q["snapshot"] is False for q in quotes)
        received = [q["receivedAt"] for q in quotes]
        assert received == sorted(received)
        # receivedAt is stamped on receipt, after the feed sent it (exchangeTime, in ms).
        assert all(q["receivedAt"] >= q["exchangeTime"] for q in quotes)

        await ws.send(json.dumps({"type": "ping"}))
        while (message := await _recv(ws))["type"] != "pong":
            assert message["type"] == "next"

        batches = {"query": "subscription { quoteBatches(symbols: []) { quotes { symbol } } }"}
        await ws.send(json.dumps({"id": "8", "type": "subscribe", "payload": batches}))
        while (message := await _recv(ws))["type"] == "next":
            pass
        assert message["type"] == "error" and message["id"] == "8"

        await ws.send(json.dumps({"id": "7", "type": "complete"}))
        await asyncio.sleep(0.3)
        stats = _stats(target)
        assert stats["kind"] == "raw" and stats["connections"] == 1
        assert stats["sent"] >= 5 and stats["feed"]["quotes"] > 0  # the 5 live ones at least
        sent = stats["sent"]
        await asyncio.sleep(0.3)
        assert _stats(target)["sent"] == sent  # completed: nothing more for it
        await ws.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["raw", "strawberry"])
async def test_the_harness_client_subscribes_to_each_baseline(
    kind: str, upstream: PolygonProtocolServer, tmp_path: Path
) -> None:
    async with start_target(kind, upstream.url, SYMBOLS, tmp_path) as target:
        messages: list[dict[str, Any]] = []
        got_five = asyncio.Event()

        def on_message(raw: bytes) -> None:
            messages.append(json.loads(raw))
            if len(messages) >= 6:
                got_five.set()

        client = await open_wire(target.ws_url, "graphql-transport-ws", timeout_s=TIMEOUT)
        client.reader.on_message = on_message
        client.send_text(b'{"type":"connection_init","payload":{}}')
        payload = {"query": TIMED, "variables": {"s": list(SYMBOLS)}}
        message = {"id": "1", "type": "subscribe", "payload": payload}
        client.send_text(json.dumps(message).encode())
        await asyncio.wait_for(got_five.wait(), TIMEOUT)
        client.close()
        assert messages[0] == {"type": "connection_ack"}
        quotes = [m["payload"]["data"]["quotes"] for m in messages[1:]]
        assert {q["symbol"] for q in quotes} <= set(SYMBOLS)
        assert all(isinstance(q["receivedAt"], float) for q in quotes)
        assert any(q["snapshot"] is False for q in quotes)
        assert _stats(target)["kind"] == kind
