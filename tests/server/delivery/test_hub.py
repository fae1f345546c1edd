"""The hub: one bus subscription per topic, reference-counted interest, isolated sinks."""

from __future__ import annotations

from server.delivery.bus import InProcessBus
from server.delivery.hub import MarketHub
from streams.events import Quote, Received


def q(sym: str, n: int = 1) -> Received:
    return Received(Quote(sym=sym, bp=1.0, ap=2.0, t=1, q=n), 0)


def test_bus_subscription_per_topic_and_interest_edges() -> None:
    bus = InProcessBus()
    events: list[tuple[str, bool]] = []
    hub = MarketHub(bus, on_interest=lambda s, w: events.append((s, w)))
    got_a: list[Received] = []
    got_b: list[Received] = []
    a = hub.attach("Q", ["AMZN", "GOOG", "AMZN"], got_a.append)
    b = hub.attach("Q", ["AMZN"], got_b.append)
    t = hub.attach("T", ["AMZN"], lambda _: None)
    assert bus.topics() == ["Q.AMZN", "Q.GOOG", "T.AMZN"]
    assert events == [("AMZN", True), ("GOOG", True)]
    assert hub.interest() == {"AMZN": 3, "GOOG": 1}

    bus.publish("Q.AMZN", q("AMZN"))
    bus.publish("Q.GOOG", q("GOOG"))
    bus.publish("Q.MSFT", q("MSFT"))
    assert [r.event.sym for r in got_a] == ["AMZN", "GOOG"]
    assert [r.event.sym for r in got_b] == ["AMZN"]

    a.close()
    a.close()  # idempotent
    assert events[-1] == ("GOOG", False)
    b.close()
    assert bus.topics() == ["T.AMZN"]
    t.close()
    assert bus.topics() == [] and hub.interest() == {}
    assert events[-1] == ("AMZN", False)


def test_a_failing_sink_does_not_break_others_or_the_publisher() -> None:
    bus = InProcessBus()
    hub = MarketHub(bus)
    got: list[Received] = []

    def broken(_: Received) -> None:
        raise RuntimeError("boom")

    hub.attach("Q", ["AMZN"], broken)
    hub.attach("Q", ["AMZN"], got.append)
    bus.publish("Q.AMZN", q("AMZN"))
    assert len(got) == 1
