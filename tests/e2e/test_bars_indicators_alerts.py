"""Bars, indicators and alerts through the real server: a replayed day, GraphQL
subscriptions, alert firings persisted before delivery, and a restart that neither
loses an alert nor fires it twice."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from server.market.timeframes import Timeframe
from server.settings import Secret, Settings
from streams.events import Trade
from streams.polygon_server import Faults, start_replay_server
from streams.recording import load_events
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.accounts import bearer, sign_up
from tests.support.data import AMZN_REPLAY, SHARED_DATA, require
from tests.support.fake_polygon_rest import FakePolygonRest, daily_aggs_from_csv
from tests.support.graphql_ws import graphql_ws
from tests.support.server import running_server

BARS = """subscription($s: String!) { bars(symbol: $s, timeframe: M1) {
  kind snapshot bar { start end open high low close volume trades final revision } } }"""
INDICATORS = """subscription($s: String!) { indicators(symbol: $s, timeframe: S1,
  specs: [{kind: RSI, period: 14}, {kind: MACD}]) { key ready final outputs { name value } } }"""
ALERT_EVENTS = "subscription { alertEvents { alertId symbol key firedAt values } }"


async def gql(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    body = (await http.post("/graphql", json={"query": query, "variables": variables})).json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def gql_error(http: httpx.AsyncClient, query: str) -> dict[str, Any]:
    body = (await http.post("/graphql", json={"query": query})).json()
    assert body.get("errors"), body
    error: dict[str, Any] = body["errors"][0]
    return error


async def test_bars_and_indicators_stream_from_a_replayed_day(
    make_settings: SettingsFactory,
) -> None:
    trades = [e for e in load_events(require(AMZN_REPLAY)) if type(e) is Trade]
    async with await start_replay_server(AMZN_REPLAY, speed=300.0) as upstream:
        async with running_server(make_settings(upstream, symbols=("AMZN",))) as srv:
            async with graphql_ws(srv.ws) as client:
                bars_op = await client.subscribe(BARS, {"s": "AMZN"})
                ind_op = await client.subscribe(INDICATORS, {"s": "AMZN"})
                closes: list[dict[str, Any]] = []
                indicator_values: list[dict[str, Any]] = []
                while len(closes) < 3 or len(indicator_values) < 50:
                    msg = await client.recv()
                    assert msg["type"] == "next" and "errors" not in msg["payload"], msg
                    data = msg["payload"]["data"]
                    if msg["id"] == bars_op:
                        if data["bars"]["kind"] == "CLOSE":
                            closes.append(data["bars"]["bar"])
                    else:
                        assert msg["id"] == ind_op
                        indicator_values.append(data["indicators"])
    # Each closed minute bar is exactly the file's trades in its interval.
    for bar in closes:
        inside = [t for t in trades if bar["start"] <= t.t < bar["end"]]
        assert bar["final"] and bar["revision"] == 0
        assert bar["volume"] == sum(t.s for t in inside)
        assert bar["trades"] == len(inside)
        assert (bar["open"], bar["close"]) == (inside[0].p, inside[-1].p)
        assert (bar["high"], bar["low"]) == (max(t.p for t in inside), min(t.p for t in inside))
    keys = {v["key"] for v in indicator_values}
    assert keys == {"RSI(14)", "MACD(12,26,9)"}
    rsi = [
        v["outputs"][0]["value"] for v in indicator_values if v["key"] == "RSI(14)" and v["ready"]
    ]
    assert rsi and all(0 <= x <= 100 for x in rsi)
    assert any(v["final"] for v in indicator_values) and any(
        not v["final"] for v in indicator_values
    )


async def test_bad_input_gets_clear_codes(make_settings: SettingsFactory) -> None:
    async with await start_replay_server(AMZN_REPLAY, speed=10.0) as upstream:
        async with running_server(make_settings(upstream, symbols=("AMZN",))) as srv:
            async with httpx.AsyncClient(base_url=srv.http) as http:
                http.headers.update(bearer((await sign_up(http))["accessToken"]))
                bad_period = await gql_error(
                    http,
                    IND % "{kind: SMA, period: 0}",
                )
                huge = await gql_error(
                    http,
                    IND % "{kind: EMA, period: 10001}",
                )
                unknown_kind = await gql_error(http, IND % "{kind: FOO}")
                bad_tf = await gql_error(http, '{ bars(symbol: "AMZN", timeframe: M2) { start } }')
                bad_symbol = await gql_error(
                    http,
                    'mutation { createAlert(input: {symbol: "NOPE!", conditions: '
                    "[{left: {price: LAST}, op: GREATER_THAN, value: 1}]}) { id } }",
                )
                two_rights = await gql_error(
                    http,
                    'mutation { createAlert(input: {symbol: "AMZN", conditions: '
                    "[{left: {price: LAST}, op: GREATER_THAN, value: 1, "
                    "right: {price: BID}}]}) { id } }",
                )
                channel = await gql_error(
                    http,
                    'mutation { createAlert(input: {symbol: "AMZN", conditions: '
                    "[{left: {price: LAST}, op: INSIDE_CHANNEL, channel: "
                    "{lower: {value: 300}, upper: {value: 200}}}]}) { id } }",
                )
                alerts = await gql(http, "{ alerts { id } }")
    assert bad_period["extensions"]["code"] == "INVALID_INDICATOR"
    assert huge["extensions"]["code"] == "INVALID_INDICATOR"
    assert "FOO" in unknown_kind["message"] and "M2" in bad_tf["message"]
    assert bad_symbol["extensions"]["code"] == "INVALID_SYMBOL"
    assert two_rights["extensions"]["code"] == "INVALID_ALERT"
    assert channel["extensions"]["code"] == "INVALID_ALERT"
    assert alerts["alerts"] == []  # nothing half-stored


IND = '{ indicator(symbol: "AMZN", timeframe: M1, spec: %s) { key } }'
CREATE = """mutation($input: AlertInput!) { createAlert(input: $input) { id status } }"""


async def test_alert_fires_once_is_persisted_and_survives_restart(
    make_settings: SettingsFactory,
) -> None:
    async with await start_replay_server(AMZN_REPLAY, speed=50.0) as upstream:
        settings: Settings = make_settings(upstream, symbols=("AMZN",))
        async with running_server(settings) as srv:
            state = srv.runtime.services.state
            await eventually(
                lambda: (st := state.get("AMZN")) is not None and st.last_trade is not None,
                "an AMZN trade",
            )
            last = state.get("AMZN").last_trade.event.p  # type: ignore[union-attr]
            async with httpx.AsyncClient(base_url=srv.http) as http:
                account = await sign_up(http)
                http.headers.update(bearer(account["accessToken"]))
                token = {"token": account["accessToken"]}
                async with graphql_ws(srv.ws, payload=token) as client:
                    events_op = await client.subscribe(ALERT_EVENTS)
                    fires = await gql(
                        http,
                        CREATE,
                        input={
                            "symbol": "AMZN",
                            "conditions": [
                                {
                                    "left": {"price": "LAST"},
                                    "op": "GREATER_THAN",
                                    "value": last - 100,
                                }
                            ],
                        },
                    )
                    never = await gql(
                        http,
                        CREATE,
                        input={
                            "symbol": "AMZN",
                            "conditions": [
                                {
                                    "left": {"price": "LAST"},
                                    "op": "GREATER_THAN",
                                    "value": last * 10,
                                }
                            ],
                            "trigger": {"mode": "EVERY_TIME", "cooldownMs": 1000},
                        },
                    )
                    event = (await client.next_data(events_op))["alertEvents"]
                listed = await gql(http, "{ alerts { id status fireCount } }")
                history = await gql(http, "{ alertHistory { alertId key } }")
            fired_id = fires["createAlert"]["id"]
        # A new process on the same database: the fired alert stays done, the other
        # is re-armed, and nothing fires twice.
        async with running_server(dataclasses.replace(settings)) as srv2:
            async with httpx.AsyncClient(base_url=srv2.http) as http:
                # Same data dir: the signing key survives the restart, so does the token.
                http.headers.update(bearer(account["accessToken"]))
                await eventually(
                    lambda: srv2.runtime.services.feed_status.snapshot().events > 100,
                    "events after restart",
                )
                after = await gql(
                    http,
                    "{ alerts { id status fireCount } "
                    "alertHistory { alertId kind key gap { from to } } }",
                )
                engine = srv2.runtime.services.alerts.engine  # type: ignore[union-attr]
    assert event["alertId"] == fired_id and event["key"] == "r0:once"
    assert event["values"]["conditions"][0]["left"] > last - 100
    statuses = {a["id"]: (a["status"], a["fireCount"]) for a in listed["alerts"]}
    assert statuses == {fired_id: ("DONE", 1), never["createAlert"]["id"]: ("ACTIVE", 0)}
    assert history["alertHistory"] == [{"alertId": fired_id, "key": "r0:once"}]
    assert {a["id"]: a["status"] for a in after["alerts"]} == {
        fired_id: "DONE",
        never["createAlert"]["id"]: "ACTIVE",
    }
    firings = [e for e in after["alertHistory"] if e["kind"] == "FIRING"]
    assert [e["key"] for e in firings] == ["r0:once"]
    # The restart is a window in which the armed alert was not evaluated, and a local
    # replay keeps no prints to re-evaluate it from: it is told, not hidden.
    gaps = [e for e in after["alertHistory"] if e["kind"] == "GAP"]
    assert all(g["alertId"] == never["createAlert"]["id"] for g in gaps)
    assert all(g["gap"]["from"] < g["gap"]["to"] for g in gaps)
    assert never["createAlert"]["id"] in engine and fired_id not in engine


async def test_indicator_alert_arms_its_indicator_and_delete_releases_it(
    make_settings: SettingsFactory,
) -> None:
    async with await start_replay_server(AMZN_REPLAY, speed=50.0) as upstream:
        async with running_server(make_settings(upstream, symbols=("AMZN",))) as srv:
            analytics = srv.runtime.services.analytics
            assert analytics is not None
            async with httpx.AsyncClient(base_url=srv.http) as http:
                http.headers.update(bearer((await sign_up(http))["accessToken"]))
                created = await gql(
                    http,
                    CREATE,
                    input={
                        "symbol": "AMZN",
                        "conditions": [
                            {
                                "left": {
                                    "indicator": {"timeframe": "S1", "indicator": {"kind": "RSI"}}
                                },
                                "op": "GREATER_THAN",
                                "value": 101,
                            }
                        ],
                    },
                )
                assert ("AMZN", analytics.book.builder("AMZN").timeframes[0], "RSI(14)") is not None
                assert any(k[2] == "RSI(14)" for k in analytics._slots)
                deleted = await gql(
                    http,
                    "mutation($id: ID!) { deleteAlert(id: $id) }",
                    id=created["createAlert"]["id"],
                )
                again = await gql(
                    http,
                    "mutation($id: ID!) { deleteAlert(id: $id) }",
                    id=created["createAlert"]["id"],
                )
            assert deleted["deleteAlert"] is True and again["deleteAlert"] is False
            assert not any(k[2] == "RSI(14)" for k in analytics._slots)


async def test_an_outage_is_reported_as_a_gap_on_the_bars_stream(
    make_settings: SettingsFactory,
) -> None:
    faults = Faults(drop_after_frames=300, drop_every_connection=False)
    async with await start_replay_server(AMZN_REPLAY, speed=200.0, faults=faults) as upstream:
        async with running_server(make_settings(upstream, symbols=("AMZN",))) as srv:
            async with graphql_ws(srv.ws) as client:
                op = await client.subscribe(
                    """subscription { bars(symbol: "AMZN", timeframe: M1) {
                       kind gap { from to filled bars reason } } }"""
                )
                while True:
                    event = (await client.next_data(op))["bars"]
                    if event["kind"] == "GAP" and event["gap"]["reason"] == "reconnect":
                        break
    gap = event["gap"]
    assert gap["from"] < gap["to"]
    # A local replay has no history service to refill from: said, not hidden.
    assert gap["filled"] is False and gap["bars"] == 0


async def test_indicator_warms_up_from_polygon_rest(make_settings: SettingsFactory) -> None:
    """With a REST URL, a new indicator is seeded from Polygon's daily aggregates (real
    RESTClient against the fake), so its first value equals TA-Lib over that history."""
    import numpy as np
    import talib

    history = daily_aggs_from_csv(require(SHARED_DATA / "bars-daily-ORCL.csv"))
    async with FakePolygonRest(api_key="rest-key") as rest:
        rest.add_aggs("AMZN", 1, "day", history)
        async with await start_replay_server(AMZN_REPLAY, speed=10.0) as upstream:
            settings = make_settings(
                upstream,
                symbols=("AMZN",),
                polygon_api_key=Secret("rest-key"),
                polygon_rest_url=rest.base_url,
            )
            async with (
                running_server(settings) as srv,
                httpx.AsyncClient(base_url=srv.http) as http,
            ):
                await eventually(
                    lambda: (
                        (st := srv.runtime.services.state.get("AMZN")) is not None
                        and st.last_trade is not None
                    ),
                    "a live trade",
                )
                value = await gql(
                    http,
                    '{ indicator(symbol: "AMZN", timeframe: D1, spec: {kind: SMA, period: 5})'
                    " { ready coldStart barStart outputs { value } } }",
                )
                forming = srv.runtime.services.analytics.book.builder("AMZN").forming(  # type: ignore[union-attr]
                    Timeframe.D1
                )
    ind = value["indicator"]
    assert ind["ready"] and not ind["coldStart"]
    assert forming is not None and ind["barStart"] == forming.start_ms
    # SMA(5) = the last four historical closes (before 2012-06-21) and today's forming
    # close, which was some AMZN print of the day at the moment of the query.
    before = [h["c"] for h in history if h["t"] < forming.start_ms][-4:]
    implied_close = 5 * ind["outputs"][0]["value"] - sum(before)
    prints = {t.p for t in load_events(AMZN_REPLAY) if type(t) is Trade}
    assert min(abs(implied_close - p) for p in prints) < 1e-9 * implied_close
    check = talib.SMA(np.array([*before, implied_close], dtype=float), timeperiod=5)[-1]
    assert abs(check - ind["outputs"][0]["value"]) < 1e-9 * check
