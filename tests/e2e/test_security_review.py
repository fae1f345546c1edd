"""What the outside security review found, as an attacker would try it, against a real
server: the anonymous gate against the shape of the query, work before admission,
live sockets after revocation, key scopes, client addresses, malformed input, and the
smaller points (tokens that are not strings, 429, the GraphQL-over-HTTP media type,
operation ids)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streams.polygon_server import PolygonProtocolServer, start_simulated_server
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.accounts import PASSWORD, bearer, sign_up
from tests.support.graphql_ws import PROTOCOL, graphql_ws
from tests.support.server import RunningServer, running_server
from tests.support.timing import TIMEOUT

QUOTE = '{ quote(symbol: "AMZN") { bidPrice } }'
ALERT = """mutation { createAlert(input: {symbol: "AMZN", conditions:
  [{left: {price: LAST}, op: GREATER_THAN, value: 1}]}) { id } }"""
ALERT_EVENTS = "subscription { alertEvents { alertId } }"
QUOTES = 'subscription { quotes(symbols: ["AMZN"]) { symbol } }'


async def gql(
    http: httpx.AsyncClient,
    query: str,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    **variables: Any,
) -> httpx.Response:
    return await http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={**(bearer(token) if token else {}), **(headers or {})},
    )


def code(body: dict[str, Any]) -> str | None:
    errors = body.get("errors") or []
    return errors[0].get("extensions", {}).get("code") if errors else None


async def closed_with(ws: Any) -> tuple[int | None, str]:
    """Read until the server closes; the close code and reason it sent."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, "")
    raise AssertionError("unreachable")


@asynccontextmanager
async def upstream() -> AsyncIterator[PolygonProtocolServer]:
    async with await start_simulated_server(["AMZN"], seed=11, rate=200.0) as sim:
        yield sim


@pytest.fixture
async def open_server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    async with upstream() as sim, running_server(make_settings(sim, symbols=("AMZN",))) as srv:
        yield srv


@pytest.fixture
async def closed_server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    """Anonymous access off, as in production."""
    async with upstream() as sim:
        settings = make_settings(sim, symbols=("AMZN",), allow_anonymous=False)
        async with running_server(settings) as srv:
            yield srv


# -- 1. The anonymous gate decides on the fields that run ------------------------------

WALKAROUNDS = [
    QUOTE,
    '{ ... on Query { quote(symbol: "AMZN") { bidPrice } } }',
    '{ ... { quote(symbol: "AMZN") { bidPrice } } }',
    "query { ...login } fragment login on Query { feedStatus { state } }",
    "query login { ...register } fragment register on Query { symbols { symbol } }",
    '{ login: quote(symbol: "AMZN") { bidPrice } }',
    '{ __typename ...f } fragment f on Query { quote(symbol: "AMZN") { bidPrice } }',
    "query($no: Boolean = false) { feedStatus @include(if: true) { state } "
    "register: symbols @skip(if: $no) { symbol } }",
]


@pytest.mark.parametrize("document", WALKAROUNDS)
async def test_anonymous_callers_cannot_walk_around_the_gate_over_http(
    closed_server: RunningServer, document: str
) -> None:
    async with httpx.AsyncClient(base_url=closed_server.http) as http:
        body = (await gql(http, document)).json()
    assert "data" not in body or body["data"] is None, body
    assert code(body) == "UNAUTHENTICATED", body


async def test_anonymous_sockets_are_refused_when_anonymous_access_is_off(
    closed_server: RunningServer,
) -> None:
    async with connect(closed_server.ws, subprotocols=[PROTOCOL]) as ws:  # type: ignore[list-item]
        await ws.send(orjson.dumps({"type": "connection_init", "payload": {}}).decode())
        assert (await closed_with(ws))[0] == 4403


async def test_skipped_fields_do_not_count_and_entry_fields_stay_open(
    closed_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=closed_server.http) as http:
        # The public field is skipped: only the entry mutation runs, which is allowed.
        skipped = (
            await gql(
                http,
                "query($s: Boolean!) { __typename "
                '... @include(if: $s) { quote(symbol: "AMZN") { bidPrice } } }',
                s=False,
            )
        ).json()
        assert "errors" not in skipped, skipped
        user = await sign_up(http)
        signed_in = (await gql(http, QUOTE, user["accessToken"])).json()
    assert "errors" not in signed_in, signed_in


@pytest.mark.parametrize(
    "document",
    [
        ALERT,
        "mutation { ...m } fragment m on Mutation "
        '{ deleteAlert(id: "00000000-0000-0000-0000-000000000000") }',
        "mutation { ... on Mutation { logoutEverywhere } }",
        "{ ... on Query { me { user { id } } } }",
        "query { ...quote } fragment quote on Query { alerts { id } }",
    ],
)
async def test_anonymous_callers_get_no_private_field_by_any_shape(
    open_server: RunningServer, document: str
) -> None:
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        body = (await gql(http, document)).json()
    assert code(body) == "UNAUTHENTICATED", body


async def test_the_gate_holds_for_subscriptions_over_websocket(
    open_server: RunningServer,
) -> None:
    async with graphql_ws(open_server.ws) as client:
        op = await client.subscribe(
            "subscription { ...s } fragment s on Subscription { alertEvents { alertId } }"
        )
        message = await client.recv()
    assert message["type"] == "error" and message["id"] == op, message
    assert message["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# -- 2. Work before admission is charged ------------------------------------------------


async def test_documents_that_fail_to_parse_or_validate_are_rate_limited(
    open_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        statuses = []
        for i in range(40):
            response = await gql(http, "{ this is not graphql" if i % 2 else "{ nope }")
            statuses.append(response.status_code)
    # The anonymous tier's burst is 20 (then one a second): the rest are refused before
    # parsing, however malformed.
    assert statuses[:20] == [200] * 20, statuses
    assert statuses.count(429) >= 15, statuses


async def test_large_documents_cost_more_of_the_rate(open_server: RunningServer) -> None:
    """A request costs one unit per started KiB: a 9 KiB document is nine small ones."""
    padded = "# " + "x" * 9000 + "\n{ symbols { symbol } }"
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        statuses = [(await gql(http, padded)).status_code for _ in range(4)]
    # The anonymous burst of 20 holds two of them, not twenty.
    assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429], statuses


async def test_subscribes_are_charged_before_their_document_is_parsed(
    open_server: RunningServer,
) -> None:
    async with graphql_ws(open_server.ws) as client:
        codes = []
        for i in range(30):
            # Invalid (a syntax error would close the socket, as the protocol says).
            await client.subscribe("subscription { nope }", op_id=f"op{i}")
            codes.append((await client.recv())["payload"][0].get("extensions", {}).get("code"))
    assert "RATE_LIMITED" in codes, codes


async def test_documents_too_expensive_to_validate_are_refused_before_validation(
    open_server: RunningServer,
) -> None:
    conflicting = "{ " + " ".join("feedStatus { state }" for _ in range(400)) + " }"
    many_fragments = (
        "{ "
        + " ".join(f"...f{i}" for i in range(150))
        + " } "
        + " ".join(f"fragment f{i} on Query {{ feedStatus {{ state }} }}" for i in range(150))
    )
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        for document in (conflicting, many_fragments):
            body = (await gql(http, document)).json()
            assert code(body) == "QUERY_TOO_COMPLEX", body
        # An ordinary document with a repeated field is fine.
        fine = (await gql(http, "{ feedStatus { state } feedStatus { state } }")).json()
    assert "errors" not in fine, fine


# -- 3. Revocation reaches open sockets --------------------------------------------------


CREATE_KEY = """mutation($s: String!) { createApiKey(name: "bot", scope: $s) {
  key { id } secret } }"""


async def new_key(http: httpx.AsyncClient, token: str, scope: str = "read") -> tuple[str, str]:
    body = (await gql(http, CREATE_KEY, token, s=scope)).json()
    assert "errors" not in body, body
    created = body["data"]["createApiKey"]
    return created["key"]["id"], created["secret"]


@asynccontextmanager
async def two_processes(
    make_settings: SettingsFactory,
) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    """Two servers on one database, each with its own listener: a change made through
    one must reach the sockets of the other."""
    async with upstream() as sim:
        settings = make_settings(sim, symbols=("AMZN",))
        async with running_server(settings) as a, running_server(settings) as b:
            yield a, b


async def test_revoking_an_api_key_closes_its_sockets_on_every_process(
    make_settings: SettingsFactory,
) -> None:
    async with two_processes(make_settings) as (a, b), httpx.AsyncClient(base_url=a.http) as http:
        user = await sign_up(http)
        key_id, secret = await new_key(http, user["accessToken"])
        async with (
            graphql_ws(a.ws, payload={"token": secret}) as on_a,
            graphql_ws(b.ws, payload={"token": secret}) as on_b,
        ):
            for client in (on_a, on_b):
                await client.subscribe(ALERT_EVENTS, op_id="private")
            await eventually(
                lambda: (
                    a.runtime.services.connections.count() == 1
                    and b.runtime.services.connections.count() == 1
                ),
                "both sockets registered",
            )
            revoked = (
                await gql(
                    http,
                    "mutation($k: ID!) { revokeApiKey(id: $k) }",
                    user["accessToken"],
                    k=key_id,
                )
            ).json()
            assert revoked["data"]["revokeApiKey"] is True
            # On the process that made the change: closed before the mutation answered.
            assert a.runtime.services.connections.count() == 0
            assert (await closed_with(on_a.ws))[0] == 4403
            # On the other: within seconds, through the database.
            assert (await closed_with(on_b.ws))[0] == 4403
        # The key is refused from now on, for new sockets and HTTP alike.
        refused = (await gql(http, QUOTE, secret)).json()
        assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_no_private_event_leaves_after_the_revocation_is_acknowledged(
    open_server: RunningServer,
) -> None:
    """A dense alert fires on every trade to a socket opened with an API key; once the
    revocation is acknowledged, the socket's outbox accepts nothing more."""
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        user = await sign_up(http)
        token = user["accessToken"]
        key_id, secret = await new_key(http, token)
        dense = """mutation { createAlert(input: {symbol: "AMZN",
          conditions: [{left: {price: LAST}, op: GREATER_THAN, value: 0}],
          trigger: {mode: EVERY_TIME}}) { id } }"""
        created = (await gql(http, dense, token)).json()
        assert "errors" not in created, created
        async with graphql_ws(open_server.ws, payload={"token": secret}) as client:
            await client.subscribe(ALERT_EVENTS, op_id="private")
            await client.next_data("private")  # firings are flowing
            (handler,) = next(iter(open_server.runtime.services.connections._by_user.values()))
            await gql(http, "mutation($k: ID!) { revokeApiKey(id: $k) }", token, k=key_id)
            assert handler.revoked and handler.outbox.closed
            assert (await closed_with(client.ws))[0] == 4403


@pytest.mark.parametrize("how", ["logoutEverywhere", "changePassword", "disable"])
async def test_ending_every_session_closes_token_sockets_and_refuses_the_token(
    make_settings: SettingsFactory, how: str
) -> None:
    async with two_processes(make_settings) as (a, b), httpx.AsyncClient(base_url=a.http) as http:
        user = await sign_up(http)
        token = user["accessToken"]
        async with graphql_ws(b.ws, payload={"token": token}) as elsewhere:
            await elsewhere.subscribe(ALERT_EVENTS, op_id="private")
            await eventually(lambda: b.runtime.services.connections.count() == 1, "registered")
            if how == "logoutEverywhere":
                body = (await gql(http, "mutation { logoutEverywhere }", token)).json()
            elif how == "changePassword":
                body = (
                    await gql(
                        http,
                        "mutation($o: String!, $n: String!) { changePassword("
                        "oldPassword: $o, newPassword: $n) { accessToken } }",
                        token,
                        o=PASSWORD,
                        n=PASSWORD + " and more",
                    )
                ).json()
            else:
                admin = await sign_up(http)
                await set_admin(a, admin["id"])
                body = (
                    await gql(
                        http,
                        "mutation($u: ID!) { setUserDisabled(userId: $u, disabled: true) "
                        "{ disabled } }",
                        admin["accessToken"],
                        u=user["id"],
                    )
                ).json()
            assert "errors" not in body, body
            assert (await closed_with(elsewhere.ws))[0] == 4403
        for server in (a, b):
            async with httpx.AsyncClient(base_url=server.http) as other:
                response = await gql(other, QUOTE, token)
            assert response.status_code == 401, response.text
            assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_logging_one_session_out_ends_its_access_token_but_not_the_others(
    open_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        user = await sign_up(http)
        other = await gql(
            http,
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
            e=user["email"],
            p=PASSWORD,
        )
        second_token = other.json()["data"]["login"]["accessToken"]
        async with graphql_ws(open_server.ws, payload={"token": user["accessToken"]}) as first:
            await first.subscribe(QUOTES, op_id="q")
            await first.next_data("q")
            out = await gql(
                http, "mutation($r: String!) { logout(refreshToken: $r) }", r=user["refreshToken"]
            )
            assert out.json()["data"]["logout"] is True
            assert (await closed_with(first.ws))[0] == 4403
        assert (await gql(http, QUOTE, user["accessToken"])).status_code == 401
        assert "errors" not in (await gql(http, QUOTE, second_token)).json()


async def set_admin(server: RunningServer, user_id: str) -> None:
    import uuid

    from server.auth.users import set_admin as grant

    assert server.runtime.database is not None
    await grant(server.runtime.database.pool, uuid.UUID(user_id), True)


async def test_a_tier_change_reaches_open_sockets_with_the_new_limits(
    open_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        admin, user = await sign_up(http), await sign_up(http)
        await set_admin(open_server, admin["id"])
        async with graphql_ws(open_server.ws, payload={"token": user["accessToken"]}) as client:
            # The free tier holds 5 subscriptions at once; the sixth is refused.
            for i in range(5):
                await client.subscribe(QUOTES, op_id=f"q{i}")
                assert (await _first_for(client, f"q{i}"))["type"] == "next"
            await client.subscribe(QUOTES, op_id="sixth")
            refused = await _first_for(client, "sixth")
            assert refused["type"] == "error", refused
            body = (
                await gql(
                    http,
                    "mutation($u: ID!) { setUserTier(userId: $u, tier: PRO) { tier } }",
                    admin["accessToken"],
                    u=user["id"],
                )
            ).json()
            assert body["data"]["setUserTier"]["tier"] == "PRO"
            await client.subscribe(QUOTES, op_id="seventh")
            accepted = await _first_for(client, "seventh")
            assert accepted["type"] == "next", accepted


async def _first_for(client: Any, op_id: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = await client.recv()
        if message.get("id") == op_id:
            return message


# -- 5. Scopes: an allow-list per operation ----------------------------------------------


async def test_a_read_key_reads_and_a_trading_key_trades_and_neither_manages_the_account(
    open_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        user = await sign_up(http)
        _, read = await new_key(http, user["accessToken"], "read")
        _, trading = await new_key(http, user["accessToken"], "trading")
        alert_id = (await gql(http, ALERT, user["accessToken"])).json()["data"]["createAlert"]["id"]
        update = "mutation($a: ID!) { setAlertEnabled(id: $a, enabled: false) { id } }"
        delete = "mutation($a: ID!) { deleteAlert(id: $a) }"
        account = [
            ("mutation { logoutEverywhere }", {}),
            ('mutation { createApiKey(name: "x", scope: "read") { secret } }', {}),
            ("mutation($r: String!) { logout(refreshToken: $r) }", {"r": user["refreshToken"]}),
            ("{ apiKeys { id } }", {}),
        ]
        # read: queries and subscriptions only.
        assert (
            "errors" not in (await gql(http, "{ alerts { id } me { user { id } } }", read)).json()
        )
        for document, variables in [
            (ALERT, {}),
            (update, {"a": alert_id}),
            (delete, {"a": alert_id}),
        ]:
            body = (await gql(http, document, read, **variables)).json()
            assert code(body) == "FORBIDDEN", (document, body)
        # trading: also alert changes.
        assert "errors" not in (await gql(http, update, trading, a=alert_id)).json()
        # Neither manages the account.
        for key in (read, trading):
            for document, variables in account:
                body = (await gql(http, document, key, **variables)).json()
                assert code(body) == "FORBIDDEN", (document, body)
        # Over WebSocket too: a read key cannot mutate.
        async with graphql_ws(open_server.ws, payload={"token": read}) as client:
            await client.subscribe(ALERT, op_id="m")
            message = await client.recv()
        assert (
            message["type"] == "error"
            and message["payload"][0]["extensions"]["code"] == "FORBIDDEN"
        )


# -- 6. Client addresses -------------------------------------------------------------------


async def spend_burst(http: httpx.AsyncClient, forwarded: list[str]) -> list[int]:
    statuses = []
    for address in forwarded:
        response = await gql(http, "{ symbols { symbol } }", headers={"x-forwarded-for": address})
        statuses.append(response.status_code)
    return statuses


async def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(
    open_server: RunningServer, make_settings: SettingsFactory
) -> None:
    spoofed = [f"203.0.113.{i}" for i in range(30)]
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        statuses = await spend_burst(http, spoofed)
    # One bucket (the socket's address) whatever the header says.
    assert 429 in statuses, statuses

    async with upstream() as sim:
        trusted = make_settings(sim, symbols=("AMZN",), trusted_proxies=("127.0.0.1/32",))
        async with running_server(trusted) as srv, httpx.AsyncClient(base_url=srv.http) as http:
            # Behind a trusted proxy, each client has its own bucket...
            assert 429 not in await spend_burst(http, spoofed)
            # ...and one client is still limited.
            assert 429 in await spend_burst(http, ["198.51.100.7"] * 30)


# -- 7. Malformed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 50_000 + b"]" * 50_000,
        b'{"query": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'"just a string"',
        b"[1, 2, 3]",
        b"{not json",
        b'{"query": 42}',
        b'{"query": "{ symbols { symbol } }", "variables": [1]}',
        b"\xff\xfe",
    ],
)
async def test_malformed_http_bodies_get_a_400_graphql_error(
    open_server: RunningServer, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        response = await http.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
        alive = await gql(http, "{ symbols { symbol } }")
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert alive.status_code == 200
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.parametrize(
    "message",
    [
        "[1, 2, 3]",
        '"connection_init"',
        "42",
        "null",
        "[" * 30_000 + "]" * 30_000,
        '{"type": 7}',
        '{"type": "subscribe", "id": 5, "payload": {"query": "{ symbols { symbol } }"}}',
        '{"type": "subscribe", "id": "a", "payload": "query"}',
        '{"type": "subscribe", "id": "a", "payload": {"query": ["x"]}}',
        '{"type": "subscribe", "id": "a", '
        '"payload": {"query": "{ symbols { symbol } }", "variables": 3}}',
        '{"type": "subscribe", "id": "'
        + "x" * 1000
        + '", "payload": {"query": "{ symbols { symbol } }"}}',
        '{"type": "complete"}',
    ],
)
async def test_malformed_websocket_messages_close_with_4400(
    open_server: RunningServer, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with graphql_ws(open_server.ws, max_size=None) as client:
        await client.ws.send(message)
        closed = await closed_with(client.ws)
    assert closed[0] == 4400, closed
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


async def test_a_token_that_is_not_a_string_is_refused_not_ignored(
    open_server: RunningServer,
) -> None:
    for token in (42, {"a": 1}, ["x"], True, ""):
        async with connect(open_server.ws, subprotocols=[PROTOCOL]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": token}}))
            assert (await closed_with(ws))[0] == 4403, token


# -- 8. HTTP status codes and media types -----------------------------------------------------


async def test_rate_limits_are_429_with_retry_after(open_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        responses = [await gql(http, "{ symbols { symbol } }") for _ in range(30)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited, [r.status_code for r in responses]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_the_graphql_response_media_type_is_spoken(open_server: RunningServer) -> None:
    accept = {"accept": "application/graphql-response+json"}
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        ok = await gql(http, "{ symbols { symbol } }", headers=accept)
        broken = await gql(http, "{ symbols { ", headers=accept)
        invalid = await gql(http, "{ nope }", headers=accept)
        private = await gql(http, "{ me { user { id } } }", headers=accept)
        legacy = await gql(http, "{ nope }")
    assert ok.status_code == 200 and ok.headers["content-type"].startswith(
        "application/graphql-response+json"
    )
    for response, status in ((broken, 400), (invalid, 400), (private, 401)):
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/graphql-response+json")
        assert "data" not in response.json(), response.text
    # The legacy type keeps the legacy answer: 200 with errors.
    assert legacy.status_code == 200 and legacy.headers["content-type"] == "application/json"


async def test_bad_credentials_are_401_with_a_graphql_error(open_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=open_server.http) as http:
        response = await gql(http, QUOTE, "not-a-token")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
