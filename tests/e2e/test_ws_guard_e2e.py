"""Transport guards through the real server (uvicorn, websockets-sansio): the WebSocket
Origin allowlist, the message size limit, the per-connection subscription cap and
the HTTP body limit, each configured by its setting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from streams.polygon_server import start_simulated_server
from tests.e2e.conftest import SettingsFactory
from tests.support.graphql_ws import PROTOCOL, graphql_ws
from tests.support.server import running_server
from tests.support.timing import TIMEOUT

QUOTES = 'subscription { quotes(symbols: ["AMZN"]) { symbol sequence } }'
FEED = "subscription { feedStatus { state } }"


async def close_code(ws: Any) -> int | None:
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def ping_pong(url: str) -> None:
    """The server still accepts connections and answers on them."""
    async with graphql_ws(url) as client:
        await client.send({"type": "ping"})
        assert (await client.recv())["type"] == "pong"


@pytest.fixture
async def upstream() -> AsyncIterator[Any]:
    async with await start_simulated_server(["AMZN"], seed=5, rate=200.0) as server:
        yield server


async def test_origin_allowlist_is_checked_at_the_handshake(
    make_settings: SettingsFactory, upstream: Any
) -> None:
    settings = make_settings(
        upstream, symbols=("AMZN",), ws_allowed_origins=("https://app.example.com",)
    )
    async with running_server(settings) as srv:
        same_origin = f"http://127.0.0.1:{srv.port}"
        # Listed, same-origin, and no Origin at all (not a browser): accepted.
        for origin in ("https://app.example.com", same_origin, None):
            async with graphql_ws(srv.ws, origin=Origin(origin) if origin else None) as client:
                await client.send({"type": "ping"})
                assert (await client.recv())["type"] == "pong", origin
        # Anything else is refused before the upgrade, including look-alikes and the
        # "null" origin of sandboxed frames and local files.
        for origin in ("https://evil.example.com", "https://app.example.com.evil.net", "null"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(
                    srv.ws,
                    subprotocols=[PROTOCOL],  # type: ignore[list-item]
                    origin=Origin(origin),
                    open_timeout=TIMEOUT,
                ):
                    pass
            assert refused.value.response.status_code == 403, origin
        await ping_pong(srv.ws)


async def test_a_listed_origin_matches_however_it_is_written(
    make_settings: SettingsFactory, upstream: Any
) -> None:
    """Browsers send the origin lowercased, without the default port; the list is
    compared in that form, whatever case and port it was configured with."""
    listed = ("HTTPS://App.Example.com:443", "http://localhost:5173/")
    settings = make_settings(upstream, symbols=("AMZN",), ws_allowed_origins=listed)
    async with running_server(settings) as srv:
        for origin in ("https://app.example.com", "http://localhost:5173"):
            async with graphql_ws(srv.ws, origin=Origin(origin)) as client:
                await client.send({"type": "ping"})
                assert (await client.recv())["type"] == "pong", origin


async def test_a_message_over_the_size_limit_closes_that_socket_with_1009(
    make_settings: SettingsFactory, upstream: Any
) -> None:
    limit = 16 * 1024
    settings = make_settings(upstream, symbols=("AMZN",), ws_max_message_bytes=limit)
    async with running_server(settings) as srv, graphql_ws(srv.ws) as bystander:
        watched = await bystander.subscribe(QUOTES)
        await bystander.next_data(watched)
        async with graphql_ws(srv.ws) as client:
            # Just under the limit: an ordinary message.
            pad = "x" * (limit - 100)
            await client.send({"type": "ping", "payload": {"pad": pad}})
            assert (await client.recv())["type"] == "pong"
            # Over it: the socket is closed with 1009 (message too big).
            await client.send({"type": "ping", "payload": {"pad": pad + "x" * 200}})
            assert await close_code(client.ws) == 1009
        # Other connections carry on, and new ones are accepted.
        assert (await bystander.next_data(watched))["quotes"]["symbol"] == "AMZN"
        await ping_pong(srv.ws)


async def test_the_subscription_cap_refuses_the_extra_operation_and_keeps_the_socket(
    make_settings: SettingsFactory, upstream: Any
) -> None:
    settings = make_settings(upstream, symbols=("AMZN",), ws_max_subscriptions=2)
    async with running_server(settings) as srv, graphql_ws(srv.ws) as client:
        await client.subscribe(QUOTES, op_id="a")
        await client.subscribe(FEED, op_id="b")
        await client.subscribe(QUOTES, op_id="c")
        seen: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "c": []}
        while not (seen["a"] and seen["b"] and seen["c"]):
            msg = await client.recv()
            seen[msg["id"]].append(msg)
        assert [m["type"] for m in seen["c"]] == ["error"]
        error = seen["c"][0]["payload"][0]
        assert error["extensions"] == {"code": "TOO_MANY_SUBSCRIPTIONS", "limit": 2}
        # The socket is open and the others still run; completing one makes room.
        await client.complete("b")
        await client.subscribe(QUOTES, op_id="d")
        while (msg := await client.recv())["id"] != "d":
            assert msg["type"] in ("next", "complete"), msg
        assert msg["type"] == "next" and msg["payload"]["data"]["quotes"]["symbol"] == "AMZN"


async def test_a_request_body_over_the_limit_gets_413(
    make_settings: SettingsFactory, upstream: Any
) -> None:
    limit = 256 * 1024
    settings = make_settings(upstream, symbols=("AMZN",), max_request_bytes=limit)
    ten_mb = b'{"query": "{ __typename }", "variables": {"pad": "' + b"x" * 10_000_000 + b'"}}'

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(ten_mb), 64 * 1024):
            yield ten_mb[start : start + 64 * 1024]

    async with (
        running_server(settings) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=TIMEOUT) as http,
    ):
        headers = {"content-type": "application/json"}
        declared = await http.post("/graphql", content=ten_mb, headers=headers)
        streamed = await http.post("/graphql", content=chunked(), headers=headers)
        under = await http.post(
            "/graphql",
            json={"query": "{ __typename }", "variables": {"pad": "x" * (limit - 1000)}},
        )
        after = await http.post("/graphql", json={"query": "{ __typename }"})
    for refused in (declared, streamed):
        assert refused.status_code == 413
        assert refused.json()["errors"][0]["extensions"] == {
            "code": "REQUEST_TOO_LARGE",
            "maxBytes": limit,
        }
    assert under.status_code == 200 and under.json() == {"data": {"__typename": "Query"}}
    assert after.json() == {"data": {"__typename": "Query"}}
