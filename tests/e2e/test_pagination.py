"""Reading what is stored, a page at a time: every bar of every timeframe and every
firing of an alert can be reached with cursors; limits apply to the page, not to the
range."""

from __future__ import annotations

from typing import Any

import httpx

from server.market.timeframes import Timeframe
from streams.events import Trade
from streams.polygon_server import start_replay_server
from streams.recording import load_events
from tests.e2e.conftest import SettingsFactory, eventually
from tests.e2e.test_crash_durability import dense_alerts
from tests.support.data import AMZN_REPLAY, require
from tests.support.server import running_server
from tests.support.server_process import elite_user
from tests.support.timing import timeout

T_0930 = 1_340_285_400_000
T_1200 = T_0930 + 150 * 60_000
PAGE = """query($tf: Timeframe!, $first: Int!, $after: String, $to: Timestamp) {
  barsConnection(symbol: "AMZN", timeframe: $tf, first: $first, after: $after, to: $to) {
    edges { cursor node { start open high low close volume trades } }
    pageInfo { hasNextPage endCursor } } }"""
HISTORY = """query($first: Int!, $after: String) {
  alertHistoryConnection(first: $first, after: $after) {
    edges { node { alertId key kind firedAt } } pageInfo { hasNextPage endCursor } } }"""


async def gql(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    body = (await http.post("/graphql", json={"query": query, "variables": variables})).json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def expected_bars(size_ms: int) -> list[tuple[int, float, float, float, float, int, int]]:
    """Every bar of the morning, recomputed from the tape."""
    prints = [e for e in load_events(require(AMZN_REPLAY)) if type(e) is Trade and e.t < T_1200]
    buckets: dict[int, list[Trade]] = {}
    for t in prints:
        buckets.setdefault(t.t - t.t % size_ms, []).append(t)
    return [
        (
            start,
            ts[0].p,
            max(t.p for t in ts),
            min(t.p for t in ts),
            ts[-1].p,
            sum(t.s for t in ts),
            len(ts),
        )
        for start, ts in sorted(buckets.items())
    ]


async def walk(http: httpx.AsyncClient, query: str, key: str, **variables: Any) -> list[Any]:
    """Every node of a connection, following its cursors."""
    nodes: list[Any] = []
    after = None
    while True:
        page = (await gql(http, query, after=after, **variables))[key]
        nodes += [e["node"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


async def test_every_stored_bar_and_firing_can_be_paged_through(
    make_settings: SettingsFactory,
) -> None:
    async with await start_replay_server(AMZN_REPLAY, speed=None) as upstream:
        upstream.pause_at(T_0930)
        settings = make_settings(upstream, symbols=("AMZN",))
        assert settings.database_url is not None
        async with running_server(settings) as srv, httpx.AsyncClient(base_url=srv.http) as http:
            await eventually(upstream.paused.is_set, "the replay to wait", timeout(3))
            await elite_user(http, settings.database_url.reveal())
            await dense_alerts(http)
            upstream.resume(until_ms=T_1200)
            await eventually(upstream.paused.is_set, "the replay to reach 12:00", timeout(6))
            analytics = srv.runtime.services.analytics
            assert analytics is not None
            await eventually(
                lambda: analytics.book.builder("AMZN").forming(Timeframe.H1) is None,
                "the clock to close the morning's bars",
                timeout(2),
            )
            writer = srv.runtime.bar_writer
            assert writer is not None
            await eventually(lambda: writer.pending == 0, "the bars to be stored", timeout(2))
            # More 1s bars than memory keeps: the old ones come from the table.
            seconds = await walk(http, PAGE, "barsConnection", tf="S1", first=500, to=T_1200)
            fives = await walk(http, PAGE, "barsConnection", tf="M5", first=7, to=T_1200)
            three = await gql(
                http, '{ bars(symbol: "AMZN", timeframe: M1, from: 1340285400000, limit: 3) '
                "{ start } }"
            )  # fmt: skip
            delivery = srv.runtime.delivery
            assert delivery is not None
            await eventually(lambda: delivery.pending == 0, "the firings to be stored", timeout(2))
            firings = await walk(http, HISTORY, "alertHistoryConnection", first=400)
            written = delivery.written
    for got, size in ((seconds, 1000), (fives, 300_000)):
        rows = [
            (int(b["start"]), b["open"], b["high"], b["low"], b["close"], b["volume"], b["trades"])
            for b in got
        ]
        assert rows == expected_bars(size)
    assert len(seconds) > 1000  # beyond what memory holds
    assert [b["start"] for b in three["bars"]][-1] >= T_1200 - 60_000  # the newest 3 since 09:30
    assert len(three["bars"]) == 3
    keys = [(f["alertId"], f["key"]) for f in firings]
    assert len(keys) == len(set(keys)) == written > 1000  # past the old 1,000 cap
    assert [f["firedAt"] for f in firings] == sorted((f["firedAt"] for f in firings), reverse=True)


def test_a_cursor_of_another_connection_is_refused() -> None:
    from schema.pagination import decode_position, encode_position
    from server.errors import InvalidInput

    cursor = encode_position("b", 1340285400000)
    assert decode_position("b", cursor, "bars") == 1340285400000
    for bad in ("not base64!", encode_position("h", 5)):
        try:
            decode_position("b", bad, "barsConnection")
        except InvalidInput as exc:
            assert "cursor" in exc.message
        else:
            raise AssertionError(bad)
