"""The access table covers the schema exactly, root fields are worked out as the
executor will run them, and the docs show the same table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from graphql import OperationDefinitionNode, parse

from schema import build_schema
from schema.access_policy import POLICY, Level, root_fields

ROOT = Path(__file__).resolve().parents[2]


def schema_root_fields() -> set[tuple[str, str]]:
    graphql_schema = build_schema()._schema
    found: set[tuple[str, str]] = set()
    for root in (
        graphql_schema.query_type,
        graphql_schema.mutation_type,
        graphql_schema.subscription_type,
    ):
        assert root is not None
        found |= {(root.name, name) for name in root.fields}
    return found


def test_every_root_field_has_exactly_one_decision() -> None:
    published = schema_root_fields()
    assert published - POLICY.keys() == set(), "root fields nobody decided about"
    assert POLICY.keys() - published == set(), "decisions about fields that do not exist"


def test_nothing_an_api_key_of_scope_read_may_run_is_a_mutation() -> None:
    # read = queries and subscriptions only: every mutation needs more than USER.
    for (root, name), level in POLICY.items():
        if root == "Mutation":
            assert level in (Level.ENTRY, Level.TRADING, Level.ACCOUNT), name


def test_the_security_page_shows_the_table() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    rows = set(re.findall(r"^\| `(Query|Mutation|Subscription)\.(\w+)` \| (\w+) \|", text, re.M))
    assert rows == {(root, name, level.value) for (root, name), level in POLICY.items()}


def fields(document: str, variables: dict[str, object] | None = None) -> set[str]:
    doc = parse(document)
    operation = next(d for d in doc.definitions if isinstance(d, OperationDefinitionNode))
    return root_fields(doc, operation, variables)


@pytest.mark.parametrize(
    ("document", "variables", "expected"),
    [
        ('{ quote(symbol: "A") { bidPrice } }', None, {"quote"}),
        # Aliases do not hide the field.
        ('{ login: quote(symbol: "A") { bidPrice } }', None, {"quote"}),
        # Inline fragments, with and without a type condition.
        ('{ ... on Query { quote(symbol: "A") { bidPrice } } }', None, {"quote"}),
        ("{ ... { me { user { id } } } }", None, {"me"}),
        # A fragment whose name looks like something allowed.
        (
            "query { ...login } fragment login on Query { feedStatus { state } }",
            None,
            {"feedStatus"},
        ),
        # Nested spreads, and a spread used twice.
        (
            "{ ...a ...a } fragment a on Query { ...b symbols { symbol } } "
            "fragment b on Query { alerts { id } }",
            None,
            {"symbols", "alerts"},
        ),
        # @skip / @include, literal and variable, with a default.
        ("{ me @skip(if: true) { user { id } } symbols { symbol } }", None, {"symbols"}),
        ("{ me @include(if: false) { user { id } } }", None, set()),
        ("query($x: Boolean!) { me @include(if: $x) { user { id } } }", {"x": False}, set()),
        ("query($x: Boolean!) { me @include(if: $x) { user { id } } }", {"x": True}, {"me"}),
        ("query($x: Boolean = true) { me @skip(if: $x) { user { id } } }", None, set()),
        # Unreadable conditions count as included: the gate checks more, never less.
        ("query($x: Boolean!) { me @include(if: $x) { user { id } } }", None, {"me"}),
        ("query($x: Boolean!) { me @include(if: $x) { user { id } } }", {"x": "no"}, {"me"}),
        # Directives on fragments.
        ("{ ... @skip(if: true) { me { user { id } } } symbols { symbol } }", None, {"symbols"}),
        (
            "{ ...f @include(if: false) } fragment f on Query { me { user { id } } }",
            None,
            set(),
        ),
        # Mutations and subscriptions alike.
        (
            'mutation { ...m } fragment m on Mutation { deleteAlert(id: "x") }',
            None,
            {"deleteAlert"},
        ),
        ("subscription { ... on Subscription { alertEvents { id } } }", None, {"alertEvents"}),
        # A fragment on another type does not apply at the root.
        ("{ ... on Quote { symbol } symbols { symbol } }", None, {"symbols"}),
    ],
)
def test_root_fields_are_the_fields_that_will_run(
    document: str, variables: dict[str, object] | None, expected: set[str]
) -> None:
    assert fields(document, variables) == expected
