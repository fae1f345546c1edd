"""Whole ingest pipeline on one core: real replay frames through decode (with the bounds
checks) → screen (feed clock, price band) → market state → bus → bars (all six
timeframes, condition rules) → the standard indicators → alert evaluation.

    python -m loadtests.pipeline_bench [--repeat 5] [--alerts 10000]

Prints one JSON object: events/s for each stage added in turn, measured in the same
run on the same frames (medians over repeats), so the cost of each stage is visible
as a ratio rather than an absolute number on a noisy 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

from server.alerts import AlertEngine, validate
from server.analytics import Analytics
from server.delivery.bus import InProcessBus
from server.history.simulated import SimulatedHistory
from server.indicators import IndicatorSpec
from server.ingest import Ingest
from server.market.state import MarketState
from server.market.timeframes import Timeframe
from server.services.alerts import output_index
from streams.feed_status import FeedStatusTracker
from streams.polygon_protocol import decode_frame
from streams.screening import FeedScreen

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILES = ("polygon-replay-AMZN-2012-06-21.jsonl.gz", "polygon-replay-GOOG-2012-06-21.jsonl.gz")
STANDARD = ("EMA(20)", "RSI(14)", "MACD(12,26,9)", "BBANDS(20,2)", "VWAP")


def load_frames() -> list[bytes]:
    frames: list[tuple[int, bytes]] = []
    for name in FILES:
        for line in gzip.decompress((DATA / name).read_bytes()).splitlines():
            # Interleave the two days by time, as one feed would deliver them.
            t = int(line.split(b'"t":', 1)[1].split(b",", 1)[0].rstrip(b"}]"))
            frames.append((t, line))
    frames.sort(key=lambda f: f[0])
    return [f for _, f in frames]


def count_events(frames: list[bytes]) -> int:
    return sum(len(decode_frame(f).events) for f in frames)


def make_alerts(engine: AlertEngine, n: int, rng: random.Random) -> None:
    """n alerts over the two symbols, mostly far from the price, some on indicators."""
    prices = {"AMZN": 223.0, "GOOG": 570.0}
    ops = ("greaterThan", "lessThan", "crossing", "crossingUp", "crossingDown")
    for i in range(n):
        sym = "AMZN" if i % 2 else "GOOG"
        op = rng.choice(ops)
        # Far from firing: above the day's range for greaterThan, below it for lessThan,
        # either side for crossings (the day moved about 2.5%).
        side = 1 if op == "greaterThan" else -1 if op == "lessThan" else rng.choice((-1, 1))
        p = prices[sym] * (1 + side * rng.uniform(0.05, 0.3))
        cond: dict[str, object] = {"left": "LAST", "op": op, "value": round(p, 2)}
        if i % 50 == 0:
            cond = {
                "left": {"indicator": "RSI(14)", "timeframe": "1m"},
                "op": "crossingUp",
                "value": rng.uniform(70, 95),
            }
        alert = validate(
            {
                "symbol": sym,
                "conditions": [cond],
                "trigger": {"mode": "everyTime", "cooldownMs": 60_000},
            },
            alert_id=str(uuid.UUID(int=i)),
            owner=f"u{i % 100}",
            now_ms=0,
            max_per_user=10**9,
        )
        engine.add(alert)


async def build(stage: str, alerts: int) -> tuple[Ingest, Analytics | None]:
    state = MarketState()
    bus = InProcessBus()
    tracker = FeedStatusTracker("polygon", "bench")
    screen = FeedScreen()
    if stage in ("decode", "state"):
        return Ingest(state, bus, tracker, screen=screen), None
    engine = AlertEngine(outputs=output_index, max_per_user=10**9)
    analytics = Analytics(
        bus=bus,
        history=SimulatedHistory(0),
        writer=None,
        engine=engine,
        delivery=None,
        clock=screen.clock,  # as the runtime wires it: the screen owns the feed clock
    )
    ingest = Ingest(state, bus, tracker, on_applied=analytics.on_event, screen=screen)
    if stage in ("indicators", "alerts"):
        for sym in ("AMZN", "GOOG"):
            for key in STANDARD:
                await analytics.acquire(sym, Timeframe.M1, IndicatorSpec.parse(key))
    if stage == "alerts":
        make_alerts(engine, alerts, random.Random(7))
        await analytics.sync_alert_indicators()
    return ingest, analytics


def run_once(stage: str, frames: list[bytes], alerts: int) -> float:
    ingest, _ = asyncio.run(build(stage, alerts))
    if stage == "decode":
        start = time.perf_counter()
        for f in frames:
            decode_frame(f)
        return time.perf_counter() - start
    on_frame = ingest.on_frame
    # A real receive time: the screen judges event times against it (a replay's times
    # are in the past, as they must be).
    received_ns = time.time_ns()
    start = time.perf_counter()
    for f in frames:
        on_frame(f, received_ns)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--alerts", type=int, default=10_000)
    args = parser.parse_args(argv)
    frames = load_frames()
    events = count_events(frames)
    stages = ("decode", "state", "bars", "indicators", "alerts")
    seconds = {s: [run_once(s, frames, args.alerts) for _ in range(args.repeat)] for s in stages}
    median = {s: statistics.median(v) for s, v in seconds.items()}
    report = {
        "benchmark": "pipeline",
        "events": events,
        "frames": len(frames),
        "alerts": args.alerts,
        "indicators_per_symbol": list(STANDARD),
        "timeframes": [t.value for t in Timeframe],
        "repeat": args.repeat,
        "events_per_s": {s: round(events / median[s]) for s in stages},
        "us_per_event": {s: round(median[s] / events * 1e6, 3) for s in stages},
        "full_vs_decode_only": round(median["alerts"] / median["decode"], 2),
        "target_events_per_s": 100_000,
        "python": sys.version.split()[0],
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
