"""The real AMZN day of 2012-06-21 through the paper engine with a set of orders of
every type, time in force and class, placed before the open and during the day.

``python -m tests.brokers.paper.amzn_day [indexed|naive]`` prints the SHA-256 of the
canonical JSON of every event and the number of events: the determinism test runs it
in fresh interpreters with different hash seeds and compares.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from typing import Any

from brokers.paper.books import Book, IndexedBook
from brokers.paper.matching import MatchingEngine
from brokers.paper.naive import NaiveBook
from server.trading.model import Order, build_orders
from server.trading.validation import parse_order
from streams.polygon_protocol import decode_frame
from tests.brokers.paper.helpers import ny
from tests.support.data import AMZN_REPLAY, require

DAY = date(2012, 6, 21)


def at(hour: int, minute: int = 0) -> int:
    return ny(hour, minute, day=DAY)


def _o(**doc: Any) -> dict[str, Any]:
    return {"symbol": "AMZN", "timeInForce": "day", **doc}


# (time, request): a new order (document), or ("cancel", n) / ("replace", n, changes)
# where n is the index of an earlier order in this list.
PLAN: list[tuple[int, Any]] = [
    (at(8), _o(side="buy", type="market", qty="500")),
    (at(8), _o(side="buy", type="limit", qty="300", limitPrice="221.00")),
    (at(8), _o(side="sell", type="limit", qty="200", limitPrice="225.00", timeInForce="gtc")),
    (at(8), _o(side="buy", type="market", qty="100", timeInForce="opg")),
    (at(8), _o(side="sell", type="market", qty="100", timeInForce="cls")),
    (at(8), _o(side="buy", type="limit", qty="50", limitPrice="222.40", extendedHours=True)),
    (at(9, 31), _o(side="sell", type="trailing_stop", qty="100", trailPercent="0.5")),
    (at(9, 31), _o(side="buy", type="trailing_stop", qty="100", trailPrice="0.75")),
    (at(9, 45), _o(side="buy", type="stop", qty="100", stopPrice="224.50")),
    (
        at(9, 45),
        _o(side="sell", type="stop_limit", qty="80", stopPrice="221.50", limitPrice="221.40"),
    ),
    (at(10), _o(side="buy", type="market", notional="1000.00")),
    (at(10), _o(side="buy", type="market", qty="2.5")),
    (
        at(10, 5),
        _o(
            side="buy",
            type="limit",
            qty="100",
            limitPrice="222.00",
            orderClass="bracket",
            takeProfit={"limitPrice": "224.00"},
            stopLoss={"stopPrice": "221.00"},
        ),
    ),
    (at(11), _o(side="buy", type="limit", qty="400", limitPrice="223.50", timeInForce="ioc")),
    (at(11), _o(side="buy", type="limit", qty="5000", limitPrice="223.50", timeInForce="fok")),
    (at(11, 30), _o(side="buy", type="limit", qty="20", limitPrice="200.00", timeInForce="gtc")),
    (
        at(12),
        _o(
            side="sell",
            type="limit",
            qty="100",
            orderClass="oco",
            timeInForce="gtc",
            takeProfit={"limitPrice": "226.00"},
            stopLoss={"stopPrice": "220.80"},
        ),
    ),
    (at(12, 30), ("replace", 15, {"limit_price": Decimal("222.00"), "qty": Decimal(40)})),
    (at(13), ("cancel", 2)),
    (at(14), _o(side="buy", type="stop", qty="10", stopPrice="240.00", timeInForce="gtc")),
]


def replay(book_factory: Callable[[], Book] = IndexedBook) -> list[dict[str, object]]:
    engine = MatchingEngine(book_factory=book_factory, start_ms=at(7))
    out: list[dict[str, object]] = []
    placed: list[Order] = []
    plan = list(PLAN)
    n = 0

    def run(t: int, request: Any) -> None:
        nonlocal n
        n += 1
        if isinstance(request, dict):
            req = parse_order(request)
            orders = build_orders(req, [f"p{n}.{i}" for i in range(req.order_count)], t)
            placed.append(orders[0])
            out.extend(e.as_dict() for e in engine.submit(orders, t))
        elif request[0] == "cancel":
            placed.append(placed[request[1]])
            out.extend(e.as_dict() for e in engine.cancel(placed[request[1]].id, t))
        else:
            old = placed[request[1]]
            new = Order(f"p{n}.0", replace(old.spec, **request[2]), t, replaces=old.id)
            placed.append(new)
            out.extend(e.as_dict() for e in engine.replace(old.id, new, t))

    with gzip.open(require(AMZN_REPLAY), "rb") as f:
        for line in f:
            for event in decode_frame(line).events:
                while plan and plan[0][0] <= event.t:
                    run(*plan.pop(0))
                out.extend(e.as_dict() for e in engine.on_event(event))
    for t, request in plan:
        run(t, request)
    out.extend(e.as_dict() for e in engine.advance(ny(20, 0, day=DAY)))
    return out


def digest(events: list[dict[str, object]]) -> str:
    blob = json.dumps(events, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


if __name__ == "__main__":
    factory = NaiveBook if sys.argv[1:] == ["naive"] else IndexedBook
    events = replay(factory)
    print(digest(events), len(events))
