"""Cursor pagination (the Relay connection shape): ``first`` items ``after`` a cursor.

Cursors are opaque strings to clients; each connection encodes its own position in
them (``server.storage.alert_events.HistoryCursor``, a bar's start for bars). The limit
applies to the page, never to the range being walked: any stored history can be read
to its end, one page at a time.
"""

from __future__ import annotations

import base64
import binascii

import strawberry

from server.errors import InvalidInput, LimitExceeded

DEFAULT_PAGE = 100
MAX_PAGE = 5_000


@strawberry.type(description="Where a page ends, and whether there is more after it.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` to get the next page; null for an empty page."
    )


def page_size(first: int, maximum: int = MAX_PAGE) -> int:
    if first < 1:
        raise InvalidInput(f"first must be at least 1, got {first}", first=first)
    if first > maximum:
        raise LimitExceeded(f"first must be at most {maximum}, got {first}", limit=maximum)
    return first


def encode_position(kind: str, value: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode()


def decode_position(kind: str, cursor: str, what: str) -> int:
    """The integer a cursor of ``kind`` holds; ``InvalidInput`` for anything else."""
    try:
        got_kind, value = base64.urlsafe_b64decode(cursor.encode()).decode().split(":")
        if got_kind != kind:
            raise ValueError(got_kind)
        return int(value)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidInput(f"not a cursor of {what}: pass an endCursor it returned") from None


__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "PageInfo", "decode_position", "encode_position"]
