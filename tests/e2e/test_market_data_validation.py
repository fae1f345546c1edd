"""Bad input through a Polygon-protocol fake: a replayed day with garbage injected at a
known point. Each bad event is rejected and counted, and nothing it carried reaches the
clock, another symbol's bars, the day's statistics, the stored bars or the alerts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from server.market.timeframes import Timeframe
from streams.events import Trade
from streams.polygon_server import PolygonProtocolServer, start_replay_server
from streams.recording import load_events
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.accounts import bearer, sign_up
from tests.support.data import AMZN_REPLAY, GOOG_REPLAY, merged_recording
from tests.support.graphql_ws import graphql_ws
from tests.support.server import RunningServer, running_server
from tests.support.timing import timeout

MIN = 60_000
T_1000 = 1_340_287_200_000  # 2012-06-21 10:00 New York
T_1030 = T_1000 + 30 * MIN
T_1100 = T_1000 + 60 * MIN
YEAR_2100 = 4_102_444_800_000
YEAR = 365 * 86_400_000

SNAPSHOT = """query($s: String!) { snapshot(symbol: $s) {
  lastTrade { price } day { date open high low close volume trades final } } }"""
FEED = "{ feedStatus { rejected { reason count } } }"
BARS = """subscription($s: String!) { bars(symbol: $s, timeframe: M1) {
  kind bar { start end open high low close volume trades revision } } }"""


async def gql(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    body = (await http.post("/graphql", json={"query": query, "variables": variables})).json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def tape(symbol: str, before_ms: int) -> list[Trade]:
    path = AMZN_REPLAY if symbol == "AMZN" else GOOG_REPLAY
    return [e for e in load_events(path) if type(e) is Trade and e.t < before_ms]


async def settle(
    srv: RunningServer,
    upstream: PolygonProtocolServer,
    until_ms: int,
    symbols: tuple[str, ...] = ("AMZN", "GOOG"),
) -> None:
    """Wait until the replay is paused at ``until_ms`` and the server applied all of it."""
    await eventually(upstream.paused.is_set, "the replay to reach its pause", timeout(6))
    last = {s: tape(s, until_ms)[-1].t for s in symbols}

    def caught_up() -> bool:
        state = srv.runtime.services.state
        return all(
            (st := state.get(s)) is not None
            and st.last_trade is not None
            and st.last_trade.event.t >= t  # type: ignore[union-attr]
            for s, t in last.items()
        )

    await eventually(caught_up, "the server to apply everything before the pause", timeout(3))


def trade_json(t: int, p: float | str, s: int | str, *, c: str = "[]", q: int = 0) -> str:
    return f'{{"ev":"T","sym":"AMZN","x":12,"i":"x","z":3,"p":{p},"s":{s},"c":{c},"t":{t},"q":{q}}}'


async def test_a_future_dated_trade_moves_no_clock_and_no_other_symbol(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    both = merged_recording(tmp_path / "amzn-goog.jsonl.gz", AMZN_REPLAY, GOOG_REPLAY)
    async with await start_replay_server(both, speed=None) as upstream:
        upstream.pause_at(T_1000)
        settings = make_settings(upstream, symbols=("AMZN", "GOOG"))
        async with running_server(settings) as srv, httpx.AsyncClient(base_url=srv.http) as http:
            async with graphql_ws(srv.ws) as client:
                goog_bars = await client.subscribe(BARS, {"s": "GOOG"})
                await settle(srv, upstream, T_1000)
                analytics = srv.runtime.services.analytics
                assert analytics is not None
                clock_before = analytics.clock.time_ms
                # 2100-01-01 (the future), and a year ahead of the replay (the past of
                # the wall clock, so only the feed clock can tell).
                bad = [trade_json(YEAR_2100, 223.5, 100), trade_json(T_1000 + YEAR, 223.5, 100)]
                for raw in bad:
                    assert await upstream.inject(f"[{raw}]") == 1
                upstream.resume(until_ms=T_1100)
                await settle(srv, upstream, T_1100)
                clock_after = analytics.clock.time_ms
                events: list[dict[str, Any]] = []
                while True:
                    try:
                        msg = await client.next_data(goog_bars, timeout=0.5)
                    except (TimeoutError, AssertionError):
                        break
                    events.append(msg["bars"])
            feed = await gql(http, FEED)
            amzn = (await gql(http, SNAPSHOT, s="AMZN"))["snapshot"]
            goog = (await gql(http, SNAPSHOT, s="GOOG"))["snapshot"]
    rejected = {r["reason"]: r["count"] for r in feed["feedStatus"]["rejected"]}
    assert rejected.get("timestamp_ahead") == 1, rejected
    assert rejected.get("timestamp_unconfirmed") == 1, rejected
    assert T_1000 - MIN < clock_before < T_1000 and T_1100 - MIN < clock_after < T_1100
    # AMZN's day is still 2012-06-21 and its prints kept counting.
    assert amzn["day"]["date"] == "2012-06-21" and not amzn["day"]["final"]
    assert amzn["day"]["volume"] == sum(t.s for t in tape("AMZN", T_1100))
    # GOOG's bars closed on time, each once, each equal to the tape; its day is open.
    closes = [e["bar"] for e in events if e["kind"] == "CLOSE"]
    assert not [e for e in events if e["kind"] == "REVISION"]
    assert len(closes) >= 59
    goog_tape = tape("GOOG", T_1100)
    for bar in closes:
        inside = [t for t in goog_tape if bar["start"] <= t.t < bar["end"]]
        assert bar["volume"] == sum(t.s for t in inside) and bar["revision"] == 0
        assert (bar["open"], bar["close"]) == (inside[0].p, inside[-1].p)
    assert goog["day"]["date"] == "2012-06-21" and not goog["day"]["final"]


async def test_implausible_prints_are_rejected_and_state_stays_representable(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    async with await start_replay_server(AMZN_REPLAY, speed=None) as upstream:
        upstream.pause_at(T_1000)
        settings = make_settings(upstream, symbols=("AMZN",))
        async with running_server(settings) as srv, httpx.AsyncClient(base_url=srv.http) as http:
            http.headers.update(bearer((await sign_up(http))["accessToken"]))
            for op, value in (("GREATER_THAN", 1000.0), ("LESS_THAN", 50.0)):
                await gql(
                    http,
                    "mutation($i: AlertInput!) { createAlert(input: $i) { id } }",
                    i={
                        "symbol": "AMZN",
                        "conditions": [{"left": {"price": "LAST"}, "op": op, "value": value}],
                    },
                )
            await settle(srv, upstream, T_1000, ("AMZN",))
            t = tape("AMZN", T_1000)[-1].t
            above = max(x.p for x in tape("AMZN", T_1030)) + 0.5  # plausible, never traded
            garbage = [
                trade_json(t, above, 0),  # a size-0 print: a marker, counts for nothing
                trade_json(t, 223.0, 10**15),
                trade_json(t, 223.0, 2**63 - 1),
                trade_json(t, 223.0, 2**64),
                trade_json(t, "1e300", 100),
                trade_json(t, 10_000.0, 100),  # far outside the band: held, then rejected
                trade_json(t, 1.0, 5, c="[37]"),  # an odd lot at 1.00: out of the band too
                trade_json(t, above, 7, c="[37]"),  # an odd lot: volume only, by the rules
                trade_json(t, 223.0, 100, c="[14,99999999999]"),
            ]
            for raw in garbage:
                await upstream.inject(f"[{raw}]")
            upstream.resume(until_ms=T_1030)
            await settle(srv, upstream, T_1030, ("AMZN",))
            feed = await gql(http, FEED)
            amzn = (await gql(http, SNAPSHOT, s="AMZN"))["snapshot"]
            history = await gql(http, "{ alertHistory { key } }")
            runtime = srv.runtime
            analytics = runtime.services.analytics
            assert analytics is not None
            day_bar = analytics.book.builder("AMZN").forming(Timeframe.D1)
            await runtime.bar_writer.close()  # type: ignore[union-attr]
            writer = runtime.bar_writer
    rejected = {r["reason"]: r["count"] for r in feed["feedStatus"]["rejected"]}
    assert rejected.get("invalid_size") == 3, rejected
    assert rejected.get("invalid_price") == 1, rejected
    assert rejected.get("invalid_code") == 1, rejected
    assert rejected.get("price_out_of_band") == 2, rejected
    prints = tape("AMZN", T_1030)
    day = amzn["day"]
    assert (day["high"], day["low"]) == (max(t.p for t in prints), min(t.p for t in prints))
    assert day["volume"] == sum(t.s for t in prints) + 7  # the odd lot counts for volume
    assert day["trades"] == len(prints) + 1
    assert day_bar is not None and (day_bar.high, day_bar.low) == (day["high"], day["low"])
    assert amzn["lastTrade"]["price"] == prints[-1].p  # never the marker or the odd lot
    assert history["alertHistory"] == []  # no alert ever saw 10,000 or 1.00
    assert writer is not None and writer.rejected == 0 and writer.dropped == 0


def test_injected_frames_are_real_json() -> None:
    """The helper writes what a broken upstream would: valid JSON, absurd numbers."""
    decoded = json.loads(f"[{trade_json(1, '1e300', 2**64)}]")
    assert decoded[0]["s"] == 2**64 and decoded[0]["p"] == 1e300
