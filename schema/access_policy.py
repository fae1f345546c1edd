"""Who may run which root field: one table, checked in one place for every operation.

Every root field of the schema has an access level (``POLICY``). Before an operation
runs (queries, mutations and subscriptions alike, over HTTP and WebSocket), the
``AccessPolicy`` extension works out the root fields that will actually execute (the
operation's selection with fragments and inline fragments expanded, ``@skip`` and
``@include`` evaluated with the request's variables, aliases ignored) and refuses the
operation unless the caller may run every one of them. Deciding on what runs, not on
names written in the document, is what makes the gate independent of the query's
shape.

The levels:

========  ===============================================================================
ENTRY     getting a session: anyone, even when anonymous access is off; not API keys
PUBLIC    market data: anyone signed in; anonymous callers when anonymous access is on
USER      your own data (read): any signed-in caller, API keys of either scope
TRADING   changes to your alerts (and orders): a session, or an API key of scope trading
ACCOUNT   account management (password, API keys, sessions, tiers): a session only
========  ===============================================================================

So a ``read`` API key runs queries and subscriptions only; a ``trading`` key adds the
TRADING mutations; nothing an API key can do manages the account. A root field missing
from the table is refused (and ``tests/schema/test_access_policy.py`` fails), so a new
field cannot be published without a decision. ``docs/security.md`` shows the table; a
test keeps the two equal.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_operation_ast,
    value_from_ast_untyped,
)
from strawberry.extensions import SchemaExtension

from server.auth.access import Caller
from server.auth.errors import Forbidden, Unauthenticated
from server.errors import TickgraphError


class Level(StrEnum):
    ENTRY = "ENTRY"
    PUBLIC = "PUBLIC"
    USER = "USER"
    TRADING = "TRADING"
    ACCOUNT = "ACCOUNT"


#: (root type, field) -> level. The one place that says who may run what.
POLICY: Mapping[tuple[str, str], Level] = {
    # Market data.
    **{
        ("Query", name): Level.PUBLIC
        for name in (
            "quote",
            "quotes",
            "trades",
            "snapshot",
            "snapshots",
            "symbols",
            "feedStatus",
            "bars",
            "barsConnection",
            "barGaps",
            "indicator",
        )
    },
    **{
        ("Subscription", name): Level.PUBLIC
        for name in ("quotes", "quoteBatches", "trades", "feedStatus", "bars", "indicators")
    },
    # Your own data.
    ("Query", "me"): Level.USER,
    ("Query", "alerts"): Level.USER,
    ("Query", "alertHistory"): Level.USER,
    ("Query", "alertHistoryConnection"): Level.USER,
    # Operational figures (how this process delivers alerts): any signed-in caller.
    ("Query", "alertDelivery"): Level.USER,
    ("Subscription", "alertEvents"): Level.USER,
    ("Query", "orders"): Level.USER,
    ("Query", "order"): Level.USER,
    ("Query", "positions"): Level.USER,
    ("Query", "position"): Level.USER,
    ("Query", "account"): Level.USER,
    ("Query", "portfolioHistory"): Level.USER,
    ("Query", "performance"): Level.USER,
    ("Subscription", "orderUpdates"): Level.USER,
    ("Subscription", "positions"): Level.USER,
    ("Subscription", "account"): Level.USER,
    # Analyses: your own, charged to your daily quota (a read key may stream them).
    ("Query", "analysis"): Level.USER,
    ("Query", "analyses"): Level.USER,
    ("Subscription", "analysis"): Level.USER,
    ("Subscription", "portfolioReview"): Level.USER,
    # Getting a session.
    ("Mutation", "register"): Level.ENTRY,
    ("Mutation", "login"): Level.ENTRY,
    ("Mutation", "refreshToken"): Level.ENTRY,
    ("Mutation", "logout"): Level.ENTRY,
    # Alerts.
    ("Mutation", "createAlert"): Level.TRADING,
    ("Mutation", "updateAlert"): Level.TRADING,
    ("Mutation", "setAlertEnabled"): Level.TRADING,
    ("Mutation", "deleteAlert"): Level.TRADING,
    # Orders: placing, changing and canceling them trades.
    ("Mutation", "placeOrder"): Level.TRADING,
    ("Mutation", "replaceOrder"): Level.TRADING,
    ("Mutation", "cancelOrder"): Level.TRADING,
    ("Mutation", "cancelAllOrders"): Level.TRADING,
    ("Mutation", "closePosition"): Level.TRADING,
    ("Mutation", "closeAllPositions"): Level.TRADING,
    # Analyses as mutations: every mutation changes something (here: a stored analysis
    # charged to the quota, the risk tolerance that sizes orders, an order).
    ("Mutation", "requestAnalysis"): Level.TRADING,
    ("Mutation", "placeOrderFromIdea"): Level.TRADING,
    ("Mutation", "setAnalysisPreferences"): Level.TRADING,
    # Your own broker account: reading it is yours; linking it manages the account.
    ("Query", "brokerAccount"): Level.USER,
    ("Mutation", "linkBrokerAccount"): Level.ACCOUNT,
    ("Mutation", "unlinkBrokerAccount"): Level.ACCOUNT,
    # The account.
    ("Query", "apiKeys"): Level.ACCOUNT,
    ("Mutation", "changePassword"): Level.ACCOUNT,
    ("Mutation", "logoutEverywhere"): Level.ACCOUNT,
    ("Mutation", "createApiKey"): Level.ACCOUNT,
    ("Mutation", "revokeApiKey"): Level.ACCOUNT,
    ("Mutation", "setUserTier"): Level.ACCOUNT,
    ("Mutation", "setUserDisabled"): Level.ACCOUNT,
}

#: Introspection and ``__typename`` are governed by the schema's own rules
#: (introspection is refused in production), not by who is calling.
_META = frozenset({"__typename", "__schema", "__type"})

_ROOT_TYPE = {
    OperationType.QUERY: "Query",
    OperationType.MUTATION: "Mutation",
    OperationType.SUBSCRIPTION: "Subscription",
}

SIGN_IN = "sign in first: send an access token or an API key"


def root_fields(
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any] | None,
) -> set[str]:
    """The names of the root fields ``operation`` will execute.

    Fragments and inline fragments are expanded (an inline fragment without a type
    condition, or with the root type's, applies; so does a spread of a fragment on
    the root type), ``@skip``/``@include`` are evaluated, aliases are ignored. When a
    directive's condition cannot be read (a missing or non-boolean variable, which
    validation or coercion refuses anyway) the field counts as included: the gate
    errs towards checking more, never less.
    """
    root = _ROOT_TYPE[operation.operation]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    values = _variables_with_defaults(operation, variables or {})
    found: set[str] = set()
    seen: set[str] = set()
    stack: list[SelectionSetNode] = [operation.selection_set]
    while stack:
        for selection in stack.pop().selections:
            if not _included(selection.directives or (), values):
                continue
            if isinstance(selection, FieldNode):
                found.add(selection.name.value)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or condition.name.value == root:
                    stack.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if (
                    fragment is not None
                    and name not in seen
                    and fragment.type_condition.name.value == root
                ):
                    seen.add(name)
                    stack.append(fragment.selection_set)
    return found


def _variables_with_defaults(
    operation: OperationDefinitionNode, variables: Mapping[str, Any]
) -> dict[str, Any]:
    values = dict(variables)
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name not in values and definition.default_value is not None:
            values[name] = value_from_ast_untyped(definition.default_value)
    return values


def _included(directives: Sequence[Any], variables: Mapping[str, Any]) -> bool:
    for directive in directives:
        name = directive.name.value
        if name not in ("skip", "include"):
            continue
        condition = _condition(directive.arguments, variables)
        if condition is None:
            continue  # unreadable: include (see root_fields)
        if (name == "skip" and condition) or (name == "include" and not condition):
            return False
    return True


def _condition(arguments: Sequence[Any], variables: Mapping[str, Any]) -> bool | None:
    for argument in arguments or ():
        if argument.name.value != "if":
            continue
        node: ValueNode = argument.value
        value = (
            variables.get(node.name.value)
            if isinstance(node, VariableNode)
            else value_from_ast_untyped(node)
        )
        return value if isinstance(value, bool) else None
    return None


def check(level: Level | None, caller: Caller, *, allow_anonymous: bool, field: str) -> None:
    """Raise ``Unauthenticated`` or ``Forbidden`` unless ``caller`` may run ``field``."""
    principal = caller.principal
    if level is None:
        raise Forbidden(f"{field} is not available")
    if principal is None:
        if level is Level.ENTRY or (level is Level.PUBLIC and allow_anonymous):
            return
        raise Unauthenticated(SIGN_IN)
    if principal.scope == "full":
        return
    # An API key.
    if level in (Level.PUBLIC, Level.USER):
        return
    if level is Level.TRADING and principal.scope == "trading":
        return
    if level is Level.TRADING:
        raise Forbidden(f"{field} needs an API key of scope trading (this key's scope is read)")
    raise Forbidden(f"{field} needs a signed-in session; an API key cannot use it")


class AccessPolicy(SchemaExtension):
    """Refuses, before execution, an operation whose root fields the caller may not run.

    Runs after validation (so ``root_fields`` sees a valid document) and before any
    resolver, for subscriptions too: a refused subscription gets an ``error`` message
    for its id and the socket stays open.
    """

    def on_validate(self) -> Iterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        if document is not None and not ctx.pre_execution_errors:
            operation = get_operation_ast(document, ctx.operation_name)
            context = ctx.context
            access = getattr(getattr(context, "services", None), "access", None)
            if operation is not None and access is not None:
                root = _ROOT_TYPE[operation.operation]
                try:
                    for name in sorted(root_fields(document, operation, ctx.variables) - _META):
                        check(
                            POLICY.get((root, name)),
                            context.caller,
                            allow_anonymous=access.allow_anonymous,
                            field=f"{root}.{name}",
                        )
                except TickgraphError as exc:
                    ctx.pre_execution_errors = [
                        GraphQLError(exc.message, nodes=[operation], extensions=exc.extensions)
                    ]
        yield


__all__ = ["POLICY", "SIGN_IN", "AccessPolicy", "Level", "check", "root_fields"]
