"""Which indicator, with which parameters: parsing, validation, canonical keys.

An ``IndicatorSpec`` is a kind plus its parameters in canonical order, defaults
filled in. Its ``key`` ("MACD(12,26,9)", "BBANDS(20,2)", "OBV") identifies it (for
caching one indicator per symbol/timeframe/spec) and parses back with
``IndicatorSpec.parse`` (case-insensitive; positional or ``name=value`` arguments;
omitted trailing parameters take their defaults).

Kinds, parameters and defaults (TradingView/TA-Lib conventions):

========  =====================================  ============
kind      parameters                             defaults
========  =====================================  ============
SMA       period                                 (required)
EMA       period                                 (required)
WMA       period                                 (required)
RSI       period                                 14
MACD      fast, slow, signal                     12, 26, 9
BBANDS    period, std_dev                        20, 2
ATR       period                                 14
STOCH     k_period, k_smooth, d_period           14, 3, 3
VWAP      (none)                                 trade-weighted, session
VWAP_HLC3 (none)                                 typical price, session
OBV       (none)                                 anchored (see ``create``)
ADX       period                                 14
DONCHIAN  period                                 20
========  =====================================  ============

Periods are integers from 1 to 10,000; MACD needs fast < slow; std_dev is a number
in (0, 10]. Anything else raises ``InvalidIndicator`` (code ``INVALID_INDICATOR``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from server.errors import InvalidInput
from server.indicators.base import DEFAULT_MAX_ROLLBACK, Indicator
from server.indicators.moving_averages import EMA, SMA, WMA
from server.indicators.oscillators import MACD, RSI, Stochastic
from server.indicators.trend import ADX
from server.indicators.volatility import ATR, BollingerBands, DonchianChannel
from server.indicators.volume import OBV, VWAP, VWAPTypical, ny_session, ny_year
from server.market.timeframes import Timeframe

MAX_PERIOD = 10_000
MAX_STD_DEV = 10.0
MAX_KEY_LENGTH = 100

Param = int | float


class InvalidIndicator(InvalidInput):
    code = "INVALID_INDICATOR"


class IndicatorKind(StrEnum):
    SMA = "SMA"
    EMA = "EMA"
    WMA = "WMA"
    RSI = "RSI"
    MACD = "MACD"
    BBANDS = "BBANDS"
    ATR = "ATR"
    STOCH = "STOCH"
    VWAP = "VWAP"
    VWAP_HLC3 = "VWAP_HLC3"
    OBV = "OBV"
    ADX = "ADX"
    DONCHIAN = "DONCHIAN"


@dataclass(frozen=True, slots=True)
class _ParamDef:
    name: str
    default: Param | None  # None: required
    is_float: bool = False


def _period(default: int | None = None, name: str = "period") -> _ParamDef:
    return _ParamDef(name, default)


_PARAMS: dict[IndicatorKind, tuple[_ParamDef, ...]] = {
    IndicatorKind.SMA: (_period(),),
    IndicatorKind.EMA: (_period(),),
    IndicatorKind.WMA: (_period(),),
    IndicatorKind.RSI: (_period(14),),
    IndicatorKind.MACD: (_period(12, "fast"), _period(26, "slow"), _period(9, "signal")),
    IndicatorKind.BBANDS: (_period(20), _ParamDef("std_dev", 2.0, is_float=True)),
    IndicatorKind.ATR: (_period(14),),
    IndicatorKind.STOCH: (
        _period(14, "k_period"),
        _period(3, "k_smooth"),
        _period(3, "d_period"),
    ),
    IndicatorKind.VWAP: (),
    IndicatorKind.VWAP_HLC3: (),
    IndicatorKind.OBV: (),
    IndicatorKind.ADX: (_period(14),),
    IndicatorKind.DONCHIAN: (_period(20),),
}

_CLASSES: dict[IndicatorKind, type[Indicator]] = {
    IndicatorKind.SMA: SMA,
    IndicatorKind.EMA: EMA,
    IndicatorKind.WMA: WMA,
    IndicatorKind.RSI: RSI,
    IndicatorKind.MACD: MACD,
    IndicatorKind.BBANDS: BollingerBands,
    IndicatorKind.ATR: ATR,
    IndicatorKind.STOCH: Stochastic,
    IndicatorKind.VWAP: VWAP,
    IndicatorKind.VWAP_HLC3: VWAPTypical,
    IndicatorKind.OBV: OBV,
    IndicatorKind.ADX: ADX,
    IndicatorKind.DONCHIAN: DonchianChannel,
}

_CALL = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*", re.DOTALL)
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_]+")


def _kind(name: object) -> IndicatorKind:
    if isinstance(name, IndicatorKind):
        return name
    if isinstance(name, str):
        try:
            return IndicatorKind(name.strip().upper())
        except ValueError:
            pass
    raise InvalidIndicator(
        f"unknown indicator {name!r}; expected one of {', '.join(IndicatorKind)}",
        indicator=str(name),
    )


def _format(value: Param) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _check(kind: IndicatorKind, pdef: _ParamDef, value: object) -> Param:
    """The validated (normalised) value of one parameter."""
    where = f"{kind} {pdef.name}"
    if pdef.is_float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidIndicator(
                f"{where} must be a number, got {value!r}", indicator=str(kind), param=pdef.name
            )
        number = float(value)
        if not (math.isfinite(number) and 0.0 < number <= MAX_STD_DEV):
            raise InvalidIndicator(
                f"{where} must be > 0 and <= {MAX_STD_DEV:g}, got {_format(number)}",
                indicator=str(kind),
                param=pdef.name,
            )
        return number
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidIndicator(
            f"{where} must be an integer, got {value!r}", indicator=str(kind), param=pdef.name
        )
    if not 1 <= value <= MAX_PERIOD:
        raise InvalidIndicator(
            f"{where} must be from 1 to {MAX_PERIOD:,}, got {value}",
            indicator=str(kind),
            param=pdef.name,
        )
    return value


def _validate(kind: IndicatorKind, params: Mapping[str, object]) -> tuple[Param, ...]:
    defs = _PARAMS[kind]
    known = {d.name for d in defs}
    for name in params:
        if name not in known:
            expected = ", ".join(d.name for d in defs) if defs else "no parameters"
            raise InvalidIndicator(
                f"unexpected parameter {name!r} for {kind}; expected {expected}",
                indicator=str(kind),
                param=name,
            )
    values: list[Param] = []
    for pdef in defs:
        raw = params.get(pdef.name)
        if raw is None:
            if pdef.default is None:
                raise InvalidIndicator(
                    f"{kind} needs a {pdef.name}", indicator=str(kind), param=pdef.name
                )
            raw = pdef.default
        values.append(_check(kind, pdef, raw))
    if kind is IndicatorKind.MACD and values[0] >= values[1]:
        raise InvalidIndicator(
            f"MACD fast period ({values[0]}) must be less than its slow period ({values[1]})",
            indicator=str(kind),
            param="fast",
        )
    return tuple(values)


@dataclass(frozen=True, slots=True)
class IndicatorSpec:
    """An indicator kind and its parameters (canonical order, defaults filled in).

    Build one with ``IndicatorSpec.of("MACD", fast=8)``, ``from_dict`` or ``parse``;
    constructing it directly also validates.
    """

    kind: IndicatorKind
    params: tuple[Param, ...] = ()
    #: Canonical name, e.g. "MACD(12,26,9)": made once (it is read on every update).
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kind = _kind(self.kind)
        object.__setattr__(self, "kind", kind)
        defs = _PARAMS[kind]
        if len(self.params) != len(defs):
            raise InvalidIndicator(
                f"{self.kind} takes {len(defs)} parameters, got {len(self.params)}",
                indicator=str(self.kind),
            )
        normalised = _validate(kind, {d.name: v for d, v in zip(defs, self.params, strict=True)})
        object.__setattr__(self, "params", normalised)
        key = f"{kind}({','.join(_format(v) for v in normalised)})" if normalised else str(kind)
        object.__setattr__(self, "key", key)

    @classmethod
    def of(cls, kind: str | IndicatorKind, **params: object) -> IndicatorSpec:
        """``IndicatorSpec.of("bbands", period=20, std_dev=2.5)``; ``None`` = default."""
        k = _kind(kind)
        return cls(k, _validate(k, params))

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> IndicatorSpec:
        """``{"kind": "MACD", "fast": 12, ...}`` (the shape of a GraphQL input)."""
        if "kind" not in data:
            raise InvalidIndicator("indicator kind is missing")
        params = {name: value for name, value in data.items() if name != "kind"}
        return cls.of(_kind(data["kind"]), **params)

    @classmethod
    def parse(cls, text: str) -> IndicatorSpec:
        """Parse a key such as "MACD(12,26,9)", "bbands(20, 2.5)", "rsi", "EMA(period=9)"."""
        if not isinstance(text, str) or len(text) > MAX_KEY_LENGTH:
            raise InvalidIndicator(
                f"an indicator key is a string of at most {MAX_KEY_LENGTH} characters"
            )
        match = _CALL.fullmatch(text)
        if match is None:
            raise InvalidIndicator(
                f"cannot parse indicator {text!r}; expected e.g. 'MACD(12,26,9)' or 'RSI'",
                indicator=str(text),
            )
        kind = _kind(match.group(1))
        defs = _PARAMS[kind]
        args = match.group(2)
        params: dict[str, object] = {}
        if args is not None and args.strip():
            arguments = [a.strip() for a in args.split(",")]
            named = False
            for position, arg in enumerate(arguments):
                name, sep, raw = arg.partition("=")
                if sep:
                    named = True
                    name = name.strip().lower()
                    raw = raw.strip()
                    if not _NAME.fullmatch(name):
                        raise InvalidIndicator(
                            f"cannot parse argument {arg!r} of {text!r}", indicator=str(kind)
                        )
                elif named:
                    raise InvalidIndicator(
                        f"positional argument {arg!r} after a named one in {text!r}",
                        indicator=str(kind),
                    )
                elif position >= len(defs):
                    takes = (
                        f"at most {len(defs)} parameters ({', '.join(d.name for d in defs)})"
                        if defs
                        else "no parameters"
                    )
                    raise InvalidIndicator(
                        f"{kind} takes {takes}, got {len(arguments)}", indicator=str(kind)
                    )
                else:
                    name, raw = defs[position].name, arg
                if name in params:
                    raise InvalidIndicator(
                        f"parameter {name!r} given twice in {text!r}", indicator=str(kind)
                    )
                params[name] = _parse_number(kind, name, raw)
        return cls.of(kind, **params)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in _PARAMS[self.kind])

    def as_dict(self) -> dict[str, Param]:
        return dict(zip(self.param_names, self.params, strict=True))

    def __str__(self) -> str:
        return self.key

    def create(
        self, max_rollback: int = DEFAULT_MAX_ROLLBACK, timeframe: Timeframe | None = None
    ) -> Indicator:
        """A fresh incremental indicator for this spec. Given the ``timeframe`` of the bars
        it will see, a cumulative indicator (OBV) is anchored: it starts afresh every New
        York day on intraday bars, every New York year on daily bars."""
        factory: Callable[..., Indicator] = _CLASSES[self.kind]
        if self.kind is IndicatorKind.OBV and timeframe is not None:
            anchor = ny_year if timeframe is Timeframe.D1 else ny_session
            return OBV(max_rollback=max_rollback, anchor=anchor)
        return factory(*self.params, max_rollback=max_rollback)

    @property
    def outputs(self) -> tuple[str, ...]:
        return _CLASSES[self.kind].outputs

    @property
    def warmup(self) -> int:
        """Bars consumed before the first value (TA-Lib's lookback)."""
        return self.create(max_rollback=0).warmup


def _parse_number(kind: IndicatorKind, name: str, raw: str) -> object:
    pdef = next((d for d in _PARAMS[kind] if d.name == name), None)
    if pdef is None:
        return raw  # reported as an unexpected parameter by ``of``
    if _INT.fullmatch(raw):
        return int(raw)
    if pdef.is_float and _FLOAT.fullmatch(raw):
        return float(raw)
    raise InvalidIndicator(
        f"{kind} {name} must be {'a number' if pdef.is_float else 'an integer'}, got {raw!r}",
        indicator=str(kind),
        param=name,
    )
