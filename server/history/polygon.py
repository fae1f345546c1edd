"""Historical bars from Polygon's aggregates REST endpoint (polygon-api-client), bounded:
no hidden client retries, one overall deadline, a concurrency cap, the key scrubbed from
every error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec
import urllib3.exceptions
from polygon import RESTClient
from polygon.exceptions import BadResponse

from server.history.provider import (
    MAX_TRADES,
    HistoryUnavailable,
    check_count,
    check_range,
)
from server.market.timeframes import Bar, Timeframe
from server.settings import Secret
from streams.events import Trade

_T = TypeVar("_T")

_DAY_MS: Final = 86_400_000


_POLYGON_SPANS: Final[dict[Timeframe, tuple[int, str]]] = {
    Timeframe.S1: (1, "second"),
    Timeframe.M1: (1, "minute"),
    Timeframe.M5: (5, "minute"),
    Timeframe.M15: (15, "minute"),
    Timeframe.H1: (1, "hour"),
    Timeframe.D1: (1, "day"),
}
#: Polygon's largest page; more comes through ``next_url``.
_POLYGON_PAGE_LIMIT: Final = 50_000
_POLYGON_OK: Final = frozenset({"OK", "DELAYED"})  # DELAYED: 15-minute-delayed plans


class _Malformed(Exception):
    """A response we cannot trust. Deliberately not a ``ValueError``: the client swallows
    ``ValueError`` while decoding a page and ends the iteration as if there were no more
    data, which would turn a broken response into silently missing bars."""


class _StrictJson:
    """The client's ``custom_json``: decodes each page and refuses anything that is not a
    well-formed aggregates response, instead of letting the client shrug it off.

    It also counts pages: the client swallows a body that is not UTF-8 before our
    ``loads`` sees it, so "no page decoded" or "the last page decoded promised a next
    one" after the iteration means a page was lost. One instance per client; a client is
    used by one thread at a time, so plain attributes suffice."""

    def __init__(self) -> None:
        self.pages = 0
        self.more = False

    def begin(self) -> None:
        self.pages = 0
        self.more = False

    def loads(self, text: str) -> Any:
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise _Malformed(f"response is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise _Malformed("response is not a JSON object")
        status = obj.get("status")
        if status not in _POLYGON_OK:
            detail = obj.get("error") or obj.get("message") or ""
            raise _Malformed(f"response status {status!r} {detail}".rstrip())
        results = obj.get("results", [])
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise _Malformed("'results' is not a list of objects")
        next_url = obj.get("next_url")
        if next_url is not None and not isinstance(next_url, str):
            raise _Malformed("'next_url' is not a string")
        self.pages += 1
        self.more = next_url is not None
        return obj

    def check_complete(self) -> None:
        if self.pages == 0 or self.more:
            raise _Malformed("a page of the response could not be decoded")


@dataclass(slots=True)
class _Slot:
    """One client per concurrency slot: urllib3 keeps one pooled connection per host per
    client, so threads sharing a client would open and discard connections."""

    client: Any  # polygon.RESTClient (untyped)
    decoder: _StrictJson


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Malformed(f"aggregate field {name!r} is {value!r}")
    return float(value)


def polygon_bar(symbol: str, timeframe: Timeframe, agg: Any) -> Bar:
    """A Polygon ``Agg`` (``o h l c v vw t n``) as our ``Bar``.

    - Boundaries come from ``Timeframe.bucket(t)``: Polygon's ``t`` is the bar start (New
      York midnight for daily bars), the end is ours to compute.
    - ``v`` is a float (fractional after split adjustment): rounded to whole shares.
    - ``vw`` missing (older or thin data): the typical price ``(h + l + c) / 3``, the usual
      stand-in for VWAP when only OHLC is known; it always lies within the bar.
    - ``n`` missing: 0 trades.
    """
    o = _number(agg.open, "o")
    h = _number(agg.high, "h")
    low = _number(agg.low, "l")
    c = _number(agg.close, "c")
    t = int(_number(agg.timestamp, "t"))
    volume = 0 if agg.volume is None else round(_number(agg.volume, "v"))
    vwap = (h + low + c) / 3 if agg.vwap is None else _number(agg.vwap, "vw")
    trades = 0 if agg.transactions is None else int(_number(agg.transactions, "n"))
    start, end = timeframe.bucket(t)
    return Bar(symbol, timeframe, start, end, o, h, low, c, volume, vwap, trades, final=True)


def _initial_span_ms(timeframe: Timeframe, count: int) -> int:
    """A first window that usually holds ``count`` bars: markets are closed at night, at
    weekends and on holidays, so a window of exactly ``count`` buckets would come up short.
    Intraday: Polygon has bars 04:00-20:00 New York on weekdays (under half the calendar),
    so 3x the buckets plus a long weekend. Daily: ~252 sessions in 365 days, plus slack."""
    if timeframe is Timeframe.D1:
        return (math.ceil(count * 1.5) + 7) * _DAY_MS
    size = timeframe.millis
    assert size is not None
    return 3 * count * size + 4 * _DAY_MS


class PolygonHistory:
    """Bars from Polygon's ``/v2/aggs/ticker/{T}/range/{m}/{span}/{from}/{to}``.

    polygon-api-client is synchronous, so each request runs in a worker thread, at most
    ``max_concurrency`` at a time, and the whole call (including waiting for a slot and
    every page) is bounded by ``timeout_s``. ``list_aggs`` is used rather than
    ``get_aggs`` because only ``list_aggs`` follows ``next_url`` across pages.

    The client's own retries are disabled (``retries=0``): left on, urllib3 retries
    413/429/499/500/502/503/504 and connection/read errors three times with 0.1 s
    exponential backoff and sleeps for whatever ``Retry-After`` says (up to six hours) in
    the worker thread, where no deadline of ours can stop it. A refusal is reported at
    once instead; callers retry later or fall back to another provider.

    ``bars`` widens the window backwards (doubling, ``max_widenings`` times) until it
    has ``count`` bars; a symbol with less history simply returns fewer.
    """

    def __init__(
        self,
        api_key: str | Secret,
        *,
        base_url: str = "https://api.polygon.io",
        timeout_s: float = 10.0,
        max_concurrency: int = 4,
        max_widenings: int = 4,
    ) -> None:
        key = api_key.reveal() if isinstance(api_key, Secret) else api_key
        if not key:
            raise ValueError("a Polygon API key is required")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._key = key
        self._timeout_s = timeout_s
        self._max_widenings = max_widenings
        self._slots: asyncio.Queue[_Slot] = asyncio.Queue()
        for _ in range(max_concurrency):
            decoder = _StrictJson()
            client = RESTClient(
                api_key=key,
                base=base_url.rstrip("/"),
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
                retries=0,
                custom_json=decoder,
            )
            self._slots.put_nowait(_Slot(client, decoder))

    def __repr__(self) -> str:
        return "PolygonHistory(api_key='***')"

    async def bars(
        self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int
    ) -> list[Bar]:
        count = check_count(count)
        if count == 0:
            return []
        by_start: dict[int, Bar] = {}
        to_ms = end_ms - 1
        span = _initial_span_ms(timeframe, count)
        async with self._deadline(symbol, timeframe):
            for _ in range(self._max_widenings + 1):
                from_ms = max(0, to_ms - span + 1)
                for bar in await self._fetch(symbol, timeframe, from_ms, to_ms):
                    if bar.end_ms <= end_ms:
                        by_start.setdefault(bar.start_ms, bar)
                if len(by_start) >= count or from_ms == 0:
                    break
                # The next window ends where this one began: no bar is fetched twice.
                to_ms = from_ms - 1
                span *= 2
        return [by_start[s] for s in sorted(by_start)][-count:]

    async def range(
        self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int
    ) -> list[Bar]:
        if not check_range(timeframe, start_ms, end_ms):
            return []
        async with self._deadline(symbol, timeframe):
            got = await self._fetch(symbol, timeframe, start_ms, end_ms - 1)
        return [b for b in got if b.start_ms >= start_ms and b.end_ms <= end_ms]

    async def trades(self, symbol: str, start_ms: int, end_ms: int) -> list[Trade] | None:
        """Every print in ``[start_ms, end_ms)`` from ``/v3/trades/{T}`` (SIP time), oldest
        first; ``HistoryUnavailable`` on failure or beyond ``MAX_TRADES`` prints. A print
        the live decoder would refuse (a field out of bounds) is left out."""
        if end_ms <= start_ms:
            return []

        def work(slot: _Slot, cancelled: threading.Event) -> list[Trade]:
            slot.decoder.begin()
            out: list[Trade] = []
            for t in slot.client.list_trades(
                symbol,
                timestamp_gte=start_ms * 1_000_000,
                timestamp_lt=end_ms * 1_000_000,
                sort="timestamp",
                order="asc",
                limit=_POLYGON_PAGE_LIMIT,
            ):
                if cancelled.is_set():
                    return out
                trade = _polygon_trade(symbol, t)
                if trade is not None:
                    out.append(trade)
                if len(out) > MAX_TRADES:
                    raise _Malformed(f"more than {MAX_TRADES} prints in the window")
            slot.decoder.check_complete()
            return out

        # A window of prints is many pages: it gets several times the bars' deadline.
        try:
            async with asyncio.timeout(self._timeout_s * 6):
                return await self._in_thread(work)
        except TimeoutError:
            raise HistoryUnavailable(
                f"Polygon prints for {symbol}: no answer within {self._timeout_s * 6:g} s",
                provider="polygon",
            ) from None
        except (_Malformed, BadResponse, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable(symbol, Timeframe.S1, exc) from None

    @contextlib.asynccontextmanager
    async def _deadline(self, symbol: str, timeframe: Timeframe) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._timeout_s):
                yield
        except TimeoutError:
            raise HistoryUnavailable(
                f"Polygon history for {symbol} {timeframe.value}: "
                f"no answer within {self._timeout_s:g} s",
                provider="polygon",
            ) from None

    async def _fetch(
        self, symbol: str, timeframe: Timeframe, from_ms: int, to_ms: int
    ) -> list[Bar]:
        multiplier, timespan = _POLYGON_SPANS[timeframe]

        def work(slot: _Slot, cancelled: threading.Event) -> list[Bar]:
            slot.decoder.begin()
            out: list[Bar] = []
            for agg in slot.client.list_aggs(
                symbol,
                multiplier,
                timespan,
                from_ms,
                to_ms,
                adjusted=True,
                sort="asc",
                limit=_POLYGON_PAGE_LIMIT,
            ):
                if cancelled.is_set():  # the caller gave up: fetch no further pages
                    return out
                out.append(polygon_bar(symbol, timeframe, agg))
            slot.decoder.check_complete()
            return out

        try:
            return await self._in_thread(work)
        except (_Malformed, BadResponse, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unavailable(symbol, timeframe, exc) from None

    async def _in_thread(self, work: Callable[[_Slot, threading.Event], _T]) -> _T:
        """Run ``work`` on a free client in a worker thread. A thread cannot be stopped,
        so on cancellation (our deadline) it is abandoned: it stops at the next page, and
        its client goes back to the pool only when it has finished, so abandoned threads
        still count against ``max_concurrency``."""
        slot = await self._slots.get()
        cancelled = threading.Event()
        future = asyncio.ensure_future(asyncio.to_thread(work, slot, cancelled))

        def release(done: asyncio.Future[_T]) -> None:
            self._slots.put_nowait(slot)
            if not done.cancelled():
                done.exception()  # retrieved, so an abandoned failure is not logged later

        future.add_done_callback(release)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def _unavailable(
        self, symbol: str, timeframe: Timeframe, exc: BaseException
    ) -> HistoryUnavailable:
        what = f"Polygon history for {symbol} {timeframe.value}"
        status: int | None = None
        if isinstance(exc, _Malformed):
            reason = f"malformed response ({exc})"
        elif isinstance(exc, BadResponse):
            # The client puts only the body in the message, not the status code.
            reason = f"request refused: {_polygon_error(str(exc))}"
        elif isinstance(exc, urllib3.exceptions.MaxRetryError):
            status, reason = _describe_transport(exc.reason)
        else:
            status, reason = _describe_transport(exc)
        extensions: dict[str, object] = {"provider": "polygon"}
        if status is not None:
            extensions["http_status"] = status
        return HistoryUnavailable(self._scrub(f"{what}: {reason}"), **extensions)

    def _scrub(self, text: str) -> str:
        text = text.replace(self._key, "***")
        text = re.sub(r"(?i)(apikey=)[^&\s'\"]+", r"\1***", text)
        return re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)


def _polygon_trade(symbol: str, t: Any) -> Trade | None:
    """A ``/v3/trades`` result as the live feed's ``Trade`` (times in ms), or ``None`` if
    a field is missing or out of the decoder's bounds."""
    try:
        size = t.size
        if size is None or t.price is None or t.sip_timestamp is None or size != int(size):
            return None
        raw = {
            "sym": symbol,
            "p": t.price,
            "s": int(size),
            "t": t.sip_timestamp // 1_000_000,
            "q": t.sequence_number or 0,
            "x": t.exchange or 0,
            "i": str(t.id or ""),
            "z": t.tape or 0,
            "c": list(t.conditions or ()),
        }
        return msgspec.convert(raw, Trade)
    except (msgspec.ValidationError, TypeError, ValueError):
        return None


def _polygon_error(body: str) -> str:
    """The useful part of a Polygon error body (``{"status", "error"|"message"}``)."""
    try:
        obj = json.loads(body)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        status = obj.get("status", "")
        detail = obj.get("error") or obj.get("message") or ""
        return f"{status} {detail}".strip() or "no detail"
    return body.strip()[:200] or "empty response"


_STATUS = re.compile(r"\b([1-5]\d\d)\b")


def _describe_transport(reason: BaseException | None) -> tuple[int | None, str]:
    """Status and a URL-free description of a urllib3 failure (its own messages embed the
    request URL)."""
    if isinstance(reason, urllib3.exceptions.ResponseError):
        match = _STATUS.search(str(reason))
        status = int(match.group(1)) if match else None
        if status == 429:
            return status, "rate limited (HTTP 429)"
        return status, f"HTTP {status}" if status else "error response"
    # Before the timeouts: urllib3's NewConnectionError subclasses ConnectTimeoutError.
    if isinstance(reason, urllib3.exceptions.NewConnectionError | ConnectionError):
        return None, "could not connect"
    if isinstance(reason, urllib3.exceptions.TimeoutError | TimeoutError):
        return None, "timed out"
    if isinstance(reason, urllib3.exceptions.ProtocolError):
        return None, "connection broken"
    return None, type(reason).__name__ if reason is not None else "request failed"
