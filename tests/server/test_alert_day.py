"""The whole AMZN day through the real pipeline (ingest, screen, bars, the feed clock
closing quiet bars, indicators, the indexed engine) against an independent simulation:
bars recomputed from the tape, indicators fed by hand, the naive engine, and the
evaluation points of the contract (``server/alerts/conditions.py``). Every firing must
agree, with its time: the event's, or the bar's end for oncePerBarClose."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec

from server.alerts import AlertEngine, Fired, validate
from server.alerts.naive import NaiveEngine
from server.analytics import Analytics
from server.delivery.bus import InProcessBus
from server.delivery.firings import Firing
from server.indicators import IndicatorSpec
from server.ingest import Ingest
from server.market.state import MarketState
from server.market.timeframes import Bar, Timeframe
from server.services.alerts import output_index
from streams.feed_status import FeedStatusTracker
from streams.screening import FeedScreen
from tests.support.data import AMZN_REPLAY, require

M1, M5 = Timeframe.M1, Timeframe.M5
RSI = {"indicator": "RSI(14)", "timeframe": "1m"}
SMA = {"indicator": "SMA(20)", "timeframe": "1m"}
LAST, BID = "LAST", "BID"
DEFINITIONS: list[dict[str, Any]] = [
    {"conditions": [{"left": LAST, "op": "greaterThan", "value": 224.0}],
     "trigger": {"mode": "everyTime", "cooldownMs": 60_000}},
    {"conditions": [{"left": LAST, "op": "crossingUp", "value": 223.5}],
     "trigger": {"mode": "oncePerBar", "timeframe": "1m"}},
    {"conditions": [{"left": BID, "op": "lessThan", "value": 222.0}],
     "trigger": {"mode": "everyTime", "cooldownMs": 30_000}},
    {"conditions": [{"left": RSI, "op": "greaterThan", "value": 60.0}],
     "trigger": {"mode": "oncePerBar", "timeframe": "5m"}},
    {"conditions": [{"left": RSI, "op": "crossingDown", "value": 45.0}],
     "trigger": {"mode": "oncePerBarClose", "timeframe": "1m"}},
    {"conditions": [{"left": LAST, "op": "greaterThan", "right": SMA}],
     "trigger": {"mode": "oncePerBarClose", "timeframe": "5m"}},
    {"conditions": [{"left": LAST, "op": "lessThan", "value": 221.0}],
     "trigger": {"mode": "once"}},
    {"conditions": [{"left": LAST, "op": "movingUp",
                     "move": {"by": 0.4, "percent": True, "bars": 10, "timeframe": "1m"}}],
     "trigger": {"mode": "everyTime", "cooldownMs": 300_000}},
    {"conditions": [{"left": LAST, "op": "crossingDown", "right": SMA}],
     "trigger": {"mode": "everyTime", "cooldownMs": 1}},
]  # fmt: skip


def alerts() -> list[Any]:
    return [
        validate(
            {"symbol": "AMZN", **d},
            alert_id=str(uuid.UUID(int=i + 1)),
            owner="u",
            now_ms=0,
            max_per_user=100,
        )
        for i, d in enumerate(DEFINITIONS)
    ]


class Capture:
    """Where the pipeline's firings go (the delivery's ``submit``)."""

    def __init__(self) -> None:
        self.firings: list[Firing] = []

    def submit(self, firing: Firing) -> None:
        self.firings.append(firing)


class NoHistory:
    async def bars(self, *_: object, **__: object) -> list[Any]:
        return []

    async def range(self, *_: object) -> list[Any]:
        return []

    async def trades(self, *_: object) -> None:
        return None


def frames() -> list[list[dict[str, Any]]]:
    with gzip.open(require(AMZN_REPLAY), "rt") as f:
        return [json.loads(line) for line in f]


async def pipeline() -> list[tuple[str, str, int]]:
    bus = InProcessBus()
    engine = AlertEngine(outputs=output_index)
    for a in alerts():
        engine.add(a)
    wall = [0]
    screen = FeedScreen()
    capture = Capture()
    analytics = Analytics(
        bus=bus,
        history=NoHistory(),  # type: ignore[arg-type]
        writer=None,
        engine=engine,
        delivery=capture,  # type: ignore[arg-type]
        wall_ms=lambda: wall[0],
        clock=screen.clock,
    )
    await analytics.sync_alert_indicators()
    ingest = Ingest(
        MarketState(), bus, FeedStatusTracker("polygon", "test"),
        on_applied=analytics.on_event, screen=screen,
    )  # fmt: skip
    for frame in frames():
        t = max(e["t"] for e in frame)
        wall[0] = t  # the wall clock runs with the replay: the feed clock closes quiet bars
        analytics.on_clock()
        ingest.on_frame(json.dumps(frame), t * 1_000_000)
    return [(str(f.alert_id), f.dedup_key, f.fired_at_ms) for f in capture.firings]


@dataclass
class Bars:
    """One timeframe's bars, recomputed from the prints of each bucket."""

    size: int
    start: int | None = None
    bar: Bar | None = None


def independent() -> list[tuple[str, str, int]]:
    """The tape replayed by hand: bars from each bucket's prints, indicator instances of
    our own (the arithmetic is checked against TA-Lib elsewhere, to 1e-13; here a
    different rounding at an exact tie would only test floats), the naive engine, and
    the contract's evaluation points in the contract's order."""
    naive = NaiveEngine(outputs=output_index)
    for a in alerts():
        naive.add(a)
    fired: list[Fired] = []
    bars = {M1: Bars(60_000), M5: Bars(300_000)}
    indicators = {key: IndicatorSpec.parse(key).create() for key in ("RSI(14)", "SMA(20)")}

    def values() -> dict[str, tuple[float, ...] | None]:
        return {key: ind.value for key, ind in indicators.items()}

    for frame in frames():
        for e in frame:
            if e["ev"] == "Q":
                fired += naive.on_quote("AMZN", e["bp"], e["ap"], e["t"])
                continue
            t, p, size = e["t"], e["p"], e["s"]
            for tf, b in bars.items():  # finest first, as the bar builder closes them
                start = t - t % b.size
                if b.start is not None and start > b.start:
                    end = b.start + b.size
                    if tf is M1:
                        fired += naive.on_indicators("AMZN", M1, values(), end, b.start, True)
                    fired += naive.on_bar_close("AMZN", tf, b.start, end)
                    b.start = None
                if b.start is None:
                    b.start = start
                    b.bar = Bar("AMZN", tf, start, start + b.size, p, p, p, p, size, p, 1)
                    if tf is M1:
                        for ind in indicators.values():
                            ind.add(b.bar)
                else:
                    assert b.bar is not None
                    b.bar = msgspec.structs.replace(
                        b.bar, high=max(b.bar.high, p), low=min(b.bar.low, p), close=p
                    )
                    if tf is M1:
                        for ind in indicators.values():
                            ind.update(b.bar)
            fired += naive.on_trade("AMZN", p, t)
            m1 = bars[M1]
            assert m1.start is not None
            fired += naive.on_indicators("AMZN", M1, values(), t, m1.start, False)
    return [(f.alert_id, f.key, f.t_ms) for f in fired]


def test_the_engine_in_the_pipeline_agrees_with_an_independent_simulation_all_day() -> None:
    got = asyncio.run(pipeline())
    expected = independent()
    assert len(expected) > 50  # every alert had its chances
    assert {a for a, _, _ in expected} >= {str(uuid.UUID(int=i + 1)) for i in range(8)}
    # The same firings with the same times; the order may differ where the feed clock
    # closed a quiet bar before a quote that the simulation saw first (a close is never
    # a tick-mode evaluation point, so only the order of delivery can differ).
    assert sorted(got) == sorted(expected)
    assert len(set(got)) == len(got)
    # No firing at a time between events: each is a print's or a quote's time, or a
    # bar's end for the close-based alerts.
    tape = {e["t"] for f in frames() for e in f}
    for alert_id, key, t in got:
        assert t in tape or ":close:" in key, (alert_id, key, t)
