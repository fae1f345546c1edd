"""Limits every operation must pass before it runs, and what production hides.

Every operation - query, mutation, and subscription over graphql-transport-ws - goes
through strawberry's parse and validation steps (``Schema.execute`` and
``Schema.stream`` both run the extension hooks and validation rules), so the limits
live there:

* size, at parse time: at most ``max_tokens`` lexical tokens, ``max_comments``
  comments and ``max_source_length`` characters (graphql-core's parser stops at the
  first token over the limit, so a huge document costs no more than a small one);
* validation work, before validation: a document whose fields would cost
  graphql-core's overlapping-fields rule more than a budget of comparisons is
  refused without being validated (``schema.complexity``: that rule is quadratic in
  repeated fields, and validation cannot be interrupted once started);
* depth and aliases, as graphql-core validation rules (cached with the document's
  validation result, so a repeated document pays nothing);
* cost, per request (it depends on variables and on the caller's budget): see
  ``schema.cost``;
* in production, introspection is refused (``__typename`` still works) and "Did you
  mean ...?" hints are removed from error messages, so the schema cannot be
  enumerated by probing.

Every refusal is an ordinary GraphQL error with ``extensions.code``:
``QUERY_TOO_LARGE``, ``QUERY_TOO_COMPLEX``, ``QUERY_TOO_DEEP``, ``TOO_MANY_ALIASES``,
``QUERY_TOO_COSTLY``, ``INTROSPECTION_DISABLED``. Over graphql-transport-ws each one is an ``error``
message for that operation, and the socket stays open.

Introspection fields (``__schema``, ``__type``) are exempt from the depth and cost
limits, as in strawberry's own depth limiter: GraphiQL's introspection query is
deeper than any real query. That exemption only matters in development, since
production refuses introspection outright.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, cast

from graphql import (
    BREAK,
    SKIP,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VisitorAction,
)
from graphql.validation import ASTValidationRule
from strawberry.extensions import SchemaExtension
from strawberry.types import StreamExecutionResult

from schema.complexity import ComplexityLimits, too_complex
from schema.cost import CostModel, QueryCostLimit

SIZE_CODE = "QUERY_TOO_LARGE"
DEPTH_CODE = "QUERY_TOO_DEEP"
ALIASES_CODE = "TOO_MANY_ALIASES"
INTROSPECTION_CODE = "INTROSPECTION_DISABLED"

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


@dataclass(frozen=True, slots=True)
class HardeningLimits:
    #: Fields on the longest path; the deepest real query today is 3 (bars { bar { open } }).
    max_depth: int = 12
    #: Aliased fields per document; quotes(symbols:) and snapshots(symbols:) make
    #: aliasing the same field many times unnecessary.
    max_aliases: int = 30
    #: Lexical tokens per document, comments excluded. GraphiQL's full introspection
    #: query is under 200; a 2,000-token document is already a very large query.
    max_tokens: int = 2_000
    max_comments: int = 200
    #: Characters per document: more than a 2,000-token document needs, and it stops a
    #: few huge tokens (a megabyte-long string) that the token count would let through.
    max_source_length: int = 65_536
    #: The per-operation cost budget of a caller whose context names none. Large enough
    #: for any list field at its default size with every field selected (the largest:
    #: bars, 500 bars x 13 fields = 6,501), an order of magnitude below what aliases and
    #: nested lists can be made to ask for.
    cost_budget: int = 10_000
    #: Items assumed for a list field that has no limit/symbols-style argument.
    default_list_size: int = 10
    #: Bounds on validation work (see ``schema.complexity``).
    complexity: ComplexityLimits = field(default_factory=ComplexityLimits)


DEFAULT_LIMITS = HardeningLimits()


def hardening_validation_rules(
    limits: HardeningLimits = DEFAULT_LIMITS, *, production: bool
) -> tuple[type[ASTValidationRule], ...]:
    """The static rules (depth, aliases, introspection in production).

    Build them once per schema: the rule classes are part of the validation cache's key, so
    new classes per request would defeat the cache.
    """
    rules: list[type[ASTValidationRule]] = [
        depth_limit_rule(limits.max_depth),
        alias_limit_rule(limits.max_aliases),
    ]
    if production:
        rules.append(NoIntrospection)
    return tuple(rules)


def hardening_extensions(
    *,
    production: bool,
    limits: HardeningLimits = DEFAULT_LIMITS,
    validation_cache_size: int = 1024,
) -> list[Callable[[], SchemaExtension]]:
    """Extension factories for ``strawberry.Schema(extensions=...)``, in this order.

    The list includes the validation step (``BudgetedValidation``): the cost check must
    come after it (see ``QueryCostLimit``), so the order is fixed here rather than left
    to the caller.
    """
    rules = hardening_validation_rules(limits, production=production)
    model = CostModel(default_list_size=limits.default_list_size)
    validate = _budgeted_validation(limits.complexity, validation_cache_size)
    return [
        lambda: DocumentLimits(limits, rules),
        lambda: BudgetedValidation(validate),
        lambda: QueryCostLimit(default_budget=limits.cost_budget, model=model),
        lambda: RefusalErrors(limits, production=production),
    ]


Validator = Callable[
    [GraphQLSchema, DocumentNode, tuple[type[ASTValidationRule], ...]], list[GraphQLError]
]


def _budgeted_validation(limits: ComplexityLimits, cache_size: int) -> Validator:
    """Validation with its work bounded first, cached per document (parsed documents
    are cached by text, so a repeated document is one dictionary lookup).

    The cache holds refusals too: a document refused once is refused again for free.
    """
    from strawberry.schema.schema import validate_document

    @lru_cache(maxsize=cache_size)
    def validate(
        schema: GraphQLSchema,
        document: DocumentNode,
        rules: tuple[type[ASTValidationRule], ...],
    ) -> list[GraphQLError]:
        refusal = too_complex(document, limits)
        if refusal is not None:
            return [refusal]
        return validate_document(schema, document, rules)

    return validate


class BudgetedValidation(SchemaExtension):
    """Runs validation (strawberry's step) through ``_budgeted_validation``; replaces
    strawberry's ``ValidationCache``, which would validate whatever it is given."""

    def __init__(self, validate: Validator) -> None:
        self.validate = validate

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.graphql_document is not None and ctx.pre_execution_errors is None:
            ctx.pre_execution_errors = self.validate(
                ctx.schema._schema, ctx.graphql_document, ctx.validation_rules
            )
        yield


class DocumentLimits(SchemaExtension):
    """Sets the parser's limits and adds the static rules, before parsing starts.

    The rules go first, so a refused document's first error says why it was refused
    rather than, say, that a field 500 levels down does not exist.
    """

    def __init__(self, limits: HardeningLimits, rules: tuple[type[ASTValidationRule], ...]) -> None:
        self.limits = limits
        self.rules = rules

    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context
        # strawberry's ParseOptions type only declares max_tokens, but every option is
        # passed to graphql-core's parse(). max_lexical_tokens is the current form of
        # max_tokens (which graphql-core deprecates); it leaves comments to max_comments.
        options = cast("dict[str, Any]", ctx.parse_options)
        options["max_lexical_tokens"] = self.limits.max_tokens
        options["max_comments"] = self.limits.max_comments
        options["max_source_length"] = self.limits.max_source_length
        ctx.validation_rules = (*self.rules, *ctx.validation_rules)
        yield


class RefusalErrors(SchemaExtension):
    """Gives the parser's limit errors a code, and hides suggestions in production.

    A document over a parse limit fails as a GraphQL *syntax* error, which has no code
    and which strawberry's graphql-transport-ws handler answers by closing the socket
    with 4400. It is not malformed, only refused, so it becomes an ordinary error
    (``QUERY_TOO_LARGE``, or ``QUERY_TOO_DEEP`` for the parser's nesting limit): an
    ``error`` message for that operation, the socket open. Real syntax errors are
    left alone.

    Suggestions ("Did you mean 'bidPrice'?") come from graphql-core's validation and
    variable coercion; stripping them from every error's message covers both, where
    graphql-core's own ``hide_suggestions`` option would need strawberry to pass it
    to validate() and execute(), which it does not.

    Results are rewritten like strawberry's MaskErrors does it: at the end of the
    operation for ``execute``, and per result for ``stream`` (subscriptions), before
    the transport sees them.
    """

    _SUGGESTION = re.compile(r" Did you mean [^?]*\?")

    def __init__(self, limits: HardeningLimits, *, production: bool) -> None:
        self.limits = limits
        self.production = production

    def on_operation(self) -> Iterator[None]:
        yield
        self._rewrite(self.execution_context.result)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        self._rewrite(result)
        yield

    def _rewrite(self, result: object) -> None:
        errors: list[GraphQLError] | None = getattr(result, "errors", None)
        if errors:
            result.errors = [self._error(e) for e in errors]  # type: ignore[attr-defined]

    def _error(self, error: GraphQLError) -> GraphQLError:
        if isinstance(error, GraphQLSyntaxError) and error.description.endswith("Parsing aborted."):
            # graphql-core's parser gives up past 200 levels, whatever our depth limit.
            if "nested too deeply" in error.description:
                message = f"The document is nested too deeply; at most {self.limits.max_depth} "
                message += "fields deep are allowed."
                extensions = {"code": DEPTH_CODE, "maxDepth": self.limits.max_depth}
            else:
                # "Document contains more than 2000 tokens. Parsing aborted.", or the
                # same about comments, or "Source contains more than N code points."
                detail = error.description.removesuffix(" Parsing aborted.")
                detail = detail.removeprefix("Document ").removeprefix("Source ")
                message = f"The document is too large: it {detail}"
                extensions = {
                    "code": SIZE_CODE,
                    "maxTokens": self.limits.max_tokens,
                    "maxComments": self.limits.max_comments,
                    "maxSourceLength": self.limits.max_source_length,
                }
            return GraphQLError(
                message, source=error.source, positions=error.positions, extensions=extensions
            )
        if self.production and " Did you mean " in error.message:
            return GraphQLError(
                self._SUGGESTION.sub("", error.message),
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                original_error=error.original_error,
                extensions=error.extensions,
            )
        return error


class NoIntrospection(ValidationRule):
    """Refuses ``__schema`` and ``__type`` with a code; ``__typename`` stays allowed
    (clients need it to tell union members apart)."""

    def enter_field(self, node: FieldNode, *_args: object) -> VisitorAction:
        if node.name.value in INTROSPECTION_FIELDS:
            self.report_error(
                GraphQLError(
                    "Introspection is disabled on this server.",
                    nodes=[node],
                    extensions={"code": INTROSPECTION_CODE},
                )
            )
            return SKIP
        return None


def depth_limit_rule(max_depth: int) -> type[ASTValidationRule]:
    class QueryDepthLimit(ValidationRule):
        # Reported when the document is entered, before any other rule's errors.
        def enter_document(self, node: DocumentNode, *_args: object) -> VisitorAction:
            for operation, depth in operation_depths(node):
                if depth > max_depth:
                    name = operation.name
                    what = f"Operation {name.value!r}" if name else "The operation"
                    self.report_error(
                        GraphQLError(
                            f"{what} is nested {depth} fields deep; at most {max_depth} "
                            "are allowed.",
                            nodes=[operation],
                            extensions={"code": DEPTH_CODE, "depth": depth, "maxDepth": max_depth},
                        )
                    )
            return BREAK

    return QueryDepthLimit


def alias_limit_rule(max_aliases: int) -> type[ASTValidationRule]:
    class AliasLimit(ValidationRule):
        def enter_document(self, node: DocumentNode, *_args: object) -> VisitorAction:
            aliases = count_aliases(node)
            if aliases > max_aliases:
                self.report_error(
                    GraphQLError(
                        f"The document has {aliases} aliases; at most {max_aliases} are allowed.",
                        extensions={
                            "code": ALIASES_CODE,
                            "aliases": aliases,
                            "maxAliases": max_aliases,
                        },
                    )
                )
            return BREAK

    return AliasLimit


def operation_depths(document: DocumentNode) -> list[tuple[OperationDefinitionNode, int]]:
    """Each operation's depth: the most fields on one path from the root, through
    fragments (introspection fields excluded).

    Rules run before graphql-core's own guard against deeply nested fragments, on
    documents of any shape, so nothing here recurses: each definition is measured
    once with an explicit stack, and fragment depths are combined bottom-up, as
    graphql-core's FragmentNestingVisitor does. Fragment cycles are left to the
    NoFragmentCycles rule.
    """
    nestings = {
        d.name.value: _nesting(d.selection_set)
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    depths: dict[str, int] = {}
    for root in nestings:
        if root in depths:
            continue
        path = [(root, iter(nestings[root][1]))]
        on_path = {root}
        while path:
            name, spreads = path[-1]
            for spread, _above in spreads:
                if spread in nestings and spread not in depths and spread not in on_path:
                    path.append((spread, iter(nestings[spread][1])))
                    on_path.add(spread)
                    break
            else:
                path.pop()
                on_path.discard(name)
                depths[name] = _depth(nestings[name], depths)
    return [
        (d, _depth(_nesting(d.selection_set), depths))
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode)
    ]


def _nesting(selection_set: SelectionSetNode) -> tuple[int, list[tuple[str, int]]]:
    """A definition's own depth, and its spreads with the fields above each."""
    deepest = 0
    spreads: list[tuple[str, int]] = []
    stack = [(selection_set, 0)]
    while stack:
        current, above = stack.pop()
        for selection in current.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value in INTROSPECTION_FIELDS:
                    continue
                deepest = max(deepest, above + 1)
                if selection.selection_set is not None:
                    stack.append((selection.selection_set, above + 1))
            elif isinstance(selection, InlineFragmentNode):
                stack.append((selection.selection_set, above))
            elif isinstance(selection, FragmentSpreadNode):
                spreads.append((selection.name.value, above))
    return deepest, spreads


def _depth(nesting: tuple[int, list[tuple[str, int]]], fragment_depths: dict[str, int]) -> int:
    own, spreads = nesting
    return max([own, *(above + fragment_depths.get(name, 0) for name, above in spreads)])


def count_aliases(document: DocumentNode) -> int:
    """Aliases as written, in operations and fragments alike.

    Written, not expanded: spreading one fragment twice in a selection gives the same
    response keys, which GraphQL merges; how often a fragment runs under lists is the
    cost limit's business.
    """
    count = 0
    stack = [
        d.selection_set
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FieldNode):
                if selection.alias is not None:
                    count += 1
                if selection.selection_set is not None:
                    stack.append(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                stack.append(selection.selection_set)
    return count


__all__ = [
    "ALIASES_CODE",
    "DEFAULT_LIMITS",
    "DEPTH_CODE",
    "INTROSPECTION_CODE",
    "SIZE_CODE",
    "BudgetedValidation",
    "DocumentLimits",
    "HardeningLimits",
    "NoIntrospection",
    "RefusalErrors",
    "alias_limit_rule",
    "count_aliases",
    "depth_limit_rule",
    "hardening_extensions",
    "hardening_validation_rules",
    "operation_depths",
]
