"""A local Polygon REST server for the aggregates, trades and news endpoints, speaking the real wire
format.

``GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}`` with
``adjusted``, ``sort``, ``limit`` (default 5000, at most 50000) and ``apiKey`` or
``Authorization: Bearer KEY`` (what polygon-api-client sends). ``from``/``to`` are
millisecond timestamps or ``YYYY-MM-DD`` New York dates, both inclusive, matched against
each bar's ``t`` (its start). Responses look like Polygon's::

    {"ticker": "ORCL", "queryCount": 2, "resultsCount": 2, "adjusted": true,
     "results": [{"v": 1.2e6, "vw": 45.1, "o": 45.0, "c": 45.3, "h": 45.5, "l": 44.9,
                  "t": 1419829200000, "n": 9000}, ...],
     "status": "OK", "request_id": "...", "count": 2,
     "next_url": "http://127.0.0.1:PORT/v2/aggs/ticker/ORCL/range/1/day/<next t>/<to>?cursor=..."}

``results`` is absent when there are none, as on Polygon. A page holds at most
``min(limit, page_size)`` bars; the rest is behind ``next_url``, whose opaque ``cursor``
carries the query (the client requests it without other parameters, as with Polygon).
A missing or wrong key gets 401 ``{"status": "ERROR", "error": ...}``.

Faults are queued per request (``inject``) or applied to every request (``always``):
``Fault.rate_limited``, ``Fault.server_error``, ``Fault.slow``, ``Fault.malformed``.
Every request is recorded in ``requests``; ``max_in_flight`` is the most requests
answered at once.

    async with FakePolygonRest(api_key="k") as fake:
        fake.add_aggs("ORCL", 1, "day", daily_aggs_from_csv(path))
        history = PolygonHistory("k", base_url=fake.base_url)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import json
import uuid
from collections import deque
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.market.trading_day import NEW_YORK
from tests.support.loopback import LoopbackFake, serving

TIMESPANS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
DEFAULT_LIMIT = 5000
MAX_LIMIT = 50000


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or before) answering normally. ``Fault()`` does nothing:
    queue it to let a request through, e.g. ``inject(Fault(), Fault.malformed())`` breaks
    the second page only."""

    status: int = 200
    body: bytes | None = None  # replaces the normal body when set
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait this long first (cut short when the server stops)

    @classmethod
    def rate_limited(cls, retry_after_s: int = 1) -> Fault:
        return cls(
            429,
            _error_body(
                "ERROR",
                "You've exceeded the maximum requests per minute, please wait or upgrade "
                "your subscription to continue. https://polygon.io/pricing",
            ),
            {"Retry-After": str(retry_after_s)},
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(status, _error_body("ERROR", "Internal Server Error"))

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        return cls(delay_s=delay_s)

    @classmethod
    def malformed(cls) -> Fault:
        # A body cut off mid-stream, as from a proxy that dropped the connection.
        return cls(200, b'{"ticker":"X","status":"OK","results":[{"o":1.0,"h":')


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    query: dict[str, str]
    authorization: str | None


def _error_body(status: str, error: str) -> bytes:
    return json.dumps({"status": status, "request_id": uuid.uuid4().hex, "error": error}).encode()


def ny_midnight_ms(day: date) -> int:
    return int(datetime.combine(day, time(0), tzinfo=NEW_YORK).timestamp() * 1000)


def daily_aggs_from_csv(path: Path) -> list[dict[str, Any]]:
    """Daily aggregates from a ``date,open,high,low,close,volume`` CSV, ``t`` at New York
    midnight like Polygon's daily bars. No ``vw``/``n``: the CSV does not have them (and
    the mapping of missing fields gets exercised)."""
    with path.open(newline="") as f:
        return [
            {
                "v": float(row["volume"]),
                "o": float(row["open"]),
                "c": float(row["close"]),
                "h": float(row["high"]),
                "l": float(row["low"]),
                "t": ny_midnight_ms(date.fromisoformat(row["date"])),
            }
            for row in csv.DictReader(f)
        ]


def trades_from_recording(path: Path, ticker: str) -> list[dict[str, Any]]:
    """The prints of a recording as ``/v3/trades`` results (times in ns)."""
    from streams.events import Trade
    from streams.recording import load_events

    return [
        {
            "conditions": list(e.c),
            "exchange": e.x,
            "id": e.i,
            "participant_timestamp": e.t * 1_000_000,
            "price": e.p,
            "sequence_number": e.q,
            "sip_timestamp": e.t * 1_000_000,
            "size": e.s,
            "tape": e.z,
        }
        for e in load_events(path)
        if type(e) is Trade and e.sym == ticker
    ]


def minute_aggs_from_recording(path: Path, ticker: str) -> list[dict[str, Any]]:
    """The 1-minute aggregates of a recording's prints, as ``/v2/aggs`` results."""
    from streams.events import Trade
    from streams.recording import load_events

    minutes: dict[int, list[Trade]] = {}
    for e in load_events(path):
        if type(e) is Trade and e.sym == ticker:
            minutes.setdefault(e.t - e.t % 60_000, []).append(e)
    out = []
    for start, prints in sorted(minutes.items()):
        volume = sum(p.s for p in prints)
        out.append(
            {
                "v": float(volume),
                "vw": sum(p.p * p.s for p in prints) / volume,
                "o": prints[0].p,
                "c": prints[-1].p,
                "h": max(p.p for p in prints),
                "l": min(p.p for p in prints),
                "t": start,
                "n": len(prints),
            }
        )
    return out


def news_item(
    ticker: str, n: int, *, published_utc: str, title: str | None = None
) -> dict[str, Any]:
    """One ``/v2/reference/news`` result with every field Polygon sends."""
    return {
        "id": f"news{n}",
        "publisher": {
            "name": "The Wire",
            "homepage_url": "https://wire.example/",
            "logo_url": "https://wire.example/logo.png",
            "favicon_url": "https://wire.example/favicon.ico",
        },
        "title": title or f"{ticker} story {n}",
        "author": "Staff",
        "published_utc": published_utc,
        "article_url": f"https://wire.example/{ticker.lower()}/{n}",
        "tickers": [ticker],
        "image_url": f"https://wire.example/{n}.jpg",
        "description": "A story.",
        "keywords": ["markets"],
        "insights": [{"ticker": ticker, "sentiment": "neutral", "sentiment_reasoning": "none"}],
    }


def minute_aggs(start_ms: int, count: int, *, price: float = 100.0) -> list[dict[str, Any]]:
    """``count`` consecutive one-minute aggregates from ``start_ms``, with every field."""
    out: list[dict[str, Any]] = []
    for i in range(count):
        o = round(price + (i % 17) * 0.01, 2)
        c = round(o + ((i % 5) - 2) * 0.01, 2)
        out.append(
            {
                "v": 1000.0 + i * 10.5,  # fractional, as adjusted volumes can be
                "vw": round((o + c) / 2, 4),
                "o": o,
                "c": c,
                "h": round(max(o, c) + 0.03, 2),
                "l": round(min(o, c) - 0.02, 2),
                "t": start_ms + i * 60_000,
                "n": 10 + i % 7,
            }
        )
    return out


def _parse_bound(raw: str, *, end: bool) -> int:
    if raw.isdigit():
        return int(raw)
    day = date.fromisoformat(raw)  # ValueError -> 400
    return ny_midnight_ms(day + timedelta(days=1)) - 1 if end else ny_midnight_ms(day)


def _encode_cursor(params: Mapping[str, str]) -> str:
    return base64.urlsafe_b64encode(urlencode(params).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, str]:
    padded = cursor + "=" * (-len(cursor) % 4)
    return dict(parse_qsl(base64.urlsafe_b64decode(padded).decode()))


class FakePolygonRest(LoopbackFake):
    def __init__(self, api_key: str = "test-key", *, page_size: int = MAX_LIMIT) -> None:
        self.api_key = api_key
        self.page_size = page_size
        self.requests: list[RecordedRequest] = []
        #: Most requests the fake was answering at one moment (a client's concurrency).
        self.max_in_flight = 0
        self._in_flight = 0
        self.always: Fault | None = None
        self._faults: deque[Fault] = deque()
        self._aggs: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
        self._trades: dict[str, list[dict[str, Any]]] = {}
        self._news: dict[str, list[dict[str, Any]]] = {}
        self._stopping = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route(
                    "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from_}/{to}",
                    self._aggs_endpoint,
                ),
                Route("/v3/trades/{ticker}", self._trades_endpoint),
                Route("/v2/reference/news", self._news_endpoint),
            ]
        )

    # --- test API ----------------------------------------------------------------------

    def add_aggs(
        self, ticker: str, multiplier: int, timespan: str, aggs: Iterable[Mapping[str, Any]]
    ) -> None:
        rows = self._aggs.setdefault((ticker, multiplier, timespan), [])
        rows.extend(dict(a) for a in aggs)
        rows.sort(key=lambda a: a["t"])

    def add_trades(self, ticker: str, trades: Iterable[Mapping[str, Any]]) -> None:
        """Prints for ``/v3/trades/{ticker}``, in its shape (``sip_timestamp`` in ns)."""
        rows = self._trades.setdefault(ticker, [])
        rows.extend(dict(t) for t in trades)
        rows.sort(key=lambda t: t["sip_timestamp"])

    def add_news(self, ticker: str, items: Iterable[Mapping[str, Any]]) -> None:
        """Articles for ``/v2/reference/news?ticker=``, in its shape (``news_item``)."""
        rows = self._news.setdefault(ticker, [])
        rows.extend(dict(i) for i in items)
        rows.sort(key=lambda i: i["published_utc"], reverse=True)

    def inject(self, *faults: Fault) -> None:
        """Apply these to the next requests, one each, before ``always``."""
        self._faults.extend(faults)

    # --- lifecycle -----------------------------------------------------------------------

    def _serve(self) -> contextlib.AbstractAsyncContextManager[int]:
        # Setting _stopping ends slow responses now rather than at their delay.
        return serving(self.app, name="fake Polygon REST server", on_stop=self._stopping.set)

    # --- the endpoint --------------------------------------------------------------------

    async def _aggs_endpoint(self, request: Request) -> Response:
        return await self._counted(self._answer(request))

    async def _counted(self, answer: Awaitable[Response]) -> Response:
        """``answer``, counted in ``max_in_flight``."""
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await answer
        finally:
            self._in_flight -= 1

    async def _admit(self, request: Request) -> tuple[dict[str, str], Response | None]:
        """Record the request, apply the next fault, check the key: the query, and the
        response that ends the request early (a fault, a missing or wrong key), if any."""
        query = dict(request.query_params)
        auth = request.headers.get("authorization")
        self.requests.append(RecordedRequest(request.url.path, query, auth))

        fault = self._faults.popleft() if self._faults else self.always
        if fault is not None:
            if fault.delay_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), fault.delay_s)
            if fault.status != 200 or fault.body is not None:
                return query, Response(
                    fault.body or b"",
                    fault.status,
                    headers=dict(fault.headers),
                    media_type="application/json",
                )

        key = query.get("apiKey")
        if auth is not None and auth.startswith("Bearer "):
            key = auth.removeprefix("Bearer ")
        if not key:
            return query, self._json(401, _error_body("ERROR", "API Key was not provided"))
        if key != self.api_key:
            return query, self._json(401, _error_body("ERROR", "Unknown API Key"))
        return query, None

    async def _query(self, request: Request) -> tuple[dict[str, str], Response | None]:
        """``_admit``, with the query a ``next_url`` cursor carries merged in."""
        query, refused = await self._admit(request)
        if refused is None and "cursor" in query:
            query = {**_decode_cursor(query["cursor"]), **query}
        return query, refused

    async def _answer(self, request: Request) -> Response:
        query, refused = await self._query(request)
        if refused is not None:
            return refused

        p = request.path_params
        try:
            multiplier = int(p["multiplier"])
            timespan = p["timespan"]
            if multiplier < 1 or timespan not in TIMESPANS:
                raise ValueError
            start = _parse_bound(p["from_"], end=False)
            stop = _parse_bound(p["to"], end=True)
            limit = min(int(query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
            if limit < 1:
                raise ValueError
        except ValueError:
            return self._json(400, _error_body("ERROR", "Could not parse the request parameters"))
        adjusted = query.get("adjusted", "true")
        sort = query.get("sort", "asc")

        rows = [
            a
            for a in self._aggs.get((p["ticker"], multiplier, timespan), [])
            if start <= a["t"] <= stop
        ]
        if sort == "desc":
            rows.reverse()
        page_len = min(limit, self.page_size)
        page = rows[:page_len]
        body: dict[str, Any] = {
            "ticker": p["ticker"],
            "queryCount": len(page),
            "resultsCount": len(page),
            "adjusted": adjusted != "false",
        }
        if page:
            body["results"] = page
        body.update({"status": "OK", "request_id": uuid.uuid4().hex, "count": len(page)})
        if len(rows) > page_len:
            nxt = rows[page_len]["t"]
            # The remaining window, like Polygon's next_url: it moves the near bound.
            lo, hi = (str(nxt), p["to"]) if sort != "desc" else (p["from_"], str(nxt))
            cursor = _encode_cursor({"adjusted": adjusted, "limit": str(limit), "sort": sort})
            body["next_url"] = (
                f"{self.base_url}/v2/aggs/ticker/{p['ticker']}/range/{multiplier}/{timespan}"
                f"/{lo}/{hi}?cursor={cursor}"
            )
        return self._json(200, json.dumps(body).encode())

    async def _trades_endpoint(self, request: Request) -> Response:
        """``/v3/trades/{ticker}?timestamp.gte=&timestamp.lt=&order=&sort=&limit=``:
        bounds in ns, ``next_url`` with a cursor that holds the rest of the query."""
        return await self._counted(self._answer_trades(request))

    async def _answer_trades(self, request: Request) -> Response:
        query, refused = await self._query(request)
        if refused is not None:
            return refused
        try:
            lo = int(query.get("timestamp.gte", 0))
            hi = int(query.get("timestamp.lt", 2**63))
            limit = min(int(query.get("limit", 1000)), MAX_LIMIT)
        except ValueError:
            return self._json(400, _error_body("ERROR", "Could not parse the request parameters"))
        ticker = request.path_params["ticker"]
        rows = [t for t in self._trades.get(ticker, []) if lo <= t["sip_timestamp"] < hi]
        page = rows[: min(limit, self.page_size)]
        body: dict[str, Any] = {"status": "OK", "request_id": uuid.uuid4().hex}
        if page:
            body["results"] = page
        if len(rows) > len(page):
            rest = {
                "timestamp.gte": str(rows[len(page)]["sip_timestamp"]),
                "timestamp.lt": str(hi),
                "limit": str(limit),
            }
            body["next_url"] = f"{self.base_url}/v3/trades/{ticker}?cursor={_encode_cursor(rest)}"
        return self._json(200, json.dumps(body).encode())

    async def _news_endpoint(self, request: Request) -> Response:
        """``/v2/reference/news?ticker=&limit=&order=&sort=published_utc``: newest first
        (``order=asc`` reverses), ``limit`` default 10 (at most 1000), ``next_url`` with a
        cursor for the rest, as Polygon pages it."""
        return await self._counted(self._answer_news(request))

    async def _answer_news(self, request: Request) -> Response:
        query, refused = await self._query(request)
        if refused is not None:
            return refused
        try:
            limit = min(int(query.get("limit", 10)), 1000)
            offset = int(query.get("offset", 0))
            if limit < 1 or offset < 0:
                raise ValueError
        except ValueError:
            return self._json(400, _error_body("ERROR", "Could not parse the request parameters"))
        rows = list(self._news.get(query.get("ticker", ""), []))
        if query.get("order") == "asc":
            rows.reverse()
        page = rows[offset : offset + limit]
        body: dict[str, Any] = {"results": page, "status": "OK", "request_id": uuid.uuid4().hex}
        body["count"] = len(page)
        if offset + limit < len(rows):
            rest = {k: v for k, v in query.items() if k not in ("cursor", "apiKey")}
            rest["offset"] = str(offset + limit)
            body["next_url"] = f"{self.base_url}/v2/reference/news?cursor={_encode_cursor(rest)}"
        return self._json(200, json.dumps(body).encode())

    @staticmethod
    def _json(status: int, body: bytes) -> Response:
        return Response(body, status, media_type="application/json")
