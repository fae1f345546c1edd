"""Admission of every query and mutation: the caller's request rate, and whether an
anonymous caller may run it. Subscriptions are admitted by their resolvers (strawberry
runs subscriptions outside this hook), through ``admit_subscription``; ``releaser``
gives back what a subscription took when it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from graphql import ExecutionResult, GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from schema.context import Info
from server.auth.errors import Unauthenticated
from server.errors import TickgraphError
from server.limits.usage import Lease

#: What an anonymous caller may do even when anonymous access is off: get an account.
ACCOUNT_ENTRY = frozenset({"register", "login", "refreshToken", "__typename"})
#: What needs no account when anonymous access is on: public market data.
PUBLIC = frozenset(
    {
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
        "indicators",
        "__typename",
        "__schema",
        "__type",
    }
)


def _top_level_fields(document: object, operation_name: str | None) -> set[str]:
    fields: set[str] = set()
    for definition in getattr(document, "definitions", ()):
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None or (definition.name and definition.name.value == operation_name)
        ):
            for selection in definition.selection_set.selections:
                name = getattr(getattr(selection, "name", None), "value", None)
                if name:
                    fields.add(name)
    return fields


class AccessGate(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        context = ctx.context
        access = context.services.access
        if access is not None and ctx.operation_type is not OperationType.SUBSCRIPTION:
            try:
                await access.count_request(context.caller)
                fields = _top_level_fields(ctx.graphql_document, ctx.operation_name)
                if context.caller.principal is None and not fields <= ACCOUNT_ENTRY:
                    allowed = PUBLIC | ACCOUNT_ENTRY if access.allow_anonymous else ACCOUNT_ENTRY
                    if not fields <= allowed:
                        raise Unauthenticated("sign in first: send an access token or an API key")
            except TickgraphError as exc:
                # Setting the result before execution skips execution entirely.
                ctx.result = ExecutionResult(
                    data=None,
                    errors=[GraphQLError(exc.message, extensions=exc.extensions)],
                )
        yield


async def admit_subscription(info: Info, symbols: Sequence[str], *, public: bool) -> Lease | None:
    """Count the subscribe against the rate limit, apply the anonymous policy, and take
    a subscription from the caller's tier quota (released when the stream ends)."""
    context = info.context
    access = context.services.access
    if access is None:
        return None
    caller = context.caller
    await access.count_request(caller)
    if caller.principal is None:
        access.admit(caller, public_only=public)
    return access.subscribe(caller, list(symbols))


def releaser(lease: Lease | None, *also: Callable[[], None]) -> Callable[[], None]:
    """What gives a subscriber's holds back when its subscription ends: the quota lease,
    then anything else it acquired (indicator slots...)."""

    def release() -> None:
        try:
            if lease is not None:
                lease.release()
        finally:
            for undo in also:
                undo()

    return release
