"""Turning a definition document into an ``Alert``, or a clear error.

``validate`` checks the whole document before returning, so a caller that stores
only what ``validate`` returned never stores half an alert. Errors are
``InvalidAlert`` (code ``INVALID_ALERT``, ``extensions.field`` names the offending
part, e.g. ``conditions[1].channel``), ``InvalidSymbol`` for the symbol and
``LimitExceeded`` when the owner already has ``max_per_user`` alerts.

Indicator keys are checked for syntax only (``NAME(params)``: upper-case name,
comma-separated numbers or lower-case words, no spaces; or a bare ``NAME`` such as
``VWAP``); what they mean is the indicator module's business, and the engine's
``OutputResolver`` maps output names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from server.alerts.model import (
    CHANNEL_OPERATORS,
    COMPARE_OPERATORS,
    DEFAULT_MAX_PER_USER,
    MAX_BARS,
    MAX_CONDITIONS,
    MAX_COOLDOWN_MS,
    MAX_PERCENT,
    Alert,
    Bound,
    Channel,
    Condition,
    IndicatorOperand,
    InvalidAlert,
    Movement,
    Operand,
    Operator,
    PriceSource,
    Right,
    Trigger,
    TriggerMode,
)
from server.errors import InvalidSymbol, LimitExceeded
from server.market.symbols import is_valid_symbol
from server.market.timeframes import Timeframe

_PARAM = r"(?:-?\d+(?:\.\d+)?|[a-z][a-z0-9_]*)"
#: ``NAME(params)``, or a bare ``NAME`` (the indicator module's canonical key of an
#: indicator without parameters, e.g. ``VWAP``).
INDICATOR_KEY = re.compile(rf"^[A-Z][A-Z0-9_]{{0,23}}(?:\((?:{_PARAM}(?:,{_PARAM}){{0,7}})?\))?$")
OUTPUT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_ID_LENGTH = 128
#: Constants beyond this magnitude are rejected (no market value is anywhere near).
MAX_ABS_VALUE = 1e15

_TOP_KEYS = frozenset({"symbol", "conditions", "trigger", "expiresMs", "enabled", "revision"})
_RIGHT_KEYS = ("value", "right", "channel", "move")
_OPERATORS = {o.value: o for o in Operator}
_MODES = {m.value: m for m in TriggerMode}
_TIMEFRAMES = {t.value: t for t in Timeframe}
_SOURCES = {s.value: s for s in PriceSource}


def is_valid_indicator_key(key: str) -> bool:
    return INDICATOR_KEY.fullmatch(key) is not None


def _fail(field: str, message: str) -> InvalidAlert:
    return InvalidAlert(f"{field}: {message}", field=field)


def _mapping(v: object, field: str) -> Mapping[str, Any]:
    if type(v) is dict:  # the usual case, without the (slow) ABC check
        return v
    if not isinstance(v, Mapping):
        raise _fail(field, "must be an object")
    return v


def _no_extra(m: Mapping[str, Any], allowed: Sequence[str] | frozenset[str], field: str) -> None:
    extra = [str(k) for k in m if k not in allowed]
    if extra:
        raise _fail(field, f"unknown field(s) {', '.join(sorted(extra))}")


def _number(v: object, field: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _fail(field, "must be a number")
    x = float(v)
    if not math.isfinite(x):
        raise _fail(field, "must be a finite number (not NaN or infinity)")
    if abs(x) > MAX_ABS_VALUE:
        raise _fail(field, f"magnitude must be at most {MAX_ABS_VALUE:g}")
    return x


def _integer(v: object, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(field, "must be an integer")
    return v


def _timeframe(v: object, field: str) -> Timeframe:
    if isinstance(v, Timeframe):
        return v
    if not isinstance(v, str) or v not in _TIMEFRAMES:
        raise _fail(field, f"must be one of {', '.join(_TIMEFRAMES)}")
    return _TIMEFRAMES[v]


def _operand(v: object, field: str) -> Operand:
    if isinstance(v, str):
        if v not in _SOURCES:
            raise _fail(field, f"must be one of {', '.join(_SOURCES)} or an indicator")
        return _SOURCES[v]
    m = _mapping(v, field)
    _no_extra(m, ("indicator", "timeframe", "output"), field)
    key = m.get("indicator")
    if not isinstance(key, str) or not is_valid_indicator_key(key):
        raise _fail(
            f"{field}.indicator",
            f"malformed indicator key {key!r}: expected NAME(params) like RSI(14) or NAME",
        )
    if "timeframe" not in m:
        raise _fail(f"{field}.timeframe", "is required for an indicator")
    tf = _timeframe(m["timeframe"], f"{field}.timeframe")
    output = m.get("output", "value")
    if not isinstance(output, str) or not OUTPUT_NAME.fullmatch(output):
        raise _fail(f"{field}.output", f"malformed output name {output!r}")
    return IndicatorOperand(tf, key, output)


def _bound(v: object, field: str) -> Bound:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return _number(v, field)
    return _operand(v, field)


def _right(op: Operator, c: Mapping[str, Any], left: Operand, field: str) -> Right:
    given = [k for k in _RIGHT_KEYS if k in c]
    if op in COMPARE_OPERATORS:
        wanted: tuple[str, ...] = ("value", "right")
        what = "a constant 'value' or a 'right' operand"
    elif op in CHANNEL_OPERATORS:
        wanted = ("channel",)
        what = "a 'channel'"
    else:
        wanted = ("move",)
        what = "a 'move'"
    if not given:
        raise _fail(field, f"{op.value} needs {what}")
    wrong = [k for k in given if k not in wanted]
    if wrong or len(given) > 1:
        raise _fail(f"{field}.{(wrong or given)[-1]}", f"{op.value} takes exactly {what}")
    key = given[0]
    if key == "value":
        return _number(c["value"], f"{field}.value")
    if key == "right":
        right = _operand(c["right"], f"{field}.right")
        if right == left:
            raise _fail(f"{field}.right", "compares an operand with itself")
        return right
    if key == "channel":
        ch = _mapping(c["channel"], f"{field}.channel")
        _no_extra(ch, ("lower", "upper"), f"{field}.channel")
        for side in ("lower", "upper"):
            if side not in ch:
                raise _fail(f"{field}.channel.{side}", "is required")
        lower = _bound(ch["lower"], f"{field}.channel.lower")
        upper = _bound(ch["upper"], f"{field}.channel.upper")
        if isinstance(lower, float) and isinstance(upper, float) and lower > upper:
            raise _fail(f"{field}.channel", f"lower {lower:g} is above upper {upper:g}")
        return Channel(lower, upper)
    mv = _mapping(c["move"], f"{field}.move")
    _no_extra(mv, ("by", "percent", "bars", "timeframe"), f"{field}.move")
    for name in ("by", "bars", "timeframe"):
        if name not in mv:
            raise _fail(f"{field}.move.{name}", "is required")
    by = _number(mv["by"], f"{field}.move.by")
    percent = mv.get("percent", False)
    if not isinstance(percent, bool):
        raise _fail(f"{field}.move.percent", "must be true or false")
    if by <= 0:
        raise _fail(f"{field}.move.by", "must be greater than 0")
    if percent and by > MAX_PERCENT:
        raise _fail(f"{field}.move.by", f"a percentage must be at most {MAX_PERCENT:g}")
    bars = _integer(mv["bars"], f"{field}.move.bars")
    if not 1 <= bars <= MAX_BARS:
        raise _fail(f"{field}.move.bars", f"must be between 1 and {MAX_BARS}")
    return Movement(by, percent, bars, _timeframe(mv["timeframe"], f"{field}.move.timeframe"))


def _condition(v: object, field: str) -> Condition:
    c = _mapping(v, field)
    _no_extra(c, ("left", "op", *_RIGHT_KEYS), field)
    if "left" not in c:
        raise _fail(f"{field}.left", "is required")
    left = _operand(c["left"], f"{field}.left")
    op_name = c.get("op")
    if not isinstance(op_name, str) or op_name not in _OPERATORS:
        raise _fail(
            f"{field}.op", f"unknown operator {op_name!r}; expected one of {', '.join(_OPERATORS)}"
        )
    op = _OPERATORS[op_name]
    return Condition(left, op, _right(op, c, left, field))


def _trigger(v: object) -> Trigger:
    if v is None:
        return Trigger()
    t = _mapping(v, "trigger")
    _no_extra(t, ("mode", "timeframe", "cooldownMs"), "trigger")
    mode_name = t.get("mode")
    if not isinstance(mode_name, str) or mode_name not in _MODES:
        raise _fail("trigger.mode", f"must be one of {', '.join(_MODES)}")
    mode = _MODES[mode_name]
    per_bar = mode in (TriggerMode.ONCE_PER_BAR, TriggerMode.ONCE_PER_BAR_CLOSE)
    timeframe = None
    if per_bar:
        if "timeframe" not in t:
            raise _fail("trigger.timeframe", f"{mode.value} needs a bar timeframe")
        timeframe = _timeframe(t["timeframe"], "trigger.timeframe")
    elif "timeframe" in t:
        raise _fail("trigger.timeframe", f"{mode.value} takes no timeframe")
    cooldown = 0
    if mode is TriggerMode.EVERY_TIME:
        cooldown = _integer(t.get("cooldownMs", 0), "trigger.cooldownMs")
        if cooldown < 0:
            raise _fail("trigger.cooldownMs", "must not be negative")
        if cooldown > MAX_COOLDOWN_MS:
            raise _fail("trigger.cooldownMs", f"must be at most {MAX_COOLDOWN_MS} ms")
    elif "cooldownMs" in t:
        raise _fail("trigger.cooldownMs", f"{mode.value} takes no cooldown")
    return Trigger(mode, timeframe, cooldown)


def _text(v: object, field: str) -> str:
    if not isinstance(v, str) or not v or len(v) > MAX_ID_LENGTH:
        raise _fail(field, f"must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    return v


def validate(
    definition: object,
    *,
    alert_id: str,
    owner: str,
    now_ms: int,
    existing: int = 0,
    max_per_user: int = DEFAULT_MAX_PER_USER,
) -> Alert:
    """Parse and check a whole definition document (see ``server.alerts.model``).

    ``existing`` is how many other (not done) alerts ``owner`` has; the new one must
    not take them over ``max_per_user``. ``now_ms`` is for the expiry check.
    """
    d = _mapping(definition, "definition")
    _no_extra(d, _TOP_KEYS, "definition")
    symbol = d.get("symbol")
    if not isinstance(symbol, str) or not is_valid_symbol(symbol):
        raise InvalidSymbol(f"invalid symbol {symbol!r}", field="symbol")
    raw = d.get("conditions")
    if type(raw) is not list and (not isinstance(raw, Sequence) or isinstance(raw, str | bytes)):
        raise _fail("conditions", "must be a list of conditions")
    if not 1 <= len(raw) <= MAX_CONDITIONS:
        raise _fail("conditions", f"must hold between 1 and {MAX_CONDITIONS} conditions")
    conditions = tuple(_condition(c, f"conditions[{i}]") for i, c in enumerate(raw))
    trigger = _trigger(d.get("trigger"))
    expires = d.get("expiresMs")
    if expires is not None:
        expires = _integer(expires, "expiresMs")
        if expires <= now_ms:
            raise _fail("expiresMs", "is in the past")
    enabled = d.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail("enabled", "must be true or false")
    revision = _integer(d.get("revision", 0), "revision")
    if revision < 0:
        raise _fail("revision", "must not be negative")
    alert = Alert(
        id=_text(alert_id, "id"),
        owner=_text(owner, "owner"),
        symbol=symbol,
        conditions=conditions,
        trigger=trigger,
        expires_ms=expires,
        enabled=enabled,
        revision=revision,
    )
    if existing >= max_per_user:
        raise LimitExceeded(
            f"at most {max_per_user} alerts per user; delete some first", limit=max_per_user
        )
    return alert


def validate_alert(alert: Alert) -> Alert:
    """Check an ``Alert`` built in code (the engine re-checks what it arms): the same
    rules as ``validate`` apart from the expiry-in-the-past and per-user checks.
    Returns the normalised alert (integer constants become floats)."""
    return validate(alert.definition(), alert_id=alert.id, owner=alert.owner, now_ms=-(1 << 62))
