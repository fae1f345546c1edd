"""What is particular to the indexed engine: the index, the work it skips, indicator
requirements, limits and atomic arming."""

from __future__ import annotations

import random

import pytest

from server.alerts import AlertEngine, IndicatorKey, InvalidAlert, PriceSource
from server.alerts.engine import AlertEngine as _Engine
from server.alerts.index import ThresholdIndex
from server.errors import LimitExceeded
from server.market.timeframes import Timeframe
from tests.server.alerts.helpers import MIN, T0, alert, cond, ind

M1 = Timeframe.M1


# ---------------------------------------------------------------- ThresholdIndex


def test_index_between_is_inclusive_and_order_free() -> None:
    ix: ThresholdIndex[str] = ThresholdIndex()
    for k, e in [(100.0, "a"), (101.0, "b"), (101.0, "c"), (103.0, "d")]:
        ix.add(k, e, None)
    assert ix.between(100.0, 101.0) == ["a", "b", "c"]
    assert ix.between(101.0, 100.0) == ["a", "b", "c"]
    assert ix.between(101.5, 102.5) == []
    assert ix.between(99.0, 200.0) == ["a", "b", "c", "d"]
    ix.discard(101.0, "b")
    ix.discard(101.0, "c")
    ix.discard(101.0, "zz")  # absent: ignored
    assert ix.keys == [100.0, 103.0] and len(ix) == 2


def test_index_bracket() -> None:
    ix: ThresholdIndex[str] = ThresholdIndex(floor=0.0)
    assert (ix.lo, ix.hi) == (float("inf"), float("-inf"))  # unknown: always slow
    ix.rebracket(50.0)
    assert (ix.lo, ix.hi) == (0.0, float("inf"))
    ix.add(100.0, "a", 50.0)
    ix.add(20.0, "b", 50.0)
    ix.add(10.0, "c", 50.0)  # outside the bracket: no change
    assert (ix.lo, ix.hi) == (20.0, 100.0)
    ix.add(50.0, "d", 50.0)  # on the value: empty bracket
    assert ix.lo == ix.hi == 50.0
    ix.rebracket(100.0)
    assert ix.lo == ix.hi == 100.0
    ix.rebracket(150.0)
    assert (ix.lo, ix.hi) == (100.0, float("inf"))
    ix.force()
    assert not ix.lo < 150.0 < ix.hi


# ---------------------------------------------------------------- work skipped


def count_touches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counter = [0]
    original = _Engine._touch

    def touch(self: _Engine, *args: object) -> None:
        counter[0] += 1
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_Engine, "_touch", touch)
    return counter


def test_ticks_between_thresholds_touch_no_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    e = AlertEngine()
    rng = random.Random(1)
    for i in range(5000):  # far away: 5-30% from 100
        side = rng.choice((-1, 1))
        level = round(100 * (1 + side * rng.uniform(0.05, 0.3)), 2)
        op = rng.choice(["crossingUp", "greaterThan"] if side > 0 else ["crossingDown", "lessThan"])
        e.add(alert(cond("LAST", op, value=level), id=f"a{i}", trigger={"mode": "everyTime"}))
    e.on_trade("AMZN", 100.0, T0)
    e.on_trade("AMZN", 100.01, T0 + 1)  # edges join the index after their baseline
    touches = count_touches(monkeypatch)
    price = 100.0
    for i in range(2000):
        price = min(104.0, max(96.0, price + rng.choice((-0.01, 0.01))))
        assert e.on_trade("AMZN", price, T0 + 2 + i) == []
    assert touches[0] == 0


def test_a_crossing_touches_only_the_thresholds_crossed(monkeypatch: pytest.MonkeyPatch) -> None:
    e = AlertEngine()
    for i in range(1000):
        e.add(alert(cond("LAST", "crossingUp", value=110.0 + i), id=f"a{i}"))
    e.add(alert(cond("LAST", "crossingUp", value=100.5), id="near"))
    trades = [(100.0, T0), (100.2, T0 + 1)]
    for p, t in trades:
        e.on_trade("AMZN", p, t)
    touches = count_touches(monkeypatch)
    (f,) = e.on_trade("AMZN", 101.0, T0 + 2)
    assert f.alert_id == "near" and touches[0] == 1


def test_a_level_that_stays_true_costs_nothing_between_firings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    e = AlertEngine()
    for i in range(500):
        e.add(
            alert(
                cond("LAST", "greaterThan", value=50.0),
                id=f"a{i}",
                trigger={"mode": "everyTime", "cooldownMs": 60_000},
            )
        )
    assert len(e.on_trade("AMZN", 100.0, T0)) == 500
    calls = [0]
    original = _Engine._fire

    def fire(self: _Engine, *args: object) -> object:
        calls[0] += 1
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_Engine, "_fire", fire)
    touches = count_touches(monkeypatch)
    for i in range(1, 600):  # 59.9 s of ticks, all above 50
        assert e.on_trade("AMZN", 100.0 + (i % 7) / 10, T0 + i * 100) == []
    assert calls[0] == 0 and touches[0] == 0
    assert len(e.on_trade("AMZN", 100.0, T0 + 60_000)) == 500


# ---------------------------------------------------------------- indicator requirements


def changes(e: AlertEngine) -> tuple[set[IndicatorKey], set[IndicatorKey]]:
    c = e.take_requirement_changes()
    return set(c.added), set(c.removed)


def test_required_indicators_follow_armed_alerts() -> None:
    e = AlertEngine()
    rsi = IndicatorKey("AMZN", M1, "RSI(14)")
    bb = IndicatorKey("AMZN", Timeframe.M5, "BB(20,2)")
    e.add(alert(cond(ind("RSI(14)"), "greaterThan", value=70), id="a"))
    e.add(alert(cond(ind("RSI(14)"), "lessThan", value=30), id="b"))
    e.add(
        alert(
            cond(
                "LAST",
                "exitingChannel",
                channel={"lower": ind("BB(20,2)", "5m", "lower"), "upper": 500},
            ),
            id="c",
        )
    )
    assert e.required_indicators() == {rsi, bb}
    assert changes(e) == ({rsi, bb}, set())
    e.remove("a")
    assert changes(e) == (set(), set())  # b still needs RSI
    e.set_enabled("b", False)
    e.remove("c")
    assert e.required_indicators() == set()
    assert changes(e) == (set(), {rsi, bb})
    e.set_enabled("b", True)
    e.set_enabled("b", False)  # net: nothing changed
    assert changes(e) == (set(), set())


def test_indicator_updates_only_reach_alerts_on_that_stream() -> None:
    e = AlertEngine()
    e.add(alert(cond(ind("RSI(14)"), "greaterThan", value=70), trigger={"mode": "everyTime"}))
    assert e.on_indicator("AMZN", M1, "EMA(9)", (80.0,), T0, T0, False) == []
    assert e.on_indicator("AMZN", Timeframe.M5, "RSI(14)", (80.0,), T0, T0, False) == []
    assert e.on_indicator("AAPL", M1, "RSI(14)", (80.0,), T0, T0, False) == []
    assert len(e.on_indicator("AMZN", M1, "RSI(14)", (80.0,), T0 + 1, T0, False)) == 1


def test_indicator_values_seen_before_arming_count_for_levels() -> None:
    e = AlertEngine()
    e.on_indicator("AMZN", M1, "RSI(14)", (80.0,), T0, T0, False)
    e.add(alert(cond(ind("RSI(14)"), "greaterThan", value=70)))
    assert len(e.on_trade("AMZN", 1.0, T0 + 1)) == 1


def test_unknown_indicator_outputs_are_refused_and_nothing_is_armed() -> None:
    e = AlertEngine()
    bad = alert(
        cond("LAST", "greaterThan", value=1),
        cond(ind("MACD(12,26,9)", output="histogram"), "greaterThan", value=0),
    )
    with pytest.raises(InvalidAlert) as err:
        e.add(bad)
    assert err.value.extensions["field"] == "conditions[1].left"
    assert len(e) == 0 and e.required_indicators() == set()


def test_a_custom_output_resolver() -> None:
    e = AlertEngine(outputs=lambda key, output: {"k": 0, "d": 1}.get(output))
    e.add(alert(cond(ind("STOCH(14,3)", output="d"), "lessThan", value=20)))
    assert e.on_indicator("AMZN", M1, "STOCH(14,3)", (10.0, 30.0), T0, T0, False) == []
    assert len(e.on_indicator("AMZN", M1, "STOCH(14,3)", (30.0, 10.0), T0 + 1, T0, False)) == 1


# ---------------------------------------------------------------- arming


def test_engine_side_per_user_limit_and_duplicates() -> None:
    e = AlertEngine(max_per_user=2)
    e.add(alert(cond("LAST", "greaterThan", value=1), id="a"))
    with pytest.raises(InvalidAlert):
        e.add(alert(cond("LAST", "greaterThan", value=1), id="a"))
    e.add(alert(cond("LAST", "greaterThan", value=1), id="b"))
    with pytest.raises(LimitExceeded):
        e.add(alert(cond("LAST", "greaterThan", value=1), id="c"))
    e.add(alert(cond("LAST", "greaterThan", value=1), id="d", owner="bob"))
    e.on_trade("AMZN", 2.0, T0)  # a and b fire once: they no longer count
    e.add(alert(cond("LAST", "greaterThan", value=1), id="c"))
    assert e.open_count("alice") == 1


def test_remove_disarms_everything() -> None:
    e = AlertEngine()
    e.add(alert(cond("LAST", "crossingUp", value=100), trigger={"mode": "everyTime"}))
    e.add(alert(cond("BID", "crossing", right="ASK"), id="b", trigger={"mode": "everyTime"}))
    e.add(
        alert(
            cond("LAST", "greaterThan", value=1),
            cond("MID", "insideChannel", channel={"lower": ind("EMA(9)"), "upper": 500}),
            id="c",
            trigger={"mode": "oncePerBarClose", "timeframe": "1m"},
        )
    )
    e.on_indicator("AMZN", M1, "EMA(9)", (1.0,), T0, T0, False)
    e.on_trade("AMZN", 5.0, T0)
    e.on_quote("AMZN", 5.0, 5.0, T0)
    e.on_bar_close("AMZN", M1, T0 - MIN, T0)
    assert e._symbols["AMZN"].close_ready
    assert e.remove("a1") and e.remove("b") and e.remove("c") and not e.remove("a1")
    for i, p in enumerate([99.0, 101.0, 99.0, 101.0]):
        assert e.on_trade("AMZN", p, T0 + i) == []
        assert e.on_quote("AMZN", p, 100.0, T0 + i) == []
    st = e._symbols["AMZN"]
    assert not st.last.ix.keys and not st.last.pending and not st.bid.general
    assert not st.ready and not st.ind and not st.hist and not st.closes and not st.close_ready


def test_seed_history_after_a_restart() -> None:
    e = AlertEngine()
    move = {"by": 5, "bars": 3, "timeframe": "1m"}
    e.add(alert(cond("LAST", "movingUp", move=move)))
    assert e.seed_history("AMZN", M1, PriceSource.LAST, [(T0 - 2 * MIN, 100.0), (T0 - MIN, 97.0)])
    assert not e.seed_history("AMZN", Timeframe.M5, PriceSource.LAST, [(T0, 1.0)])
    assert not e.seed_history("AAPL", M1, PriceSource.LAST, [(T0, 1.0)])
    (f,) = e.on_trade("AMZN", 102.0, T0 + 1)
    assert f.conditions[0].right == 97.0
