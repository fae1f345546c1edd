"""Static query cost: refuse an operation whose result could be huge before running it.

The cost is computed from the document, the schema and the request's variables:

* every selected field costs 1 (introspection fields cost nothing: ``__typename`` is
  free, and ``__schema``/``__type`` are refused in production anyway);
* a field that yields many items multiplies the cost of its selection by how many:
  the value of a count argument (``limit``, ``first``, ``last``) or the length of a
  list argument (``symbols``, ``specs``, ``ids``), with the schema's default when the
  argument is omitted; a list field without such an argument counts
  ``default_list_size`` items, and so does every further level of a nested list type;
* fragments and inline fragments count where they are spread;
* a connection (a field with a count argument whose type is an object, not a list,
  such as ``barsConnection(first: 500) { edges { node { open } } pageInfo { ... } }``)
  costs once, and its count sizes the lists directly inside it (``edges``): a page of
  500 bars costs what ``bars(limit: 500)`` costs.

So ``a: bars(limit: 5000) { open close }`` costs ``1 + 5000 * 2`` and a list inside a
list multiplies twice. A subscription field sized by ``symbols`` (one snapshot, then a
stream, per symbol) is counted the same way, since that is the work of its first burst.

It is an upper bound, not a prediction: a field selected twice (say, by two
fragments) counts twice although GraphQL merges it, ``@skip``/``@include`` are assumed
to include, and spreads on a union count every member. Clients that hit it can always
split a query; what it must never do is let one request expand into millions of
resolver calls.

Variables are taken from the request, so ``bars(limit: $n)`` costs what ``$n`` asks
for. That is why the check is a strawberry extension and not a graphql-core
validation rule: validation rules see no variables, and their results are cached per
document. It runs at the validation step, after the document is known to be valid, so
a refused operation gets a pre-execution error (an ``error`` message over
graphql-transport-ws) and no resolver runs.

The budget is the caller's: ``context.query_cost_budget`` (an attribute, or a key of
a dict context) when it is an int, else the default given to ``QueryCostLimit``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLArgument,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    ValueNode,
    VariableNode,
    get_operation_ast,
    value_from_ast_untyped,
)
from strawberry.extensions import SchemaExtension

COST_CODE = "QUERY_TOO_COSTLY"

#: Costs are clamped here: a crafted document can describe astronomically many items,
#: and clients (JavaScript) read the reported number as a double.
COST_CEILING = 2**53 - 1

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class CostModel:
    default_list_size: int = 10
    count_arguments: frozenset[str] = field(default=frozenset({"limit", "first", "last"}))
    length_arguments: frozenset[str] = field(default=frozenset({"symbols", "specs", "ids"}))


DEFAULT_COST_MODEL = CostModel()


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
    model: CostModel = DEFAULT_COST_MODEL,
) -> int | None:
    """The cost of the operation ``operation_name`` selects, or ``None`` if the document
    does not select exactly one operation (the executor reports that itself)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return None
    root = schema.get_root_type(operation.operation)
    if root is None:
        return None
    return _CostWalk(schema, document, operation, variables or {}, model).selection_set(
        operation.selection_set, root
    )


class _CostWalk:
    """One operation's walk. Fragment costs are memoised: a fragment's cost depends only
    on its own selections and the request's variables, both fixed here, so spreading
    one fragment many times (a "fragment bomb") costs one walk of it, not an
    exponential number.

    The walk recurses once per selection-set level. It only runs on documents that
    passed validation, whose nesting graphql-core bounds (200 levels, fragments
    included), far inside Python's recursion limit.
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
        model: CostModel,
    ) -> None:
        self.schema = schema
        self.model = model
        # value_from_ast_untyped wants a dict (it resolves variables inside literals).
        self.variables = dict(variables)
        self.variable_defaults = {
            d.variable.name.value: d.default_value
            for d in operation.variable_definitions or ()
            if d.default_value is not None
        }
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.fragment_costs: dict[tuple[str, int | None], int] = {}
        self.in_progress: set[str] = set()
        #: Per selection level: the page size a connection hands to its inner lists.
        self.carry: list[int | None] = [None]

    def selection_set(self, node: SelectionSetNode, parent: Any) -> int:
        total = 0
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                scope = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selection_set(selection.selection_set, scope or parent)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value)
        return min(total, COST_CEILING)

    def fragment(self, name: str) -> int:
        memo = (name, self.carry[-1])  # a fragment inside a connection sees its page size
        known = self.fragment_costs.get(memo)
        if known is not None:
            return known
        definition = self.fragments.get(name)
        # A cycle is a validation error (NoFragmentCycles); never loop on one here.
        if definition is None or name in self.in_progress:
            return 0
        self.in_progress.add(name)
        scope = self.schema.get_type(definition.type_condition.name.value)
        cost = self.selection_set(definition.selection_set, scope) if scope else 0
        self.in_progress.discard(name)
        self.fragment_costs[memo] = cost
        return cost

    def field(self, node: FieldNode, parent: Any) -> int:
        name = node.name.value
        if name.startswith("__"):
            return 0
        fields = (
            parent.fields if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType) else {}
        )
        definition: GraphQLField | None = fields.get(name)
        if definition is None:
            return 1
        item_type, list_levels = _unwrap(definition.type)
        if node.selection_set is None:
            return 1
        items, carry = self.items(node, definition, list_levels)
        self.carry.append(carry)
        try:
            inner = self.selection_set(node.selection_set, item_type)
        finally:
            self.carry.pop()
        return min(1 + items * inner, COST_CEILING)

    def items(
        self, node: FieldNode, definition: GraphQLField, list_levels: int
    ) -> tuple[int, int | None]:
        """How many times the field's selection runs (its size arguments when it has
        any, else the default size per list level, else the page size of the connection
        it is in), and the page size it hands to its own inner lists (a connection)."""
        model = self.model
        sizes = [
            size
            for arg_name, arg in definition.args.items()
            if (size := self.size(node, arg_name, arg)) is not None
        ]
        inherited = self.carry[-1]
        if sizes:
            items = 1
            for size in sizes:
                items = min(items * size, COST_CEILING)
            counted = any(a.name.value in model.count_arguments for a in node.arguments or ())
            if not list_levels and (counted or self._counts_by_default(definition)):
                return 1, items  # a connection: its count sizes the lists inside it
            # The arguments size the outer list; inner lists are unknown.
            list_levels = max(list_levels - 1, 0)
        elif inherited is not None and list_levels:
            items = inherited
            list_levels -= 1
        else:
            items = 1
        for _ in range(list_levels):
            items = min(items * model.default_list_size, COST_CEILING)
        return items, None

    def _counts_by_default(self, definition: GraphQLField) -> bool:
        """The field has a count argument (with a default) and no list argument."""
        names = set(definition.args)
        return bool(names & self.model.count_arguments) and not (
            names & self.model.length_arguments
        )

    def size(self, node: FieldNode, arg_name: str, arg: GraphQLArgument) -> int | None:
        model = self.model
        if arg_name in model.count_arguments:
            value = self.argument(node, arg_name, arg)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if isinstance(value, int) and not isinstance(value, bool):
                return max(value, 0)
            return None if value is _MISSING else model.default_list_size
        if arg_name in model.length_arguments:
            value = self.argument(node, arg_name, arg)
            if isinstance(value, list):
                return len(value)
            if value is _MISSING:
                return None
            # GraphQL coerces a single value to a one-item list; null (or an unusable
            # value) tells us nothing, so it counts as a default-sized list.
            return model.default_list_size if value is None or value is Undefined else 1
        return None

    def argument(self, node: FieldNode, arg_name: str, arg: GraphQLArgument) -> Any:
        """The argument's value as the resolver will see it (before coercion), or
        ``_MISSING`` if it has none."""
        for given in node.arguments or ():
            if given.name.value == arg_name:
                value = self.value(given.value)
                return _default(arg) if value is _MISSING else value
        return _default(arg)

    def value(self, node: ValueNode) -> Any:
        if isinstance(node, VariableNode):
            name = node.name.value
            if name in self.variables:
                return self.variables[name]
            default = self.variable_defaults.get(name)
            return _MISSING if default is None else value_from_ast_untyped(default)
        return value_from_ast_untyped(node, self.variables)


def _unwrap(type_: GraphQLOutputType) -> tuple[Any, int]:
    """The named type under the wrappers and how many list levels wrap it."""
    list_levels = 0
    inner: Any = type_
    while isinstance(inner, GraphQLNonNull | GraphQLList):
        if isinstance(inner, GraphQLList):
            list_levels += 1
        inner = inner.of_type
    return inner, list_levels


def _default(arg: GraphQLArgument) -> Any:
    if arg.default_value is not Undefined:
        return arg.default_value
    default = arg.default
    if default is None:
        return _MISSING
    if default.value is not Undefined:
        return default.value
    return value_from_ast_untyped(default.literal) if default.literal is not None else _MISSING


def cost_budget(context: object, default: int) -> int:
    """The caller's budget: ``context.query_cost_budget`` when set, else ``default``.

    The context's principal/tier decides it; this module only reads the number.
    """
    if isinstance(context, Mapping):
        value = context.get("query_cost_budget")
    else:
        value = getattr(context, "query_cost_budget", None)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return default


def too_costly(cost: int, budget: int, operation: OperationDefinitionNode | None) -> GraphQLError:
    return GraphQLError(
        f"This operation could cost {cost}, over the budget of {budget}. Ask for fewer "
        "items (limit, symbols) or fewer fields, or split it into several operations.",
        nodes=[operation] if operation is not None else None,
        extensions={"code": COST_CODE, "cost": cost, "budget": budget},
    )


class QueryCostLimit(SchemaExtension):
    """Refuses an operation whose cost exceeds the caller's budget, before execution.

    It must come after ``BudgetedValidation`` in the schema's extension list (which
    ``hardening_extensions`` guarantees): that sets the validation result
    at the start of the validation step, replacing whatever was there. If nothing
    validated before it, it validates itself, so the cost is never computed for an
    invalid document and validation errors are never hidden.
    """

    def __init__(self, *, default_budget: int, model: CostModel = DEFAULT_COST_MODEL) -> None:
        self.default_budget = default_budget
        self.model = model

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        if document is not None:
            graphql_schema: GraphQLSchema = ctx.schema._schema
            if ctx.pre_execution_errors is None:
                from strawberry.schema.schema import validate_document

                ctx.pre_execution_errors = validate_document(
                    graphql_schema, document, ctx.validation_rules
                )
            if not ctx.pre_execution_errors:
                cost = operation_cost(
                    graphql_schema,
                    document,
                    operation_name=ctx.operation_name,
                    variables=ctx.variables,
                    model=self.model,
                )
                budget = cost_budget(ctx.context, self.default_budget)
                if cost is not None and cost > budget:
                    operation = get_operation_ast(document, ctx.operation_name)
                    ctx.pre_execution_errors = [too_costly(cost, budget, operation)]
        yield


__all__ = [
    "COST_CEILING",
    "COST_CODE",
    "DEFAULT_COST_MODEL",
    "CostModel",
    "QueryCostLimit",
    "cost_budget",
    "operation_cost",
    "too_costly",
]
