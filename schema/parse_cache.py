"""A parsed-document cache that leaves error reporting to strawberry.

strawberry's own ``ParserCache`` parses inside the extension hook, which runs
outside strawberry's error handling: a syntax error in a *subscription* then kills
the operation with a bare ``complete`` and no ``error`` message. Here a document
that does not parse is simply not cached; strawberry parses it again itself and
reports the syntax error the way the protocol says.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from graphql import DocumentNode, GraphQLError, parse
from strawberry.extensions import SchemaExtension


@lru_cache(maxsize=1024)
def _parse(query: str, options: tuple[tuple[str, Any], ...]) -> DocumentNode:
    return parse(query, **dict(options))


class ParseCache(SchemaExtension):
    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        if ctx.query is not None and ctx.graphql_document is None:
            with contextlib.suppress(GraphQLError):
                ctx.graphql_document = _parse(ctx.query, tuple(sorted(ctx.parse_options.items())))
        yield
