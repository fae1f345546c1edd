"""The GraphQL schema: one module per domain, merged here into one schema."""

from __future__ import annotations

import strawberry
from graphql.error import GraphQLError
from strawberry.extensions import ValidationCache
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from schema.errors import ErrorReporting, log_expected_errors
from schema.feed import FeedQuery, FeedSubscription
from schema.market import MarketQuery, MarketSubscription
from schema.parse_cache import ParseCache
from schema.scalars import SCALARS

Query = merge_types("Query", (MarketQuery, FeedQuery))
Subscription = merge_types("Subscription", (MarketSubscription, FeedSubscription))


class TickgraphSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Unexpected errors are logged by ErrorReporting, with their reference id.
        log_expected_errors(errors, execution_context)


def build_schema(*, production: bool = False) -> strawberry.Schema:
    # Factories: strawberry builds fresh extension instances per operation; the
    # parse/validation caches are module-level and shared across them.
    extensions: list[object] = [
        ParseCache,
        lambda: ValidationCache(maxsize=1024),
        lambda: ErrorReporting(production=production),
    ]
    return TickgraphSchema(
        query=Query,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALARS),
        extensions=extensions,  # type: ignore[arg-type]
    )


__all__ = ["Query", "Subscription", "build_schema"]
