"""Request errors: what a client got wrong before anything ran, with a stable code.

GraphQL's own errors carry no code, and some of them reached clients as crashes: a
scalar that refuses a literal (``from: "x"``) was logged with a traceback and answered
``INTERNAL``, a wrong ``operationName`` was plain text over HTTP and ``INTERNAL`` over
WebSocket. Every such mistake now gets one of these codes, over HTTP and WebSocket
alike, and is never logged as a server failure:

* ``GRAPHQL_PARSE_FAILED``: the document is not GraphQL (a syntax error);
* ``GRAPHQL_VALIDATION_FAILED``: it is, but not valid against the schema (unknown
  field, wrong argument type, bad literal, ...);
* ``OPERATION_RESOLUTION_FAILURE``: the operation to run cannot be chosen: no
  operation with the given ``operationName``, several operations and no
  ``operationName``, or no operation at all;
* ``BAD_USER_INPUT``: the variables do not fit the operation's declarations;
* ``BAD_REQUEST``: the request itself is wrong (no query, a subscription over HTTP,
  a mutation over GET, ...).

The codes are Apollo Server's, which many clients already know.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError, GraphQLSyntaxError, OperationDefinitionNode
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
OPERATION_RESOLUTION_FAILURE = "OPERATION_RESOLUTION_FAILURE"
BAD_USER_INPUT = "BAD_USER_INPUT"
BAD_REQUEST = "BAD_REQUEST"

REQUEST_CODES = frozenset(
    {PARSE_FAILED, VALIDATION_FAILED, OPERATION_RESOLUTION_FAILURE, BAD_USER_INPUT, BAD_REQUEST}
)


class AmbiguousOperation(CannotGetOperationTypeError):
    """Several operations and no ``operationName``. strawberry would run the first one;
    the GraphQL spec says the request is an error, and the client meant one of them.

    A ``CannotGetOperationTypeError``, so strawberry answers it as it answers an unknown
    ``operationName``: HTTP 400, an ``error`` message over WebSocket."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(None)
        self.names = names

    def as_http_error_reason(self) -> str:
        return (
            f"The document has {len(self.names)} operations ({', '.join(self.names)}); "
            "say which one to run with operationName."
        )


def operation_message(error: CannotGetOperationTypeError) -> str:
    if isinstance(error, AmbiguousOperation) or error.operation_name is not None:
        return error.as_http_error_reason()
    return "The document has no operation (query, mutation or subscription) to run."


def request_error_code(error: GraphQLError) -> str | None:
    """The code of a request error that has none yet; ``None`` for anything else."""
    if "code" in (error.extensions or {}):
        return None
    if isinstance(error, GraphQLSyntaxError):
        return PARSE_FAILED
    original = error.original_error
    if isinstance(original, CannotGetOperationTypeError):
        return OPERATION_RESOLUTION_FAILURE
    if isinstance(original, InvalidOperationTypeError | MissingQueryError):
        return BAD_REQUEST
    if not error.path and (original is None or isinstance(original, GraphQLError)):
        # Outside any field and from graphql-core itself: the variables did not coerce.
        return BAD_USER_INPUT
    return None


def mark(error: GraphQLError, code: str) -> GraphQLError:
    """Give ``error`` a code in place: it may be a syntax error that a later step
    still has to recognise by its class, or a validation error the cache shares."""
    error.extensions = {**(error.extensions or {}), "code": code}
    return error


class RequestErrors(SchemaExtension):
    """Refuses ambiguous documents after parsing, and codes validation errors.

    Validation errors are coded here, where they are known to be validation errors:
    some carry an ``original_error`` (a scalar's ValueError about a literal) and would
    otherwise look like a failure of ours.
    """

    def on_parse(self) -> Iterator[None]:
        yield
        ctx = self.execution_context
        document = ctx.graphql_document
        # strawberry's operation_name falls back to the first operation's name; only
        # the name the client gave counts here.
        if document is None or ctx._provided_operation_name is not None:
            return
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) > 1:
            raise AmbiguousOperation(
                [o.name.value if o.name else "(anonymous)" for o in operations]
            )

    def on_validate(self) -> Iterator[None]:
        yield
        for error in self.execution_context.pre_execution_errors or ():
            if "code" not in (error.extensions or {}):
                mark(error, VALIDATION_FAILED)


__all__ = [
    "BAD_REQUEST",
    "BAD_USER_INPUT",
    "OPERATION_RESOLUTION_FAILURE",
    "PARSE_FAILED",
    "REQUEST_CODES",
    "VALIDATION_FAILED",
    "AmbiguousOperation",
    "RequestErrors",
    "mark",
    "operation_message",
    "request_error_code",
]
