"""Incremental indicators: our ``server.indicators`` against ``talipp``, per tick.

    python -m loadtests.indicators_bench [--bars N] [--repeat R] [--ticks T] [--symbol S]

A live stream is simulated from real bars (the OHLCV rows of a daily CSV, stamped by
default as consecutive one-minute bars of 390-minute New York sessions, so the
session VWAP resets daily as it would live; ``--timeframe 1d`` keeps them daily,
which makes every bar a new VWAP session). Each bar arrives as T ticks (default
10): one ``add`` of the bar as first seen, then T-1 ``update``s of the forming bar
(high/low/close/volume growing towards the final bar; the last update is the final
bar). Every indicator, ours and talipp's with the same parameters, runs the same
stream; the figures are medians over R repeats:

* ``add_us``: one ``add`` (measured on a stream of adds only),
* ``update_us``: one ``update`` (the rest of the stream's time, per update),
* ``tick_us``: the whole stream per tick (add + updates), and ``tick_read_us`` the
  same with the value read after every tick (``value`` / ``ind[-1]``), as a
  publisher would,
* ``ratio``: talipp's ``tick_us`` / ours (> 1: we are faster).

Also the "standard set" (EMA(20), RSI(14), MACD(12,26,9), BBANDS(20,2), VWAP) run
together on one symbol, per tick. One JSON object goes to stdout.

talipp equivalents: BB for BBANDS, Stoch(14, 3) for STOCH (talipp's stochastic is
the fast %K with a %D; the nearest it has), ADX(14, 14), DonchianChannels(20), and a
VWAP that never resets (talipp has no session anchoring).
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from datetime import time as dtime
from itertools import pairwise
from pathlib import Path
from typing import Any

from server.indicators import IndicatorSpec
from server.indicators.volume import clear_session_cache
from server.market.timeframes import Bar, Timeframe
from server.market.trading_day import NEW_YORK

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

CASES: tuple[str, ...] = (
    "SMA(20)",
    "EMA(20)",
    "WMA(20)",
    "RSI(14)",
    "MACD(12,26,9)",
    "BBANDS(20,2)",
    "ATR(14)",
    "STOCH(14,3,3)",
    "VWAP",
    "OBV",
    "ADX(14)",
    "DONCHIAN(20)",
)
STANDARD_SET = ("EMA(20)", "RSI(14)", "MACD(12,26,9)", "BBANDS(20,2)", "VWAP")


def load_bars(symbol: str, limit: int, timeframe: str = "1m") -> list[Bar]:
    """The daily OHLCV rows of ``symbol``, as daily bars or (``"1m"``) re-stamped as a
    live session's consecutive one-minute bars, 390 a day from 09:30 New York."""
    bars: list[Bar] = []
    first_open = datetime(2024, 1, 2, 9, 30, tzinfo=NEW_YORK).timestamp()
    with (DATA / f"bars-daily-{symbol}.csv").open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if timeframe == "1d":
                day = date.fromisoformat(row["date"])
                start = int(datetime.combine(day, dtime(0), tzinfo=NEW_YORK).timestamp() * 1000)
                tf, length = Timeframe.D1, 86_400_000
            else:
                day_index, minute = divmod(i, 390)
                start = int(first_open * 1000) + day_index * 86_400_000 + minute * 60_000
                tf, length = Timeframe.M1, 60_000
            close = float(row["close"])
            bars.append(
                Bar(
                    symbol,
                    tf,
                    start,
                    start + length,
                    float(row["open"]),
                    float(row["high"]),
                    float(row["low"]),
                    close,
                    int(row["volume"]),
                    close,
                    0,
                    True,
                )
            )
            if len(bars) == limit:
                break
    return bars


def ticks_of(bar: Bar, n: int) -> list[Bar]:
    """``n`` successive states of the forming ``bar``; the last one is ``bar``."""
    o, h, lo, c = bar.open, bar.high, bar.low, bar.close
    # The price path: open, then the extreme against the close, the other extreme, close.
    first, second = (lo, h) if c >= o else (h, lo)
    knots = [(0.0, o), (0.35, first), (0.7, second), (1.0, c)]
    states = []
    high = low = o
    for j in range(n):
        u = (j + 1) / n
        for (u0, p0), (u1, p1) in pairwise(knots):
            if u <= u1:
                price = p0 + (p1 - p0) * (u - u0) / (u1 - u0)
                break
        high = max(high, price)
        low = min(low, price)
        last = j == n - 1
        states.append(
            Bar(
                bar.symbol,
                bar.timeframe,
                bar.start_ms,
                bar.end_ms,
                o,
                h if last else high,
                lo if last else low,
                c if last else price,
                bar.volume if last else bar.volume * (j + 1) // n,
                bar.vwap,
                0,
                last,
            )
        )
    return states


def _talipp_factory(key: str) -> tuple[Callable[[], Any], bool]:
    """A talipp indicator for ``key`` and whether it takes OHLCV (else the close)."""
    from talipp import indicators as t

    factories: dict[str, tuple[Callable[[], Any], bool]] = {
        "SMA(20)": (lambda: t.SMA(20), False),
        "EMA(20)": (lambda: t.EMA(20), False),
        "WMA(20)": (lambda: t.WMA(20), False),
        "RSI(14)": (lambda: t.RSI(14), False),
        "MACD(12,26,9)": (lambda: t.MACD(12, 26, 9), False),
        "BBANDS(20,2)": (lambda: t.BB(20, 2.0), False),
        "ATR(14)": (lambda: t.ATR(14), True),
        "STOCH(14,3,3)": (lambda: t.Stoch(14, 3), True),
        "VWAP": (t.VWAP, True),
        "OBV": (t.OBV, True),
        "ADX(14)": (lambda: t.ADX(14, 14), True),
        "DONCHIAN(20)": (lambda: t.DonchianChannels(20), True),
    }
    return factories[key]


def _talipp_inputs(streams: list[list[Bar]], ohlcv: bool) -> list[list[Any]]:
    from talipp.ohlcv import OHLCV

    if not ohlcv:
        return [[b.close for b in ticks] for ticks in streams]
    return [[OHLCV(b.open, b.high, b.low, b.close, b.volume) for b in ticks] for ticks in streams]


def _run_ours(make: Callable[[], Any], streams: Sequence[Sequence[Any]], read: bool) -> float:
    clear_session_cache()  # VWAP pays for its New York midnights in every run
    ind = make()
    add = ind.add
    update = ind.update
    t0 = time.perf_counter()
    if read:
        for ticks in streams:
            add(ticks[0])
            ind.value  # noqa: B018
            for b in ticks[1:]:
                update(b)
                ind.value  # noqa: B018
    else:
        for ticks in streams:
            add(ticks[0])
            for b in ticks[1:]:
                update(b)
    return time.perf_counter() - t0


def _run_talipp(make: Callable[[], Any], streams: Sequence[Sequence[Any]], read: bool) -> float:
    ind = make()
    add = ind.add
    update = ind.update
    t0 = time.perf_counter()
    if read:
        for ticks in streams:
            add(ticks[0])
            ind[-1]
            for b in ticks[1:]:
                update(b)
                ind[-1]
    else:
        for ticks in streams:
            add(ticks[0])
            for b in ticks[1:]:
                update(b)
    return time.perf_counter() - t0


def _run_adds(make: Callable[[], Any], finals: Sequence[Any]) -> float:
    clear_session_cache()
    ind = make()
    add = ind.add
    t0 = time.perf_counter()
    for b in finals:
        add(b)
    return time.perf_counter() - t0


class _Samples:
    """Timings of one implementation of one indicator, over the repeats."""

    def __init__(
        self,
        run: Callable[[Callable[[], Any], Sequence[Sequence[Any]], bool], float],
        make: Callable[[], Any],
        streams: Sequence[Sequence[Any]],
    ) -> None:
        self.run = run
        self.make = make
        self.streams = streams
        self.finals = [t[-1] for t in streams]
        self.adds: list[float] = []
        self.ticks: list[float] = []
        self.ticks_read: list[float] = []

    def sample(self) -> None:
        self.adds.append(_run_adds(self.make, self.finals))
        self.ticks.append(self.run(self.make, self.streams, False))
        self.ticks_read.append(self.run(self.make, self.streams, True))

    def summary(self) -> dict[str, float]:
        n_bars = len(self.streams)
        n_ticks = sum(len(t) for t in self.streams)
        add_s = statistics.median(self.adds) / n_bars
        tick_total = statistics.median(self.ticks)
        updates = n_ticks - n_bars
        update_s = (tick_total - add_s * n_bars) / updates if updates else 0.0
        return {
            "add_us": round(add_s * 1e6, 3),
            "update_us": round(update_s * 1e6, 3),
            "tick_us": round(tick_total / n_ticks * 1e6, 3),
            "tick_read_us": round(statistics.median(self.ticks_read) / n_ticks * 1e6, 3),
        }


def _standard_set_run(streams: Sequence[Sequence[Bar]], with_read: bool) -> float:
    clear_session_cache()
    inds = [IndicatorSpec.parse(k).create() for k in STANDARD_SET]
    adds = [i.add for i in inds]
    updates = [i.update for i in inds]
    t0 = time.perf_counter()
    for ticks in streams:
        first = ticks[0]
        for add in adds:
            add(first)
        if with_read:
            for ind in inds:
                ind.value  # noqa: B018
        for b in ticks[1:]:
            for update in updates:
                update(b)
            if with_read:
                for ind in inds:
                    ind.value  # noqa: B018
    return time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bars", type=int, default=2000, help="bars per stream")
    parser.add_argument("--repeat", type=int, default=7, help="repeats (median)")
    parser.add_argument("--ticks", type=int, default=10, help="ticks per bar (1 add + updates)")
    parser.add_argument("--symbol", default="NVDA", choices=("NVDA", "ORCL", "YHOO"))
    parser.add_argument(
        "--timeframe",
        default="1m",
        choices=("1m", "1d"),
        help="stamp the rows as one-minute bars of live sessions (default) or as daily bars",
    )
    parser.add_argument("--only", nargs="*", help="indicator keys to run (default: all)")
    parser.add_argument("--no-talipp", action="store_true", help="skip talipp")
    args = parser.parse_args(argv)

    bars = load_bars(args.symbol, args.bars, args.timeframe)
    streams = [ticks_of(b, args.ticks) for b in bars]
    n_ticks = sum(len(t) for t in streams)
    keys = [IndicatorSpec.parse(k).key for k in (args.only or CASES)]
    ours = {k: _Samples(_run_ours, IndicatorSpec.parse(k).create, streams) for k in keys}
    theirs: dict[str, _Samples] = {}
    if not args.no_talipp:
        for k in keys:
            make, ohlcv = _talipp_factory(k)
            theirs[k] = _Samples(_run_talipp, make, _talipp_inputs(streams, ohlcv))
    standard: list[float] = []
    standard_read: list[float] = []
    gc.collect()
    gc.disable()  # the streams allocate little; keep collector pauses out of the figures
    try:
        # Interleaved, so that a noisy neighbour hurts every implementation alike.
        for _ in range(args.repeat):
            for k in keys:
                ours[k].sample()
                if k in theirs:
                    theirs[k].sample()
            standard.append(_standard_set_run(streams, False))
            standard_read.append(_standard_set_run(streams, True))
    finally:
        gc.enable()
    results: dict[str, Any] = {}
    for k in keys:
        entry: dict[str, Any] = {"ours": ours[k].summary()}
        if k in theirs:
            entry["talipp"] = theirs[k].summary()
            entry["ratio"] = round(entry["talipp"]["tick_us"] / entry["ours"]["tick_us"], 1)
            entry["ratio_read"] = round(
                entry["talipp"]["tick_read_us"] / entry["ours"]["tick_read_us"], 1
            )
        results[k] = entry
    report = {
        "symbol": args.symbol,
        "timeframe": args.timeframe,
        "bars": len(bars),
        "ticks_per_bar": args.ticks,
        "repeat": args.repeat,
        "python": sys.version.split()[0],
        "indicators": results,
        "standard_set": {
            "members": list(STANDARD_SET),
            "tick_us": round(statistics.median(standard) / n_ticks * 1e6, 3),
            "tick_read_us": round(statistics.median(standard_read) / n_ticks * 1e6, 3),
        },
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
