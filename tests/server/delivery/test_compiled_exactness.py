"""A compiled plan's payload equals graphql-core's, byte for byte.

Random valid selections over every subscription field of the real schema (aliases,
``__typename``, named and inline fragments, ``@skip``/``@include`` with literals,
variables and defaulted variables, nested objects and lists, enums, custom scalars),
random events for them (valid most of the time; sometimes a null where none is
allowed, a non-finite or out-of-range number, a value of the wrong type, an exception
instance), and the two payloads compared as the bytes a subscriber would receive.
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import get_named_type
from hypothesis import given
from hypothesis import strategies as st

from schema import build_schema
from server.delivery.compiled import compile_plan
from tests.support.selections import (
    Document,
    compiled_and_reference,
    exactness_settings,
    executor_for,
    outcome,
    subscription_documents,
    values,
)

SCHEMA = build_schema()
GRAPHQL_SCHEMA = SCHEMA._schema

#: Valid arguments for each subscription field (they do not change what is selected).
ROOT_ARGS = {
    "quotes": '(symbols: ["AMZN", "GOOG"], throttleMs: 0)',
    "quoteBatches": '(symbols: ["AMZN"], windowMs: 50)',
    "trades": '(symbols: ["AMZN"])',
    "feedStatus": "",
    "bars": '(symbol: "AMZN", timeframe: M1)',
    "indicators": '(symbol: "AMZN", timeframe: M5, specs: [{kind: SMA, period: 5}, '
    "{kind: MACD, fast: 12, slow: 26, signal: 9}, {kind: BBANDS, stdDev: 1.5}])",
    "alertEvents": "",
    "orderUpdates": "(after: null)",
    "positions": "(throttleMs: 0)",
    "account": "(throttleMs: 250)",
    # Streamed per subscriber (schema/analysis.py), but the same types must stay exact
    # should they ever be multiplexed.
    "analysis": '(symbol: "AMZN", question: "q")',
    "portfolioReview": '(question: "q")',
}


def test_every_subscription_field_is_covered() -> None:
    assert GRAPHQL_SCHEMA.subscription_type is not None
    assert set(GRAPHQL_SCHEMA.subscription_type.fields) == set(ROOT_ARGS)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Document, list[Any]]:
    document = draw(subscription_documents(GRAPHQL_SCHEMA, ROOT_ARGS))
    sub = GRAPHQL_SCHEMA.subscription_type
    assert sub is not None
    root_type = sub.fields[document.root_field].type
    events = draw(st.lists(values(GRAPHQL_SCHEMA, root_type), min_size=1, max_size=4))
    return document, events


@exactness_settings(400)
@given(cases())
def test_compiled_payload_is_graphql_cores_byte_for_byte(case: tuple[Document, list[Any]]) -> None:
    document, events = case
    compiled, reference = compiled_and_reference(SCHEMA, document)
    assert compiled.plan is not None, compiled.unsupported
    for event in events:
        assert outcome(compiled, event) == outcome(reference, event), document.text


@pytest.mark.parametrize("root_field", sorted(ROOT_ARGS))
def test_each_root_field_compiles_without_generic_resolvers(root_field: str) -> None:
    """The schema's subscription types resolve on the fast paths: attribute reads and
    plain methods, no info objects (a strawberry upgrade that changed that would show
    here, not as a silent slowdown)."""
    sub = GRAPHQL_SCHEMA.subscription_type
    assert sub is not None

    def leaves(type_: Any, depth: int = 3) -> str:
        named = get_named_type(type_)
        fields = getattr(named, "fields", None)
        if not fields:
            return ""
        parts = []
        for name, f in fields.items():
            inner = leaves(f.type, depth - 1) if depth else ""
            if getattr(get_named_type(f.type), "fields", None):
                if inner:
                    parts.append(f"{name} {{ {inner} }}")
            else:
                parts.append(name)
        return " ".join(parts)

    text = (
        f"subscription Op {{ {root_field}{ROOT_ARGS[root_field]} "
        f"{{ {leaves(sub.fields[root_field].type)} }} }}"
    )
    executor = executor_for(SCHEMA, Document(text, {}, root_field))
    plan = compile_plan(executor, SCHEMA)
    assert plan.signature is not None  # pure: shareable between groups
    assert set(plan.resolutions) <= {"RootValue", "Attribute", "Method", "TypeName"}
    assert plan.resolutions["Attribute"] > 3


def test_errors_have_graphql_cores_locations_and_paths() -> None:
    text = (
        'subscription Op { quotes(symbols: ["AMZN"]) { symbol\n  bidPrice\n  q: indicators '
        "midPrice } }"
    )
    compiled, reference = compiled_and_reference(SCHEMA, Document(text, {}, "quotes"))
    from schema.market import Quote

    quote = object.__new__(Quote)
    for name, value in {
        "symbol": "AMZN",
        "bid_price": float("nan"),
        "ask_price": "x",
        "indicators": [1, None, 3],
    }.items():
        object.__setattr__(quote, name, value)
    mine = compiled.payload(quote)[0]
    assert mine == reference.payload(quote)[0]
    # bidPrice (NaN) is non-null: the error nulls the whole (non-null) quote, and data.
    assert mine.startswith(b'{"data":null,"errors":[{"message":"Float cannot represent')
    assert b'"locations":[{"line":2,"column":3}],"path":["quotes","bidPrice"]' in mine


def test_a_result_json_cannot_hold_is_an_error_for_its_subscribers() -> None:
    text = "subscription Op { alertEvents { symbol values } }"
    compiled, reference = compiled_and_reference(SCHEMA, Document(text, {}, "alertEvents"))
    from schema.alerts import AlertEvent, AlertEventKind

    event = AlertEvent(
        id="e1",
        alert_id="a1",
        symbol="AMZN",
        fired_at=1.0,
        key="k",
        values={"n": 2**70},
        kind=AlertEventKind.FIRING,
    )  # type: ignore[arg-type]
    mine = compiled.payload(event)
    assert mine == reference.payload(event)
    assert mine == (
        b'{"data":null,"errors":[{"message":"the result could not be encoded: '
        b'Integer exceeds 64-bit range"}]}',
        False,
    )
