"""Paper matching engine benchmark: the cost of a market tick with 100,000 resting
orders over 100 symbols far from the market, indexed books against the naive scan,
in the same run, on the same ticks; and the cost of a fill.

    python -m loadtests.matching_bench [--symbols 100] [--orders 100000]
                                       [--ticks-per-symbol 3000]

Workload
    100 symbols, each replaying a different stretch of the real AMZN 2012-06-21 day
    (quotes with their sizes and trades, real inter-arrival times), scaled to its own
    price level ($10-$600), merged on one clock in the regular session. 1,000 resting
    DAY orders per symbol, all 5-30% away from the price on the side where they rest:
    buy and sell limits (40%), buy and sell stops and stop-limits (40%), trailing stops
    with 5-30% trails (20%). No tick comes near any of them: the figure is the cost a
    tick pays for orders it cannot fill.

Figures (JSON on stdout)
    ``indexed``: per-call wall time (perf_counter_ns around each ``on_quote`` /
    ``on_trade``; median, p99, mean in µs) over every tick.
    ``indexed_one_of_each_kind``: the same ticks with one resting order of each kind and
    side per symbol (8 per symbol): the index makes a tick cost the same with 8 or 1,000
    orders per symbol.
    ``naive``: the engine with ``NaiveBook`` (every resting order of the tick's symbol
    scanned: the reference implementation) over the first ``--naive-ticks`` ticks,
    whose events must equal the indexed engine's on the same ticks.
    ``scan_all``: a bare loop over all 100,000 resting orders' trigger prices per tick
    (no engine at all), the cost with no grouping whatsoever.
    ``fills``: 20,000 resting limits near the market on one symbol, crossed by its
    quotes and trades: µs per fill event (matching, the fill, its commission and its
    event), against the quiet-tick cost.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import heapq
import json
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from brokers.paper.books import Book, IndexedBook
from brokers.paper.matching import MatchingEngine
from brokers.paper.naive import NaiveBook
from loadtests.alerts_bench import DATA, stats, timer_overhead
from server.trading.events import OrderEvent
from server.trading.model import Order, OrderSpec, OrderType, Side, TimeInForce
from server.trading.money import round_price
from streams.events import Quote, Trade
from streams.polygon_protocol import decode_frame

Tick = Quote | Trade
TYPES = (OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)


def load_amzn() -> list[Tick]:
    out: list[Tick] = []
    with gzip.open(DATA, "rb") as f:
        for line in f:
            out.extend(e for e in decode_frame(line).events if isinstance(e, Quote | Trade))
    return out


def symbols(n: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [f"Y{letters[i // 26 % 26]}{letters[i % 26]}" for i in range(n)]


def _scaled(e: Tick, sym: str, scale: float, shift: int) -> Tick:
    if isinstance(e, Trade):
        return Trade(sym=sym, p=round(e.p * scale, 2), s=e.s, t=e.t + shift, q=e.q)
    return Quote(
        sym=sym,
        bp=round(e.bp * scale, 2),
        ap=round(e.ap * scale, 2),
        t=e.t + shift,
        bs=e.bs,
        ask_size=e.ask_size,
        q=e.q,
    )


def build_ticks(
    amzn: list[Tick], syms: list[str], per_symbol: int, rng: random.Random
) -> tuple[list[Tick], dict[str, float]]:
    """Each symbol: a stretch of the day from a random start, scaled, on one clock
    starting a minute into the session."""
    t0 = amzn[0].t + 60_000
    start: dict[str, float] = {}
    streams: list[Iterator[Tick]] = []
    for sym in syms:
        base = next(e.p for e in amzn if isinstance(e, Trade))
        scale = rng.uniform(10.0, 600.0) / base
        i0 = rng.randrange(0, len(amzn) - per_symbol)
        chunk = amzn[i0 : i0 + per_symbol]
        shift = t0 - chunk[0].t + rng.randrange(0, 1000)
        events = [_scaled(e, sym, scale, shift) for e in chunk]
        start[sym] = next(e.p for e in events if isinstance(e, Trade))
        streams.append(iter(events))
    return list(heapq.merge(*streams, key=lambda e: e.t)), start


def far_order(rng: random.Random, sym: str, price: float, n: int, created: int) -> Order:
    """A resting order 5-30% away from ``price``, on the side where it rests."""
    kind = rng.choices(TYPES, [40, 25, 15, 20])[0]
    side = rng.choice((Side.BUY, Side.SELL))
    away = rng.uniform(0.05, 0.30)
    # Limits rest below (buy) / above (sell) the market; stops the other way round.
    below = (side is Side.BUY) == (kind is OrderType.LIMIT)
    level = round_price(Decimal(repr(price * (1 - away if below else 1 + away))), up=False)
    spec = OrderSpec(
        symbol=sym,
        side=side,
        type=kind,
        time_in_force=TimeInForce.DAY,
        qty=Decimal(rng.choice((1, 10, 100))),
        limit_price=level if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
        stop_price=level if kind in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
        trail_percent=Decimal(int(away * 100)) if kind is OrderType.TRAILING_STOP else None,
    )
    return Order(f"o{n}", spec, created)


def engine_with(
    book: Callable[[], Book], orders: list[Order], ticks: list[Tick]
) -> tuple[MatchingEngine, float]:
    """An engine with ``orders`` placed before the open and working (the first quote and
    trade of each symbol seen, so trailing stops have their marks)."""
    engine = MatchingEngine(book_factory=book, start_ms=ticks[0].t - 3_600_000)
    t0 = time.perf_counter()
    for order in orders:
        engine.submit([order])
    engine.advance(ticks[0].t - 1)
    seen: set[tuple[str, type]] = set()
    for e in ticks:
        if (e.sym, type(e)) not in seen:
            seen.add((e.sym, type(e)))
            engine.on_event(e)
    return engine, time.perf_counter() - t0


def timed(engine: MatchingEngine, ticks: list[Tick]) -> tuple[list[int], list[OrderEvent]]:
    on_quote, on_trade = engine.on_quote, engine.on_trade
    clock = time.perf_counter_ns
    ns: list[int] = []
    out: list[OrderEvent] = []
    gc.disable()
    try:
        for e in ticks:
            if type(e) is Quote:
                t0 = clock()
                r = on_quote(e)
                ns.append(clock() - t0)
            else:
                t0 = clock()
                r = on_trade(e)  # type: ignore[arg-type]
                ns.append(clock() - t0)
            if r:
                out.extend(r)
    finally:
        gc.enable()
    return ns, out


def scan_all(orders: list[Order], ticks: list[Tick]) -> list[int]:
    """No index, no grouping: every resting order's trigger price checked per tick."""
    levels = [
        (o.spec.symbol, float(o.spec.limit_price or o.spec.stop_price or 0), o.side is Side.BUY)
        for o in orders
    ]
    clock = time.perf_counter_ns
    ns: list[int] = []
    for e in ticks:
        p = e.p if isinstance(e, Trade) else e.ap
        t0 = clock()
        hits = 0
        for sym, level, buy in levels:
            if sym == e.sym and (level >= p if buy else level <= p):
                hits += 1
        ns.append(clock() - t0)
    return ns


def fill_cost(amzn: list[Tick], quiet_us: float) -> dict[str, Any]:
    """20,000 resting limits within the day's range on one symbol, filled as it moves."""
    rng = random.Random(3)
    ticks = [e for e in amzn if e.t < amzn[0].t + 2 * 3_600_000]
    prices = [e.p for e in ticks if isinstance(e, Trade)]
    lo, hi = min(prices), max(prices)
    orders = []
    for n in range(20_000):
        side = rng.choice((Side.BUY, Side.SELL))
        level = round_price(Decimal(repr(rng.uniform(lo, hi))), up=False)
        qty = Decimal(rng.choice((1, 5, 20)))
        spec = OrderSpec("AMZN", side, OrderType.LIMIT, TimeInForce.DAY, qty=qty, limit_price=level)
        orders.append(Order(f"f{n}", spec, ticks[0].t - 3_600_000))
    engine = MatchingEngine(start_ms=ticks[0].t - 3_600_000)
    for order in orders:
        engine.submit([order])
    engine.advance(ticks[0].t - 1)
    clock = time.perf_counter_ns
    busy_ns = 0
    busy_ticks = fills = 0
    gc.disable()
    try:
        for e in ticks:
            t0 = clock()
            r = engine.on_event(e)
            dt = clock() - t0
            n = sum(1 for x in r if x.fill is not None)
            if n:
                busy_ns += dt
                busy_ticks += 1
                fills += n
    finally:
        gc.enable()
    per_fill = (busy_ns / 1000 - busy_ticks * quiet_us) / fills if fills else 0.0
    return {
        "orders": len(orders),
        "fills": fills,
        "ticks_with_fills": busy_ticks,
        "us_per_fill": round(per_fill, 2),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--orders", type=int, default=100_000)
    p.add_argument("--ticks-per-symbol", type=int, default=3000)
    p.add_argument("--naive-ticks", type=int, default=20_000)
    p.add_argument("--scan-all-ticks", type=int, default=300)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    started = time.perf_counter()

    amzn = load_amzn()
    syms = symbols(args.symbols)
    ticks, start = build_ticks(amzn, syms, args.ticks_per_symbol, rng)
    created = ticks[0].t - 3_600_000
    per = args.orders // args.symbols
    orders = [
        far_order(rng, sym, start[sym], i * per + j, created)
        for i, sym in enumerate(syms)
        for j in range(per)
    ]

    indexed, setup_s = engine_with(IndexedBook, orders, ticks)
    ns, events = timed(indexed, ticks)
    # One resting order of each kind and side per symbol (the same symbols, the same
    # ticks): what a tick costs when there is nearly nothing to skip.
    firsts: dict[tuple[str, OrderType, Side], Order] = {}
    for order in orders:
        firsts.setdefault((order.symbol, order.spec.type, order.side), order)
    small, _ = engine_with(IndexedBook, list(firsts.values()), ticks)
    small_ns, _ = timed(small, ticks)

    head = ticks[: args.naive_ticks]
    fresh, _ = engine_with(IndexedBook, orders, ticks)
    head_ns, head_events = timed(fresh, head)
    naive, naive_setup_s = engine_with(NaiveBook, orders, ticks)
    naive_ns, naive_events = timed(naive, head)
    same = [e.as_dict() for e in head_events] == [e.as_dict() for e in naive_events]
    scan_ns = scan_all(orders, ticks[: args.scan_all_ticks])

    quiet = stats(ns)
    result = {
        "workload": {
            "symbols": args.symbols,
            "resting_orders": len(orders),
            "open_after_setup": len(indexed.open_orders()),
            "ticks": len(ticks),
            "events_during_ticks": len(events),
            "setup_s": round(setup_s, 2),
        },
        "timer_overhead_us": round(timer_overhead(), 3),
        "indexed": quiet,
        "indexed_one_of_each_kind": {**stats(small_ns), "resting_orders": len(firsts)},
        "indexed_same_ticks_as_naive": stats(head_ns),
        "naive": {**stats(naive_ns), "setup_s": round(naive_setup_s, 2), "same_events": same},
        "scan_all": stats(scan_ns),
        "ratios": {
            "naive_over_indexed_median": round(
                stats(naive_ns)["median_us"] / stats(head_ns)["median_us"], 1
            ),
            "scan_all_over_indexed_median": round(
                stats(scan_ns)["median_us"] / quiet["median_us"], 1
            ),
            "all_over_one_of_each_kind_median": round(
                quiet["median_us"] / stats(small_ns)["median_us"], 2
            ),
        },
        "fills": fill_cost(amzn, quiet["median_us"]),
        "target_us_per_tick": 2.0,
        "meets_target": quiet["median_us"] <= 2.0,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "python": sys.version.split()[0],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
