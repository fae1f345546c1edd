"""Every operator on crafted series: ties, gaps, baselines, unknown values, AND.

Each test runs against the indexed engine and the naive reference (see helpers.ENGINES).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from server.alerts import ConditionValues, Fired
from server.market.timeframes import Timeframe
from tests.server.alerts.helpers import (
    ENGINES,
    MIN,
    T0,
    Engine,
    alert,
    cond,
    fired_at,
    ind,
    trades,
)

pytestmark = pytest.mark.parametrize("make", ENGINES)
EVERY = {"mode": "everyTime", "cooldownMs": 0}


def run(
    make: type[Engine], prices: Sequence[float], *conds: dict[str, object], **kw: object
) -> list[int]:
    e = make()
    e.add(alert(*conds, trigger=kw.pop("trigger", EVERY)))  # type: ignore[arg-type]
    return fired_at(trades(e, prices))


# ---------------------------------------------------------------- greaterThan / lessThan


def test_greater_than_is_strict(make: type[Engine]) -> None:
    assert run(make, [99, 100, 100.01], cond("LAST", "greaterThan", value=100)) == [2]


def test_less_than_is_strict(make: type[Engine]) -> None:
    assert run(make, [101, 100, 99.99], cond("LAST", "lessThan", value=100)) == [2]


def test_level_fires_on_every_event_while_true_with_zero_cooldown(make: type[Engine]) -> None:
    # Every event (1 s apart) is an evaluation; cooldown 0 allows one firing per ms.
    assert run(make, [101, 102, 99, 103], cond("LAST", "greaterThan", value=100)) == [0, 1, 3]


def test_level_true_before_arming_fires_at_the_next_event_of_the_symbol(
    make: type[Engine],
) -> None:
    e = make()
    e.on_trade("AMZN", 105.0, T0)
    e.add(alert(cond("LAST", "greaterThan", value=100), trigger={"mode": "once"}))
    # A quote is an evaluation too; LAST is still 105.
    (f,) = e.on_quote("AMZN", 104.0, 106.0, T0 + 1)
    assert f.conditions == (ConditionValues(105.0, 100.0),)
    assert f.key == "r0:once" and f.done


def test_level_with_operand_on_the_right(make: type[Engine]) -> None:
    e = make()
    e.add(alert(cond("BID", "greaterThan", right="LAST"), trigger=EVERY))
    e.on_trade("AMZN", 100.0, T0)
    assert e.on_quote("AMZN", 100.0, 101.0, T0 + 1) == []  # equal: not greater
    (f,) = e.on_quote("AMZN", 100.5, 101.0, T0 + 2)
    assert f.conditions == (ConditionValues(100.5, 100.0),)


# ---------------------------------------------------------------- crossings


def test_crossing_up_ties_follow_tradingview(make: type[Engine]) -> None:
    up = cond("LAST", "crossingUp", value=100)
    # Reaching the level is not a crossing up; leaving it upwards is.
    assert run(make, [99, 100, 101], up) == [2]
    assert run(make, [100, 101], up) == [1]
    # Touch and fall back: no crossing up at all.
    assert run(make, [99, 100, 99, 100], up) == []


def test_crossing_down_ties_follow_tradingview(make: type[Engine]) -> None:
    down = cond("LAST", "crossingDown", value=100)
    assert run(make, [101, 100, 99], down) == [2]
    # 99 -> 100 -> 99: "not below" then below is a crossing down.
    assert run(make, [99, 100, 99], down) == [2]


def test_crossing_is_either_direction(make: type[Engine]) -> None:
    assert run(make, [99, 101, 100, 99, 100, 101], cond("LAST", "crossing", value=100)) == [
        1,
        3,
        5,
    ]


def test_gaps_across_the_level_are_crossings(make: type[Engine]) -> None:
    assert run(make, [90, 110, 90], cond("LAST", "crossingUp", value=100)) == [1]
    assert run(make, [110, 90], cond("LAST", "crossingDown", value=100)) == [1]


def test_crossing_reports_the_previous_and_current_values(make: type[Engine]) -> None:
    e = make()
    e.add(alert(cond("LAST", "crossingUp", value=100), trigger=EVERY))
    _, (f,) = trades(e, [99.5, 100.25])
    assert f.conditions == (ConditionValues(100.25, 100.0, None, 99.5, 100.0),)


def test_first_observation_after_arming_is_only_a_baseline(make: type[Engine]) -> None:
    e = make()
    e.on_trade("AMZN", 90.0, T0)  # before the alert exists
    e.add(alert(cond("LAST", "crossingUp", value=100), trigger=EVERY))
    r = trades(e, [110, 90, 110], t0=T0 + 1000)
    assert fired_at(r) == [2]  # 90 (before arming) -> 110 is not reported


def test_first_trade_ever_is_a_baseline(make: type[Engine]) -> None:
    assert run(make, [110, 111], cond("LAST", "crossingUp", value=100)) == []


def test_crossing_needs_both_values_known(make: type[Engine]) -> None:
    e = make()
    e.add(alert(cond(ind("EMA(3)"), "crossingUp", value=100), trigger=EVERY))
    m1 = Timeframe.M1
    assert e.on_indicator("AMZN", m1, "EMA(3)", (99.0,), T0, T0, False) == []
    assert e.on_indicator("AMZN", m1, "EMA(3)", None, T0 + 1, T0, False) == []  # warm-up
    assert e.on_indicator("AMZN", m1, "EMA(3)", (101.0,), T0 + 2, T0, False) == []
    assert e.on_indicator("AMZN", m1, "EMA(3)", (math.nan,), T0 + 3, T0, False) == []
    assert e.on_indicator("AMZN", m1, "EMA(3)", (99.0,), T0 + 4, T0, False) == []
    assert len(e.on_indicator("AMZN", m1, "EMA(3)", (101.0,), T0 + 5, T0, False)) == 1


def test_price_crossing_an_indicator(make: type[Engine]) -> None:
    e = make()
    e.add(alert(cond("LAST", "crossingUp", right=ind("EMA(20)")), trigger=EVERY))
    m1 = Timeframe.M1
    e.on_trade("AMZN", 99.0, T0)  # EMA unknown: a sample needs both
    e.on_indicator("AMZN", m1, "EMA(20)", (100.0,), T0 + 1, T0, False)  # baseline 99/100
    assert e.on_indicator("AMZN", m1, "EMA(20)", (98.5,), T0 + 2, T0, False) != []


def test_indicator_crossing_indicator_is_judged_on_both_new_values(make: type[Engine]) -> None:
    e = make()
    e.add(alert(cond(ind("EMA(20)"), "crossingUp", right=ind("SMA(50)")), trigger=EVERY))
    m1 = Timeframe.M1
    e.on_indicators("AMZN", m1, {"EMA(20)": (99.0,), "SMA(50)": (100.0,)}, T0, T0, False)
    # Both move up together, EMA stays below SMA: no crossing, although the new EMA
    # is above the old SMA.
    assert (
        e.on_indicators("AMZN", m1, {"EMA(20)": (101.0,), "SMA(50)": (102.0,)}, T0 + 1, T0, False)
        == []
    )
    (f,) = e.on_indicators(
        "AMZN", m1, {"EMA(20)": (103.0,), "SMA(50)": (102.5,)}, T0 + 2, T0, False
    )
    assert f.conditions == (ConditionValues(103.0, 102.5, None, 101.0, 102.0),)


def test_multi_output_indicator(make: type[Engine]) -> None:
    e = make()
    macd = ind("MACD(12,26,9)", "5m", output="macd")
    signal = ind("MACD(12,26,9)", "5m", output="signal")
    e.add(alert(cond(macd, "crossingDown", right=signal), trigger=EVERY))
    m5 = Timeframe.M5
    e.on_indicator("AMZN", m5, "MACD(12,26,9)", (0.5, 0.2, 0.3), T0, T0, False)
    (f,) = e.on_indicator("AMZN", m5, "MACD(12,26,9)", (0.1, 0.2, -0.1), T0 + 1, T0, False)
    assert f.conditions[0].left == 0.1 and f.conditions[0].right == 0.2


# ---------------------------------------------------------------- channels

CH = {"lower": 100, "upper": 110}


def test_inside_channel_includes_the_bounds(make: type[Engine]) -> None:
    assert run(make, [99, 100, 110, 110.5, 105], cond("LAST", "insideChannel", channel=CH)) == [
        1,
        2,
        4,
    ]


def test_outside_channel_excludes_the_bounds(make: type[Engine]) -> None:
    assert run(make, [99, 100, 110, 110.5], cond("LAST", "outsideChannel", channel=CH)) == [0, 3]


def test_entering_and_exiting(make: type[Engine]) -> None:
    prices = [95, 100, 105, 110, 111, 110, 120, 90]
    # 95->100 enters (the bound is inside); 110->111 exits; 111->110 enters;
    # 110->120 exits; 120->90 jumps over the whole channel: neither.
    assert run(make, prices, cond("LAST", "enteringChannel", channel=CH)) == [1, 5]
    assert run(make, prices, cond("LAST", "exitingChannel", channel=CH)) == [4, 6]


def test_channel_with_operand_bounds(make: type[Engine]) -> None:
    e = make()
    bb = {"lower": ind("BB(20,2)", output="lower"), "upper": ind("BB(20,2)", output="upper")}
    e.add(alert(cond("LAST", "exitingChannel", channel=bb), trigger=EVERY))
    m1 = Timeframe.M1
    e.on_indicator("AMZN", m1, "BB(20,2)", (110.0, 105.0, 100.0), T0, T0, False)
    e.on_trade("AMZN", 108.0, T0 + 1)  # baseline: inside
    # The band narrows under the price: exiting without a trade.
    (f,) = e.on_indicator("AMZN", m1, "BB(20,2)", (107.0, 104.0, 101.0), T0 + 2, T0, False)
    assert f.conditions == (ConditionValues(108.0, 101.0, 107.0, 108.0, 100.0, 110.0),)


def test_swapped_operand_bounds_describe_the_same_channel(make: type[Engine]) -> None:
    e = make()
    ch = {"lower": ind("EMA(3)"), "upper": 100}  # EMA above 100: bounds swapped
    e.add(alert(cond("LAST", "insideChannel", channel=ch), trigger=EVERY))
    e.on_indicator("AMZN", Timeframe.M1, "EMA(3)", (110.0,), T0, T0, False)
    assert e.on_trade("AMZN", 105.0, T0 + 1) != []


# ---------------------------------------------------------------- movingUp / movingDown


def closes(e: Engine, values: list[float], *, tf: Timeframe = Timeframe.M1, t0: int = T0) -> None:
    """Trade each value and close its bar."""
    for i, v in enumerate(values):
        start = t0 + i * MIN
        e.on_trade("AMZN", v, start + 1)
        e.on_bar_close("AMZN", tf, start, start + MIN)


def test_moving_up_by_value_within_n_bars(make: type[Engine]) -> None:
    e = make()
    move = {"by": 5, "bars": 3, "timeframe": "1m"}
    e.add(alert(cond("LAST", "movingUp", move=move), trigger=EVERY))
    assert e.on_trade("AMZN", 200.0, T0) == []  # no closed bar yet: false
    closes(e, [100, 98, 101, 99])  # window of the last 3 closes: 98, 101, 99 -> low 98
    t = T0 + 4 * MIN
    assert e.on_trade("AMZN", 102.5, t + 1) == []  # +4.5
    (f,) = e.on_trade("AMZN", 103.0, t + 2)  # +5 exactly: "at least"
    assert f.conditions == (ConditionValues(103.0, 98.0),)
    # One more close drops 98 out of the window: low is now 99 (101, 99, 103).
    e.on_bar_close("AMZN", Timeframe.M1, t, t + MIN)
    assert e.on_trade("AMZN", 103.5, t + MIN + 1) == []
    assert e.on_trade("AMZN", 104.0, t + MIN + 2) != []


def test_moving_up_uses_the_available_bars_when_fewer_than_n(make: type[Engine]) -> None:
    e = make()
    e.add(alert(cond("LAST", "movingUp", move={"by": 1, "bars": 10, "timeframe": "1m"})))
    closes(e, [100])
    assert e.on_trade("AMZN", 101.0, T0 + MIN + 5) != []


def test_moving_down_by_percent(make: type[Engine]) -> None:
    e = make()
    move = {"by": 2, "percent": True, "bars": 2, "timeframe": "1m"}
    e.add(alert(cond("LAST", "movingDown", move=move), trigger=EVERY))
    closes(e, [100, 95, 50])  # window 95, 50 -> high 95, threshold 93.1
    t = T0 + 3 * MIN
    assert e.on_trade("AMZN", 93.2, t + 1) == []
    (f,) = e.on_trade("AMZN", 93.0, t + 2)
    assert f.conditions == (ConditionValues(93.0, 95.0),)


def test_moving_by_percent_of_zero_is_never_true(make: type[Engine]) -> None:
    e = make()
    move = {"by": 10, "percent": True, "bars": 1, "timeframe": "1m"}
    e.add(alert(cond(ind("MACD(12,26,9)", output="hist"), "movingUp", move=move), trigger=EVERY))
    m1 = Timeframe.M1
    e.on_indicator("AMZN", m1, "MACD(12,26,9)", (0.0, 0.0, 0.0), T0, T0, True)
    e.on_bar_close("AMZN", m1, T0, T0 + MIN)
    assert (
        e.on_indicator("AMZN", m1, "MACD(12,26,9)", (1.0, 1.0, 5.0), T0 + MIN + 1, T0 + MIN, False)
        == []
    )
    e.on_bar_close("AMZN", m1, T0 + MIN, T0 + 2 * MIN)  # ref now 5.0: +10% is 5.5
    assert (
        e.on_indicator(
            "AMZN", m1, "MACD(12,26,9)", (1.0, 1.0, 5.5), T0 + 2 * MIN + 1, T0 + 2 * MIN, False
        )
        != []
    )


def test_a_bar_close_moves_the_reference(make: type[Engine]) -> None:
    e = make()
    e.add(
        alert(
            cond("LAST", "movingDown", move={"by": 1, "bars": 1, "timeframe": "1m"}), trigger=EVERY
        )
    )
    e.on_trade("AMZN", 100.0, T0 + 1)
    e.on_bar_close("AMZN", Timeframe.M1, T0, T0 + MIN)  # window [100]: fires at <= 99
    assert e.on_trade("AMZN", 98.0, T0 + MIN + 1) != []
    e.on_bar_close("AMZN", Timeframe.M1, T0 + MIN, T0 + 2 * MIN)  # window [98]: <= 97
    assert e.on_trade("AMZN", 97.5, T0 + 2 * MIN + 1) == []
    assert e.on_trade("AMZN", 97.0, T0 + 2 * MIN + 2) != []


# ---------------------------------------------------------------- AND


def test_and_of_levels_fires_when_the_last_one_becomes_true(make: type[Engine]) -> None:
    e = make()
    e.add(
        alert(
            cond("LAST", "greaterThan", value=100),
            cond(ind("RSI(14)"), "lessThan", value=70),
            trigger={"mode": "once"},
        )
    )
    m1 = Timeframe.M1
    assert e.on_trade("AMZN", 101.0, T0) == []  # RSI unknown
    assert e.on_indicator("AMZN", m1, "RSI(14)", (75.0,), T0 + 1, T0, False) == []
    (f,) = e.on_indicator("AMZN", m1, "RSI(14)", (69.0,), T0 + 2, T0, False)
    assert f.conditions == (ConditionValues(101.0, 100.0), ConditionValues(69.0, 70.0))


def test_and_of_an_edge_and_a_level_fires_only_at_the_edge(make: type[Engine]) -> None:
    e = make()
    e.add(
        alert(
            cond("LAST", "crossingUp", value=100),
            cond("BID", "greaterThan", value=50),
            trigger=EVERY,
        )
    )
    e.on_trade("AMZN", 99.0, T0)
    assert e.on_trade("AMZN", 101.0, T0 + 1) == []  # BID unknown at the edge
    e.on_quote("AMZN", 100.0, 101.0, T0 + 2)  # the level is true now, the edge is gone
    assert e.on_trade("AMZN", 101.5, T0 + 3) == []
    e.on_trade("AMZN", 99.0, T0 + 4)
    assert e.on_trade("AMZN", 100.5, T0 + 5) != []


def test_two_edges_fire_together_only_in_one_event(make: type[Engine]) -> None:
    e = make()
    e.add(
        alert(
            cond("BID", "crossingUp", value=100),
            cond("ASK", "crossingUp", value=101),
            trigger=EVERY,
        )
    )
    e.on_quote("AMZN", 99.0, 100.0, T0)
    assert e.on_quote("AMZN", 100.5, 100.5, T0 + 1) == []  # only BID crossed
    e.on_quote("AMZN", 99.0, 100.0, T0 + 2)
    (f,) = e.on_quote("AMZN", 100.5, 101.5, T0 + 3)  # both in one quote
    assert [c.previous_left for c in f.conditions] == [99.0, 100.0]

    e2 = make()
    e2.add(alert(cond("LAST", "crossingUp", value=100), cond("BID", "crossingUp", value=100)))
    e2.on_trade("AMZN", 99.0, T0)
    e2.on_quote("AMZN", 99.0, 99.5, T0 + 1)
    assert e2.on_trade("AMZN", 101.0, T0 + 2) == []
    assert e2.on_quote("AMZN", 101.0, 101.5, T0 + 3) == []  # different events: never


def test_mid_needs_both_sides_and_invalid_sides_are_ignored(make: type[Engine]) -> None:
    e = make()
    e.add(alert(cond("MID", "greaterThan", value=100), trigger=EVERY))
    assert e.on_quote("AMZN", 0.0, 105.0, T0) == []  # no bid: MID unknown
    assert e.on_quote("AMZN", 99.0, math.nan, T0 + 1) == []
    (f,) = e.on_quote("AMZN", 100.0, 101.0, T0 + 2)
    assert f.conditions[0].left == 100.5
    assert e.on_trade("AMZN", -1.0, T0 + 3) == []  # a dropped event evaluates nothing
    assert e.on_trade("AMZN", math.inf, T0 + 4) == []


def test_fired_records_are_complete(make: type[Engine]) -> None:
    e = make()
    e.add(alert(cond("LAST", "greaterThan", value=1), id="x", owner="bob"))
    (f,) = e.on_trade("AMZN", 2.0, T0)
    assert isinstance(f, Fired)
    assert (f.alert_id, f.owner, f.symbol, f.revision, f.t_ms) == ("x", "bob", "AMZN", 0, T0)
    assert f.dedup_key == "x/r0:once"
    assert f.payload()["conditions"] == [{"left": 2.0, "right": 1.0}]


# ---------------------------------------------------------------- MID at the feed's precision


def test_a_mid_exactly_at_the_level_is_neither_above_nor_below(make: type[Engine]) -> None:
    # (229.45 + 229.46) / 2 is 229.45499999999998 in floats: below 229.455 by noise.
    e = make()
    e.add(alert(cond("MID", "lessThan", value=229.455), trigger=EVERY, id="below"))
    e.add(alert(cond("MID", "greaterThan", value=229.4549), trigger=EVERY, id="above"))
    quotes = [(229.40, 229.50), (229.45, 229.46), (229.45, 229.46)]
    fired = [
        sorted(f.alert_id for f in e.on_quote("AMZN", b, a, T0 + i * 1000))
        for i, (b, a) in enumerate(quotes)
    ]
    assert fired == [["below"], ["above"], ["above"]]
