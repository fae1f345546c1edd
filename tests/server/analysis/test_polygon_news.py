"""Headlines from the local Polygon REST fake, through the real RESTClient, bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from server.analysis.polygon_news import PolygonNews
from server.history.polygon import PolygonHistory
from tests.support.fake_polygon_rest import FakePolygonRest, Fault, news_item

KEY = "news-test-key-0123456789"


@pytest.fixture
async def fake() -> AsyncIterator[FakePolygonRest]:
    async with FakePolygonRest(api_key=KEY) as server:
        server.add_news(
            "NVDA",
            [news_item("NVDA", n, published_utc=f"2024-06-0{n}T12:00:00Z") for n in range(1, 9)],
        )
        yield server


def news(
    fake: FakePolygonRest, *, key: str = KEY, timeout_s: float = 5.0, limit: int = 3
) -> PolygonNews:
    return PolygonNews(
        PolygonHistory(key, base_url=fake.base_url), limit=limit, timeout_s=timeout_s
    )


async def test_newest_first_with_their_urls_one_page(fake: FakePolygonRest) -> None:
    items, note = await news(fake).headlines("NVDA")
    assert note is None
    assert [i.title for i in items] == ["NVDA story 8", "NVDA story 7", "NVDA story 6"]
    assert items[0].url == "https://wire.example/nvda/8"
    assert items[0].publisher == "The Wire" and items[0].published_utc == "2024-06-08T12:00:00Z"
    [request] = fake.requests  # the next page was not followed
    assert request.path == "/v2/reference/news"
    assert request.query["ticker"] == "NVDA" and request.query["limit"] == "3"
    assert request.query["order"] == "desc" and request.query["sort"] == "published_utc"


async def test_no_news_is_an_empty_list(fake: FakePolygonRest) -> None:
    assert await news(fake).headlines("AMZN") == ([], None)


async def test_items_without_a_web_url_are_left_out(fake: FakePolygonRest) -> None:
    bad = news_item("TSLA", 1, published_utc="2024-06-01T00:00:00Z")
    bad["article_url"] = "javascript:alert(1)"
    fake.add_news("TSLA", [bad, news_item("TSLA", 2, published_utc="2024-06-02T00:00:00Z")])
    items, _ = await news(fake).headlines("TSLA")
    assert [i.title for i in items] == ["TSLA story 2"]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.rate_limited(), "news unavailable: "),
        (Fault.server_error(), "news unavailable: "),
        (Fault.malformed(), "news unavailable: malformed response"),
    ],
)
async def test_a_failure_becomes_a_note(fake: FakePolygonRest, fault: Fault, expected: str) -> None:
    fake.inject(fault)
    items, note = await news(fake).headlines("NVDA")
    assert items == [] and note is not None and note.startswith(expected)
    assert len(fake.requests) == 1  # no hidden retries


async def test_a_wrong_key_is_a_note_without_the_key(fake: FakePolygonRest) -> None:
    items, note = await news(fake, key="wrong-key-abcdef").headlines("NVDA")
    assert items == [] and note is not None
    assert "wrong-key-abcdef" not in note and "Unknown API Key" in note


async def test_a_slow_answer_is_given_up_on(fake: FakePolygonRest) -> None:
    fake.inject(Fault.slow(5.0))
    items, note = await news(fake, timeout_s=0.2).headlines("NVDA")
    assert items == [] and note == "news unavailable: no answer from Polygon within 0.2 s"
