"""The GraphQL schema: one module per domain, merged here into one schema."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import strawberry
from graphql.error import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from schema.access_policy import AccessPolicy
from schema.alerts import AlertsMutation, AlertsQuery, AlertsSubscription
from schema.analysis import AnalysisMutation, AnalysisQuery, AnalysisSubscription
from schema.auth import AuthMutation, AuthQuery
from schema.bars import BarsQuery, BarsSubscription
from schema.broker_accounts import BrokerAccountsMutation, BrokerAccountsQuery
from schema.errors import ErrorReporting, log_expected_errors
from schema.executor import PerEventMemoExecutor
from schema.feed import FeedQuery, FeedSubscription
from schema.hardening import hardening_extensions
from schema.market import MarketQuery, MarketSubscription
from schema.orders import OrdersMutation, OrdersQuery, OrdersSubscription
from schema.parse_cache import ParseCache
from schema.request_errors import RequestErrors
from schema.scalars import SCALARS

Query = merge_types(
    "Query",
    (
        MarketQuery,
        FeedQuery,
        BarsQuery,
        AlertsQuery,
        OrdersQuery,
        BrokerAccountsQuery,
        AnalysisQuery,
        AuthQuery,
    ),
)
Mutation = merge_types(
    "Mutation",
    (AlertsMutation, OrdersMutation, BrokerAccountsMutation, AnalysisMutation, AuthMutation),
)
Subscription = merge_types(
    "Subscription",
    (
        MarketSubscription,
        FeedSubscription,
        BarsSubscription,
        AlertsSubscription,
        OrdersSubscription,
        AnalysisSubscription,
    ),
)


class TickgraphSchema(strawberry.Schema):
    #: Set by build_schema: what per-event errors of multiplexed subscriptions show.
    event_errors: ErrorReporting = ErrorReporting(production=True)

    def format_event_errors(self, errors: list[GraphQLError]) -> list[Any]:
        """Errors of one subscription event, as every member of its group sees them
        (``server.delivery.multiplex`` executes events outside strawberry's pipeline)."""
        return [error.formatted for error in self.event_errors.process(errors)]

    async def execute(  # noqa: PLR0917 - strawberry's signature
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        # ``execute`` runs one operation to one result, as plain HTTP does; a
        # subscription would resolve to a stream and fail as null. Refusing it here
        # gives the client a clear 400 saying subscriptions need a WebSocket.
        allowed = set(allowed_operation_types or DEFAULT_ALLOWED_OPERATION_TYPES)
        allowed.discard(OperationType.SUBSCRIPTION)
        return await super().execute(
            query,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            allowed_operation_types=allowed,
            operation_extensions=operation_extensions,
        )

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Unexpected errors are logged by ErrorReporting, with their reference id.
        log_expected_errors(errors, execution_context)


def build_schema(*, production: bool = False) -> strawberry.Schema:
    # Factories: strawberry builds fresh extension instances per operation; the
    # parse/validation caches are module-level and shared across them.
    # Hardening first (it sets the parser's limits and owns validation, with the cost
    # check after it), then the parse cache, request errors (ambiguous documents;
    # codes for validation errors), error reporting, and who may run what. The
    # caller's request rate was charged before any of this (before parsing).
    extensions: list[object] = [
        *hardening_extensions(production=production),
        ParseCache,
        RequestErrors,
        lambda: ErrorReporting(production=production),
        AccessPolicy,
    ]
    schema = TickgraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALARS),
        execution_context_class=PerEventMemoExecutor,
        extensions=extensions,  # type: ignore[arg-type]
    )
    schema.event_errors = ErrorReporting(production=production)
    return schema


__all__ = ["Mutation", "Query", "Subscription", "build_schema"]
