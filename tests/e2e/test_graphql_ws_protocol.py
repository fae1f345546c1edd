"""graphql-transport-ws as the protocol says: close codes, complete, and what a
disconnect releases (down to the upstream subscription)."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.storage.symbols import SymbolRow, upsert_symbols
from streams.polygon_server import start_simulated_server
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.graphql_ws import PROTOCOL, graphql_ws
from tests.support.server import running_server
from tests.support.timing import TIMEOUT

QUOTES = "subscription($s: [String!]!) { quotes(symbols: $s) { symbol sequence } }"


async def close_code(ws: object) -> int | None:
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                await ws.recv()  # type: ignore[attr-defined]
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


@pytest.fixture
async def server(make_settings: SettingsFactory):  # type: ignore[no-untyped-def]
    async with await start_simulated_server(["AMZN"], seed=1, rate=200.0) as upstream:
        settings = make_settings(upstream, symbols=("AMZN",), ws_init_timeout_s=0.3)
        async with running_server(settings) as srv:
            yield srv, upstream


async def test_close_codes(server) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server
    # 4400: not a protocol message.
    async with graphql_ws(srv.ws) as client:
        await client.send({"type": "bogus"})
        assert await close_code(client.ws) == 4400
    # 4401: subscribe before connection_ack.
    async with graphql_ws(srv.ws, init=False) as client:
        await client.subscribe(QUOTES, {"s": ["AMZN"]})
        assert await close_code(client.ws) == 4401
    # 4409: an operation id that is already running.
    async with graphql_ws(srv.ws) as client:
        await client.subscribe(QUOTES, {"s": ["AMZN"]}, op_id="same")
        await client.subscribe(QUOTES, {"s": ["AMZN"]}, op_id="same")
        assert await close_code(client.ws) == 4409
    # 4408: no connection_init in time.
    async with graphql_ws(srv.ws, init=False) as client:
        assert await close_code(client.ws) == 4408
    # 4429: a second connection_init.
    async with graphql_ws(srv.ws) as client:
        await client.send({"type": "connection_init", "payload": {}})
        assert await close_code(client.ws) == 4429
    # Only graphql-transport-ws is spoken.
    with pytest.raises(Exception):  # noqa: B017 - the handshake is refused, type varies
        async with connect(srv.ws, subprotocols=["graphql-ws"], open_timeout=TIMEOUT) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == PROTOCOL
            await close_code(ws)
            raise AssertionError("legacy protocol accepted")


async def test_errors_are_per_operation_and_the_socket_stays_open(server) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server
    async with graphql_ws(srv.ws) as client:
        bad = await client.subscribe(QUOTES, {"s": ["not a symbol"]})
        msg = await client.recv()
        assert msg["id"] == bad and msg["type"] in ("error", "next"), msg
        errors = msg["payload"] if msg["type"] == "error" else msg["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "INVALID_SYMBOL"
        unknown = await client.subscribe(QUOTES, {"s": ["ZZZZ"]})
        msg = await client.recv()
        errors = msg["payload"] if msg["type"] == "error" else msg["payload"]["errors"]
        assert msg["id"] == unknown and errors[0]["extensions"]["code"] == "INVALID_SYMBOL"
        invalid = await client.subscribe("subscription { nope }")
        msg = await client.recv()
        assert msg["id"] == invalid and msg["type"] == "error", msg
        assert "nope" in msg["payload"][0]["message"]
        good = await client.subscribe(QUOTES, {"s": ["AMZN"]})
        assert (await client.next_data(good))["quotes"]["symbol"] == "AMZN"
    # A document that does not even parse is that operation's error too (a client
    # typing in GraphiQL), with the parser's message; the socket stays open.
    async with graphql_ws(srv.ws) as client:
        broken = await client.subscribe("subscription { quotes(")
        msg = await client.recv()
        assert msg["id"] == broken and msg["type"] == "error", msg
        assert msg["payload"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
        assert msg["payload"][0]["message"].startswith("Syntax Error")
        good = await client.subscribe(QUOTES, {"s": ["AMZN"]})
        assert (await client.next_data(good))["quotes"]["symbol"] == "AMZN"


async def test_complete_stops_delivery(server) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server
    hub = srv.runtime.services.hub
    async with graphql_ws(srv.ws) as client:
        op = await client.subscribe(QUOTES, {"s": ["AMZN"]})
        await client.next_data(op)
        await client.complete(op)
        await eventually(lambda: hub.subscriber_count("Q", "AMZN") == 0, "detached")
        # Drain what was in flight, then nothing more for that id.
        ping = await client.subscribe("subscription { feedStatus { state } }")
        while True:
            msg = await client.recv()
            if msg["id"] == ping:
                break
            assert msg["id"] == op and msg["type"] in ("next", "complete")
        with pytest.raises(TimeoutError):
            while True:
                msg = await client.recv(timeout=0.5)
                assert msg["id"] != op, msg


async def test_abrupt_disconnect_releases_interest_and_upstream_subscription(
    make_settings: SettingsFactory,
) -> None:
    async with await start_simulated_server(["AMZN"], seed=2, rate=200.0) as upstream:
        settings = make_settings(upstream, symbols=("AMZN",))
        # GOOG is known (reference data) but not in the streamed universe.
        from server.storage.database import Database

        async with await Database.open(settings) as db:
            await upsert_symbols(db.pool, [SymbolRow("GOOG", "Alphabet", "XNAS", source="test")])
        async with running_server(settings) as srv:
            feed = srv.runtime.feed
            assert upstream.subscribed_topics() >= set() and "Q.GOOG" not in feed.topics
            # A raw TCP socket we can kill without any close handshake.
            sock = socket.create_connection(("127.0.0.1", srv.port))
            async with graphql_ws(srv.ws, sock=sock) as client:
                op = await client.subscribe(QUOTES, {"s": ["GOOG"]})
                assert (await client.next_data(op))["quotes"]["symbol"] == "GOOG"
                assert {"Q.GOOG", "T.GOOG"} <= feed.topics
                await eventually(
                    lambda: "Q.GOOG" in upstream.subscribed_topics(), "upstream has GOOG"
                )
                # Vanish: RST, no close frame.
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                client.ws.transport.abort()
            hub = srv.runtime.services.hub
            await eventually(lambda: "GOOG" not in hub.interest(), "interest released")
            assert not ({"Q.GOOG", "T.GOOG"} & feed.topics)
            await eventually(
                lambda: "Q.GOOG" not in upstream.subscribed_topics(), "upstream dropped GOOG"
            )
            # The universe stays subscribed whatever subscribers do.
            assert {"Q.AMZN", "T.AMZN"} <= upstream.subscribed_topics()


async def test_subscription_over_plain_http_is_a_clear_400(server) -> None:  # type: ignore[no-untyped-def]
    srv, _ = server
    async with httpx.AsyncClient(base_url=srv.http) as http:
        response = await http.post(
            "/graphql", json={"query": 'subscription { quotes(symbols: ["AMZN"]) { symbol } }'}
        )
        page = await http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST" and "WebSocket" in error["message"]
    # Our GraphiQL page hands GraphiQL a graphql-ws client, so its subscriptions use
    # graphql-transport-ws rather than HTTP.
    assert page.status_code == 200 and "graphqlWs.createClient" in page.text
