"""Query hardening through the real server: refused documents get coded errors over
HTTP and over graphql-transport-ws, nothing of a refused operation runs, the socket
and the server carry on, and production hides what development shows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from graphql import get_introspection_query

from server.settings import Environment, Secret
from server.storage.database import Database
from server.storage.symbols import SymbolRow, upsert_symbols
from streams.polygon_server import start_replay_server, start_simulated_server
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.accounts import sign_up
from tests.support.data import AMZN_REPLAY, SHARED_DATA, require
from tests.support.fake_polygon_rest import FakePolygonRest, daily_aggs_from_csv
from tests.support.graphql_ws import graphql_ws
from tests.support.server import RunningServer, running_server
from tests.support.timing import TIMEOUT


async def post(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def elite(http: httpx.AsyncClient, server: RunningServer) -> None:
    """Sign ``http`` in as an elite user: huge documents cost their size in rate units
    (one per KiB), more than the anonymous burst holds for this many of them."""
    user = await sign_up(http)
    await server.runtime.database.pool.execute(
        "UPDATE users SET tier = 'elite' WHERE id = $1::uuid", user["id"]
    )
    http.headers["authorization"] = f"Bearer {user['accessToken']}"


def first_code(body: dict[str, Any]) -> str:
    assert body.get("errors"), body
    code: str = body["errors"][0].get("extensions", {}).get("code", "")
    return code


@pytest.fixture
async def server(make_settings: SettingsFactory) -> AsyncIterator[RunningServer]:
    async with await start_simulated_server(["AMZN"], seed=3, rate=200.0) as upstream:
        settings = make_settings(upstream, symbols=("AMZN",))
        # GOOG is known (reference data) but streamed only while someone subscribes, so
        # a subscription to it that started would show upstream.
        async with await Database.open(settings) as db:
            await upsert_symbols(db.pool, [SymbolRow("GOOG", "Alphabet", "XNAS", source="test")])
        async with running_server(settings) as srv:
            yield srv


async def test_huge_deep_and_aliased_documents_are_refused_while_others_are_served(
    server: RunningServer,
) -> None:
    deep = "{" + " a {" * 10_000 + " b" + " }" * 10_001
    thousand_aliases = "{ " + " ".join(f"a{i}: __typename" for i in range(1000)) + " }"
    five_hundred_aliases = "{ " + " ".join(f"a{i}: __typename" for i in range(500)) + " }"
    ordinary = "{ feedStatus { state } }"
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        await elite(http, server)
        # The refusals and an ordinary query, all at once.
        refused_deep, ok, refused_big, refused_aliases = await asyncio.gather(
            post(http, deep),
            post(http, ordinary),
            post(http, thousand_aliases),
            post(http, five_hundred_aliases),
        )
        after = await post(http, ordinary)
    assert first_code(refused_deep) == "QUERY_TOO_DEEP" and refused_deep["data"] is None
    # 1,000 aliases are 3,000 tokens: the token limit stops the parser first.
    assert first_code(refused_big) == "QUERY_TOO_LARGE"
    assert first_code(refused_aliases) == "TOO_MANY_ALIASES"
    assert refused_aliases["errors"][0]["extensions"]["aliases"] == 500
    assert "errors" not in ok and ok["data"]["feedStatus"]["state"]
    assert "errors" not in after


async def test_a_costly_query_is_refused_before_any_resolver_runs(
    make_settings: SettingsFactory,
) -> None:
    """A new indicator warms up from Polygon REST as soon as its resolver runs, so the
    fake REST server sees whether the resolver ran."""
    history = daily_aggs_from_csv(require(SHARED_DATA / "bars-daily-ORCL.csv"))
    indicator = (
        '{ indicator(symbol: "AMZN", timeframe: D1, spec: {kind: SMA, period: 5}) { ready } }'
    )
    costly = (
        indicator[:-2]
        + ' a: bars(symbol: "AMZN", timeframe: M1, limit: 5000) { open close }'
        + ' b: bars(symbol: "AMZN", timeframe: M1, limit: 5000) { open close } }'
    )
    async with FakePolygonRest(api_key="rest-key") as rest:
        rest.add_aggs("AMZN", 1, "day", history)

        def warmups() -> int:
            return sum("/AMZN/range/1/day/" in r.path for r in rest.requests)

        async with await start_replay_server(AMZN_REPLAY, speed=10.0) as upstream:
            settings = make_settings(
                upstream,
                symbols=("AMZN",),
                polygon_api_key=Secret("rest-key"),
                polygon_rest_url=rest.base_url,
            )
            async with (
                running_server(settings) as srv,
                httpx.AsyncClient(base_url=srv.http, timeout=TIMEOUT) as http,
            ):
                refused = await post(http, costly)
                assert warmups() == 0
                served = await post(http, indicator)
                assert warmups() >= 1
    assert first_code(refused) == "QUERY_TOO_COSTLY" and refused["data"] is None
    extensions = refused["errors"][0]["extensions"]
    # The budget is the caller's (its tier's); this query is over any of them.
    assert extensions["cost"] == 2 + 2 * (1 + 5000 * 2) > extensions["budget"]
    assert "errors" not in served


async def test_refused_subscriptions_get_an_error_and_the_socket_stays_open(
    server: RunningServer,
) -> None:
    hub = server.runtime.services.hub
    feed = server.runtime.feed
    quotes = "subscription($s: [String!]!) { quotes(symbols: $s) { symbol bidPrice askPrice } }"
    deep = (
        'subscription { bars(symbol: "AMZN", timeframe: M1) { bar { '
        + "x { " * 12
        + "y"
        + " }" * 12
        + " } } }"
    )
    large = "subscription { feedStatus { " + "state " * 2500 + "} }"
    async with graphql_ws(server.ws) as client:
        refusals: dict[str, dict[str, Any]] = {}
        for name, query, variables in (
            ("deep", deep, None),
            ("large", large, None),
            # 5,000 symbols: the resolver would refuse more than 100 (LIMIT_EXCEEDED);
            # the cost limit refuses first, at validation.
            ("costly", quotes, {"s": ["GOOG"] * 5000}),
        ):
            op = await client.subscribe(query, variables)
            msg = await client.recv()
            assert msg["id"] == op and msg["type"] == "error", msg
            refusals[name] = msg["payload"][0]
        assert "GOOG" not in hub.interest() and "Q.GOOG" not in feed.topics
        # Same socket, an acceptable subscription: it runs, and GOOG streams.
        op = await client.subscribe(quotes, {"s": ["GOOG"]})
        assert (await client.next_data(op))["quotes"]["symbol"] == "GOOG"
        assert hub.interest().get("GOOG") == 1
    await eventually(lambda: "GOOG" not in hub.interest(), "GOOG released")
    assert refusals["deep"]["extensions"]["code"] == "QUERY_TOO_DEEP"
    assert refusals["large"]["extensions"]["code"] == "QUERY_TOO_LARGE"
    costly = refusals["costly"]["extensions"]
    assert costly["code"] == "QUERY_TOO_COSTLY" and costly["cost"] == 1 + 5000 * 3
    assert costly["budget"] < costly["cost"]


@pytest.mark.parametrize("environment", [Environment.DEVELOPMENT, Environment.PRODUCTION])
async def test_introspection_and_suggestions_only_in_development(
    make_settings: SettingsFactory, environment: Environment
) -> None:
    production = environment is Environment.PRODUCTION
    async with await start_simulated_server(["AMZN"], seed=4, rate=50.0) as upstream:
        settings = make_settings(upstream, symbols=("AMZN",), environment=environment)
        async with (
            running_server(settings) as srv,
            httpx.AsyncClient(base_url=srv.http, timeout=TIMEOUT) as http,
        ):
            introspection = await post(http, get_introspection_query())
            typename = await post(http, "{ __typename }")
            typo = await post(http, "{ feedStatus { stat } }")
            async with graphql_ws(srv.ws) as client:
                op = await client.subscribe("subscription { feedStatus { stat } }")
                ws_typo = await client.recv()
    assert typename == {"data": {"__typename": "Query"}}
    assert ws_typo["id"] == op and ws_typo["type"] == "error"
    messages = [typo["errors"][0]["message"], ws_typo["payload"][0]["message"]]
    if production:
        assert first_code(introspection) == "INTROSPECTION_DISABLED"
        assert introspection["data"] is None
        assert messages == ["Cannot query field 'stat' on type 'FeedStatus'."] * 2
    else:
        assert "errors" not in introspection
        assert introspection["data"]["__schema"]["queryType"]["name"] == "Query"
        assert all("Did you mean 'state'?" in m for m in messages), messages
