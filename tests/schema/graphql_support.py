"""A strawberry schema for tests of types, with the server's scalars and error handling.

``make_schema`` builds it the way ``schema.build_schema`` does where it matters here:
the ``SCALARS`` map (the ``Decimal`` scalar among them) and the extensions that give
request errors their ``extensions.code`` and mask unexpected ones.
"""

from __future__ import annotations

from typing import Any

from strawberry.schema.config import StrawberryConfig

from schema import TickgraphSchema
from schema.errors import ErrorReporting
from schema.request_errors import RequestErrors
from schema.scalars import SCALARS


def make_schema(query: type, mutation: type | None = None) -> TickgraphSchema:
    return TickgraphSchema(
        query=query,
        mutation=mutation,
        config=StrawberryConfig(scalar_map=SCALARS),
        extensions=[RequestErrors, lambda: ErrorReporting(production=True)],
    )


def run(schema: TickgraphSchema, document: str, variables: dict[str, Any] | None = None) -> Any:
    """The data of a query that must succeed."""
    result = schema.execute_sync(document, variable_values=variables)
    assert not result.errors, [e.formatted for e in result.errors]
    return result.data


def fail(
    schema: TickgraphSchema, document: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The one error of a query that must fail, as a client sees it."""
    result = schema.execute_sync(document, variable_values=variables)
    assert result.errors and len(result.errors) == 1, (result.data, result.errors)
    formatted: dict[str, Any] = result.errors[0].formatted  # type: ignore[assignment]
    return formatted
