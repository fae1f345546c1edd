"""How errors leave the API.

* A ``TickgraphError`` is expected (bad input, limits, auth): it reaches the client
  with its message and ``extensions.code`` and is not logged as a server failure.
* GraphQL's own errors (syntax, validation) have no original error and are shown
  as they are.
* Anything else is a bug or an outage: it is logged once with a short reference
  id, and the client gets ``extensions.code = "INTERNAL"`` with the same reference.
  In production the message is replaced, so internals never leak.
"""

from __future__ import annotations

import logging
import uuid

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext

from server.errors import TickgraphError

log = logging.getLogger("tickgraph.errors")


def is_unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    # GraphQL's own errors (bad variables, coercion) are the client's, not ours.
    return original is not None and not isinstance(original, TickgraphError | GraphQLError)


class ErrorReporting(MaskErrors):
    def __init__(self, *, production: bool) -> None:
        super().__init__(should_mask_error=is_unexpected)
        self.production = production

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return self.process(errors)

    def process(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        """Each unexpected error logged with a reference, and masked in production."""
        return [self._report(e) if is_unexpected(e) else e for e in errors]

    def _report(self, error: GraphQLError) -> GraphQLError:
        reference = uuid.uuid4().hex[:12]
        original = error.original_error
        log.error(
            "unexpected error in %s (reference %s)",
            ".".join(map(str, error.path or ())) or "operation",
            reference,
            exc_info=(type(original), original, original.__traceback__) if original else None,
            extra={"reference": reference},
        )
        message = (
            f"Internal server error (reference {reference})" if self.production else error.message
        )
        return GraphQLError(
            message=message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL", "reference": reference},
        )


def log_expected_errors(errors: list[GraphQLError], context: ExecutionContext | None) -> None:
    """Replaces strawberry's default, which logs every client mistake with a traceback."""
    for error in errors:
        if not is_unexpected(error):
            log.debug("client error: %s", error.message)
