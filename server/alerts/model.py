"""The alert model: definitions, trigger modes, firing records and restorable state.

Everything here is an immutable value. ``Alert.definition()`` is the serialisable
(JSON) form that ``server.alerts.validation.validate`` accepts back, so storage keeps
the definition document and the engine re-arms exactly what the user asked for.

Definition document (JSON; ``id`` and ``owner`` are stored beside it, not in it)::

    {
      "symbol": "AMZN",
      "conditions": [                       # 1..MAX_CONDITIONS, combined with AND
        {"left": "LAST", "op": "crossingUp", "value": 230.5},
        {"left": {"indicator": "RSI(14)", "timeframe": "5m"},          # output "value"
         "op": "lessThan", "value": 70},
        {"left": {"indicator": "EMA(20)", "timeframe": "1h"}, "op": "crossing",
         "right": {"indicator": "SMA(50)", "timeframe": "1h"}},
        {"left": "MID", "op": "enteringChannel",
         "channel": {"lower": {"indicator": "BB(20,2)", "timeframe": "1m", "output": "lower"},
                     "upper": 231.0}},
        {"left": "LAST", "op": "movingUp",
         "move": {"by": 2.5, "percent": true, "bars": 10, "timeframe": "1m"}}
      ],
      "trigger": {"mode": "everyTime", "cooldownMs": 60000},
      # or {"mode": "once"} (the default), {"mode": "oncePerBar", "timeframe": "5m"},
      #    {"mode": "oncePerBarClose", "timeframe": "5m"}
      "expiresMs": 1767225600000,           # optional, epoch ms, exclusive
      "enabled": true,                      # optional, default true
      "revision": 0                         # optional; bump it on every edit
    }

An operand is ``"LAST" | "BID" | "ASK" | "MID"`` or an indicator output
``{"indicator": "NAME(params)", "timeframe": "1m", "output": "value"}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, TypeAlias

import msgspec

from server.errors import InvalidInput
from server.market.timeframes import Timeframe

#: At most this many conditions per alert.
MAX_CONDITIONS = 8
#: ``bars`` of movingUp/movingDown is in 1..MAX_BARS; histories keep this many closes.
MAX_BARS = 1000
#: Default per-user limit (``validate(..., max_per_user=...)`` overrides it).
DEFAULT_MAX_PER_USER = 200
#: Largest cooldown: 366 days.
MAX_COOLDOWN_MS = 366 * 86_400_000
#: movingUp/movingDown by percent: 0 < percent <= MAX_PERCENT.
MAX_PERCENT = 1000.0


class InvalidAlert(InvalidInput):
    """An alert definition is malformed or inconsistent (``extensions.field`` says where)."""

    code = "INVALID_ALERT"


class PriceSource(StrEnum):
    LAST = "LAST"  # last trade price
    BID = "BID"
    ASK = "ASK"
    MID = "MID"  # (bid + ask) / 2, known only when both sides are


@dataclass(frozen=True, slots=True)
class IndicatorOperand:
    """One output of an indicator computed on ``timeframe`` bars of the alert's symbol."""

    timeframe: Timeframe
    key: str  # "RSI(14)", "MACD(12,26,9)": the indicator module's key
    output: str = "value"  # "value" is the first (or only) output


#: The left side of a condition, or an operand on the right.
Operand: TypeAlias = PriceSource | IndicatorOperand
#: A channel bound: a constant or an operand.
Bound: TypeAlias = float | PriceSource | IndicatorOperand


@dataclass(frozen=True, slots=True)
class Channel:
    lower: Bound
    upper: Bound


@dataclass(frozen=True, slots=True)
class Movement:
    """movingUp/movingDown: by ``by`` (absolute, or percent of the reference) within
    ``bars`` closed bars of ``timeframe``."""

    by: float
    percent: bool
    bars: int
    timeframe: Timeframe


#: The right side: a constant, an operand, a channel or a movement.
Right: TypeAlias = float | PriceSource | IndicatorOperand | Channel | Movement


class Operator(StrEnum):
    GREATER_THAN = "greaterThan"
    LESS_THAN = "lessThan"
    CROSSING = "crossing"
    CROSSING_UP = "crossingUp"
    CROSSING_DOWN = "crossingDown"
    ENTERING_CHANNEL = "enteringChannel"
    EXITING_CHANNEL = "exitingChannel"
    INSIDE_CHANNEL = "insideChannel"
    OUTSIDE_CHANNEL = "outsideChannel"
    MOVING_UP = "movingUp"
    MOVING_DOWN = "movingDown"


#: Operators whose right side is a constant or an operand.
COMPARE_OPERATORS = frozenset(
    {
        Operator.GREATER_THAN,
        Operator.LESS_THAN,
        Operator.CROSSING,
        Operator.CROSSING_UP,
        Operator.CROSSING_DOWN,
    }
)
CHANNEL_OPERATORS = frozenset(
    {
        Operator.ENTERING_CHANNEL,
        Operator.EXITING_CHANNEL,
        Operator.INSIDE_CHANNEL,
        Operator.OUTSIDE_CHANNEL,
    }
)
MOVING_OPERATORS = frozenset({Operator.MOVING_UP, Operator.MOVING_DOWN})
#: Edge operators are true at one observation (a change); the others are levels.
EDGE_OPERATORS = frozenset(
    {
        Operator.CROSSING,
        Operator.CROSSING_UP,
        Operator.CROSSING_DOWN,
        Operator.ENTERING_CHANNEL,
        Operator.EXITING_CHANNEL,
    }
)


@dataclass(frozen=True, slots=True)
class Condition:
    left: Operand
    op: Operator
    right: Right


class TriggerMode(StrEnum):
    ONCE = "once"
    ONCE_PER_BAR = "oncePerBar"
    ONCE_PER_BAR_CLOSE = "oncePerBarClose"
    EVERY_TIME = "everyTime"


@dataclass(frozen=True, slots=True)
class Trigger:
    mode: TriggerMode = TriggerMode.ONCE
    #: The bar timeframe of ONCE_PER_BAR / ONCE_PER_BAR_CLOSE (``None`` otherwise).
    timeframe: Timeframe | None = None
    #: EVERY_TIME: minimum time between two firings (0: at most one per millisecond).
    cooldown_ms: int = 0


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    owner: str
    symbol: str
    conditions: tuple[Condition, ...]
    trigger: Trigger = Trigger()
    #: Epoch ms; the alert fires only at times strictly before it.
    expires_ms: int | None = None
    enabled: bool = True
    #: Part of every dedup key: an edited alert (higher revision) fires afresh.
    revision: int = 0

    def definition(self) -> dict[str, Any]:
        """The JSON document ``validate`` accepts (without ``id`` and ``owner``)."""
        out: dict[str, Any] = {
            "symbol": self.symbol,
            "conditions": [_condition_json(c) for c in self.conditions],
            "trigger": _trigger_json(self.trigger),
            "enabled": self.enabled,
            "revision": self.revision,
        }
        if self.expires_ms is not None:
            out["expiresMs"] = self.expires_ms
        return out


def operand_json(o: Operand) -> Any:
    if isinstance(o, PriceSource):
        return o.value
    return {"indicator": o.key, "timeframe": o.timeframe.value, "output": o.output}


def _bound_json(b: Bound) -> Any:
    return b if isinstance(b, int | float) else operand_json(b)


def _condition_json(c: Condition) -> dict[str, Any]:
    out: dict[str, Any] = {"left": operand_json(c.left), "op": c.op.value}
    r = c.right
    if isinstance(r, int | float):
        out["value"] = r
    elif isinstance(r, Channel):
        out["channel"] = {"lower": _bound_json(r.lower), "upper": _bound_json(r.upper)}
    elif isinstance(r, Movement):
        out["move"] = {
            "by": r.by,
            "percent": r.percent,
            "bars": r.bars,
            "timeframe": r.timeframe.value,
        }
    else:
        out["right"] = operand_json(r)
    return out


def _trigger_json(t: Trigger) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": t.mode.value}
    if t.timeframe is not None:
        out["timeframe"] = t.timeframe.value
    if t.mode is TriggerMode.EVERY_TIME:
        out["cooldownMs"] = t.cooldown_ms
    return out


class ConditionValues(msgspec.Struct, frozen=True, gc=False):
    """The values one condition was evaluated on when its alert fired.

    ``right`` is the constant or right operand; for channels ``right`` is the lower
    and ``upper`` the upper bound; for movingUp/movingDown ``right`` is the reference
    (the lowest / highest close of the window). ``previous_*`` are the values at the
    previous observation, given for edge operators (crossings, entering/exiting).
    """

    left: float
    right: float | None = None
    upper: float | None = None
    previous_left: float | None = None
    previous_right: float | None = None
    previous_upper: float | None = None

    def as_json(self) -> dict[str, float]:
        out = {"left": self.left}
        for name in ("right", "upper", "previous_left", "previous_right", "previous_upper"):
            v = getattr(self, name)
            if v is not None:
                out[_CAMEL[name]] = v
        return out


_CAMEL = {
    "right": "right",
    "upper": "upper",
    "previous_left": "previousLeft",
    "previous_right": "previousRight",
    "previous_upper": "previousUpper",
}


class Fired(msgspec.Struct, frozen=True, gc=False):
    """One firing. ``key`` is unique per alert forever (deterministic: a replay of the
    same events gives the same key), so storing firings under a unique
    ``(alert_id, key)`` makes a replay idempotent."""

    alert_id: str
    owner: str
    symbol: str
    revision: int
    #: "r<rev>:once" | "r<rev>:bar:<bar start ms>" | "r<rev>:close:<bar start ms>"
    #: | "r<rev>:t:<event ms>" (everyTime).
    key: str
    t_ms: int
    mode: TriggerMode
    #: The bar of oncePerBar / oncePerBarClose, else ``None``.
    bar_start_ms: int | None
    #: The alert will never fire again (a ONCE alert that fired).
    done: bool
    conditions: tuple[ConditionValues, ...]

    @property
    def dedup_key(self) -> str:
        """Globally unique: ``<alert id>/<key>``."""
        return f"{self.alert_id}/{self.key}"

    def payload(self) -> dict[str, Any]:
        """JSON for storage and delivery."""
        return {
            "symbol": self.symbol,
            "revision": self.revision,
            "key": self.key,
            "tMs": self.t_ms,
            "mode": self.mode.value,
            "barStartMs": self.bar_start_ms,
            "done": self.done,
            "conditions": [c.as_json() for c in self.conditions],
        }


def fire_key(revision: int, kind: str, value: int | None = None) -> str:
    return f"r{revision}:{kind}" if value is None else f"r{revision}:{kind}:{value}"


_KEY = re.compile(r"^r(\d+):(once|bar|close|t)(?::(-?\d+))?$")


class FireState(msgspec.Struct, frozen=True, gc=False):
    """What an alert remembers about its firings; enough to stay exactly-once across a
    restart (persist it with each firing, hand it to ``AlertEngine.restore``)."""

    #: A ONCE alert that fired.
    done: bool = False
    #: Time of the last firing (everyTime: the cooldown runs from it).
    last_fired_ms: int | None = None
    #: Bar of the last oncePerBar / oncePerBarClose firing.
    last_bar_start_ms: int | None = None

    @classmethod
    def after(cls, fired: Fired) -> FireState:
        return cls(fired.done, fired.t_ms, fired.bar_start_ms)

    @classmethod
    def from_persisted(
        cls, *, revision: int, last_key: str | None, last_fired_ms: int | None, done: bool
    ) -> FireState:
        """Rebuild from stored columns (the last firing's key and time, the done flag).

        A key of another revision belongs to an earlier definition: its times do not
        apply (the edited alert fires afresh).
        """
        m = _KEY.match(last_key) if last_key else None
        if m is None or int(m.group(1)) != revision:
            return cls(done=done)
        kind, value = m.group(2), m.group(3)
        if kind in ("bar", "close") and value is not None:
            return cls(done, last_fired_ms, int(value))
        if kind == "t" and value is not None:
            return cls(done, int(value), None)
        return cls(done, last_fired_ms, None)


class IndicatorKey(NamedTuple):
    """An indicator stream the engine needs computed."""

    symbol: str
    timeframe: Timeframe
    key: str


#: (indicator key, output name) -> position in the indicator's value tuple, or None.
OutputResolver: TypeAlias = Callable[[str, str], "int | None"]

# Provisional output names, matching server/indicators' ``outputs`` tuples; the
# indicator registry should supply the real resolver to the engine.
_KNOWN_OUTPUTS: dict[str, tuple[str, ...]] = {
    "MACD": ("macd", "signal", "hist"),
    "STOCH": ("k", "d"),
    "ADX": ("adx", "plus_di", "minus_di"),
    "BB": ("upper", "middle", "lower"),
    "BBANDS": ("upper", "middle", "lower"),
    "DONCHIAN": ("upper", "middle", "lower"),
    "DC": ("upper", "middle", "lower"),
}


def default_output_index(key: str, output: str) -> int | None:
    """``"value"`` is output 0 of any indicator; a single-output indicator's own
    lower-case name (``"rsi"`` of ``RSI(14)``) too; multi-output names by a small table."""
    if output == "value":
        return 0
    name = key.split("(", 1)[0]
    known = _KNOWN_OUTPUTS.get(name)
    if known is not None:
        return known.index(output) if output in known else None
    return 0 if output == name.lower() else None
