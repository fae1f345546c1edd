"""Alert engine benchmark: cost per market tick with 100,000 armed alerts, indexed engine
versus the naive loop, in the same run, on the same ticks.

    python -m loadtests.alerts_bench [--symbols 100] [--alerts 100000] [--ticks-per-symbol 3000]

Workload
    100 symbols, each replaying a different stretch of the AMZN 2012-06-21 Polygon
    recording (trades and quotes, real inter-arrival times), scaled to its own price
    level, merged on one clock. 1,000 alerts per symbol: 70% on LAST, 10% each on
    BID/ASK/MID; greaterThan/lessThan/crossingUp/crossingDown/crossing against a
    constant, some channels, 5% two-condition ANDs; thresholds 5-30% away from the
    price on the side where they make sense, 3% near (0.05-1%); trigger modes once,
    oncePerBar(1m), everyTime(60 s) and oncePerBarClose(1m). Bar closes (1m) are fed
    as the pipeline would and timed separately.

Figures (printed as JSON)
    Per-call wall time (perf_counter_ns around each call, median/p99/mean in µs) of
    the indexed engine over every tick; then the indexed engine (fresh) and the naive
    engine over every event of the first two symbols (all 100k alerts armed), whose
    firings must be identical; the naive loop by symbol (every alert of the tick's
    symbol) is the baseline, and a short run of the naive loop over all alerts shows
    what no grouping at all costs.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import heapq
import json
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from server.alerts import Alert, AlertEngine, Fired, validate
from server.alerts.naive import NaiveEngine
from server.market.timeframes import Timeframe

DATA = Path("/work/shared/data/polygon-replay-AMZN-2012-06-21.jsonl.gz")
MIN = 60_000

# (kind, symbol, a, b, t): kind 0 trade (a = price), 1 quote (a = bid, b = ask),
# 2 one-minute bar close (a = bar start).
Event = tuple[int, str, float, float, int]


def load_amzn() -> list[tuple[int, float, float, int]]:
    out: list[tuple[int, float, float, int]] = []
    with gzip.open(DATA, "rt") as f:
        for line in f:
            for e in json.loads(line):
                if e["ev"] == "T":
                    out.append((0, e["p"], 0.0, e["t"]))
                elif e["ev"] == "Q":
                    out.append((1, e["bp"], e["ap"], e["t"]))
    return out


def symbols(n: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [f"X{letters[i // 26 % 26]}{letters[i % 26]}" for i in range(n)]


def build_ticks(
    amzn: list[tuple[int, float, float, int]], syms: list[str], per_symbol: int, rng: random.Random
) -> tuple[list[Event], dict[str, float]]:
    """Each symbol: a stretch of the AMZN day from a random start, scaled, on one clock."""
    base = amzn[0][1]
    start_price: dict[str, float] = {}
    streams: list[Iterator[Event]] = []
    t_common = amzn[0][3]
    for sym in syms:
        scale = rng.uniform(10.0, 600.0) / base
        i0 = rng.randrange(0, len(amzn) - per_symbol)
        chunk = amzn[i0 : i0 + per_symbol]
        shift = t_common - chunk[0][3] + rng.randrange(0, 1000)
        events = [
            (k, sym, round(a * scale, 2), round(b * scale, 2), t + shift) for k, a, b, t in chunk
        ]
        start_price[sym] = next(e[2] for e in events if e[0] == 0)
        streams.append(iter(events))
    merged = list(heapq.merge(*streams, key=lambda e: e[4]))
    # One-minute bar closes per symbol, delivered before the first tick of the next bar.
    out: list[Event] = []
    minute: dict[str, int] = {}
    for e in merged:
        m = e[4] // MIN
        last = minute.get(e[1])
        if last is not None and m != last:
            out.append((2, e[1], float(last * MIN), 0.0, e[4]))
        minute[e[1]] = m
        out.append(e)
    return out, start_price


def definition(rng: random.Random, price: float) -> dict[str, Any]:
    def level(side: int) -> float:
        near = rng.random() < 0.03
        d = rng.uniform(0.0005, 0.01) if near else rng.uniform(0.05, 0.30)
        return round(price * (1 + side * d), 2)

    def one() -> dict[str, Any]:
        left = rng.choices(["LAST", "BID", "ASK", "MID"], [70, 10, 10, 10])[0]
        r = rng.random()
        if r < 0.25:
            return {"left": left, "op": "greaterThan", "value": level(+1)}
        if r < 0.50:
            return {"left": left, "op": "lessThan", "value": level(-1)}
        if r < 0.62:
            return {"left": left, "op": "crossingUp", "value": level(+1)}
        if r < 0.74:
            return {"left": left, "op": "crossingDown", "value": level(-1)}
        if r < 0.90:
            return {"left": left, "op": "crossing", "value": level(rng.choice((-1, 1)))}
        lo, hi = sorted((level(-1), level(+1)))
        op = rng.choice(["enteringChannel", "exitingChannel", "insideChannel", "outsideChannel"])
        if op in ("enteringChannel", "outsideChannel"):  # a channel away from the price
            side = rng.choice((-1, 1))
            lo, hi = sorted((level(side), level(side)))
        return {"left": left, "op": op, "channel": {"lower": lo, "upper": hi}}

    conditions = [one()] if rng.random() < 0.95 else [one(), one()]
    mode = rng.choices(["once", "oncePerBar", "everyTime", "oncePerBarClose"], [50, 15, 25, 10])[0]
    trigger: dict[str, Any] = {"mode": mode}
    if mode in ("oncePerBar", "oncePerBarClose"):
        trigger["timeframe"] = "1m"
    if mode == "everyTime":
        trigger["cooldownMs"] = 60_000
    return {"symbol": "", "conditions": conditions, "trigger": trigger}


def build_alerts(
    syms: list[str], per_symbol: int, start_price: dict[str, float], rng: random.Random
) -> list[Alert]:
    out = []
    n = 0
    for sym in syms:
        for _ in range(per_symbol):
            d = definition(rng, start_price[sym])
            d["symbol"] = sym
            n += 1
            out.append(validate(d, alert_id=f"a{n}", owner=f"u{n % 5000}", now_ms=0))
    return out


def warm(engine: AlertEngine | NaiveEngine, ticks: list[Event]) -> None:
    """The first quote and trade of each symbol (unknown -> known is a full pass)."""
    seen: set[tuple[str, int]] = set()
    for k, sym, a, b, t in ticks:
        if k != 2 and (sym, k) not in seen:
            seen.add((sym, k))
            _call(engine, k, sym, a, b, t - 1)


def _call(  # noqa: PLR0917 - one event's fields
    engine: AlertEngine | NaiveEngine, k: int, sym: str, a: float, b: float, t: int
) -> list[Fired]:
    if k == 0:
        return engine.on_trade(sym, a, t)
    if k == 1:
        return engine.on_quote(sym, a, b, t)
    return engine.on_bar_close(sym, Timeframe.M1, int(a), t)


def timed(
    engine: AlertEngine | NaiveEngine, ticks: list[Event], keep: bool = False
) -> tuple[list[int], list[int], list[Fired], list[int]]:
    """Per-call ns for ticks and for bar closes; the firings (when ``keep``); per-call
    ns of the ticks that fired nothing."""
    on_trade, on_quote, on_close = engine.on_trade, engine.on_quote, engine.on_bar_close
    clock = time.perf_counter_ns
    tick_ns: list[int] = []
    close_ns: list[int] = []
    quiet_ns: list[int] = []
    fired: list[Fired] = []
    m1 = Timeframe.M1
    gc.disable()
    try:
        for k, sym, a, b, t in ticks:
            if k == 0:
                t0 = clock()
                r = on_trade(sym, a, t)
                tick_ns.append(dt := clock() - t0)
                if not r:
                    quiet_ns.append(dt)
            elif k == 1:
                t0 = clock()
                r = on_quote(sym, a, b, t)
                tick_ns.append(dt := clock() - t0)
                if not r:
                    quiet_ns.append(dt)
            else:
                t0 = clock()
                r = on_close(sym, m1, int(a), t)
                close_ns.append(clock() - t0)
            if keep and r:
                fired.extend(r)
    finally:
        gc.enable()
    return tick_ns, close_ns, fired, quiet_ns


def stats(ns: list[int]) -> dict[str, float]:
    if not ns:
        return {}
    s = sorted(ns)
    return {
        "n": len(s),
        "median_us": round(s[len(s) // 2] / 1000, 3),
        "p99_us": round(s[int(len(s) * 0.99)] / 1000, 3),
        "mean_us": round(statistics.fmean(s) / 1000, 3),
    }


def timer_overhead() -> float:
    clock = time.perf_counter_ns
    ns = []
    for _ in range(100_000):
        t0 = clock()
        ns.append(clock() - t0)
    ns.sort()
    return ns[len(ns) // 2] / 1000


def add_all(
    make: Callable[[], AlertEngine | NaiveEngine], alerts: list[Alert]
) -> tuple[Any, float]:
    engine = make()
    t0 = time.perf_counter()
    for alert in alerts:
        engine.add(alert)
    return engine, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--alerts", type=int, default=100_000)
    p.add_argument("--ticks-per-symbol", type=int, default=3000)
    p.add_argument("--naive-symbols", type=int, default=2)
    p.add_argument("--naive-all-ticks", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    started = time.perf_counter()

    syms = symbols(args.symbols)
    ticks, start_price = build_ticks(load_amzn(), syms, args.ticks_per_symbol, rng)
    alerts = build_alerts(syms, args.alerts // args.symbols, start_price, rng)

    # 1. The indexed engine over every tick.
    engine, add_s = add_all(AlertEngine, alerts)
    warm(engine, ticks)
    tick_ns, close_ns, fired, quiet_ns = timed(engine, ticks, keep=True)

    # 2. Indexed (fresh) and naive, all 100k alerts armed, on every event of the first
    # few symbols (the whole run: bar closes and firings included): the firings must
    # be identical; the cost is compared.
    chosen = set(syms[: args.naive_symbols])
    sample = [e for e in ticks if e[1] in chosen]
    fresh, _ = add_all(AlertEngine, alerts)
    warm(fresh, ticks)
    idx_ns, idx_close_ns, idx_fired, _ = timed(fresh, sample, keep=True)
    naive, _ = add_all(NaiveEngine, alerts)
    warm(naive, ticks)
    naive_ns, naive_close_ns, naive_fired, _ = timed(naive, sample, keep=True)
    if idx_fired != naive_fired:
        sys.exit("indexed and naive engines disagree on the benchmark ticks")

    # 3. The naive loop over all alerts (no grouping by symbol), a few ticks.
    scan_all, _ = add_all(lambda: NaiveEngine(scan_all=True), alerts)
    warm(scan_all, ticks)
    all_ns, _, _, _ = timed(scan_all, [e for e in sample if e[0] != 2][: args.naive_all_ticks])

    idx, nv = stats(idx_ns), stats(naive_ns)
    out = {
        "alerts": len(alerts),
        "symbols": len(syms),
        "ticks": len(tick_ns),
        "bar_closes": len(close_ns),
        "fired": len(fired),
        "timer_overhead_us": round(timer_overhead(), 3),
        "indexed": {
            "tick": stats(tick_ns),
            "tick_firing_nothing": stats(quiet_ns),
            "bar_close": stats(close_ns),
            "add_alert_us": round(add_s / len(alerts) * 1e6, 2),
        },
        "same_events": {
            "symbols": len(chosen),
            "ticks": len(idx_ns),
            "fired": len(idx_fired),
            "fired_identical": True,
            "indexed_tick": idx,
            "naive_by_symbol_tick": nv,
            "naive_all_alerts_tick": stats(all_ns),
            "indexed_bar_close": stats(idx_close_ns),
            "naive_bar_close": stats(naive_close_ns),
        },
        "speedup": {
            "median_vs_naive_by_symbol": round(nv["median_us"] / idx["median_us"], 1),
            "mean_vs_naive_by_symbol": round(nv["mean_us"] / idx["mean_us"], 1),
            "median_vs_naive_all_alerts": round(stats(all_ns)["median_us"] / idx["median_us"], 1),
        },
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "python": sys.version.split()[0],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
