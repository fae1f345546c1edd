"""Client mistakes get GraphQL-shaped errors with stable codes, over HTTP and WebSocket
alike, and are never logged as server failures (no traceback, no ERROR line)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from streams.polygon_server import start_simulated_server
from tests.e2e.conftest import SettingsFactory
from tests.support.graphql_ws import graphql_ws
from tests.support.server import RunningServer, running_server

TWO_OPERATIONS = "query A { feedStatus { state } } query B { symbols { symbol } }"
SUBSCRIPTION_A = "subscription A { feedStatus { state } }"

#: (what, request JSON (or raw body), HTTP status, code). The statuses are strawberry's.
HTTP_CASES: list[tuple[str, Any, int, str]] = [
    (
        "operationName matches nothing",
        {"query": "query A { feedStatus { state } }", "operationName": "B"},
        400,
        "OPERATION_RESOLUTION_FAILURE",
    ),
    (
        "several operations, no operationName",
        {"query": TWO_OPERATIONS},
        400,
        "OPERATION_RESOLUTION_FAILURE",
    ),
    (
        "only a fragment",
        {"query": "fragment F on Query { feedStatus { state } }"},
        400,
        "OPERATION_RESOLUTION_FAILURE",
    ),
    ("a syntax error", {"query": "{ feedStatus { "}, 200, "GRAPHQL_PARSE_FAILED"),
    ("an unknown field", {"query": "{ feedStatus { stat } }"}, 200, "GRAPHQL_VALIDATION_FAILED"),
    (
        "a literal the scalar refuses",
        {"query": '{ bars(symbol: "AMZN", timeframe: M1, from: "x") { open } }'},
        200,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    (
        "a missing variable",
        {"query": "query($s: String!) { quote(symbol: $s) { bidPrice } }"},
        200,
        "BAD_USER_INPUT",
    ),
    (
        "a variable the scalar refuses",
        {
            "query": 'query($f: Timestamp) { bars(symbol: "AMZN", timeframe: M1, from: $f) '
            "{ open } }",
            "variables": {"f": "x"},
        },
        200,
        "BAD_USER_INPUT",
    ),
    ("no query", {}, 400, "BAD_REQUEST"),
    (
        "variables not an object",
        {"query": "{ feedStatus { state } }", "variables": "x"},
        400,
        "BAD_REQUEST",
    ),
    ("a subscription over HTTP", {"query": SUBSCRIPTION_A}, 400, "BAD_REQUEST"),
    ("a body that is not JSON", b"{not json", 400, "BAD_REQUEST"),
]


@pytest.fixture
async def server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    async with await start_simulated_server(["AMZN"], seed=5, rate=100.0) as upstream:
        async with running_server(make_settings(upstream, symbols=("AMZN",))) as srv:
            yield srv


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing a client did wrong is an error of the server's."""
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


@pytest.mark.parametrize(
    ("what", "body", "status", "code"), HTTP_CASES, ids=[c[0] for c in HTTP_CASES]
)
async def test_http_request_errors_are_graphql_shaped(  # noqa: PLR0917 - parameters
    server: RunningServer,
    caplog: pytest.LogCaptureFixture,
    what: str,
    body: Any,
    status: int,
    code: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(base_url=server.http) as http:
        if isinstance(body, bytes):
            response = await http.post(
                "/graphql", content=body, headers={"content-type": "application/json"}
            )
        else:
            response = await http.post("/graphql", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    errors = response.json()["errors"]
    assert errors[0]["extensions"]["code"] == code, errors
    assert errors[0]["message"]
    assert_quiet(caplog)


async def test_http_method_and_token_errors_are_graphql_shaped(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(base_url=server.http) as http:
        mutation_by_get = await http.get(
            "/graphql", params={"query": 'mutation { logout(refreshToken: "x") }'}
        )
        put = await http.put("/graphql", content=b"{}")
        bad_token = await http.post(
            "/graphql",
            json={"query": "{ me { user { email } } }"},
            headers={"authorization": "Bearer not-a-token"},
        )
    assert mutation_by_get.status_code == 400
    assert mutation_by_get.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert "POST" in mutation_by_get.json()["errors"][0]["message"]
    assert put.status_code == 405
    assert put.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert bad_token.status_code == 401
    assert bad_token.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert_quiet(caplog)


async def test_websocket_request_errors_end_only_their_operation(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"query": SUBSCRIPTION_A, "operationName": "B"}, "OPERATION_RESOLUTION_FAILURE"),
        (
            {"query": SUBSCRIPTION_A + " subscription C { feedStatus { state } }"},
            "OPERATION_RESOLUTION_FAILURE",
        ),
        ({"query": "subscription { feedStatus { "}, "GRAPHQL_PARSE_FAILED"),
        ({"query": "subscription { feedStatus { stat } }"}, "GRAPHQL_VALIDATION_FAILED"),
        (
            {
                "query": "subscription($s: [String!]!) { quotes(symbols: $s) { symbol } }",
                "variables": {},
            },
            "BAD_USER_INPUT",
        ),
    ]
    async with graphql_ws(server.ws) as client:
        # A live subscription first: none of the mistakes below may disturb it.
        live = await client.subscribe('subscription { quotes(symbols: ["AMZN"]) { symbol } }')
        assert (await client.next_data(live))["quotes"]["symbol"] == "AMZN"
        for number, (payload, code) in enumerate(cases):
            op = f"bad-{number}"
            await client.send({"id": op, "type": "subscribe", "payload": payload})
            while True:
                msg = await client.recv()
                if msg.get("id") == op:
                    break
                assert msg.get("id") == live, msg
            assert msg["type"] == "error", msg
            assert msg["payload"][0]["extensions"]["code"] == code, (payload, msg)
        # The socket and the live subscription carried on.
        assert (await client.next_data(live))["quotes"]["symbol"] == "AMZN"
    assert_quiet(caplog)
