"""Seeded random workloads for the paper engine: orders of every type, time in force
and class, on a coarse price grid (so touches, ties and gaps happen all the time),
quotes and trades, cancels and replaces, across session boundaries."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

from server.trading.errors import InvalidOrder
from server.trading.model import Order, build_orders
from server.trading.validation import parse_order
from streams.events import Quote, Trade
from tests.brokers.paper.helpers import ny

D = Decimal
SYMBOLS = ("AAA", "BBB")
GRID = [D("99.00") + D("0.25") * i for i in range(9)]  # 99.00 .. 101.00

Step = tuple[str, Any]


def _price(rng: random.Random) -> str:
    return str(rng.choice(GRID))


def order_doc(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["market", "limit", "limit", "stop", "stop_limit", "trailing_stop"])
    doc: dict[str, Any] = {
        "symbol": rng.choice(SYMBOLS),
        "side": rng.choice(["buy", "sell"]),
        "type": kind,
        "timeInForce": rng.choice(["day", "day", "gtc"]),
        "qty": str(rng.choice([1, 10, 50, 100, 250])),
    }
    if kind in ("limit", "stop_limit"):
        doc["limitPrice"] = _price(rng)
    if kind in ("stop", "stop_limit"):
        doc["stopPrice"] = _price(rng)
    if kind == "trailing_stop":
        if rng.random() < 0.5:
            doc["trailPrice"] = rng.choice(["0.25", "0.50"])
        else:
            doc["trailPercent"] = rng.choice(["0.25", "0.5"])
    r = rng.random()
    if kind in ("market", "limit") and r < 0.15:
        doc["timeInForce"] = rng.choice(["ioc", "fok", "opg", "cls"])
    elif kind == "limit" and r < 0.25:
        doc["extendedHours"] = True
        doc["timeInForce"] = "day"
    elif kind == "market" and r < 0.35:
        doc["qty"] = str(rng.choice([D("0.5"), D("2.25")]))
    elif kind == "market" and r < 0.4:
        del doc["qty"]
        doc["notional"] = "150.00"
    elif kind in ("market", "limit") and r < 0.6:
        buy = doc["side"] == "buy"
        doc["orderClass"] = "bracket"
        doc["takeProfit"] = {"limitPrice": "101.50" if buy else "98.50"}
        doc["stopLoss"] = {"stopPrice": "98.50" if buy else "101.50"}
        if kind == "limit":
            doc["limitPrice"] = "100.00"
    elif kind == "limit" and r < 0.7:
        buy = doc["side"] == "buy"
        doc["orderClass"] = "oco"
        doc["takeProfit"] = {"limitPrice": "98.75" if buy else "101.25"}
        doc["stopLoss"] = {"stopPrice": "101.25" if buy else "98.75"}
        del doc["limitPrice"]
    return doc


def workload(seed: int, steps: int = 600) -> Iterator[Step]:
    """("submit", orders) | ("cancel", id) | ("replace", (id, Order)) |
    ("quote", Quote) | ("trade", Trade) | ("advance", ms)."""
    rng = random.Random(seed)
    t = ny(9, 20)
    n = 0
    placed: list[Order] = []
    mid = {s: D(100) for s in SYMBOLS}
    seq = 0
    for _ in range(steps):
        r = rng.random()
        t += rng.choice([1, 10, 500, 20_000])
        if rng.random() < 0.01:
            t += rng.choice([3_600_000, 6 * 3_600_000, 20 * 3_600_000])  # sessions pass
        if r < 0.22:
            try:
                request = parse_order(order_doc(rng))
            except InvalidOrder:
                continue
            n += 1
            ids = [f"o{n}.{i}" for i in range(request.order_count)]
            orders = build_orders(request, ids, t)
            placed.extend(orders)
            yield ("submit", (orders, t))
        elif r < 0.27 and placed:
            yield ("cancel", (rng.choice(placed).id, t))
        elif r < 0.31 and placed:
            old = rng.choice(placed)
            spec = old.spec
            if spec.qty is None:
                continue
            changes: dict[str, Any] = {"qty": spec.qty + rng.choice([0, 10, 50])}
            if spec.limit_price is not None:
                changes["limit_price"] = rng.choice(GRID)
            if spec.stop_price is not None:
                changes["stop_price"] = rng.choice(GRID)
            n += 1
            new = Order(
                f"r{n}",
                replace(spec, **changes),
                t,
                old.order_class,
                old.role,
                old.parent_id,
                replaces=old.id,
            )
            placed.append(new)
            yield ("replace", (old.id, new, t))
        elif r < 0.33:
            yield ("advance", t)
        else:
            sym = rng.choice(SYMBOLS)
            mid[sym] = min(max(mid[sym] + rng.choice([-1, 0, 0, 1]) * D("0.25"), D(98)), D(102))
            seq += 1
            if rng.random() < 0.55:
                spread = rng.choice([D("0.25"), D("0.5")])
                bid, ask = mid[sym] - spread / 2, mid[sym] + spread / 2
                sizes = [0, 5, 50, 200]
                quote = Quote(
                    sym=sym,
                    bp=float(bid),
                    ap=float(ask),
                    t=t,
                    bs=rng.choice(sizes),
                    ask_size=rng.choice(sizes),
                    q=seq,
                )
                yield ("quote", quote)
            else:
                price = mid[sym] + rng.choice([-1, 0, 1]) * D("0.25")
                yield (
                    "trade",
                    Trade(sym=sym, p=float(price), s=rng.choice([1, 10, 100]), t=t, q=seq),
                )
