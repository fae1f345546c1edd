"""Query hardening on the assembled schema: size, depth, alias and cost limits refuse
an operation before any resolver runs, for queries and subscriptions alike, with a
code; production hides introspection and suggestions, development does not."""

from __future__ import annotations

from enum import Enum
from typing import Any

import pytest
import strawberry
from graphql import GraphQLSyntaxError, get_introspection_query, parse
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from schema import build_schema
from schema.cost import COST_CEILING, operation_cost
from schema.hardening import DEFAULT_LIMITS, count_aliases, hardening_extensions, operation_depths

LIMITS = DEFAULT_LIMITS


class IdleServices:
    """No access control (the admission gate lets everything through), and none of
    the services a resolver reaches for next."""

    access = None


class Probe:
    """A context that counts every look at its services: the admission gate and every
    resolver start there, so a refused operation must leave ``touched`` at 0."""

    def __init__(self, budget: int | None = None) -> None:
        self.touched = 0
        if budget is not None:
            self.query_cost_budget = budget

    @property
    def services(self) -> IdleServices:
        self.touched += 1
        return IdleServices()


def codes(result: ExecutionResult) -> list[str]:
    return [(e.extensions or {}).get("code", "") for e in result.errors or ()]


def nested(depth: int, leaf: str = "name") -> str:
    """``{ node { child { child ... { name } } } }``: ``depth`` fields on the path."""
    return "{ node { " + "child { " * (depth - 2) + leaf + " }" * (depth - 1) + " }"


async def first_result(schema: strawberry.Schema, query: str, **kwargs: Any) -> ExecutionResult:
    stream = await schema.subscribe(query, **kwargs)
    async for result in stream:
        await stream.aclose()
        return result
    raise AssertionError("no result")


# A small schema with recursive types and nested lists, whose resolvers count calls.


@strawberry.type
class Node:
    name: str

    @strawberry.field
    def child(self, info: strawberry.Info) -> Node:
        info.context["calls"] += 1
        return Node(name=self.name + ".c")

    @strawberry.field
    def children(self, info: strawberry.Info, limit: int = 10) -> list[Node]:
        info.context["calls"] += 1
        return [Node(name=f"{self.name}.{i}") for i in range(limit)]

    @strawberry.field
    def tags(self) -> list[str]:
        return ["a", "b"]


@strawberry.enum
class Color(Enum):
    RED = "red"
    GREEN = "green"


@strawberry.type
class TreeQuery:
    @strawberry.field
    def node(self, info: strawberry.Info) -> Node:
        info.context["calls"] += 1
        return Node(name="n")

    @strawberry.field
    def nodes(self, info: strawberry.Info, symbols: list[str]) -> list[Node]:
        info.context["calls"] += 1
        return [Node(name=s) for s in symbols]

    @strawberry.field
    def paint(self, color: Color) -> str:
        return color.value


def tree_schema(*, production: bool = False) -> strawberry.Schema:
    return strawberry.Schema(
        query=TreeQuery,
        extensions=hardening_extensions(production=production),
    )


def ctx(**extra: Any) -> dict[str, Any]:
    return {"calls": 0, **extra}


@pytest.fixture(params=[False, True], ids=["development", "production"])
def tickgraph(request: pytest.FixtureRequest) -> strawberry.Schema:
    return build_schema(production=request.param)


# --- size ------------------------------------------------------------------------------


async def test_a_10000_deep_document_is_refused_by_the_parser_near_its_start(
    tickgraph: strawberry.Schema,
) -> None:
    query = "{" + " a {" * 10_000 + " b" + " }" * 10_001
    context = Probe()
    result = await tickgraph.execute(query, context_value=context)
    assert codes(result) == ["QUERY_TOO_DEEP"] and result.data is None
    error = result.errors[0]  # type: ignore[index]
    assert "12 fields deep" in error.message
    # graphql-core gave up at its nesting limit (200 levels), about 800 characters into
    # a 60,000-character document: the rest was never read.
    assert error.locations is not None and error.locations[0].column < 1000
    assert context.touched == 0


async def test_too_many_tokens_comments_or_characters(tickgraph: strawberry.Schema) -> None:
    many_tokens = "{ " + " ".join(f"a{i}: __typename" for i in range(1000)) + " }"
    many_comments = "{ __typename\n" + "#\n" * (LIMITS.max_comments + 1) + "}"
    long_string = '{ quote(symbol: "' + "A" * LIMITS.max_source_length + '") { symbol } }'
    for query, detail in (
        (many_tokens, f"more than {LIMITS.max_tokens} tokens"),
        (many_comments, f"more than {LIMITS.max_comments} comments"),
        (long_string, f"more than {LIMITS.max_source_length} code points"),
    ):
        context = Probe()
        result = await tickgraph.execute(query, context_value=context)
        assert codes(result) == ["QUERY_TOO_LARGE"], result.errors
        assert detail in result.errors[0].message  # type: ignore[index]
        assert result.errors[0].extensions["maxTokens"] == LIMITS.max_tokens  # type: ignore[index]
        assert context.touched == 0


async def test_a_subscription_over_a_limit_gets_an_error_not_a_syntax_error(
    tickgraph: strawberry.Schema,
) -> None:
    """strawberry's graphql-transport-ws handler closes the socket (4400) when the first
    error is a GraphQLSyntaxError; a refusal must be an ordinary, coded error."""
    too_large = "subscription { feedStatus { " + "state " * 2500 + "} }"
    result = await first_result(tickgraph, too_large, context_value=Probe())
    assert isinstance(result, PreExecutionError) and codes(result) == ["QUERY_TOO_LARGE"]
    assert not isinstance(result.errors[0], GraphQLSyntaxError)  # type: ignore[index]
    # A real syntax error stays one (and still closes the socket, as the protocol says).
    broken = await first_result(tickgraph, "subscription { feedStatus {", context_value={})
    assert isinstance(broken.errors[0], GraphQLSyntaxError)  # type: ignore[index]


# --- depth and aliases -------------------------------------------------------------------


async def test_depth_counts_fields_through_fragments_and_inline_fragments() -> None:
    schema = tree_schema()
    at_limit = nested(LIMITS.max_depth)
    assert codes(await schema.execute(at_limit, context_value=ctx())) == []
    over = await schema.execute(nested(LIMITS.max_depth + 1), context_value=ctx())
    assert codes(over) == ["QUERY_TOO_DEEP"]
    assert over.errors[0].extensions == {  # type: ignore[index]
        "code": "QUERY_TOO_DEEP",
        "depth": LIMITS.max_depth + 1,
        "maxDepth": LIMITS.max_depth,
    }
    # 3 fields in the operation, then a chain of fragments adding 5 each, inline
    # fragments adding none: 3 + 5 + 5 = 13.
    five = "child { child { child { child { child { %s } } } } }"
    through_fragments = (
        "query Deep { node { child { ... on Node { ...A } } } }\n"
        "fragment A on Node { " + five % "... on Node { ...B }" + " }\n"
        "fragment B on Node { " + five % "name" + " }"
    )
    context = ctx()
    result = await schema.execute(through_fragments, context_value=context)
    assert codes(result) == ["QUERY_TOO_DEEP"] and context["calls"] == 0
    assert result.errors[0].message.startswith("Operation 'Deep' is nested 13 fields deep")  # type: ignore[index]
    depths = operation_depths(parse(through_fragments))
    assert [d for _, d in depths] == [13]


def test_depth_of_a_long_fragment_chain_needs_no_recursion() -> None:
    """Rules run before graphql-core's fragment-nesting guard, so the depth walk must
    survive a chain of fragments deeper than Python's recursion limit."""
    chain = 3000
    fragments = "\n".join(
        f"fragment F{i} on Node {{ child {{ ...F{i + 1} }} }}" for i in range(chain)
    )
    document = parse(
        "{ node { ...F0 } }\n" + fragments + f"\nfragment F{chain} on Node {{ name }}",
        no_location=True,
    )
    assert [d for _, d in operation_depths(document)] == [chain + 2]


async def test_aliases_are_limited_per_document(tickgraph: strawberry.Schema) -> None:
    allowed = "{ " + " ".join(f"a{i}: __typename" for i in range(LIMITS.max_aliases)) + " }"
    assert codes(await tickgraph.execute(allowed, context_value=Probe())) == []
    # 500 aliases fit the token limit; 1,000 do not, and are refused as too large.
    many = "{ " + " ".join(f"a{i}: __typename" for i in range(500)) + " }"
    context = Probe()
    result = await tickgraph.execute(many, context_value=context)
    assert codes(result) == ["TOO_MANY_ALIASES"] and context.touched == 0
    assert result.errors[0].extensions["aliases"] == 500  # type: ignore[index]
    # Counted as written, in fragments too (each fragment once, however often spread).
    document = parse("{ ...F ...F x: __typename } fragment F on Query { a: __typename }")
    assert count_aliases(document) == 2


# --- cost --------------------------------------------------------------------------------


def tickgraph_cost(query: str, variables: dict[str, Any] | None = None) -> int | None:
    schema = build_schema()._schema
    return operation_cost(schema, parse(query), variables=variables)


def test_cost_follows_limits_list_arguments_and_defaults() -> None:
    bars = '{ bars(symbol: "A", timeframe: M1, limit: 5000) { open close } }'
    assert tickgraph_cost(bars) == 1 + 5000 * 2
    # trades(limit) defaults to 50 in the schema.
    assert tickgraph_cost('{ trades(symbol: "A") { price size } }') == 1 + 50 * 2
    assert tickgraph_cost('{ quotes(symbols: ["A", "B", "C"]) { bidPrice } }') == 1 + 3
    # A single value is coerced to a one-item list.
    assert tickgraph_cost('{ snapshots(symbols: "A") { symbol stale } }') == 1 + 2
    # A list field with no size argument counts the default size; scalar lists cost 1.
    assert tickgraph_cost("{ symbols { symbol } feedStatus { topics rejected { count } } }") == (
        (1 + 10) + (1 + 1 + (1 + 10))
    )
    # Subscriptions are sized by their symbols: one snapshot, then a stream, per symbol.
    assert tickgraph_cost('subscription { quotes(symbols: ["A", "B"]) { bidPrice } }') == 1 + 2
    # __typename and introspection cost nothing.
    assert tickgraph_cost("{ __typename __schema { types { name } } }") == 0


def test_cost_reads_variables_and_their_defaults() -> None:
    query = (
        'query($n: Int, $s: [String!]!) { trades(symbol: "A", limit: $n) { price } '
        "quotes(symbols: $s) { bidPrice } }"
    )
    assert tickgraph_cost(query, {"n": 700, "s": ["A"] * 40}) == (1 + 700) + (1 + 40)
    # A variable not given falls back to its default, then to the argument's default.
    with_default = 'query($n: Int = 7) { trades(symbol: "A", limit: $n) { price } }'
    assert tickgraph_cost(with_default) == 1 + 7
    no_default = 'query($n: Int) { trades(symbol: "A", limit: $n) { price } }'
    assert tickgraph_cost(no_default) == 1 + 50
    # Variables inside list literals count as items.
    assert tickgraph_cost("query($a: String!) { quotes(symbols: [$a, $a]) { bidPrice } }") == 1 + 2


def test_nested_lists_multiply_and_fragments_count_where_spread() -> None:
    schema = tree_schema()._schema
    query = """
        query { nodes(symbols: ["a", "b", "c"]) { ...Kids ... on Node { tags } } }
        fragment Kids on Node { children(limit: 20) { children { name } } }
    """
    # nodes: 3 items x (Kids + tags); Kids: 1 + 20 x (1 + 10 x 1) (children's default is 10).
    kids = 1 + 20 * (1 + 10 * 1)
    assert operation_cost(schema, parse(query)) == 1 + 3 * (kids + 1)


def test_a_fragment_bomb_is_costed_without_expanding_it() -> None:
    """Each fragment spreads the next one twice: 2**60 leaves, computed in one pass per
    fragment and clamped to what a client can read as a number."""
    levels = 60
    fragments = "\n".join(
        f"fragment F{i} on Node {{ child {{ ...F{i + 1} }} children(limit: 2) {{ ...F{i + 1} }} }}"
        for i in range(levels)
    )
    query = "{ node { ...F0 } }\n" + fragments + f"\nfragment F{levels} on Node {{ name }}"
    cost = operation_cost(tree_schema()._schema, parse(query))
    assert cost == COST_CEILING


async def test_a_costly_query_is_refused_before_any_resolver_runs() -> None:
    schema = tree_schema()
    exploding = """{ nodes(symbols: ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]) {
        children(limit: 100) { children(limit: 100) { name tags } } } }"""
    context = ctx()
    result = await schema.execute(exploding, context_value=context)
    expected_cost = 1 + 10 * (1 + 100 * (1 + 100 * 2))
    assert codes(result) == ["QUERY_TOO_COSTLY"] and result.data is None
    assert result.errors[0].extensions == {  # type: ignore[index]
        "code": "QUERY_TOO_COSTLY",
        "cost": expected_cost,
        "budget": LIMITS.cost_budget,
    }
    assert context["calls"] == 0
    # The same shape at a size within budget runs.
    small = '{ nodes(symbols: ["a"]) { children(limit: 3) { children(limit: 3) { name } } } }'
    context = ctx()
    result = await schema.execute(small, context_value=context)
    assert result.errors is None and context["calls"] == 1 + 1 + 3


async def test_the_budget_is_the_callers_and_variables_count_per_request() -> None:
    schema = tree_schema()
    query = "query($n: Int!) { node { children(limit: $n) { name } } }"
    # Same document, so the validation result is cached; the cost is not.
    assert codes(await schema.execute(query, {"n": 50}, context_value=ctx())) == []
    refused = await schema.execute(query, {"n": 50}, context_value=ctx(query_cost_budget=40))
    assert codes(refused) == ["QUERY_TOO_COSTLY"]
    assert refused.errors[0].extensions["budget"] == 40  # type: ignore[index]
    assert (
        codes(await schema.execute(query, {"n": 30}, context_value=ctx(query_cost_budget=40))) == []
    )
    huge = await schema.execute(query, {"n": 1_000_000}, context_value=ctx())
    assert codes(huge) == ["QUERY_TOO_COSTLY"]


async def test_subscriptions_are_limited_before_they_start(tickgraph: strawberry.Schema) -> None:
    context = Probe()
    deep = (
        'subscription { bars(symbol: "A", timeframe: M1) { bar { '
        + "x { " * 12
        + "y"
        + " }" * 12
        + " } } }"
    )
    costly = "subscription($s: [String!]!) { quotes(symbols: $s) { symbol bidPrice askPrice } }"
    aliased = "subscription { feedStatus { " + " ".join(f"a{i}: state" for i in range(40)) + " } }"
    for query, variables, code in (
        (deep, None, "QUERY_TOO_DEEP"),
        (costly, {"s": ["AAPL"] * 5000}, "QUERY_TOO_COSTLY"),
        (aliased, None, "TOO_MANY_ALIASES"),
    ):
        result = await first_result(
            tickgraph, query, variable_values=variables, context_value=context
        )
        assert isinstance(result, PreExecutionError), result
        assert codes(result)[0] == code
    # The budget is the caller's: 40 symbols x 3 fields is over a budget of 100.
    tight = await first_result(
        tickgraph, costly, variable_values={"s": ["AAPL"] * 40}, context_value=Probe(budget=100)
    )
    assert codes(tight) == ["QUERY_TOO_COSTLY"]
    assert tight.errors[0].extensions == {  # type: ignore[index]
        "code": "QUERY_TOO_COSTLY",
        "cost": 1 + 40 * 3,
        "budget": 100,
    }
    assert context.touched == 0
    # Within budget, the same subscription starts (and reaches for its services).
    started = await first_result(
        tickgraph, costly, variable_values={"s": ["AAPL"]}, context_value=context
    )
    assert context.touched >= 1 and codes(started) == ["INTERNAL"]


# --- production and development ------------------------------------------------------


async def test_production_refuses_introspection_but_not_typename() -> None:
    schema = build_schema(production=True)
    for query in (
        "{ __schema { queryType { name } } }",
        '{ __type(name: "Quote") { fields { name } } }',
        get_introspection_query(),
    ):
        context = Probe()
        result = await schema.execute(query, context_value=context)
        assert "INTROSPECTION_DISABLED" in codes(result), query
        assert result.data is None and context.touched == 0
    typename = await schema.execute("{ __typename }", context_value=Probe())
    assert typename.errors is None and typename.data == {"__typename": "Query"}


async def test_development_allows_graphiqls_introspection() -> None:
    schema = build_schema(production=False)
    full = get_introspection_query(
        descriptions=True,
        specified_by_url=True,
        directive_is_repeatable=True,
        schema_description=True,
        input_value_deprecation=True,
        one_of=True,
    )
    result = await schema.execute(full, context_value=Probe())
    assert result.errors is None and result.data is not None
    assert any(t["name"] == "Quote" for t in result.data["__schema"]["types"])


async def test_suggestions_only_in_development() -> None:
    typo = '{ quote(symbol: "A") { bidPrce } bars(symbol: "A", timeframe: M2) { open } }'
    dev = await build_schema(production=False).execute(typo, context_value=Probe())
    prod = await build_schema(production=True).execute(typo, context_value=Probe())
    assert [e.message for e in dev.errors or ()] == [
        "Cannot query field 'bidPrce' on type 'Quote'. Did you mean 'bidPrice', 'midPrice', "
        "or 'bidSize'?",
        "Value 'M2' does not exist in 'Timeframe' enum. Did you mean the enum value 'M1' or 'M5'?",
    ]
    assert [e.message for e in prod.errors or ()] == [
        "Cannot query field 'bidPrce' on type 'Quote'.",
        "Value 'M2' does not exist in 'Timeframe' enum.",
    ]
    # Suggestions from variable coercion (at execution, not validation) go too.
    bad_variable = "query($c: Color!) { paint(color: $c) }"
    dev_var = await tree_schema(production=False).execute(
        bad_variable, {"c": "REED"}, context_value=ctx()
    )
    prod_var = await tree_schema(production=True).execute(
        bad_variable, {"c": "REED"}, context_value=ctx()
    )
    assert "Did you mean the enum value 'RED'" in dev_var.errors[0].message  # type: ignore[index]
    assert prod_var.errors[0].message == (  # type: ignore[index]
        "Variable '$c' has invalid value: Value 'REED' does not exist in 'Color' enum."
    )
