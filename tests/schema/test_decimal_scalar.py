"""The ``Decimal`` scalar: exact decimal strings out; strings, literals and JSON numbers
in, taken exactly or refused with a clear error and a stable code."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
import strawberry

from schema.money import DECIMAL, MAX_DIGITS, InvalidDecimal, parse_decimal, plain
from schema.scalars import SCALARS
from tests.schema.graphql_support import fail, make_schema, run

OUT = {
    "tiny": Decimal("0.0001"),
    "exponent": Decimal("1E+2"),
    "small": Decimal("1E-7"),
    "negative": Decimal("-12.5"),
    "cents": Decimal("1500.00"),
    "wide": Decimal("1234567890.123456789012345678"),  # 28 digits
    "negative_zero": Decimal("-0.00"),
    "huge": Decimal("9.99E+25"),
}


@strawberry.type
class Query:
    @strawberry.field
    def value(self, name: str) -> Decimal:
        return OUT[name]

    @strawberry.field
    def echo(self, v: Decimal) -> Decimal:
        assert isinstance(v, Decimal)
        return v

    @strawberry.field
    def maybe(self, v: Decimal | None = None) -> str:
        return repr(v)

    @strawberry.field
    def a_float(self) -> Decimal:
        return 1.5  # type: ignore[return-value]  # the bug the scalar refuses

    @strawberry.field
    def not_finite(self) -> Decimal:
        return Decimal("NaN")


SCHEMA = make_schema(Query)
ECHO = "query($v: Decimal!) { echo(v: $v) }"


def test_registered_for_python_decimals() -> None:
    assert SCALARS[Decimal] is DECIMAL
    assert "scalar Decimal" in SCHEMA.as_str()


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("tiny", "0.0001"),
        ("exponent", "100"),
        ("small", "0.0000001"),
        ("negative", "-12.5"),
        ("cents", "1500.00"),
        ("wide", "1234567890.123456789012345678"),
        ("negative_zero", "0.00"),
        ("huge", "99900000000000000000000000"),
    ],
)
def test_output_is_a_plain_exact_string(name: str, text: str) -> None:
    data = run(SCHEMA, "query($n: String!) { value(name: $n) }", {"n": name})
    assert data == {"value": text}
    assert Decimal(text) == OUT[name]


def test_a_float_or_a_nan_from_a_resolver_is_a_server_error_not_a_number() -> None:
    for field in ("aFloat", "notFinite"):
        error = fail(SCHEMA, f"{{ {field} }}")
        assert error["extensions"]["code"] == "INTERNAL", error


@pytest.mark.parametrize(
    ("literal", "text"),
    [
        ("10.25", "10.25"),
        ('"10.25"', "10.25"),
        ("10", "10"),
        ("-3", "-3"),
        ('".5"', "0.5"),
        ("1e-4", "0.0001"),
        ('"1E+3"', "1000"),
        ("1.50", "1.50"),
        # Past a double's precision: the literal's text, never float().
        ("0.123456789012345678", "0.123456789012345678"),
        ("1234567890.123456789012345678", "1234567890.123456789012345678"),
        ("99999999999999999999", "99999999999999999999"),
        ('"-0"', "0"),
    ],
)
def test_literals_are_taken_by_their_text(literal: str, text: str) -> None:
    assert run(SCHEMA, f"{{ echo(v: {literal}) }}") == {"echo": text}


@pytest.mark.parametrize(
    ("literal", "says"),
    [
        ('"NaN"', "finite"),
        ('"-Infinity"', "finite"),
        ('"inf"', "finite"),
        ('""', "empty"),
        ('" 1"', "decimal number"),
        ('"1_000"', "decimal number"),
        ('"0x10"', "decimal number"),
        ('"١٢"', "decimal number"),  # Arabic-Indic digits: Decimal() would take them
        ('"1e400"', "too large"),
        ("1e400", "too large"),
        ("100000000000000000000", "too large"),
        ('"1e-400"', "decimal places"),
        ("0.0000000000000000001", "decimal places"),
        ('"12345678901234567890.123456789"', "significant digits"),
        ("true", "not a boolean"),
        ("{amount: 1}", "not an object"),
        ("[1]", "not a list"),
        ("BUY", "not an enum value"),
        ('"' + "1" * 100 + '"', "decimal number"),
    ],
)
def test_bad_literals_are_refused_before_anything_runs(literal: str, says: str) -> None:
    error = fail(SCHEMA, f"{{ echo(v: {literal}) }}")
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
    assert "Decimal" in error["message"] and says in error["message"], error["message"]


@pytest.mark.parametrize(
    ("json", "text"),
    [
        (b'"10.25"', "10.25"),
        (b"10.25", "10.25"),
        (b"0.1", "0.1"),
        (b"10", "10"),
        (b"-7", "-7"),
        (b"1E2", "100"),
        (b"100.0", "100"),  # a float's scale is not known: none is made up
        (b"2.50", "2.5"),
        (b"1e-7", "0.0000001"),
        (b"0.000015", "0.000015"),
        (b"123456789012.345", "123456789012.345"),  # 15 digits: exact
        (b"9223372036854775807", "9223372036854775807"),  # an int: exact, any length
        (b"20000000000000000000", "20000000000000000000"),  # past 64 bits: a float, exact
        (b'"0.123456789012345678"', "0.123456789012345678"),
    ],
)
def test_json_variables_decoded_as_the_server_does(json: bytes, text: str) -> None:
    value = orjson.loads(json)  # what the HTTP and WebSocket layers hand over
    assert run(SCHEMA, ECHO, {"v": value}) == {"echo": text}


@pytest.mark.parametrize(
    ("json", "says"),
    [
        (b"0.30000000000000004", "15 significant digits"),  # 0.1 + 0.2: not what was meant
        (b"1234567890.1234567", "15 significant digits"),
        (b"18446744073709551617", "15 significant digits"),  # past 64 bits: a rounded float
        (b'"NaN"', "finite"),
        (b'""', "empty"),
        (b'"1e400"', "too large"),
        (b"true", "got True"),
        (b'{"amount": "1"}', "got dict"),
        (b"[1]", "got list"),
    ],
)
def test_bad_variables_are_refused(json: bytes, says: str) -> None:
    error = fail(SCHEMA, ECHO, {"v": orjson.loads(json)})
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert says in error["message"], error["message"]


def test_floats_that_json_cannot_carry_are_refused_too() -> None:
    # Python callers (tests, internal executions) can pass these; JSON cannot.
    for value in (float("nan"), float("inf"), -float("inf")):
        error = fail(SCHEMA, ECHO, {"v": value})
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "finite" in error["message"]


def test_null_stays_null_and_absent_stays_absent() -> None:
    assert run(SCHEMA, "{ maybe(v: null) }") == {"maybe": "None"}
    assert run(SCHEMA, "{ maybe }") == {"maybe": "None"}
    assert run(SCHEMA, '{ maybe(v: "2.50") }') == {"maybe": "Decimal('2.50')"}


@pytest.mark.parametrize(
    "value",
    ["0", "-0.0001", "1.10", "99999999999999999999", "-123456789.123456789", "1e-18"],
)
def test_what_it_parses_it_prints_back_exactly(value: str) -> None:
    parsed = parse_decimal(value)
    assert Decimal(plain(parsed)) == parsed
    assert "E" not in plain(parsed) and "e" not in plain(parsed)


def test_limits_at_their_edges() -> None:
    assert parse_decimal("9" * 20) == Decimal("9" * 20)
    assert parse_decimal("0." + "0" * 17 + "1") == Decimal("1e-18")
    widest = "1" * 10 + "." + "1" * (MAX_DIGITS - 10)
    assert plain(parse_decimal(widest)) == widest
    for bad in ("1" * 21, "0." + "0" * 18 + "1", widest + "1", "9" * 11 + "." + "9" * 18):
        with pytest.raises(InvalidDecimal):
            parse_decimal(bad)
    for too_big in (10**20, 2**200):
        with pytest.raises(InvalidDecimal, match="too large"):
            parse_decimal(too_big)
    # A Decimal handed over by a caller gets the same rules.
    assert parse_decimal(Decimal("5E+2")) == Decimal(500)
    assert str(parse_decimal(Decimal("5E+2"))) == "500"
    with pytest.raises(InvalidDecimal):
        parse_decimal(Decimal("sNaN"))
