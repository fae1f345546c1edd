"""A server restarted mid-day computes what it computed before: every indicator on every
timeframe equals the value before the restart (to 1e-9), and after a ``kill -9`` the
day's statistics and bars are rebuilt from what was stored plus a backfill from
history, with what could not be recovered announced as a GAP."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import signal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from server.indicators import IndicatorSpec
from server.market.timeframes import Timeframe
from streams.events import Trade
from streams.polygon_server import start_replay_server
from streams.recording import load_events
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.data import AMZN_REPLAY, require
from tests.support.fake_polygon_rest import FakePolygonRest, minute_aggs_from_recording
from tests.support.server import RunningServer, running_server
from tests.support.server_process import server_env, tickgraph, until
from tests.support.timing import timeout

MIN = 60_000
T_0930 = 1_340_285_400_000
T_1400 = T_0930 + 270 * MIN
SPECS = (
    "SMA(20)",
    "EMA(20)",
    "WMA(10)",
    "RSI(14)",
    "MACD(12,26,9)",
    "BBANDS(20,2)",
    "ATR(14)",
    "STOCH(14,3,3)",
    "VWAP",
    "VWAP_HLC3",
    "OBV",
    "ADX(10)",
    "DONCHIAN(20)",
)
TIMEFRAMES = tuple(Timeframe)


def prints(before_ms: int) -> list[Trade]:
    return [e for e in load_events(require(AMZN_REPLAY)) if type(e) is Trade and e.t < before_ms]


Value = tuple[int, tuple[float, ...] | None]


async def values(srv: RunningServer) -> dict[tuple[str, str], Value]:
    """Every indicator's current value: (bar start, outputs; None while warming up)."""
    analytics = srv.runtime.services.analytics
    assert analytics is not None
    out = {}
    for tf in TIMEFRAMES:
        for key in SPECS:
            slot = await analytics.acquire("AMZN", tf, IndicatorSpec.parse(key))
            try:
                last = slot.last
                assert last is not None, (tf, key)
                out[(tf.value, key)] = (last.bar_start_ms, last.values)
            finally:
                analytics.release(slot)
    return out


def same(x: Value, y: Value) -> bool:
    if x[0] != y[0] or (x[1] is None) != (y[1] is None):
        return False
    return x[1] is None or all(equal(a, b) for a, b in zip(x[1], y[1] or (), strict=True))


def equal(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


async def caught_up(srv: RunningServer, until_ms: int) -> None:
    last = prints(until_ms)[-1].t

    def done() -> bool:
        st = srv.runtime.services.state.get("AMZN")
        return st is not None and st.last_trade is not None and st.last_trade.event.t >= last  # type: ignore[union-attr]

    await eventually(done, "the server to apply the replay up to its pause", timeout(3))


async def test_every_indicator_is_the_same_after_a_restart_mid_day(
    make_settings: SettingsFactory,
) -> None:
    async with await start_replay_server(AMZN_REPLAY, speed=None) as upstream:
        upstream.pause_at(T_0930)  # before the first frame: indicators first
        settings = make_settings(upstream, symbols=("AMZN",))
        async with running_server(settings) as srv:
            analytics = srv.runtime.services.analytics
            assert analytics is not None
            await eventually(upstream.paused.is_set, "the replay to wait", timeout(3))
            held = [
                await analytics.acquire("AMZN", tf, IndicatorSpec.parse(k))
                for tf in TIMEFRAMES
                for k in SPECS
            ]  # computed live from the first print of the day
            upstream.resume(until_ms=T_1400)
            await eventually(upstream.paused.is_set, "the replay to reach 14:00", timeout(6))
            await caught_up(srv, T_1400)
            # The feed clock closes every intraday bar of the session so far.
            m1 = analytics.book.builder("AMZN")
            await eventually(lambda: m1.forming(Timeframe.H1) is None, "14:00 closes", timeout(2))
            before = await values(srv)
            for slot in held:
                analytics.release(slot)
        # The same database and data dir; the replay is still paused at 14:00.
        async with running_server(dataclasses.replace(settings)) as srv2:
            await eventually(
                lambda: srv2.runtime.services.feed_status.snapshot().state.value == "connected",
                "the feed",
                timeout(2),
            )
            after = await values(srv2)
            day = srv2.runtime.services.analytics.book.builder("AMZN").forming(Timeframe.D1)  # type: ignore[union-attr]
    assert before.keys() == after.keys()
    differ = {k: (before[k], after[k]) for k in before if not same(before[k], after[k])}
    assert not differ, differ
    # Most of them had a value to compare (the rest are still warming up on coarse bars).
    assert sum(v[1] is not None for v in before.values()) >= 50
    morning = prints(T_1400)
    assert day is not None and day.volume == sum(t.s for t in morning)
    assert (day.open, day.high, day.low) == (
        morning[0].p,
        max(t.p for t in morning),
        min(t.p for t in morning),
    )


SNAPSHOT = '{ snapshot(symbol: "AMZN") { day { open high low close volume trades } } }'
GAPS = '{ barGaps(symbol: "AMZN") { from to filled bars reason } }'


async def test_after_kill_9_the_day_is_rebuilt_and_the_rest_announced(
    fresh_database_url: str, tmp_path: Path
) -> None:
    t_kill = T_0930 + 42 * MIN + 30_000  # 10:12:30
    t_back = T_0930 + 50 * MIN  # the feed went on while the server was down
    t_check = T_0930 + 60 * MIN
    async with (
        FakePolygonRest(api_key="rest-key") as rest,
        await start_replay_server(AMZN_REPLAY, speed=None) as upstream,
    ):
        rest.add_aggs("AMZN", 1, "minute", minute_aggs_from_recording(AMZN_REPLAY, "AMZN"))
        upstream.pause_at(t_kill)
        env = server_env(
            fresh_database_url,
            upstream.url,
            tmp_path,
            POLYGON_API_KEY="rest-key",
            POLYGON_REST_URL=rest.base_url,
        )
        log = tmp_path / "server.log"
        async with tickgraph(env, log) as srv:
            await eventually(upstream.paused.is_set, "the replay to reach 10:12:30", timeout(6))
            await until(
                lambda: gql(srv.http, SNAPSHOT),
                lambda d: d["snapshot"]["day"]["trades"] == len(prints(t_kill)),
                "the server to apply everything before 10:12:30",
                timeout(3),
                every_s=0.5,
            )
            await until(
                lambda: minutes_stored(fresh_database_url),
                bool,
                "the first flush of the bar writer",
                timeout(2),
            )
            srv.proc.send_signal(signal.SIGKILL)  # at once: the last flush may be lost
            await srv.proc.wait()
        stored_minutes = await minutes_stored(fresh_database_url)
        upstream.resume(until_ms=t_check, skip_to_ms=t_back)
        async with tickgraph(env, log) as srv2:
            await eventually(upstream.paused.is_set, "the replay to reach 10:30", timeout(6))
            gaps = await until(
                lambda: gql(srv2.http, GAPS),
                lambda d: bool(d["barGaps"]),
                "the restart's GAP",
                timeout(3),
                every_s=0.5,  # anonymous callers get 60 requests a minute
            )
            (gap,) = gaps["barGaps"]
            everything = prints(t_check)
            lost_from = gap["from"]
            lost_to = lost_from - lost_from % MIN + MIN
            kept = [t for t in everything if not lost_from <= t.t < lost_to]
            day = (
                await until(
                    lambda: gql(srv2.http, SNAPSHOT),
                    lambda d: d["snapshot"]["day"]["trades"] >= len(kept),
                    "the server to apply the replay up to 10:30",
                    timeout(3),
                    every_s=0.5,
                )
            )["snapshot"]["day"]
            srv2.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(timeout(3)):
                assert await srv2.proc.wait() == 0
    first_back = min(t.t for t in prints(t_check) if t.t >= t_back)
    assert gap["reason"] == "restart" and gap["filled"]
    assert gap["from"] <= t_kill and first_back >= gap["to"] > t_back - 1
    # The minutes wholly inside the gap came from history; only the minute in which the
    # gap began is short of what it lost, and the GAP says so.
    assert gap["bars"] == len({t.t - t.t % MIN for t in everything if lost_to <= t.t < t_back})
    assert day["volume"] == sum(t.s for t in kept)
    assert day["trades"] == len(kept)
    assert day["open"] == everything[0].p and day["close"] == everything[-1].p
    assert (day["high"], day["low"]) == (max(t.p for t in kept), min(t.p for t in kept))
    assert stored_minutes, "the first run stored its closed minutes"


async def gql(http: httpx.AsyncClient, query: str) -> dict[str, Any]:
    """An anonymous query, waiting out the anonymous rate limit when polling hits it."""
    while True:
        body = (await http.post("/graphql", json={"query": query})).json()
        errors = body.get("errors") or []
        if errors and errors[0].get("extensions", {}).get("code") == "RATE_LIMITED":
            await asyncio.sleep(float(errors[0]["extensions"]["retryAfter"]) + 0.05)
            continue
        assert not errors, body
        data: dict[str, Any] = body["data"]
        return data


async def minutes_stored(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT start_ms FROM bars WHERE timeframe = '1m' ORDER BY 1")
        return [r["start_ms"] for r in rows]
    finally:
        await conn.close()
