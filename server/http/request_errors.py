"""HTTP request errors as GraphQL-shaped JSON, with the same codes as everywhere else.

strawberry answers a request it cannot run (no query, a wrong ``operationName``, a
subscription over HTTP, a mutation over GET, a body that is not JSON, ...) with a
plain-text body. Clients parse ``{"errors": [...]}``: here each of those becomes one
error with a message that says what to do and a stable ``extensions.code``
(``server.http.view`` sends it, with the status strawberry chose, or 415 for a body of
the wrong media type).
"""

from __future__ import annotations

from cross_web import HTTPException
from graphql import GraphQLError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from schema.request_errors import BAD_REQUEST, OPERATION_RESOLUTION_FAILURE, operation_message
from server.errors import TickgraphError

NOT_FOUND = "NOT_FOUND"
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"

_BY_STATUS = {
    404: (NOT_FOUND, "Not found. GraphiQL is off on this server: send GraphQL with POST."),
    405: (METHOD_NOT_ALLOWED, "Send GraphQL requests with POST (queries may also use GET)."),
    415: (
        UNSUPPORTED_MEDIA_TYPE,
        "Send the request as application/json (or multipart/form-data for uploads).",
    ),
}


def describe(exc: HTTPException) -> GraphQLError:
    """The one error a refused HTTP request gets."""
    cause = exc.__cause__
    if isinstance(cause, TickgraphError):
        return GraphQLError(cause.message, extensions=cause.extensions)
    if isinstance(cause, CannotGetOperationTypeError):
        return GraphQLError(
            operation_message(cause), extensions={"code": OPERATION_RESOLUTION_FAILURE}
        )
    if isinstance(cause, InvalidOperationTypeError):
        if cause.operation_type is OperationType.SUBSCRIPTION:
            message = (
                "Subscriptions run over a WebSocket to /graphql (subprotocol "
                "graphql-transport-ws), not over plain HTTP."
            )
        else:
            message = f"{exc.reason[:1].upper()}{exc.reason[1:]}; use POST."
        return GraphQLError(message, extensions={"code": BAD_REQUEST})
    code, message = _BY_STATUS.get(exc.status_code, (BAD_REQUEST, exc.reason))
    return GraphQLError(message, extensions={"code": code})


__all__ = [
    "METHOD_NOT_ALLOWED",
    "NOT_FOUND",
    "UNSUPPORTED_MEDIA_TYPE",
    "describe",
]
