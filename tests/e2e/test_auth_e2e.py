"""Who may do what, through the real server: private alerts, WebSocket authentication
and expiry, forged tokens, anonymous policy, per-tier rate and subscription limits."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from streams.polygon_server import start_simulated_server
from tests.e2e.conftest import SettingsFactory
from tests.support.accounts import bearer, sign_up
from tests.support.graphql_ws import graphql_ws
from tests.support.server import running_server
from tests.support.timing import TIMEOUT

ALERT = """mutation($v: Float!) { createAlert(input: {symbol: "AMZN", conditions:
  [{left: {price: LAST}, op: GREATER_THAN, value: $v}]}) { id } }"""


async def gql(
    http: httpx.AsyncClient, query: str, token: str | None = None, **v: Any
) -> dict[str, Any]:
    headers = bearer(token) if token else {}
    response = await http.post("/graphql", json={"query": query, "variables": v}, headers=headers)
    body: dict[str, Any] = response.json()
    return body


def code(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


async def close_code(ws: Any) -> int | None:
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


@pytest.fixture
async def server(make_settings: SettingsFactory):  # type: ignore[no-untyped-def]
    async with await start_simulated_server(["AMZN"], seed=3, rate=200.0) as upstream:
        async with running_server(make_settings(upstream, symbols=("AMZN",))) as srv:
            yield srv


async def test_users_cannot_see_or_change_each_others_alerts(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        alice, bob = await sign_up(http), await sign_up(http)
        a, b = alice["accessToken"], bob["accessToken"]
        mine = (await gql(http, ALERT, a, v=1.0))["data"]["createAlert"]["id"]
        async with (
            graphql_ws(server.ws, payload={"token": b}) as bob_ws,
            graphql_ws(server.ws, payload={"token": a}) as alice_ws,
        ):
            bob_op = await bob_ws.subscribe("subscription { alertEvents { alertId } }")
            alice_op = await alice_ws.subscribe("subscription { alertEvents { alertId } }")
            # Alice's alert (LAST > 1) fires; only Alice hears it.
            second = (await gql(http, ALERT, a, v=2.0))["data"]["createAlert"]["id"]
            heard = (await alice_ws.next_data(alice_op))["alertEvents"]["alertId"]
            assert heard in (mine, second)
            with pytest.raises(TimeoutError):
                await bob_ws.next_data(bob_op, timeout=1.0)
        assert (await gql(http, "{ alerts { id } }", b))["data"]["alerts"] == []
        assert (await gql(http, "{ alertHistory { id } }", b))["data"]["alertHistory"] == []
        guessed = await gql(
            http, "query($id: ID) { alertHistory(alertId: $id) { id } }", b, id=mine
        )
        assert guessed["data"]["alertHistory"] == []
        update = await gql(
            http,
            """mutation($id: ID!) { updateAlert(id: $id, input: {symbol: "AMZN", conditions:
              [{left: {price: LAST}, op: LESS_THAN, value: 1}]}) { id } }""",
            b,
            id=mine,
        )
        assert code(update) == "NOT_FOUND"
        toggle = await gql(
            http,
            "mutation($id: ID!) { setAlertEnabled(id: $id, enabled: false) { id } }",
            b,
            id=mine,
        )
        assert code(toggle) == "NOT_FOUND"
        deleted = await gql(http, "mutation($id: ID!) { deleteAlert(id: $id) }", b, id=mine)
        assert deleted["data"]["deleteAlert"] is False
        still = await gql(http, "{ alerts { id } }", a)
        assert {x["id"] for x in still["data"]["alerts"]} == {mine, second}
        anonymous = await gql(http, "{ alerts { id } }")
        assert code(anonymous) == "UNAUTHENTICATED"


def forged_none_token(user_id: str) -> str:
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(d)).rstrip(b"=").decode()

    claims = {"sub": user_id, "iss": "tickgraph", "aud": "tickgraph-api", "iat": 1, "exp": 2**40}
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


async def test_bad_credentials_are_refused_over_http_and_websocket(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        user = await sign_up(http)
        forged = forged_none_token(user["id"])
        for token in (forged, "garbage", "tg_deadbeef_notakey", user["accessToken"] + "x"):
            response = await http.post(
                "/graphql", json={"query": "{ symbols { symbol } }"}, headers=bearer(token)
            )
            assert response.status_code == 401, token
    for payload in ({"token": forged}, {"token": "garbage"}, {"Authorization": "Bearer nope"}):
        async with graphql_ws(server.ws, init=False) as client:
            await client.send({"type": "connection_init", "payload": payload})
            assert await close_code(client.ws) == 4403


async def test_websocket_is_closed_when_its_token_expires(make_settings: SettingsFactory) -> None:
    async with await start_simulated_server(["AMZN"], seed=4, rate=100.0) as upstream:
        settings = dataclasses.replace(
            make_settings(upstream, symbols=("AMZN",)), access_token_ttl_s=2
        )
        async with running_server(settings) as srv:
            async with httpx.AsyncClient(base_url=srv.http) as http:
                token = (await sign_up(http))["accessToken"]
            async with graphql_ws(srv.ws, payload={"token": token}) as client:
                op = await client.subscribe('subscription { quotes(symbols: ["AMZN"]) { symbol } }')
                await client.next_data(op)
                try:
                    async with asyncio.timeout(TIMEOUT):
                        while True:
                            await client.ws.recv()
                except ConnectionClosed as closed:
                    assert closed.rcvd is not None
                    assert (closed.rcvd.code, closed.rcvd.reason) == (4403, "token expired")


async def test_anonymous_access_can_be_turned_off(make_settings: SettingsFactory) -> None:
    async with await start_simulated_server(["AMZN"], seed=5, rate=50.0) as upstream:
        settings = make_settings(upstream, symbols=("AMZN",), allow_anonymous=False)
        async with running_server(settings) as srv:
            async with httpx.AsyncClient(base_url=srv.http) as http:
                refused = await gql(http, '{ quote(symbol: "AMZN") { symbol } }')
                user = await sign_up(http)  # registering and signing in still work
                allowed = await gql(
                    http, '{ quote(symbol: "AMZN") { symbol } }', user["accessToken"]
                )
            async with graphql_ws(srv.ws, init=False) as client:
                await client.send({"type": "connection_init", "payload": {}})
                anonymous_ws = await close_code(client.ws)
    assert code(refused) == "UNAUTHENTICATED"
    assert "errors" not in allowed
    assert anonymous_ws == 4403


async def test_tier_limits_requests_and_subscriptions(server) -> None:  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.http) as http:
        user = await sign_up(http)
        token = user["accessToken"]
        me = await gql(
            http,
            "{ me { user { tier } limits { requestsPerMinute "
            "concurrentSubscriptions } usage { subscriptions } } }",
            token,
        )
        limits = me["data"]["me"]["limits"]
        assert me["data"]["me"]["user"]["tier"] == "FREE"
        async with graphql_ws(server.ws, payload={"token": token}) as client:
            ops = [
                await client.subscribe('subscription { quotes(symbols: ["AMZN"]) { symbol } }')
                for _ in range(limits["concurrentSubscriptions"])
            ]
            for op in ops:
                await client.next_data(op)
            extra = await client.subscribe("subscription { feedStatus { state } }")
            while True:
                msg = await client.recv()
                if msg.get("id") == extra:
                    break
            assert (
                msg["type"] == "error"
                and msg["payload"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
            )
            await client.complete(ops[0])
            again = await client.subscribe("subscription { feedStatus { state } }")
            while True:  # the socket stayed open and a freed slot is usable
                msg = await client.recv()
                if msg.get("id") == again:
                    break
            assert msg["type"] == "next", msg
        # The request rate: a burst past the tier's allowance gets RATE_LIMITED.
        results = [await gql(http, "{ symbols { symbol } }", token) for _ in range(40)]
        limited = [r for r in results if "errors" in r]
        assert limited and code(limited[0]) == "RATE_LIMITED"
        assert limited[0]["errors"][0]["extensions"]["retryAfter"] > 0
        # Someone else is not affected.
        other = await sign_up(http)
        assert "errors" not in await gql(http, "{ symbols { symbol } }", other["accessToken"])


async def test_only_an_operator_makes_an_administrator(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`tickgraph admin EMAIL` (a real process on the same database) grants the role;
    then the administrator can change tiers, and nobody else can."""
    import os
    import sys

    async with httpx.AsyncClient(base_url=server.http) as http:
        boss, user = await sign_up(http), await sign_up(http)
        change = "mutation($u: ID!) { setUserTier(userId: $u, tier: PRO) { tier } }"
        refused = await gql(http, change, user["accessToken"], u=user["id"])
        env = {
            **os.environ,
            "DATABASE_URL": server.settings.database_url.reveal(),
            "TICKGRAPH_DATA_DIR": str(tmp_path),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server.cli",
            "admin",
            boss["email"],
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(TIMEOUT * 3):
            out, err = await proc.communicate()
        assert proc.returncode == 0, err
        assert b"is now an administrator" in out
        granted = await gql(http, change, boss["accessToken"], u=user["id"])
    assert code(refused) == "FORBIDDEN"
    assert granted["data"]["setUserTier"]["tier"] == "PRO", granted
