"""The trailing-stop groups trigger exactly the orders a per-order water mark would, on
random trades, orders added at any time (anchored or not) and removals."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from brokers.paper.books import IndexedBook
from brokers.paper.naive import NaiveBook
from brokers.paper.working import Working
from server.trading.model import Order, OrderSpec, OrderType, Side, TimeInForce

ops = st.lists(
    st.one_of(
        st.tuples(st.just("trade"), st.integers(min_value=90, max_value=110)),
        st.tuples(
            st.just("add"),
            st.tuples(
                st.booleans(),  # buy
                st.booleans(),  # by percent
                st.integers(min_value=1, max_value=8),  # trail
                st.booleans(),  # anchored at the last trade
            ),
        ),
        st.tuples(st.just("remove"), st.integers(min_value=0, max_value=50)),
    ),
    max_size=120,
)


def working(seq: int, buy: bool, pct: bool, trail: int) -> Working:
    spec = OrderSpec(
        "X",
        Side.BUY if buy else Side.SELL,
        OrderType.TRAILING_STOP,
        TimeInForce.GTC,
        qty=Decimal(1),
        trail_price=None if pct else Decimal(trail) / 100,
        trail_percent=Decimal(trail) / 4 if pct else None,
    )
    return Working(Order(f"o{seq}", spec, 0), seq)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_groups_trigger_what_per_order_marks_trigger(steps: list[tuple[str, object]]) -> None:
    books = (IndexedBook(), NaiveBook())
    orders: tuple[list[Working], list[Working]] = ([], [])
    last: int | None = None
    seq = 0
    for op, arg in steps:
        if op == "trade":
            price = int(arg) * 100  # ticks of $0.01 * 100 = whole cents grid
            results = []
            for book in books:
                got = book.trade(price)
                results.append(sorted((key, w.seq) for key, w in got))
            assert results[0] == results[1]
            last = price
        elif op == "add":
            buy, pct, trail, anchored = arg  # type: ignore[misc]
            seq += 1
            for book, mine in zip(books, orders, strict=True):
                w = working(seq, buy, pct, trail)
                book.add_trailing(w, last if anchored else None)
                mine.append(w)
        else:
            for book, mine in zip(books, orders, strict=True):
                alive = [w for w in mine if w.version == 0]
                if alive:
                    w = alive[int(arg) % len(alive)]
                    book.remove(w)
        # Every live order has the same water mark in both.
        for a, b in zip(*orders, strict=True):
            if a.version == 0 and b.version == 0:
                assert books[0].water_of(a) == books[1].water_of(b)
    assert len(books[0]) == len(books[1])
