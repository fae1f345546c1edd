"""``/metrics`` on a real server fed a recorded day: Prometheus scrapes it with a bearer
token, and every family issue 18 lists says something true about what the server did:
events ingested by kind, rejects, feed state, staleness, the bus, subscribers, groups,
deliveries and their latency, sockets (anonymous ones too), alert evaluations and
firings, orders by state and event, fills, paper rejections by reason, Alpaca REST
calls (on the fake Alpaca) with their latency and errors, analyses (the rule-based
analyst), refusals by tier, and the database's pool and query latency."""

from __future__ import annotations

import base64
import os
import uuid
from decimal import Decimal
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from server.settings import Secret, Settings
from streams.polygon_server import start_replay_server
from tests.e2e.conftest import SettingsFactory, eventually
from tests.e2e.test_analysis_e2e import ANALYZE, parts, stream
from tests.e2e.test_orders_e2e import code, limit, trader
from tests.e2e.test_orders_e2e import gql as post
from tests.support.accounts import bearer
from tests.support.data import AMZN_REPLAY, require
from tests.support.fake_alpaca import FakeAlpaca
from tests.support.graphql_ws import graphql_ws
from tests.support.server import running_server

TOKEN = "metrics-" + uuid.uuid4().hex
QUOTES = 'subscription { quotes(symbols: ["AMZN"]) { symbol bidPrice } }'
CREATE_ALERT = "mutation($input: AlertInput!) { createAlert(input: $input) { id } }"
PLACE = """mutation($input: OrderInput!) { placeOrder(input: $input) { id status } }"""
REPLACE = """mutation($id: ID!, $tif: TimeInForce!) {
  replaceOrder(id: $id, input: {timeInForce: $tif}) { id status } }"""
LINK = """mutation($k: String!, $s: String!) {
  linkBrokerAccount(input: {keyId: $k, secret: $s, live: false}) { broker } }"""
ALPACA_KEY = "PKMETRICS1234567890A"
ALPACA_SECRET = "metrics-secret-Qw8e7Rt6Yu5Io4Pa3"

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


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every sample whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


async def gql(http: httpx.AsyncClient, query: str, token: str, **v: Any) -> dict[str, Any]:
    body: dict[str, Any] = (
        await http.post("/graphql", json={"query": query, "variables": v}, headers=bearer(token))
    ).json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def test_metrics_after_a_replay(make_settings: SettingsFactory) -> None:
    async with (
        await start_replay_server(require(AMZN_REPLAY), speed=100.0) as upstream,
        FakeAlpaca() as alpaca,
    ):
        alpaca_account = alpaca.add_account(ALPACA_KEY, ALPACA_SECRET, cash="25000")
        settings: Settings = make_settings(
            upstream,
            symbols=("AMZN",),
            trading_calendar="continuous",
            metrics_token=Secret(TOKEN),
            secrets_key=Secret(base64.b64encode(os.urandom(32)).decode()),
            alpaca_base_url=alpaca.base_url,
        )
        async with (
            running_server(settings) as srv,
            httpx.AsyncClient(base_url=srv.http, timeout=30) as http,
        ):
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
            token = await trader(http, srv)
            await gql(
                http,
                CREATE_ALERT,
                token,
                input={
                    "symbol": "AMZN",
                    "conditions": [{"left": {"price": "LAST"}, "op": "GREATER_THAN", "value": 1}],
                },
            )
            far = str((last * Decimal("0.95")).quantize(Decimal("0.01")))
            market = {"symbol": "AMZN", "side": "BUY", "type": "MARKET", "qty": "3"}
            market["timeInForce"] = "DAY"
            await gql(http, PLACE, token, input=market)
            resting = (await gql(http, PLACE, token, input=limit("BUY", "2", far)))["placeOrder"]
            # The paper broker refuses an IOC replacement of a resting order (only prices,
            # quantity and DAY/GTC may change): the replace and its order are rejected.
            refused = await gql(http, REPLACE, token, id=resting["id"], tif="IOC")
            assert refused["replaceOrder"]["status"] == "REJECTED", refused

            # Another user trades at their own Alpaca account: a wrong secret first
            # (Alpaca answers 401), then the right one, then an order.
            alice = await trader(http, srv)
            wrong_link = await post(http, LINK, alice, k=ALPACA_KEY, s="wrong-" + ALPACA_SECRET)
            assert code(wrong_link) == "BROKER_AUTH_FAILED"
            await gql(http, LINK, alice, k=ALPACA_KEY, s=ALPACA_SECRET)
            await alpaca.wait_for_listeners(1, alpaca_account)
            at_alpaca = await gql(http, PLACE, alice, input=limit("BUY", "1", far))
            order_id = at_alpaca["placeOrder"]["id"]
            await eventually(
                lambda: order_id in alpaca_account.by_client_order_id, "the order at Alpaca"
            )

            async with (
                graphql_ws(srv.ws, payload={"token": token}) as client,
                graphql_ws(srv.ws) as anonymous,
            ):
                op = await client.subscribe(QUOTES)
                watching = await anonymous.subscribe(QUOTES)
                for _ in range(3):
                    await client.next_data(op)
                await anonymous.next_data(watching)
                # Anonymous callers get 20 requests at once: the rest are refused.
                for _ in range(25):
                    await http.post("/graphql", json={"query": "{ __typename }"})
                async with graphql_ws(srv.ws, payload={"token": token}) as analyst:
                    analysis = await analyst.subscribe(ANALYZE, {"s": "AMZN", "q": None})
                    chunks, error = await stream(analyst, analysis)
                assert error is None, error
                parts(chunks)
                orders = srv.runtime.services.orders
                assert orders is not None
                await eventually(lambda: orders.book.fills >= 1, "the market order's fill")
                delivery = srv.runtime.services.delivery
                assert delivery is not None
                await eventually(lambda: delivery.written >= 1, "the firing stored")
                await eventually(lambda: orders.ledger.written >= 3, "the ledger written")
                await eventually(
                    lambda: any(b == "alpaca" for b, _, _ in orders.book.events),
                    "Alpaca's acknowledgement",
                )
                response = await scrape(http)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["cache-control"] == "no-store"
    families, samples = parse(response.text)
    expected = {
        "tickgraph_up",
        # the feed: state, reconnects, events by kind, rejects, topics, staleness
        "tickgraph_feed_state",
        "tickgraph_feed_reconnects",
        "tickgraph_feed_events",
        "tickgraph_feed_rejects",
        "tickgraph_feed_topics",
        "tickgraph_feed_last_event_age_seconds",
        "tickgraph_symbol_last_update_age_seconds",
        "tickgraph_symbol_stale",
        "tickgraph_market_reordered",
        # the bus
        "tickgraph_bus_published",
        "tickgraph_bus_handler_errors",
        # subscribers, groups, deliveries, conflation and drops, sockets, latency
        "tickgraph_subscription_groups",
        "tickgraph_subscription_members",
        "tickgraph_subscription_executions",
        "tickgraph_symbol_subscribers",
        "tickgraph_hub_symbols",
        "tickgraph_streams_active",
        "tickgraph_streams_queued",
        "tickgraph_streams_conflated",
        "tickgraph_streams_dropped",
        "tickgraph_websocket_connections",
        "tickgraph_websocket_connections_opened",
        "tickgraph_websocket_signed_in",
        "tickgraph_delivery_messages",
        "tickgraph_delivery_writes",
        "tickgraph_delivery_latency_seconds",
        # alerts
        "tickgraph_alerts_armed",
        "tickgraph_alert_evaluations",
        "tickgraph_alert_condition_checks",
        "tickgraph_alerts_fired",
        "tickgraph_alert_firings",
        "tickgraph_alert_firing_durability_lag_seconds",
        # orders, fills, brokers
        "tickgraph_orders_open",
        "tickgraph_order_fills",
        "tickgraph_order_events",
        "tickgraph_order_rejections",
        "tickgraph_order_ledger_entries",
        "tickgraph_order_ledger_lag_seconds",
        "tickgraph_broker_requests",
        "tickgraph_broker_request_duration_seconds",
        # analyses
        "tickgraph_analysis_requests",
        "tickgraph_analysis_runs",
        "tickgraph_analysis_tokens",
        "tickgraph_analysis_cost_usd",
        "tickgraph_analysis_duration_seconds",
        # limits and the database
        "tickgraph_rate_limited",
        "tickgraph_db_pool_size",
        "tickgraph_db_pool_in_use",
        "tickgraph_db_pool_max",
        "tickgraph_db_query_duration_seconds",
        "tickgraph_db_query_errors",
        "process_cpu_seconds",
    }
    assert expected <= families, expected - families

    assert value(samples, "tickgraph_up") == 1
    assert value(samples, "tickgraph_feed_state", source="polygon", state="connected") == 1
    assert value(samples, "tickgraph_feed_state", source="polygon", state="disconnected") == 0
    events = total(samples, "tickgraph_feed_events_total")
    assert events > total(before, "tickgraph_feed_events_total") > 0
    assert value(samples, "tickgraph_feed_events_total", kind="trade") > 0
    assert value(samples, "tickgraph_feed_events_total", kind="quote") > 0
    assert value(samples, "tickgraph_feed_events_total", kind="aggregate") >= 0
    # Every applied event is published once on its topic (bars and firings add more).
    assert value(samples, "tickgraph_bus_published_total") >= events
    assert value(samples, "tickgraph_bus_handler_errors_total") == 0
    assert 0 <= value(samples, "tickgraph_symbol_last_update_age_seconds", symbol="AMZN") < 60
    assert value(samples, "tickgraph_symbol_stale", symbol="AMZN") == 0

    assert value(samples, "tickgraph_subscription_groups") >= 1
    assert value(samples, "tickgraph_symbol_subscribers", symbol="AMZN") >= 1
    assert value(samples, "tickgraph_streams_active") >= 1
    # Both sockets are open at the scrape; only one of them is signed in.
    assert value(samples, "tickgraph_websocket_connections") >= 2
    assert value(samples, "tickgraph_websocket_connections_opened_total") >= 2
    assert value(samples, "tickgraph_websocket_signed_in") >= 1
    messages = value(samples, "tickgraph_delivery_messages_total")
    assert messages >= value(samples, "tickgraph_delivery_writes_total") > 0
    assert messages >= 3 + 1 + len(chunks)
    flushes = value(samples, "tickgraph_delivery_latency_seconds_count")
    assert flushes >= 1
    assert value(samples, "tickgraph_delivery_latency_seconds_bucket", le="+Inf") == flushes
    # Replayed quotes reach the socket in well under a second on loopback (median).
    under_a_second = value(samples, "tickgraph_delivery_latency_seconds_bucket", le="1.0")
    assert under_a_second >= flushes / 2

    assert value(samples, "tickgraph_alerts_armed") >= 1
    evaluations = value(samples, "tickgraph_alert_evaluations_total")
    assert evaluations >= value(samples, "tickgraph_alert_condition_checks_total") >= 1
    assert value(samples, "tickgraph_alerts_fired_total") >= 1
    assert value(samples, "tickgraph_alert_firings_total", outcome="written") >= 1
    p50 = value(samples, "tickgraph_alert_firing_durability_lag_seconds", quantile="0.5")
    assert 0 < p50 < 30

    assert value(samples, "tickgraph_orders_open", status="new") >= 1
    assert value(samples, "tickgraph_order_fills_total") >= 1
    assert value(samples, "tickgraph_order_events_total", broker="paper", kind="fill") >= 1
    assert value(samples, "tickgraph_order_events_total", broker="paper", kind="new") >= 2
    assert total(samples, "tickgraph_order_events_total", broker="alpaca") >= 1
    for kind in ("replace_rejected", "rejected"):
        rejected = value(
            samples,
            "tickgraph_order_rejections_total",
            broker="paper",
            kind=kind,
            reason="not_replaceable",
        )
        assert rejected == 1, kind
    # Two placements, a fill and the refused replace at least (each is an entry).
    assert value(samples, "tickgraph_order_ledger_entries_total", outcome="written") >= 3
    assert value(samples, "tickgraph_order_ledger_lag_seconds", quantile="0.99") > 0

    # Alpaca: the wrong secret's 401, the right one's account read, the order's POST.
    requests = "tickgraph_broker_requests_total"
    assert value(samples, requests, broker="alpaca", method="GET", outcome="unauthorized") == 1
    assert value(samples, requests, broker="alpaca", method="POST", outcome="ok") >= 1
    calls = value(samples, "tickgraph_broker_request_duration_seconds_count", broker="alpaca")
    assert calls == total(samples, requests) >= 3
    assert value(samples, "tickgraph_broker_request_duration_seconds_sum", broker="alpaca") > 0

    assert value(samples, "tickgraph_analysis_requests_total", outcome="admitted") == 1
    assert value(samples, "tickgraph_analysis_runs_total", outcome="completed", code="none") == 1
    assert value(samples, "tickgraph_analysis_duration_seconds_count") == 1
    # The rule-based analyst calls no model: no tokens, no cost.
    assert value(samples, "tickgraph_analysis_tokens_total", kind="output") == 0
    assert value(samples, "tickgraph_analysis_cost_usd_total") == 0

    refused_now = value(samples, "tickgraph_rate_limited_total", limit="requests", tier="anonymous")
    refused_before = before.get(
        ("tickgraph_rate_limited_total", (("limit", "requests"), ("tier", "anonymous"))), 0.0
    )
    assert refused_now - refused_before >= 5

    assert value(samples, "tickgraph_db_pool_size") >= 1
    assert value(samples, "tickgraph_db_pool_in_use") >= 0
    queries = value(samples, "tickgraph_db_query_duration_seconds_count")
    assert queries > total(before, "tickgraph_db_query_duration_seconds_count") > 0
    assert value(samples, "tickgraph_db_query_duration_seconds_sum") > 0
