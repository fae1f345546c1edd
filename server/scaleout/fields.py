"""Which operations a follower serves itself, and which it relays to the leader.

A follower holds a faithful copy of the market's latest quotes and trades (every event
the leader publishes reaches it through the Redis bus), delivers the order updates and
fired alerts the leader committed (``event_stream``), and shares accounts, keys and
preferences through PostgreSQL. Anything else (bars and indicators of the forming bar,
day statistics, alerts, orders, positions, analyses) lives in the leader's memory.

The rule is a list of the root fields a follower may serve; an operation that selects
any other root field is relayed whole. A list of what is local (not of what is
relayed) fails safe: a field added to the schema later is relayed until someone
decides it can be served from a follower's copy.
"""

from __future__ import annotations

from functools import lru_cache

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)

#: Root fields a follower serves from its own state (per operation type).
LOCAL: dict[str, frozenset[str]] = {
    "query": frozenset(
        # Not ``me`` (it counts the caller's armed alerts, which the leader holds), nor
        # ``trades`` (the recent trades: a follower has only those since it started).
        {"quote", "quotes", "symbols", "feedStatus", "apiKeys", "__typename"}
        | {"__schema", "__type"}
    ),
    "mutation": frozenset(
        {
            "register",
            "login",
            "refreshToken",
            "logout",
            "changePassword",
            "logoutEverywhere",
            "createApiKey",
            "revokeApiKey",
            "setUserDisabled",
            "setUserTier",
            "__typename",
        }
    ),
    "subscription": frozenset(
        {"quotes", "quoteBatches", "trades", "feedStatus", "__typename"}
        # Committed by the leader, delivered here from the database (event_stream).
        | {"orderUpdates", "alertEvents"}
    ),
}


def needs_leader(query: str, operation_name: str | None) -> bool:
    """Whether the operation selects a root field only the leader can resolve. A
    document that does not parse, or names no operation it has, is served locally:
    the local server reports the error exactly as it always does."""
    try:
        return _needs_leader(query, operation_name)
    except GraphQLError:
        return False


@lru_cache(maxsize=1024)
def _needs_leader(query: str, operation_name: str | None) -> bool:
    document = parse(query)
    operation = _operation(document, operation_name)
    if operation is None:
        return False
    local = LOCAL[operation.operation.value]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return any(name not in local for name in _root_fields(operation.selection_set, fragments))


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


def _root_fields(
    selections: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str] = frozenset(),
) -> set[str]:
    """The field names selected at the root, through fragments (a fragment cycle is a
    validation error the local server reports; it stops the walk here)."""
    names: set[str] = set()
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            names |= _root_fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:
                names |= _root_fields(fragment.selection_set, fragments, seen | {name})
    return names
