"""Documents too expensive to validate are refused before validation; real ones pass."""

from __future__ import annotations

import pytest
from graphql import get_introspection_query, parse, validate

from schema import build_schema
from schema.complexity import ComplexityLimits, measure, too_complex

LIMITS = ComplexityLimits()


def refused(document: str) -> bool:
    return too_complex(parse(document, max_tokens=100_000), LIMITS) is not None


REAL = [
    get_introspection_query(),
    '{ quote(symbol: "AMZN") { symbol bidPrice askPrice } snapshot(symbol: "AMZN") '
    "{ day { open high low } } }",
    "query { ...q ...q } fragment q on Query { symbols { symbol inUniverse } }",
    # A field requested by several fragments, as component-based clients do.
    "{ me { ...a ...b ...c user { id } } } fragment a on Me { user { id email } } "
    "fragment b on Me { user { id tier } } fragment c on Me { user { id } limits { name } }",
]

ATTACKS = {
    "one field repeated": "{ " + " ".join("feedStatus { state }" for _ in range(400)) + " }",
    "typename repeated": "{ " + " ".join("__typename" for _ in range(1500)) + " }",
    "conflicting arguments": "{ "
    + " ".join(f'quote(symbol: "S{i}") {{ bidPrice }}' for i in range(300))
    + " }",
    "many fragments on one field": "{ "
    + " ".join(f"...f{i}" for i in range(150))
    + " } "
    + " ".join(f"fragment f{i} on Query {{ feedStatus {{ state }} }}" for i in range(150)),
    "nested repetition": "{ "
    + " ".join("feedStatus { " + " ".join("state" for _ in range(16)) + " }" for _ in range(16))
    + " }",
    "fragment doubling": "{ ...L0 } fragment L12 on Query { feedStatus { state } } "
    + " ".join(f"fragment L{i} on Query {{ ...L{i + 1} ...L{i + 1} }}" for i in range(12)),
}


@pytest.mark.parametrize("document", REAL)
def test_real_documents_pass(document: str) -> None:
    assert not refused(document)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_documents_that_would_stall_validation_are_refused(name: str) -> None:
    error = too_complex(parse(ATTACKS[name], max_tokens=100_000), LIMITS)
    assert error is not None and error.extensions["code"] == "QUERY_TOO_COMPLEX"


def test_expansion_is_counted_not_walked() -> None:
    # 2^60 fields if expanded: measuring stops at the limit instead of walking them.
    document = "{ ...L0 } fragment L60 on Query { symbols { symbol } } " + " ".join(
        f"fragment L{i} on Query {{ ...L{i + 1} ...L{i + 1} }}" for i in range(60)
    )
    found = measure(parse(document), LIMITS)
    assert found.fields == LIMITS.max_fields + 1


def test_fragment_cycles_are_left_to_validation() -> None:
    document = (
        "{ ...a } fragment a on Query { ...b } fragment b on Query { ...a symbols { symbol } }"
    )
    assert not refused(document)
    assert validate(build_schema()._schema, parse(document))  # NoFragmentCycles refuses it


async def test_the_schema_refuses_them_with_the_code_before_any_other_error() -> None:
    result = await build_schema().execute(ATTACKS["one field repeated"])
    assert result.errors and result.errors[0].extensions["code"] == "QUERY_TOO_COMPLEX"
