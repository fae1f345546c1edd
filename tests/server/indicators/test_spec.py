"""Indicator specs: defaults, canonical keys, parsing, validation errors."""

from __future__ import annotations

import pytest

from server.errors import InvalidInput
from server.indicators import (
    ADX,
    ATR,
    EMA,
    MACD,
    OBV,
    RSI,
    SMA,
    VWAP,
    WMA,
    BollingerBands,
    DonchianChannel,
    IndicatorKind,
    IndicatorSpec,
    InvalidIndicator,
    Stochastic,
)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("RSI", "RSI(14)"),
        ("rsi()", "RSI(14)"),
        ("macd", "MACD(12,26,9)"),
        ("MACD(8)", "MACD(8,26,9)"),
        ("Macd(12, 26, 9)", "MACD(12,26,9)"),
        ("macd(fast=5, slow=35, signal=5)", "MACD(5,35,5)"),
        ("MACD(8, signal=4)", "MACD(8,26,4)"),
        ("bbands", "BBANDS(20,2)"),
        ("BBANDS(20,2.0)", "BBANDS(20,2)"),
        ("bbands( 10 , 2.5 )", "BBANDS(10,2.5)"),
        ("BBANDS(period=10, std_dev=1e-1)", "BBANDS(10,0.1)"),
        ("atr", "ATR(14)"),
        ("stoch", "STOCH(14,3,3)"),
        ("STOCH(5,1,4)", "STOCH(5,1,4)"),
        ("adx", "ADX(14)"),
        ("donchian", "DONCHIAN(20)"),
        ("vwap", "VWAP"),
        ("OBV()", "OBV"),
        ("sma(20)", "SMA(20)"),
        ("EMA(period=9)", "EMA(9)"),
        ("wma(1)", "WMA(1)"),
        ("SMA(10000)", "SMA(10000)"),
        ("  ema ( 50 )  ", "EMA(50)"),
    ],
)
def test_parse_and_canonical_key(text: str, key: str) -> None:
    spec = IndicatorSpec.parse(text)
    assert spec.key == key == str(spec)
    assert IndicatorSpec.parse(spec.key) == spec
    assert hash(IndicatorSpec.parse(spec.key)) == hash(spec)


def test_constructors_agree() -> None:
    a = IndicatorSpec.of("macd", fast=5, slow=35, signal=5)
    b = IndicatorSpec.from_dict({"kind": "MACD", "fast": 5, "slow": 35, "signal": 5})
    c = IndicatorSpec(IndicatorKind.MACD, (5, 35, 5))
    assert a == b == c == IndicatorSpec.parse("MACD(5,35,5)")
    assert a.as_dict() == {"fast": 5, "slow": 35, "signal": 5}
    assert a.param_names == ("fast", "slow", "signal")
    assert IndicatorSpec.of("bbands", period=20, std_dev=None).params == (20, 2.0)
    assert IndicatorSpec.of("BBANDS", std_dev=3) == IndicatorSpec.parse("BBANDS(20,3)")


@pytest.mark.parametrize(
    ("key", "cls", "outputs", "warmup"),
    [
        ("SMA(20)", SMA, ("sma",), 19),
        ("EMA(20)", EMA, ("ema",), 19),
        ("WMA(20)", WMA, ("wma",), 19),
        ("RSI", RSI, ("rsi",), 14),
        ("MACD", MACD, ("macd", "signal", "hist"), 33),
        ("BBANDS", BollingerBands, ("upper", "middle", "lower"), 19),
        ("ATR", ATR, ("atr",), 14),
        ("STOCH", Stochastic, ("k", "d"), 17),
        ("VWAP", VWAP, ("vwap",), 0),
        ("OBV", OBV, ("obv",), 0),
        ("ADX", ADX, ("adx", "plus_di", "minus_di"), 27),
        ("DONCHIAN", DonchianChannel, ("upper", "middle", "lower"), 19),
    ],
)
def test_create(key: str, cls: type, outputs: tuple[str, ...], warmup: int) -> None:
    spec = IndicatorSpec.parse(key)
    ind = spec.create(max_rollback=7)
    assert isinstance(ind, cls)
    assert ind.outputs == spec.outputs == outputs
    assert ind.warmup == spec.warmup == warmup
    assert ind.max_rollback == 7
    assert spec.create().max_rollback == 64


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: IndicatorSpec.parse("FOO(3)"), "unknown indicator 'FOO'"),
        (lambda: IndicatorSpec.of("stochrsi"), "unknown indicator 'stochrsi'"),
        (lambda: IndicatorSpec.from_dict({"period": 3}), "kind is missing"),
        (lambda: IndicatorSpec.parse("SMA"), "SMA needs a period"),
        (lambda: IndicatorSpec.of("EMA"), "EMA needs a period"),
        (lambda: IndicatorSpec.parse("SMA(0)"), "SMA period must be from 1 to 10,000, got 0"),
        (lambda: IndicatorSpec.parse("RSI(-3)"), "RSI period must be from 1 to 10,000, got -3"),
        (lambda: IndicatorSpec.parse("EMA(10001)"), "must be from 1 to 10,000, got 10001"),
        (lambda: IndicatorSpec.of("STOCH", d_period=0), "STOCH d_period must be from 1"),
        (lambda: IndicatorSpec.parse("MACD(26,12,9)"), "fast period \\(26\\) must be less"),
        (lambda: IndicatorSpec.parse("MACD(12,12)"), "fast period \\(12\\) must be less"),
        (lambda: IndicatorSpec.parse("MACD(30)"), "fast period \\(30\\) must be less"),
        (lambda: IndicatorSpec.parse("BBANDS(20,0)"), "std_dev must be > 0 and <= 10, got 0"),
        (lambda: IndicatorSpec.parse("BBANDS(20,-1)"), "std_dev must be > 0 and <= 10"),
        (lambda: IndicatorSpec.parse("BBANDS(20,10.5)"), "got 10.5"),
        (lambda: IndicatorSpec.of("BBANDS", std_dev=float("nan")), "std_dev must be > 0"),
        (lambda: IndicatorSpec.of("BBANDS", std_dev=True), "std_dev must be a number"),
        (lambda: IndicatorSpec.of("SMA", period=True), "SMA period must be an integer"),
        (lambda: IndicatorSpec.of("SMA", period=14.0), "SMA period must be an integer"),
        (lambda: IndicatorSpec.of("SMA", period="14"), "SMA period must be an integer"),
        (lambda: IndicatorSpec.parse("SMA(1.5)"), "SMA period must be an integer, got '1.5'"),
        (lambda: IndicatorSpec.parse("SMA(abc)"), "must be an integer, got 'abc'"),
        (lambda: IndicatorSpec.of("RSI", fast=3), "unexpected parameter 'fast' for RSI"),
        (lambda: IndicatorSpec.of("MACD", period=3), "expected fast, slow, signal"),
        (lambda: IndicatorSpec.of("OBV", period=3), "unexpected parameter 'period' for OBV"),
        (lambda: IndicatorSpec.parse("OBV(3)"), "OBV takes no parameters"),
        (lambda: IndicatorSpec.parse("SMA(20,3)"), "SMA takes at most 1 parameters"),
        (lambda: IndicatorSpec.parse("EMA(span=3)"), "unexpected parameter 'span' for EMA"),
        (lambda: IndicatorSpec.parse("MACD(fast=5, 30)"), "positional argument '30' after"),
        (lambda: IndicatorSpec.parse("RSI(3, period=4)"), "'period' given twice"),
        (lambda: IndicatorSpec.parse("SMA(20"), "cannot parse indicator"),
        (lambda: IndicatorSpec.parse("SMA 20"), "cannot parse indicator"),
        (lambda: IndicatorSpec.parse(""), "cannot parse indicator"),
        (lambda: IndicatorSpec.parse("SMA(" + "9" * 5000 + ")"), "at most 100 characters"),
        (lambda: IndicatorSpec(IndicatorKind.SMA, ()), "SMA takes 1 parameters, got 0"),
        (lambda: IndicatorSpec(IndicatorKind.SMA, (0,)), "SMA period must be from 1"),
    ],
)
def test_invalid(make: object, message: str) -> None:
    with pytest.raises(InvalidIndicator, match=message) as info:
        make()  # type: ignore[operator]
    error = info.value
    assert isinstance(error, InvalidInput)
    assert error.code == "INVALID_INDICATOR"
    assert error.extensions["code"] == "INVALID_INDICATOR"
