"""Hypothesis strategies over a GraphQL schema: random valid subscription documents
(aliases, ``__typename``, named and inline fragments, ``@skip``/``@include`` with
variables, nested objects and lists) and random values for the objects a strawberry
schema resolves (valid most of the time; sometimes null where null is not allowed,
non-finite or out-of-range numbers, values of the wrong type, exception instances).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    parse,
    validate,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from server.delivery.compiled import Unsupported, compile_plan
from server.delivery.execution import Execution, ExecutionStats, plain_errors

BACKREF = "strawberry-definition"


@dataclass
class Document:
    text: str
    variables: dict[str, Any]
    root_field: str


@dataclass
class _Doc:
    schema: GraphQLSchema
    variables: dict[str, tuple[str, Any]] = field(default_factory=dict)  # name -> (decl, value)
    fragments: list[str] = field(default_factory=list)
    names: int = 0

    def fresh(self, prefix: str) -> str:
        self.names += 1
        return f"{prefix}{self.names}"


def _directives(draw: st.DrawFn, doc: _Doc) -> str:
    """Nothing mostly; else @skip/@include with a literal or a (defaulted) variable."""
    kind = draw(st.integers(0, 9))
    if kind < 6:
        return ""
    directive = draw(st.sampled_from(["skip", "include"]))
    if kind == 6:
        return f" @{directive}(if: {draw(st.sampled_from(['true', 'false']))})"
    name = doc.fresh("v")
    value = draw(st.booleans())
    if kind == 7:
        # A variable with a default, not given: the default decides.
        doc.variables[name] = (f"${name}: Boolean = {str(value).lower()}", None)
    else:
        doc.variables[name] = (f"${name}: Boolean!", value)
    return f" @{directive}(if: ${name})"


def _selection_set(draw: st.DrawFn, doc: _Doc, type_: GraphQLNamedType, depth: int) -> str:
    parts = [_selection(draw, doc, type_, depth) for _ in range(draw(st.integers(1, 5)))]
    return "{ " + " ".join(parts) + " }"


def _possible(doc: _Doc, type_: GraphQLNamedType) -> list[GraphQLObjectType]:
    if is_abstract_type(type_):
        return list(doc.schema.get_possible_types(type_))  # type: ignore[arg-type]
    assert isinstance(type_, GraphQLObjectType)
    return [type_]


def _selection(draw: st.DrawFn, doc: _Doc, type_: GraphQLNamedType, depth: int) -> str:
    kind = draw(st.integers(0, 11))
    if kind == 0:
        return "__typename" + _directives(draw, doc)
    if kind in (1, 2) and depth > 0:
        # An inline fragment, on one of the possible types or with no condition.
        on = draw(st.sampled_from([None, *_possible(doc, type_)]))
        condition = f" on {on.name}" if on is not None else ""
        inner = on if on is not None else type_
        return (
            f"...{condition}{_directives(draw, doc)} {_selection_set(draw, doc, inner, depth - 1)}"
        )
    if kind == 3 and depth > 0:
        on = draw(st.sampled_from(_possible(doc, type_)))
        name = doc.fresh("F")
        body = _selection_set(draw, doc, on, depth - 1)
        doc.fragments.append(f"fragment {name} on {on.name} {body}")
        return f"...{name}{_directives(draw, doc)}"
    if isinstance(type_, GraphQLUnionType):
        return "__typename"
    assert isinstance(type_, GraphQLObjectType | GraphQLInterfaceType)
    name, definition = draw(st.sampled_from(sorted(type_.fields.items())))
    return _field(draw, doc, name, definition, depth)


def _field(draw: st.DrawFn, doc: _Doc, name: str, definition: GraphQLField, depth: int) -> str:
    alias = f"{doc.fresh('a')}: " if draw(st.integers(0, 3)) == 0 else ""
    named = get_named_type(definition.type)
    args = []
    for arg_name, arg in definition.args.items():
        # Int arguments get a literal (always when required, else now and then).
        assert get_named_type(arg.type).name == "Int", "only Int arguments are generated"
        if isinstance(arg.type, GraphQLNonNull) or draw(st.booleans()):
            args.append(f"{arg_name}: {draw(st.integers(-5, 5))}")
    arguments = f"({', '.join(args)})" if args else ""
    # Aliased when it has arguments: the same key with other arguments cannot merge.
    if arguments and not alias:
        alias = f"{doc.fresh('a')}: "
    text = f"{alias}{name}{arguments}{_directives(draw, doc)}"
    if is_leaf_type(named):
        return text
    if depth <= 0:
        return f"{text} {{ __typename }}"
    return f"{text} {_selection_set(draw, doc, named, depth - 1)}"


@st.composite
def subscription_documents(
    draw: st.DrawFn, schema: GraphQLSchema, root_args: dict[str, str], max_depth: int = 4
) -> Document:
    """A valid subscription operation on one of ``root_args``' fields (with those
    arguments), its variables' values, and the field's name."""
    sub = schema.subscription_type
    assert sub is not None
    doc = _Doc(schema)
    name = draw(st.sampled_from(sorted(root_args)))
    definition = sub.fields[name]
    alias = "r: " if draw(st.booleans()) else ""
    named = get_named_type(definition.type)
    selection = f"{alias}{name}{root_args[name]} {_selection_set(draw, doc, named, max_depth)}"
    wrap = draw(st.integers(0, 3))
    if wrap == 1:  # the root field inside an inline fragment on the root type
        selection = f"... on {sub.name} {{ {selection} }}"
    elif wrap == 2:
        fragment = doc.fresh("Root")
        doc.fragments.append(f"fragment {fragment} on {sub.name} {{ {selection} }}")
        selection = f"...{fragment}"
    declarations = ", ".join(decl for decl, _ in doc.variables.values())
    header = f"subscription Op({declarations})" if declarations else "subscription Op"
    text = " ".join([f"{header} {{ {selection} }}", *doc.fragments])
    values = {n: v for n, (decl, v) in doc.variables.items() if "=" not in decl}
    return Document(text, values, name)


# --- the two executions compared --------------------------------------------------------


def executor_for(schema: Any, document: Document) -> Any:
    """graphql-core's executor for ``document`` on a strawberry ``schema``, as a group
    builds it (the document must be valid)."""
    ast = parse(document.text)
    errors = validate(schema._schema, ast)
    assert not errors, (document.text, errors)
    built = schema.execution_context_class.build(
        schema._schema, ast, raw_variable_values=document.variables, operation_name="Op"
    )
    assert not isinstance(built, list), built
    return built


def compiled_and_reference(schema: Any, document: Document) -> tuple[Execution, Execution]:
    """The document executed by its compiled plan, and by graphql-core."""
    executor = executor_for(schema, document)
    stats = ExecutionStats()
    compiled = Execution(
        executor, plan=compile_plan(executor, schema), format_errors=plain_errors, stats=stats
    )
    reference = Execution(
        executor, plan=Unsupported("reference"), format_errors=plain_errors, stats=stats
    )
    return compiled, reference


def exactness_settings(max_examples: int) -> settings:
    """Hypothesis settings of the exactness tests: documents and events are large by
    nature, and compiling takes a while; no deadline."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


def outcome(execution: Execution, value: Any) -> bytes | str:
    """The payload's bytes, or what it raised."""
    try:
        return execution.payload(value)[0]
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


# --- values -----------------------------------------------------------------------------


class Opaque:
    """An object of no type the schema knows (its str() is its name)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Opaque({self.name!r})"


_ODD = st.one_of(
    st.none(),
    st.builds(ValueError, st.sampled_from(["boom", "bad value"])),
    st.builds(Opaque, st.sampled_from(["x", "y"])),
    st.sampled_from([math.nan, math.inf, -math.inf, 2**31, 2**63, -(2**31) - 1]),
    st.sampled_from(["", "12", "1.5", "abc", "true"]),
    st.sampled_from([True, False, 0, 1.0, 1.5, Decimal("2.50"), Decimal("3")]),
    st.just([1, 2]),
    st.just({"a": 1}),
)


def _scalar(draw: st.DrawFn, type_: GraphQLScalarType) -> Any:
    name = type_.name
    if name in ("Float", "Timestamp"):
        return draw(st.floats(allow_nan=False, allow_infinity=False, width=64))
    if name == "Int":
        return draw(st.integers(-(2**31), 2**31 - 1))
    if name == "Long":
        return draw(st.integers(-(2**63), 2**63 - 1))
    if name == "Boolean":
        return draw(st.booleans())
    if name in ("String", "ID"):
        return draw(st.text(max_size=8))
    if name == "Money":
        return draw(st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False))
    if name == "JSON":
        leaf = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=4))
        return draw(st.dictionaries(st.text(max_size=4), leaf, max_size=3))
    return draw(st.one_of(st.text(max_size=5), st.integers(0, 100)))


def _leaf(draw: st.DrawFn, type_: GraphQLNamedType) -> Any:
    if isinstance(type_, GraphQLEnumType):
        cls = getattr(type_, "wrapped_cls", None)
        members = list(cls) if cls is not None else [v.value for v in type_.values.values()]
        return draw(st.sampled_from(members))
    assert isinstance(type_, GraphQLScalarType)
    return _scalar(draw, type_)


def _object(draw: st.DrawFn, schema: GraphQLSchema, type_: GraphQLObjectType, depth: int) -> Any:
    definition = (type_.extensions or {}).get(BACKREF)
    assert definition is not None, f"{type_.name} is not a strawberry type"
    instance = object.__new__(definition.origin)
    for f in definition.fields:
        if f.base_resolver is not None:
            continue
        graphql_field = type_.fields[f.graphql_name or _camel(f.python_name)]
        object.__setattr__(
            instance, f.python_name, draw(values(schema, graphql_field.type, depth - 1))
        )
    return instance


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


@st.composite
def values(draw: st.DrawFn, schema: GraphQLSchema, type_: GraphQLOutputType, depth: int = 4) -> Any:
    """A value for a position of ``type_``: valid 9 times in 10 at each position."""
    if draw(st.integers(0, 19)) == 0:
        return draw(_ODD)
    non_null = isinstance(type_, GraphQLNonNull)
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if not non_null and draw(st.integers(0, 5)) == 0:
        return None
    if isinstance(inner, GraphQLList):
        items = draw(st.lists(values(schema, inner.of_type, depth - 1), max_size=3))
        return tuple(items) if draw(st.integers(0, 4)) == 0 else items
    named: GraphQLNamedType = inner  # type: ignore[assignment]
    if is_leaf_type(named):
        return _leaf(draw, named)
    if depth <= 0:
        return None if not non_null else draw(_ODD)
    if is_abstract_type(named):
        options = _possible_types(schema, named)
        return _object(draw, schema, draw(st.sampled_from(options)), depth)
    assert isinstance(named, GraphQLObjectType)
    return _object(draw, schema, named, depth)


def _possible_types(schema: GraphQLSchema, type_: GraphQLNamedType) -> list[GraphQLObjectType]:
    if is_abstract_type(type_):
        return list(schema.get_possible_types(type_))  # type: ignore[arg-type]
    assert isinstance(type_, GraphQLObjectType)
    return [type_]
