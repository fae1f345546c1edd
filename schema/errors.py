"""How errors leave the API.

* A ``TickgraphError`` is expected (bad input, limits, auth): it reaches the client
  with its message and ``extensions.code`` and is not logged as a server failure.
* A request error (the document does not parse or validate, the operation cannot be
  chosen, the variables do not fit) is the client's mistake: it gets its code from
  ``schema.request_errors`` and is not logged as a failure either.
* The database down or restarting is an outage, not a bug: SERVICE_UNAVAILABLE with
  ``retryAfter``, logged as a warning.
* Anything else is a bug: it is logged once with a short reference
  id, and the client gets ``extensions.code = "INTERNAL"`` with the same reference.
  In production the message is replaced, so internals never leak.
"""

from __future__ import annotations

import logging
import uuid

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.types import ExecutionContext

from schema.request_errors import REQUEST_CODES, mark, operation_message, request_error_code
from server.errors import TickgraphError
from server.observability import correlation
from server.storage.database import is_outage

log = logging.getLogger("tickgraph.errors")


def is_unexpected(error: GraphQLError) -> bool:
    if (error.extensions or {}).get("code") in REQUEST_CODES or request_error_code(error):
        return False
    original = error.original_error
    # GraphQL's own errors (bad variables, coercion) are the client's, not ours.
    return original is not None and not isinstance(original, TickgraphError | GraphQLError)


def with_request_code(error: GraphQLError) -> GraphQLError:
    code = request_error_code(error)
    if code is None:
        return error
    if isinstance(error.original_error, CannotGetOperationTypeError):
        error.message = operation_message(error.original_error)
    return mark(error, code)


class ErrorReporting(MaskErrors):
    def __init__(self, *, production: bool) -> None:
        super().__init__(should_mask_error=is_unexpected)
        self.production = production

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return self.process(errors)

    def process(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        """Each unexpected error logged with a reference, and masked in production."""
        return [self._report(e) if is_unexpected(e) else with_request_code(e) for e in errors]

    def _report(self, error: GraphQLError) -> GraphQLError:
        reference = uuid.uuid4().hex[:12]
        original = error.original_error
        if original is not None and is_outage(original):
            # Not a bug: the database is down or restarting. Say so, and when to retry.
            log.warning(
                "database unavailable in %s: %s: %s",
                ".".join(map(str, error.path or ())) or "operation",
                type(original).__name__,
                original,
            )
            return GraphQLError(
                message="The database is unavailable; try again shortly.",
                nodes=error.nodes,
                source=error.source,
                positions=error.positions,
                path=error.path,
                extensions={"code": "SERVICE_UNAVAILABLE", "retryAfter": 1},
            )
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
            extensions=_internal_extensions(reference),
        )


def _internal_extensions(reference: str) -> dict[str, object]:
    """What a masked error tells the client: its reference and, when it happened in a
    request or a connection, that one's correlation id (also on every log line of it)."""
    extensions: dict[str, object] = {"code": "INTERNAL", "reference": reference}
    cid = correlation.current()
    if cid is not None:
        extensions["correlationId"] = cid
    return extensions


def log_expected_errors(errors: list[GraphQLError], context: ExecutionContext | None) -> None:
    """Replaces strawberry's default, which logs every client mistake with a traceback."""
    for error in errors:
        if not is_unexpected(error):
            log.debug("client error: %s", error.message)
