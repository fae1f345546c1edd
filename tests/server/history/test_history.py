"""History providers against real servers: polygon-api-client's RESTClient talking to a
local fake Polygon REST server, and real PostgreSQL for the stored bars."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
import traceback
from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import msgspec
import pytest
import pytest_asyncio

from server.history.polygon import PolygonHistory
from server.history.provider import ChainedHistory, HistoryUnavailable
from server.history.simulated import SimulatedHistory
from server.history.stored import StoredHistory
from server.market.timeframes import Bar, Timeframe
from server.market.trading_day import day_window
from server.settings import Secret
from streams.simulated_market import start_price
from tests.support.data import SHARED_DATA, require
from tests.support.fake_polygon_rest import (
    FakePolygonRest,
    Fault,
    daily_aggs_from_csv,
    minute_aggs,
    ny_midnight_ms,
)
from tests.support.timing import timeout

KEY = "pk_SECRET_9f3a7c1e"
ORCL_AGGS = daily_aggs_from_csv(require(SHARED_DATA / "bars-daily-ORCL.csv"))
DAY_MS = 86_400_000
MINUTE_MS = 60_000
#: 2014-12-31 at noon New York: the 12-31 bar is still open, 12-30 is the last closed one.
DEC31_NOON = ny_midnight_ms(date(2014, 12, 31)) + 12 * 3_600_000


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakePolygonRest]:
    async with FakePolygonRest(api_key=KEY) as server:
        server.add_aggs("ORCL", 1, "day", ORCL_AGGS)
        yield server


def polygon(fake: FakePolygonRest, **kwargs: object) -> PolygonHistory:
    return PolygonHistory(KEY, base_url=fake.base_url, **kwargs)  # type: ignore[arg-type]


def expected_daily(agg: dict[str, float]) -> Bar:
    """What the ORCL CSV row should become: New York day bounds, no vw -> typical price,
    no n -> 0 trades, volume to whole shares."""
    t = int(agg["t"])
    return Bar(
        symbol="ORCL",
        timeframe=Timeframe.D1,
        start_ms=t,
        end_ms=Timeframe.D1.bucket(t)[1],
        open=agg["o"],
        high=agg["h"],
        low=agg["l"],
        close=agg["c"],
        volume=round(agg["v"]),
        vwap=(agg["h"] + agg["l"] + agg["c"]) / 3,
        trades=0,
        final=True,
    )


# --- PolygonHistory -----------------------------------------------------------------------


async def test_daily_bars_are_the_most_recent_closed_ones(fake: FakePolygonRest) -> None:
    bars = await polygon(fake).bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=30)

    # The CSV ends with 2014-12-31, which has not closed at noon that day.
    assert bars == [expected_daily(a) for a in ORCL_AGGS[-31:-1]]
    assert bars[-1].start_ms == ny_midnight_ms(date(2014, 12, 30))
    assert bars[-1].end_ms == ny_midnight_ms(date(2014, 12, 31))
    # The real client's wire format: key in the Authorization header, never in the URL.
    (request,) = fake.requests
    assert request.authorization == f"Bearer {KEY}"
    assert "apiKey" not in request.query
    assert request.query == {"adjusted": "true", "sort": "asc", "limit": "50000"}
    assert request.path.startswith("/v2/aggs/ticker/ORCL/range/1/day/")


async def test_end_at_a_day_boundary_includes_the_day_before(fake: FakePolygonRest) -> None:
    end = ny_midnight_ms(date(2014, 12, 31))
    bars = await polygon(fake).bars("ORCL", Timeframe.D1, end_ms=end, count=3)
    assert bars == [expected_daily(a) for a in ORCL_AGGS[-4:-1]]


async def test_window_widens_when_the_first_is_short(fake: FakePolygonRest) -> None:
    # A halted symbol: 200 minutes, twelve days of nothing, then 100 minutes.
    t0 = ny_midnight_ms(date(2024, 3, 4)) + 10 * 3_600_000
    block_a = minute_aggs(t0, 200)
    block_b = minute_aggs(t0 + 12 * DAY_MS, 100, price=90.0)
    fake.add_aggs("HALT", 1, "minute", block_a + block_b)
    end = block_b[-1]["t"] + MINUTE_MS

    bars = await polygon(fake).bars("HALT", Timeframe.M1, end_ms=end, count=250)

    assert [b.start_ms for b in bars] == [a["t"] for a in (block_a + block_b)[-250:]]
    assert len(fake.requests) == 2  # the first window held only the last block


async def test_widening_is_bounded_when_history_is_short(fake: FakePolygonRest) -> None:
    # ORCL's data starts 1995-01-03: asking for 100 bars at 1995-03-01 finds ~40.
    end = ny_midnight_ms(date(1995, 3, 1))
    bars = await polygon(fake, max_widenings=3).bars("ORCL", Timeframe.D1, end_ms=end, count=100)

    assert bars == [expected_daily(a) for a in ORCL_AGGS if a["t"] < end]
    assert len(fake.requests) == 4


async def test_minute_fields_map_one_to_one(fake: FakePolygonRest) -> None:
    t0 = ny_midnight_ms(date(2024, 3, 4)) + 14 * 3_600_000
    aggs = minute_aggs(t0, 30)
    fake.add_aggs("AAPL", 1, "minute", aggs)

    bars = await polygon(fake).range("AAPL", Timeframe.M1, t0, t0 + 30 * MINUTE_MS)

    assert len(bars) == 30
    for bar, agg in zip(bars, aggs, strict=True):
        assert (bar.start_ms, bar.end_ms) == (agg["t"], agg["t"] + MINUTE_MS)
        assert (bar.open, bar.high, bar.low, bar.close) == (agg["o"], agg["h"], agg["l"], agg["c"])
        assert bar.volume == round(agg["v"]) and isinstance(bar.volume, int)
        assert bar.vwap == agg["vw"]
        assert bar.trades == agg["n"]
        assert bar.final and bar.revision == 0


@pytest.mark.parametrize(("timeframe", "multiplier", "timespan"), [
    (Timeframe.S1, 1, "second"),
    (Timeframe.M5, 5, "minute"),
    (Timeframe.M15, 15, "minute"),
    (Timeframe.H1, 1, "hour"),
])  # fmt: skip
async def test_timeframes_map_to_polygon_spans(
    fake: FakePolygonRest, timeframe: Timeframe, multiplier: int, timespan: str
) -> None:
    size = timeframe.millis
    assert size is not None
    t0 = 1_709_568_000_000  # 2024-03-04 16:00 UTC, a boundary of every fixed bucket
    aggs = [dict(a, t=t0 + i * size) for i, a in enumerate(minute_aggs(t0, 4))]
    fake.add_aggs("MSFT", multiplier, timespan, aggs)

    bars = await polygon(fake).bars("MSFT", timeframe, end_ms=t0 + 4 * size, count=4)

    assert [(b.start_ms, b.end_ms) for b in bars] == [(a["t"], a["t"] + size) for a in aggs]
    assert fake.requests[0].path.startswith(f"/v2/aggs/ticker/MSFT/range/{multiplier}/{timespan}/")


async def test_pagination_follows_next_url() -> None:
    async with FakePolygonRest(api_key=KEY, page_size=7) as fake:
        fake.add_aggs("ORCL", 1, "day", ORCL_AGGS)
        start = ny_midnight_ms(date(2014, 11, 1))
        end = ny_midnight_ms(date(2015, 1, 1))

        bars = await polygon(fake).range("ORCL", Timeframe.D1, start, end)

        expected = [expected_daily(a) for a in ORCL_AGGS if start <= a["t"] < end]
        assert bars == expected
        assert len(fake.requests) == -(-len(expected) // 7) >= 5
        for follow_up in fake.requests[1:]:
            # The client sends only the cursor, and the key again in the header.
            assert set(follow_up.query) == {"cursor"}
            assert follow_up.authorization == f"Bearer {KEY}"

        fake.requests.clear()
        recent = await polygon(fake).bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=30)
        assert recent == [expected_daily(a) for a in ORCL_AGGS[-31:-1]]
        assert len(fake.requests) > 4


async def test_wrong_key_is_unavailable_without_leaking_the_key(fake: FakePolygonRest) -> None:
    wrong = "pk_WRONG_5e8d2b"
    history = PolygonHistory(wrong, base_url=fake.base_url)
    with pytest.raises(HistoryUnavailable) as caught:
        await history.bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=5)

    exc = caught.value
    assert exc.code == "HISTORY_UNAVAILABLE"
    assert exc.extensions["code"] == "HISTORY_UNAVAILABLE"
    assert "Unknown API Key" in exc.message
    shown = "".join(traceback.format_exception(exc)) + repr(exc.extensions) + repr(history)
    assert wrong not in shown and KEY not in shown
    assert fake.requests[0].authorization == f"Bearer {wrong}"


@pytest.mark.parametrize(
    ("fault", "status", "words"),
    [
        (Fault.rate_limited(retry_after_s=30), 429, "rate limited"),
        (Fault.server_error(500), 500, "HTTP 500"),
        (Fault.server_error(502), 502, "HTTP 502"),
        (Fault.server_error(503), 503, "HTTP 503"),
    ],
)
async def test_refusals_fail_fast_without_client_retries(
    fake: FakePolygonRest, fault: Fault, status: int, words: str
) -> None:
    # Left alone, the client would retry these 3 times and sleep Retry-After (30 s) each.
    fake.always = fault
    began = time.monotonic()
    with pytest.raises(HistoryUnavailable) as caught:
        await polygon(fake).bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=5)

    assert time.monotonic() - began < timeout(0.3)
    assert len(fake.requests) == 1
    assert caught.value.extensions["http_status"] == status
    assert words in caught.value.message
    assert KEY not in caught.value.message


async def test_slow_server_times_out_within_the_deadline(fake: FakePolygonRest) -> None:
    fake.always = Fault.slow(30.0)
    began = time.monotonic()
    with pytest.raises(HistoryUnavailable) as caught:
        await polygon(fake, timeout_s=0.5).bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=5)

    assert 0.45 < time.monotonic() - began < 0.5 + timeout(0.2)
    assert "no answer within 0.5 s" in caught.value.message


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param((Fault.malformed(),), id="truncated-json"),
        pytest.param((Fault(200, b"\xff\xfe not utf-8"),), id="not-utf-8"),
        pytest.param((Fault(200, b'{"status":"OK","results":{"o":1}}'),), id="wrong-shape"),
        pytest.param((Fault(200, b'{"status":"OK","results":[{"o":1}]}'),), id="missing-fields"),
        pytest.param((Fault(), Fault.malformed()), id="second-page"),
    ],
)
async def test_malformed_responses_are_unavailable(faults: tuple[Fault, ...]) -> None:
    async with FakePolygonRest(api_key=KEY, page_size=10) as fake:
        fake.add_aggs("ORCL", 1, "day", ORCL_AGGS)
        fake.inject(*faults)
        with pytest.raises(HistoryUnavailable, match="malformed"):
            await polygon(fake).bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=20)
        assert len(fake.requests) == len(faults)


async def test_concurrency_is_bounded(fake: FakePolygonRest) -> None:
    fake.always = Fault.slow(0.2)
    history = polygon(fake, max_concurrency=2)
    days = [ny_midnight_ms(date(2014, 12, d)) for d in range(1, 7)]

    results = await asyncio.gather(
        *(history.range("ORCL", Timeframe.D1, d, d + DAY_MS) for d in days)
    )

    assert [len(r) for r in results] == [1, 1, 1, 1, 1, 0]  # 6 Dec 2014 was a Saturday
    assert fake.max_in_flight == 2
    assert len(fake.requests) == 6


# --- SimulatedHistory ---------------------------------------------------------------------

NOW = 1_790_000_123_456


@pytest.mark.parametrize("timeframe", list(Timeframe))
async def test_simulated_bars_are_valid_and_end_at_the_start_price(timeframe: Timeframe) -> None:
    bars = await SimulatedHistory(7).bars("NVDA", timeframe, end_ms=NOW, count=300)

    assert len(bars) == 300
    for prev, bar in itertools.pairwise(bars):
        assert prev.end_ms <= bar.start_ms
        assert bar.open == prev.close  # one continuous walk
    for bar in bars:
        assert bar.symbol == "NVDA" and bar.timeframe is timeframe and bar.final
        assert timeframe.bucket(bar.start_ms) == (bar.start_ms, bar.end_ms)
        assert bar.end_ms <= NOW
        assert 0 < bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.low <= bar.vwap <= bar.high
        assert bar.volume > 0 and bar.trades > 0
    assert bars[-1].close == pytest.approx(start_price("NVDA"), abs=0.005)
    # The newest closed bucket: the one holding NOW is still forming.
    assert bars[-1].end_ms > NOW - (timeframe.millis or 3 * DAY_MS)


async def test_simulated_history_is_deterministic() -> None:
    args = ("ZQXJ", Timeframe.M5)
    first = await SimulatedHistory(3).bars(*args, end_ms=NOW, count=500)
    again = await SimulatedHistory(3).bars(*args, end_ms=NOW, count=500)
    other = await SimulatedHistory(4).bars(*args, end_ms=NOW, count=500)

    assert first == again
    assert first != other
    assert first[-1].close == other[-1].close == start_price("ZQXJ")
    assert await SimulatedHistory(None).bars(*args, end_ms=NOW, count=5) == (
        await SimulatedHistory(0).bars(*args, end_ms=NOW, count=5)
    )


async def test_simulated_range_matches_bars_and_skips_weekends() -> None:
    history = SimulatedHistory(1)
    bars = await history.bars("AAPL", Timeframe.D1, end_ms=NOW, count=60)
    assert await history.range("AAPL", Timeframe.D1, bars[0].start_ms, NOW) == bars
    assert all(day_window(b.start_ms).day.weekday() < 5 for b in bars)

    minutes = await history.range("AAPL", Timeframe.M1, NOW - 30 * MINUTE_MS - 1, NOW)
    assert len(minutes) == 29  # whole minutes inside the range only
    assert minutes == (await history.bars("AAPL", Timeframe.M1, end_ms=NOW, count=29))


async def test_simulated_large_request_runs_off_the_loop() -> None:
    bars = await SimulatedHistory(2).bars("SPY", Timeframe.S1, end_ms=NOW, count=20_000)
    assert len(bars) == 20_000 and bars[-1].close == start_price("SPY")


# --- StoredHistory ------------------------------------------------------------------------

#: The table of migration 0002, created here so these tests do not depend on it.
BARS_TABLE = """
CREATE TABLE bars (
    symbol    text NOT NULL,
    timeframe text NOT NULL CHECK (timeframe IN ('1m', '1d')),
    start_ms  bigint NOT NULL,
    end_ms    bigint NOT NULL,
    open      double precision NOT NULL,
    high      double precision NOT NULL,
    low       double precision NOT NULL,
    close     double precision NOT NULL,
    volume    bigint NOT NULL,
    vwap      double precision NOT NULL,
    trades    integer NOT NULL,
    revision  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (symbol, timeframe, start_ms),
    CHECK (end_ms > start_ms),
    CHECK (low <= open AND open <= high AND low <= close AND close <= high),
    CHECK (volume > 0 AND trades > 0 AND revision >= 0)
)
"""
#: 2024-03-04 14:00 UTC (an hour boundary), three hours of minutes with a few missing.
T0 = 1_709_560_800_000
MISSING = {7, 8, 9, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 130}


def stored_minutes() -> list[Bar]:
    out = []
    for i in range(180):
        if i in MISSING:
            continue
        o = 50.0 + (i * 7 % 23) * 0.05
        c = 50.0 + (i * 11 % 19) * 0.05
        out.append(
            Bar(
                symbol="ORCL",
                timeframe=Timeframe.M1,
                start_ms=T0 + i * MINUTE_MS,
                end_ms=T0 + (i + 1) * MINUTE_MS,
                open=o,
                high=max(o, c) + 0.1 + (i % 3) * 0.01,
                low=min(o, c) - 0.1 - (i % 4) * 0.01,
                close=c,
                volume=100 * (1 + i % 9),
                vwap=(o + c) / 2 + 0.01,
                trades=1 + i % 5,
                final=True,
                revision=1 if i == 100 else 0,
            )
        )
    return out


def merged_by_hand(minutes: list[Bar], timeframe: Timeframe) -> list[Bar]:
    size = timeframe.millis
    assert size is not None
    groups: dict[int, list[Bar]] = {}
    for m in minutes:
        groups.setdefault(m.start_ms // size * size, []).append(m)
    out = []
    for start, g in sorted(groups.items()):
        volume = sum(m.volume for m in g)
        out.append(
            Bar(
                symbol="ORCL",
                timeframe=timeframe,
                start_ms=start,
                end_ms=start + size,
                open=g[0].open,
                high=max(m.high for m in g),
                low=min(m.low for m in g),
                close=g[-1].close,
                volume=volume,
                vwap=sum(m.vwap * m.volume for m in g) / volume,
                trades=sum(m.trades for m in g),
                final=True,
                revision=max(m.revision for m in g),
            )
        )
    return out


def stored_days() -> list[Bar]:
    return [msgspec.structs.replace(expected_daily(a), trades=5000) for a in ORCL_AGGS[-10:]]


@pytest_asyncio.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(fresh_database_url, min_size=1, max_size=2) as p:
        yield p


async def insert(pool: asyncpg.Pool, bars: list[Bar]) -> None:
    await pool.executemany(
        "INSERT INTO bars VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        [
            (b.symbol, b.timeframe.value, b.start_ms, b.end_ms, b.open, b.high, b.low, b.close,
             b.volume, b.vwap, b.trades, b.revision)
            for b in bars
        ],
    )  # fmt: skip


@pytest_asyncio.fixture
async def stored(pool: asyncpg.Pool) -> StoredHistory:
    await pool.execute(BARS_TABLE)
    await insert(pool, stored_minutes())
    await insert(pool, stored_days())
    return StoredHistory(pool)


@pytest.mark.parametrize("timeframe", [Timeframe.M5, Timeframe.M15, Timeframe.H1])
async def test_stored_derived_bars_merge_the_minutes(
    stored: StoredHistory, timeframe: Timeframe
) -> None:
    expected = merged_by_hand(stored_minutes(), timeframe)
    end = T0 + 180 * MINUTE_MS + 30_000  # the 3-hour mark has passed: every bucket closed

    got = await stored.bars("ORCL", timeframe, end_ms=end, count=len(expected) + 5)
    assert _same(got, expected)

    newest = await stored.bars("ORCL", timeframe, end_ms=end, count=2)
    assert _same(newest, expected[-2:])

    # A bucket still running at end_ms is not returned, even though its minutes exist.
    mid = T0 + 150 * MINUTE_MS + 1
    closed = [b for b in expected if b.end_ms <= mid]
    assert _same(await stored.bars("ORCL", timeframe, end_ms=mid, count=3), closed[-3:])

    # Only buckets wholly inside the range: not the one starting at T0, cut by T0 + 1.
    lo, hi = T0 + 1, T0 + 120 * MINUTE_MS + 1
    inside = await stored.range("ORCL", timeframe, lo, hi)
    assert _same(inside, [b for b in expected if b.start_ms >= lo and b.end_ms <= hi])


def _same(got: list[Bar], expected: list[Bar]) -> bool:
    """Equal bars, VWAP up to float summation order."""
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.vwap == pytest.approx(e.vwap, rel=1e-12)
        assert g == Bar(**{**{f: getattr(e, f) for f in Bar.__struct_fields__}, "vwap": g.vwap})
    return True


async def test_stored_minutes_and_days_are_read_directly(stored: StoredHistory) -> None:
    minutes = stored_minutes()
    end = T0 + 20 * MINUTE_MS
    assert (
        await stored.bars("ORCL", Timeframe.M1, end_ms=end, count=5)
        == [m for m in minutes if m.end_ms <= end][-5:]
    )
    assert await stored.range("ORCL", Timeframe.M1, T0, T0 + 12 * MINUTE_MS) == [
        m for m in minutes if m.end_ms <= T0 + 12 * MINUTE_MS
    ]
    days = await stored.bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=100)
    assert days == stored_days()[:-1]
    assert await stored.bars("ORCL", Timeframe.S1, end_ms=end, count=5) == []
    assert await stored.bars("MSFT", Timeframe.M1, end_ms=end, count=5) == []


async def test_stored_history_without_the_table_is_unavailable(pool: asyncpg.Pool) -> None:
    with pytest.raises(HistoryUnavailable, match="UndefinedTableError"):
        await StoredHistory(pool).bars("ORCL", Timeframe.M1, end_ms=T0, count=5)


# --- ChainedHistory -----------------------------------------------------------------------


class FixedHistory:
    """A provider with canned bars (a real implementation of the protocol, for chaining)."""

    def __init__(self, bars: list[Bar]) -> None:
        self._bars = bars
        self.calls = 0

    async def bars(
        self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int
    ) -> list[Bar]:
        self.calls += 1
        return [b for b in self._bars if b.end_ms <= end_ms][-count:]

    async def range(
        self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int
    ) -> list[Bar]:
        self.calls += 1
        return [b for b in self._bars if start_ms <= b.start_ms and b.end_ms <= end_ms]


async def test_chain_falls_back_past_a_failing_provider(fake: FakePolygonRest) -> None:
    fake.always = Fault.server_error(503)
    chain = ChainedHistory(polygon(fake), SimulatedHistory(5))

    bars = await chain.bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=20)

    assert bars == await SimulatedHistory(5).bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=20)
    assert len(fake.requests) == 1


async def test_chain_stops_at_the_first_provider_with_enough(fake: FakePolygonRest) -> None:
    later = FixedHistory([])
    chain = ChainedHistory(polygon(fake), later)
    bars = await chain.bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=10)
    assert bars == [expected_daily(a) for a in ORCL_AGGS[-11:-1]]
    assert later.calls == 0


async def test_chain_merges_when_no_provider_has_enough() -> None:
    days = [expected_daily(a) for a in ORCL_AGGS[-30:-1]]
    recent = FixedHistory(days[-5:])  # e.g. the database: only the last few days
    older = FixedHistory(days[:-2])  # e.g. a delayed source: misses the newest two
    chain = ChainedHistory(recent, older)

    bars = await chain.bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=100)

    assert bars == days
    assert (recent.calls, older.calls) == (1, 1)


async def test_chain_range_takes_the_first_non_empty_answer() -> None:
    days = [expected_daily(a) for a in ORCL_AGGS[-30:-1]]
    chain = ChainedHistory(FixedHistory([]), FixedHistory(days[:3]), FixedHistory(days))
    assert await chain.range("ORCL", Timeframe.D1, days[0].start_ms, days[-1].end_ms) == days[:3]


async def test_chain_of_failures_is_unavailable(fake: FakePolygonRest) -> None:
    fake.always = Fault.server_error(500)
    chain = ChainedHistory(polygon(fake), FixedHistory([]), polygon(fake))

    with pytest.raises(HistoryUnavailable) as caught:
        await chain.bars("ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=5)
    assert caught.value.message.count("PolygonHistory: ") == 2

    with pytest.raises(HistoryUnavailable):
        await chain.range("ORCL", Timeframe.D1, DEC31_NOON - 5 * DAY_MS, DEC31_NOON)

    assert (
        await ChainedHistory(FixedHistory([])).bars(
            "ORCL", Timeframe.D1, end_ms=DEC31_NOON, count=5
        )
        == []
    )


async def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    history = PolygonHistory(Secret(KEY), base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(HistoryUnavailable, match="could not connect"):
        await history.range("ORCL", Timeframe.D1, DEC31_NOON - 5 * DAY_MS, DEC31_NOON)
