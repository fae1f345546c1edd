"""Definition validation: every rule, its error code and field, and the round trip."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from server.alerts import (
    Alert,
    Channel,
    IndicatorOperand,
    InvalidAlert,
    Movement,
    Operator,
    PriceSource,
    TriggerMode,
    validate,
)
from server.alerts.validation import is_valid_indicator_key
from server.errors import InvalidInput, InvalidSymbol, LimitExceeded
from server.market.timeframes import Timeframe

GOOD: dict[str, Any] = {
    "symbol": "BRK.B",
    "conditions": [
        {"left": "LAST", "op": "crossingUp", "value": 230},
        {"left": {"indicator": "RSI(14)", "timeframe": "5m"}, "op": "lessThan", "value": 70.5},
        {
            "left": {"indicator": "EMA(20)", "timeframe": "1h"},
            "op": "crossing",
            "right": {"indicator": "SMA(50)", "timeframe": "1h", "output": "value"},
        },
        {
            "left": "MID",
            "op": "enteringChannel",
            "channel": {
                "lower": {"indicator": "BB(20,2)", "timeframe": "1m", "output": "lower"},
                "upper": 231.0,
            },
        },
        {
            "left": "BID",
            "op": "movingDown",
            "move": {"by": 2.5, "percent": True, "bars": 10, "timeframe": "1m"},
        },
    ],
    "trigger": {"mode": "everyTime", "cooldownMs": 60000},
    "expiresMs": 2_000,
    "enabled": False,
    "revision": 4,
}


def check(d: Any, **kw: Any) -> Alert:
    return validate(d, alert_id=kw.pop("alert_id", "a1"), owner="alice", now_ms=1_000, **kw)


def bad(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one field replaced (``path`` like 'conditions.0.value'); _DEL deletes."""
    d = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node: Any = d
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    key: Any = int(last) if isinstance(node, list) else last
    if value is _DEL:
        del node[key]
    else:
        node[key] = value
    return d


_DEL = object()


def test_a_full_definition_parses() -> None:
    a = check(GOOD)
    assert a.symbol == "BRK.B" and not a.enabled and a.revision == 4 and a.expires_ms == 2_000
    c0, c1, c2, c3, c4 = a.conditions
    assert (c0.left, c0.op, c0.right) == (PriceSource.LAST, Operator.CROSSING_UP, 230.0)
    assert isinstance(c0.right, float)
    assert c1.left == IndicatorOperand(Timeframe.M5, "RSI(14)", "value")
    assert c2.right == IndicatorOperand(Timeframe.H1, "SMA(50)")
    assert c3.right == Channel(IndicatorOperand(Timeframe.M1, "BB(20,2)", "lower"), 231.0)
    assert c4.right == Movement(2.5, True, 10, Timeframe.M1)
    assert a.trigger.mode is TriggerMode.EVERY_TIME and a.trigger.cooldown_ms == 60000


def test_definition_round_trips() -> None:
    a = check(GOOD)
    assert check(a.definition()) == a
    minimal = check(
        {"symbol": "AMZN", "conditions": [{"left": "LAST", "op": "greaterThan", "value": 1}]}
    )
    assert minimal.trigger.mode is TriggerMode.ONCE and minimal.enabled
    assert check(minimal.definition()) == minimal


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("conditions.0.op", "crossesOver", "conditions[0].op"),
        ("conditions.0.op", None, "conditions[0].op"),
        ("conditions.0.value", _DEL, "conditions[0]"),  # missing right side
        ("conditions.0.channel", {"lower": 1, "upper": 2}, "conditions[0].channel"),  # extra
        ("conditions.2.value", 3, "conditions[2].right"),  # both value and right
        ("conditions.3.channel", _DEL, "conditions[3]"),
        ("conditions.3.value", 3, "conditions[3].value"),
        ("conditions.3.channel", {"lower": 5, "upper": 4}, "conditions[3].channel"),
        ("conditions.3.channel.upper", _DEL, "conditions[3].channel.upper"),
        ("conditions.4.move.by", 0, "conditions[4].move.by"),
        ("conditions.4.move.by", -1, "conditions[4].move.by"),
        ("conditions.4.move.by", 1001, "conditions[4].move.by"),  # a percentage
        ("conditions.4.move.by", "5", "conditions[4].move.by"),
        ("conditions.4.move.percent", "yes", "conditions[4].move.percent"),
        ("conditions.4.move.bars", 0, "conditions[4].move.bars"),
        ("conditions.4.move.bars", 1001, "conditions[4].move.bars"),
        ("conditions.4.move.bars", 2.5, "conditions[4].move.bars"),
        ("conditions.4.move.timeframe", "2m", "conditions[4].move.timeframe"),
        ("conditions.4.move.speed", 1, "conditions[4].move"),
        ("conditions.0.value", math.nan, "conditions[0].value"),
        ("conditions.0.value", math.inf, "conditions[0].value"),
        ("conditions.0.value", -math.inf, "conditions[0].value"),
        ("conditions.0.value", True, "conditions[0].value"),
        ("conditions.0.value", 1e300, "conditions[0].value"),
        ("conditions.3.channel.upper", math.nan, "conditions[3].channel.upper"),
        ("conditions.0.left", "LASTPRICE", "conditions[0].left"),
        ("conditions.0.left", _DEL, "conditions[0].left"),
        ("conditions.1.left.indicator", "14RSI", "conditions[1].left.indicator"),
        ("conditions.1.left.indicator", "RSI(14", "conditions[1].left.indicator"),
        ("conditions.1.left.indicator", "rsi(14)", "conditions[1].left.indicator"),
        ("conditions.1.left.indicator", "RSI(14,)", "conditions[1].left.indicator"),
        ("conditions.1.left.indicator", "MACD(12, 26, 9)", "conditions[1].left.indicator"),
        ("conditions.1.left.indicator", "RSI(14)x", "conditions[1].left.indicator"),
        ("conditions.1.left.indicator", "", "conditions[1].left.indicator"),
        ("conditions.1.left.indicator", 14, "conditions[1].left.indicator"),
        ("conditions.1.left.timeframe", _DEL, "conditions[1].left.timeframe"),
        ("conditions.1.left.output", "Upper Band", "conditions[1].left.output"),
        ("conditions.1.left.extra", 1, "conditions[1].left"),
        ("conditions.2.right", {"indicator": "EMA(20)", "timeframe": "1h"}, "conditions[2].right"),
        ("conditions.0.extra", 1, "conditions[0]"),
        ("conditions", [], "conditions"),
        ("conditions", [GOOD["conditions"][0]] * 9, "conditions"),
        ("conditions", "LAST > 1", "conditions"),
        ("trigger.cooldownMs", -1, "trigger.cooldownMs"),
        ("trigger.cooldownMs", 1.5, "trigger.cooldownMs"),
        ("trigger.cooldownMs", 10**12, "trigger.cooldownMs"),
        ("trigger.mode", "always", "trigger.mode"),
        ("trigger", {"mode": "oncePerBar"}, "trigger.timeframe"),
        ("trigger", {"mode": "oncePerBarClose", "timeframe": "7m"}, "trigger.timeframe"),
        ("trigger", {"mode": "once", "timeframe": "1m"}, "trigger.timeframe"),
        ("trigger", {"mode": "once", "cooldownMs": 5}, "trigger.cooldownMs"),
        ("expiresMs", 1_000, "expiresMs"),  # == now: in the past
        ("expiresMs", 5, "expiresMs"),
        ("expiresMs", "tomorrow", "expiresMs"),
        ("enabled", "yes", "enabled"),
        ("revision", -1, "revision"),
        ("colour", "red", "definition"),
    ],
)
def test_invalid_definitions_are_rejected_with_the_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(InvalidAlert) as e:
        check(bad(path, value))
    assert e.value.extensions == {"code": "INVALID_ALERT", "field": field}
    assert isinstance(e.value, InvalidInput)


@pytest.mark.parametrize("symbol", ["", "amzn", "TOOLONGSYMBOL", "A B", 5, None])
def test_invalid_symbols(symbol: Any) -> None:
    with pytest.raises(InvalidSymbol) as e:
        check(bad("symbol", symbol))
    assert e.value.code == "INVALID_SYMBOL"


def test_not_an_object() -> None:
    with pytest.raises(InvalidAlert):
        check([1, 2])


@pytest.mark.parametrize("name", ["alert_id", "owner"])
def test_ids_must_be_non_empty(name: str) -> None:
    kw: dict[str, Any] = {"alert_id": "a1", "owner": "alice", name: ""}
    with pytest.raises(InvalidAlert):
        validate(GOOD, now_ms=0, **kw)


def test_per_user_limit() -> None:
    check(GOOD, existing=9, max_per_user=10)
    with pytest.raises(LimitExceeded) as e:
        check(GOOD, existing=10, max_per_user=10)
    assert e.value.extensions == {"code": "LIMIT_EXCEEDED", "limit": 10}


def test_an_invalid_definition_reports_its_error_before_the_limit() -> None:
    with pytest.raises(InvalidAlert):
        check(bad("conditions.0.op", "nope"), existing=10, max_per_user=10)


def test_comparing_an_operand_with_itself() -> None:
    d = bad("conditions.0", {"left": "BID", "op": "crossing", "right": "BID"})
    with pytest.raises(InvalidAlert):
        check(d)


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("RSI(14)", True),
        ("MACD(12,26,9)", True),
        ("BB(20,2.5)", True),
        ("VWAP()", True),
        ("SMA(50,close)", True),
        ("STOCH_RSI(14,3,3)", True),
        ("VWAP", True),
        ("rsi", False),
        ("RSI-14", False),
        ("(14)", False),
        ("RSI(1 4)", False),
        ("RSI((14))", False),
        ("R" * 30 + "(1)", False),
    ],
)
def test_indicator_key_syntax(key: str, ok: bool) -> None:
    assert is_valid_indicator_key(key) is ok
