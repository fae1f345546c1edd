"""The error hierarchy: every expected failure has a stable, machine-readable code.

GraphQL resolvers raise these; the schema layer turns them into GraphQL errors
with ``extensions.code`` (and any extra fields in ``extensions``). Anything that
is not a ``TickgraphError`` is unexpected: it is logged with a correlation id and,
in production, masked from the client.
"""

from __future__ import annotations

from typing import ClassVar


class TickgraphError(Exception):
    """Base of every expected error. ``code`` is stable; clients branch on it."""

    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str, **extensions: object) -> None:
        super().__init__(message)
        self.message = message
        # graphql-core copies a dict ``extensions`` attribute of the original error
        # into the GraphQL error, so resolvers can simply raise these.
        self.extensions: dict[str, object] = {"code": self.code, **extensions}


class InvalidInput(TickgraphError):
    code = "BAD_USER_INPUT"


class InvalidSymbol(InvalidInput):
    code = "INVALID_SYMBOL"


class SymbolNotStreamed(InvalidSymbol):
    """A known symbol that this server's feed cannot stream (a replay has only what it
    recorded): a subscription would otherwise wait forever in silence."""

    code = "SYMBOL_NOT_STREAMED"


class LimitExceeded(InvalidInput):
    code = "LIMIT_EXCEEDED"


class Unavailable(TickgraphError):
    code = "UNAVAILABLE"
