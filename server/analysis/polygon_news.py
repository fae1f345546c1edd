"""Recent headlines for a symbol from Polygon REST (``/v2/reference/news``), bounded.

Through polygon-api-client's ``RESTClient.list_ticker_news``, on the same clients as the
history provider (``PolygonHistory``): one key, one pool of connections, one concurrency
cap for every REST call we make with it (Polygon's rate limits are per key), the
client's hidden retries off, each call in a worker thread under its own deadline, and
the key scrubbed from every message. News is a garnish of an analysis, never a reason
for it to fail or wait: its deadline is short, and a failure becomes a note in the
snapshot ("news unavailable: ...").

Only the first page is read (``limit`` newest items): the client would otherwise follow
``next_url`` through the whole archive. Each item keeps its title, its source URL (only
http and https), its publication time and its publisher.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import urllib3.exceptions
from polygon.exceptions import BadResponse

from server.analysis.snapshot import NewsItem
from server.history.polygon import (  # shared with the history provider: see the docstring
    PolygonHistory,
    _describe_transport,
    _Malformed,
    _polygon_error,
    _Slot,
)

DEFAULT_LIMIT = 5
DEFAULT_TIMEOUT_S = 3.0
MAX_TITLE_CHARS = 300


def news_item(raw: Any) -> NewsItem | None:
    """A ``TickerNews`` as a ``NewsItem``, or ``None`` without a title or a web URL."""
    title = raw.title if isinstance(raw.title, str) else ""
    url = raw.article_url if isinstance(raw.article_url, str) else ""
    if not title.strip() or not url.startswith(("https://", "http://")):
        return None
    publisher = getattr(raw.publisher, "name", None)
    published = raw.published_utc if isinstance(raw.published_utc, str) else ""
    return NewsItem(
        title=" ".join(title.split())[:MAX_TITLE_CHARS],
        url=url,
        published_utc=published,
        publisher=publisher if isinstance(publisher, str) else None,
    )


class PolygonNews:
    def __init__(
        self,
        rest: PolygonHistory,
        *,
        limit: int = DEFAULT_LIMIT,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not 1 <= limit <= 50:
            raise ValueError("limit must be between 1 and 50")
        self._rest = rest
        self._limit = limit
        self._timeout_s = timeout_s

    def __repr__(self) -> str:
        return "PolygonNews(api_key='***')"

    async def headlines(self, symbol: str) -> tuple[list[NewsItem], str | None]:
        """The newest headlines, and a note saying why there are none when they could not
        be had (never raises for a failure of Polygon)."""
        limit = self._limit

        def work(slot: _Slot, cancelled: threading.Event) -> list[NewsItem]:
            slot.decoder.begin()
            out: list[NewsItem] = []
            articles = slot.client.list_ticker_news(
                ticker=symbol, limit=limit, order="desc", sort="published_utc"
            )
            for seen, raw in enumerate(articles, start=1):
                item = news_item(raw)
                if item is not None:
                    out.append(item)
                if seen >= limit or cancelled.is_set():
                    break
            if slot.decoder.pages == 0:
                raise _Malformed("the response could not be decoded")
            return out

        try:
            async with asyncio.timeout(self._timeout_s):
                # The history provider's worker pool (its clients, cap and cancellation).
                return await self._rest._in_thread(work), None
        except TimeoutError:
            return [], f"news unavailable: no answer from Polygon within {self._timeout_s:g} s"
        except (_Malformed, BadResponse, urllib3.exceptions.HTTPError, OSError, TypeError) as exc:
            return [], self._rest._scrub(f"news unavailable: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, _Malformed):
        return f"malformed response ({exc})"
    if isinstance(exc, BadResponse):
        return f"request refused: {_polygon_error(str(exc))}"
    if isinstance(exc, TypeError):
        # The client's model classes refuse unexpected fields with a TypeError.
        return "malformed response (unexpected fields)"
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        return _describe_transport(exc.reason)[1]
    return _describe_transport(exc)[1]


__all__ = ["PolygonNews", "news_item"]
