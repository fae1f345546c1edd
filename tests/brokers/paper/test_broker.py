"""``PaperBroker`` behind the ``Broker`` port: events reach the listener in order before
each call returns; market data and the clock come in from the runtime."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.paper.broker import PaperBroker
from brokers.paper.matching import MatchingEngine
from server.trading.events import OrderEvent
from server.trading.model import build_orders
from server.trading.validation import parse_order
from streams.events import Aggregate, Quote, Trade
from tests.brokers.paper.helpers import ny


def make() -> tuple[PaperBroker, list[OrderEvent]]:
    broker = PaperBroker(MatchingEngine(start_ms=ny(9, 0)))
    got: list[OrderEvent] = []
    broker.set_listener(got.append)
    return broker, got


def test_the_port_round_trip() -> None:
    broker, got = make()
    assert broker.name == "paper"
    req = parse_order(
        {
            "symbol": "AMZN",
            "side": "buy",
            "type": "limit",
            "timeInForce": "day",
            "qty": "10",
            "limitPrice": "100",
        }
    )
    (order,) = build_orders(req, ["a"], ny(9, 0))
    broker.submit([order])
    assert [str(e.kind) for e in got] == ["accepted"]
    assert broker.symbols() == ["AMZN"]
    broker.advance(ny(9, 30))
    broker.on_market_event(Quote(sym="AMZN", bp=99.5, ap=99.9, t=ny(9, 30, 1), bs=5, ask_size=5))
    broker.on_market_event(Aggregate(sym="AMZN", o=1, h=1, l=1, c=1, v=1, s=1, e=2))  # ignored
    broker.on_market_event(Trade(sym="AMZN", p=99.0, s=100, t=ny(9, 30, 2)))
    assert [str(e.kind) for e in got] == ["accepted", "new", "partial_fill", "fill"]
    assert [e.seq for e in got] == [1, 2, 3, 4]
    assert got[-1].filled_qty == Decimal(10) and broker.symbols() == []
    broker.cancel("a")
    assert str(got[-1].kind) == "cancel_rejected"
    (again,) = build_orders(req, ["a"], ny(9, 31))
    broker.submit([again])  # the same id: nothing happens
    assert len(got) == 5


def test_a_broker_without_a_listener_refuses_to_lose_events() -> None:
    broker = PaperBroker(MatchingEngine(start_ms=ny(9, 0)))
    req = parse_order(
        {"symbol": "AMZN", "side": "buy", "type": "market", "timeInForce": "day", "qty": "1"}
    )
    with pytest.raises(RuntimeError, match="no listener"):
        broker.submit(build_orders(req, ["a"], ny(9, 0)))
