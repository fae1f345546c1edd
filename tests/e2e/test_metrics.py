"""``/metrics`` on a real server fed a recorded day: Prometheus scrapes it with a bearer
token, and every family says something true about what the server did (events
ingested, subscribers, alerts fired and stored, orders open and filled, the ledger,
refusals, the database pool)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from server.settings import Secret, Settings
from streams.polygon_server import start_replay_server
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.accounts import LOGIN, PASSWORD, bearer, sign_up
from tests.support.data import AMZN_REPLAY, require
from tests.support.graphql_ws import graphql_ws
from tests.support.server import RunningServer, running_server

TOKEN = "metrics-" + uuid.uuid4().hex
QUOTES = 'subscription { quotes(symbols: ["AMZN"]) { symbol bidPrice } }'
CREATE_ALERT = "mutation($input: AlertInput!) { createAlert(input: $input) { id } }"
PLACE = """mutation($input: OrderInput!) { placeOrder(input: $input) { id status } }"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: httpx.AsyncClient, token: str | None = TOKEN) -> httpx.Response:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return await http.get("/metrics", headers=headers)


def parse(text: str) -> tuple[set[str], Samples]:
    """Family names, and every sample by (name, sorted labels)."""
    families: set[str] = set()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def elite(http: httpx.AsyncClient, server: RunningServer) -> str:
    user = await sign_up(http)
    await server.runtime.database.pool.execute(
        "UPDATE users SET tier = 'elite' WHERE id = $1", uuid.UUID(user["id"])
    )
    login = await http.post(
        "/graphql", json={"query": LOGIN, "variables": {"e": user["email"], "p": PASSWORD}}
    )
    token: str = login.json()["data"]["login"]["accessToken"]
    return token


async def gql(http: httpx.AsyncClient, query: str, token: str, **v: Any) -> dict[str, Any]:
    body: dict[str, Any] = (
        await http.post("/graphql", json={"query": query, "variables": v}, headers=bearer(token))
    ).json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def test_metrics_after_a_replay(make_settings: SettingsFactory) -> None:
    async with await start_replay_server(require(AMZN_REPLAY), speed=100.0) as upstream:
        settings: Settings = make_settings(
            upstream,
            symbols=("AMZN",),
            trading_calendar="continuous",
            metrics_token=Secret(TOKEN),
        )
        async with running_server(settings) as srv, httpx.AsyncClient(base_url=srv.http) as http:
            state = srv.runtime.services.state
            await eventually(
                lambda: (st := state.get("AMZN")) is not None and st.last_trade is not None,
                "an AMZN trade",
            )
            # The token is required, and a wrong one is told nothing more.
            assert (await scrape(http, None)).status_code == 401
            wrong = await scrape(http, "x" * len(TOKEN))
            assert wrong.status_code == 401 and "www-authenticate" in wrong.headers
            _, before = parse((await scrape(http)).text)

            last = Decimal(repr(state.get("AMZN").last_trade.event.p))  # type: ignore[union-attr]
            token = await elite(http, srv)
            await gql(
                http,
                CREATE_ALERT,
                token,
                input={
                    "symbol": "AMZN",
                    "conditions": [{"left": {"price": "LAST"}, "op": "GREATER_THAN", "value": 1}],
                },
            )
            market = {"symbol": "AMZN", "side": "BUY", "type": "MARKET", "qty": "3"}
            market["timeInForce"] = "DAY"
            resting = {
                "symbol": "AMZN",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "qty": "2",
                "limitPrice": str((last * Decimal("0.95")).quantize(Decimal("0.01"))),
            }
            await gql(http, PLACE, token, input=market)
            await gql(http, PLACE, token, input=resting)
            # Anonymous callers get 20 requests at once: the rest are refused.
            for _ in range(25):
                await http.post("/graphql", json={"query": "{ __typename }"})

            async with graphql_ws(srv.ws, payload={"token": token}) as client:
                op = await client.subscribe(QUOTES)
                for _ in range(3):
                    await client.next_data(op)
                orders = srv.runtime.services.orders
                assert orders is not None
                await eventually(lambda: orders.book.fills >= 1, "the market order's fill")
                delivery = srv.runtime.services.delivery
                assert delivery is not None
                await eventually(lambda: delivery.written >= 1, "the firing stored")
                await eventually(lambda: orders.ledger.written >= 3, "the ledger written")
                response = await scrape(http)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["cache-control"] == "no-store"
    families, samples = parse(response.text)
    expected = {
        "tickgraph_up",
        "tickgraph_feed_state",
        "tickgraph_feed_reconnects",
        "tickgraph_feed_events",
        "tickgraph_feed_rejects",
        "tickgraph_feed_topics",
        "tickgraph_feed_last_event_age_seconds",
        "tickgraph_symbol_last_update_age_seconds",
        "tickgraph_symbol_stale",
        "tickgraph_market_reordered",
        "tickgraph_bus_published",
        "tickgraph_subscription_groups",
        "tickgraph_subscription_members",
        "tickgraph_subscription_executions",
        "tickgraph_symbol_subscribers",
        "tickgraph_streams_active",
        "tickgraph_streams_conflated",
        "tickgraph_streams_dropped",
        "tickgraph_alerts_armed",
        "tickgraph_alerts_fired",
        "tickgraph_alert_firings",
        "tickgraph_alert_firing_durability_lag_seconds",
        "tickgraph_orders_open",
        "tickgraph_order_fills",
        "tickgraph_order_ledger_entries",
        "tickgraph_order_ledger_lag_seconds",
        "tickgraph_rate_limited",
        "tickgraph_db_pool_size",
        "tickgraph_db_pool_in_use",
        "process_cpu_seconds",
    }
    assert expected <= families, expected - families

    assert value(samples, "tickgraph_up") == 1
    assert value(samples, "tickgraph_feed_state", source="polygon", state="connected") == 1
    assert value(samples, "tickgraph_feed_state", source="polygon", state="disconnected") == 0
    events = value(samples, "tickgraph_feed_events_total")
    assert events > value(before, "tickgraph_feed_events_total") > 0
    # Every applied event is published once on its topic (bars and firings add more).
    assert value(samples, "tickgraph_bus_published_total") >= events
    assert 0 <= value(samples, "tickgraph_symbol_last_update_age_seconds", symbol="AMZN") < 60
    assert value(samples, "tickgraph_symbol_stale", symbol="AMZN") == 0
    assert value(samples, "tickgraph_subscription_groups") >= 1
    assert value(samples, "tickgraph_symbol_subscribers", symbol="AMZN") >= 1
    assert value(samples, "tickgraph_streams_active") >= 1

    assert value(samples, "tickgraph_alerts_fired_total") >= 1
    assert value(samples, "tickgraph_alert_firings_total", outcome="written") >= 1
    p50 = value(samples, "tickgraph_alert_firing_durability_lag_seconds", quantile="0.5")
    assert 0 < p50 < 30

    assert value(samples, "tickgraph_orders_open", status="new") == 1
    assert value(samples, "tickgraph_order_fills_total") >= 1
    # Two placements and a fill at least (each is an entry in the ledger).
    assert value(samples, "tickgraph_order_ledger_entries_total", outcome="written") >= 3
    assert value(samples, "tickgraph_order_ledger_lag_seconds", quantile="0.99") > 0

    refused = value(samples, "tickgraph_rate_limited_total", limit="requests", tier="anonymous")
    refused_before = before.get(
        ("tickgraph_rate_limited_total", (("limit", "requests"), ("tier", "anonymous"))), 0.0
    )
    assert refused - refused_before >= 5

    assert value(samples, "tickgraph_db_pool_size") >= 1
    assert value(samples, "tickgraph_db_pool_in_use") >= 0
