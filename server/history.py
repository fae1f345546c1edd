"""Historical bars: indicator warm-up and backfill of gaps in the live bars.

A ``HistoryProvider`` answers two questions about closed bars:

- ``bars(symbol, tf, end_ms=..., count=...)``: the ``count`` most recent bars that
  closed at or before ``end_ms`` (``bar.end_ms <= end_ms``), oldest first. Fewer when
  the source has fewer (a new listing, a thin symbol, a young database).
- ``range(symbol, tf, start_ms, end_ms)``: every bar lying wholly inside
  ``[start_ms, end_ms)``, oldest first, for filling a gap (bars cut by either edge are
  left out: the caller aligns the gap to buckets or gets the partial bars live).

Every bar returned is ``final=True``, carries ``Timeframe.bucket`` boundaries (the same
ones the live ``BarBuilder`` uses, so history and live bars line up) and is at most
``MAX_BARS`` long per call. Failures of the source raise ``HistoryUnavailable``.

Implementations:

- ``PolygonHistory``: Polygon's aggregates REST endpoint through polygon-api-client.
- ``SimulatedHistory``: deterministic synthetic bars that end at the simulated market's
  start price, for the embedded default.
- ``StoredHistory``: the ``bars`` table (1m and 1d rows; 5m/15m/1h merged from 1m).
- ``ChainedHistory``: asks several providers in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import asyncpg
import urllib3.exceptions
from polygon import RESTClient
from polygon.exceptions import BadResponse

from server.errors import LimitExceeded, Unavailable
from server.settings import Secret
from server.timeframes import Bar, Timeframe
from server.trading_day import day_window
from streams.simulated_market import MIN_PRICE, start_price

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Most bars one call may return or cover; a request for more is a caller bug (or an
#: abuse), not something to page through silently.
MAX_BARS: Final = 50_000
_DAY_MS: Final = 86_400_000
_MINUTE_MS: Final = 60_000


class HistoryUnavailable(Unavailable):
    """The history source failed (refused, rate limited, timed out, sent garbage)."""

    code = "HISTORY_UNAVAILABLE"


class HistoryProvider(Protocol):
    async def bars(
        self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int
    ) -> list[Bar]: ...

    async def range(
        self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int
    ) -> list[Bar]: ...


# --- shared bucket arithmetic -------------------------------------------------------------


def _check_count(count: int) -> int:
    if count > MAX_BARS:
        raise LimitExceeded(f"at most {MAX_BARS} bars per request, asked for {count}")
    return max(0, count)


def _check_range(timeframe: Timeframe, start_ms: int, end_ms: int) -> bool:
    """False for an empty range; raises ``LimitExceeded`` for one holding too many bars."""
    if end_ms <= start_ms:
        return False
    size = timeframe.millis or _DAY_MS
    if (end_ms - start_ms) // size > MAX_BARS:
        raise LimitExceeded(f"at most {MAX_BARS} bars per request")
    return True


def last_closed_start(timeframe: Timeframe, end_ms: int) -> int:
    """Start of the newest bucket that ends at or before ``end_ms``."""
    start, end = timeframe.bucket(end_ms - 1)
    return start if end <= end_ms else timeframe.bucket(start - 1)[0]


def first_inside_start(timeframe: Timeframe, start_ms: int) -> int:
    """Start of the oldest bucket that begins at or after ``start_ms``."""
    start, end = timeframe.bucket(start_ms)
    return start if start == start_ms else end


def merge_bars(timeframe: Timeframe, parts: Sequence[Bar]) -> Bar:
    """One ``timeframe`` bar from consecutive shorter bars of its bucket (oldest first):
    first open, highest high, lowest low, last close, summed volume and trades, volume-
    weighted VWAP (the plain mean when nothing traded), the highest part revision."""
    first = parts[0]
    start, end = timeframe.bucket(first.start_ms)
    volume = sum(p.volume for p in parts)
    if volume > 0:
        vwap = sum(p.vwap * p.volume for p in parts) / volume
    else:
        vwap = sum(p.vwap for p in parts) / len(parts)
    return Bar(
        symbol=first.symbol,
        timeframe=timeframe,
        start_ms=start,
        end_ms=end,
        open=first.open,
        high=max(p.high for p in parts),
        low=min(p.low for p in parts),
        close=parts[-1].close,
        volume=volume,
        vwap=vwap,
        trades=sum(p.trades for p in parts),
        final=True,
        revision=max(p.revision for p in parts),
    )


def _merge_into(timeframe: Timeframe, minutes: Iterable[Bar]) -> list[Bar]:
    """``minutes`` (1m bars, oldest first) merged per ``timeframe`` bucket."""
    size = timeframe.millis
    assert size is not None  # only fixed-size timeframes are derived from minutes
    out: list[Bar] = []
    group: list[Bar] = []
    for bar in minutes:
        if group and bar.start_ms - bar.start_ms % size != group[0].start_ms - (
            group[0].start_ms % size
        ):
            out.append(merge_bars(timeframe, group))
            group = []
        group.append(bar)
    if group:
        out.append(merge_bars(timeframe, group))
    return out


# --- Polygon -------------------------------------------------------------------------------

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
        count = _check_count(count)
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
        if not _check_range(timeframe, start_ms, end_ms):
            return []
        async with self._deadline(symbol, timeframe):
            got = await self._fetch(symbol, timeframe, start_ms, end_ms - 1)
        return [b for b in got if b.start_ms >= start_ms and b.end_ms <= end_ms]

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


# --- simulated -----------------------------------------------------------------------------

#: Bars generated inline; more go to a worker thread so the event loop keeps moving.
_SIM_INLINE_MAX: Final = 2_000
#: Regular session length: intraday volatility and volume are scaled to it.
_SESSION_MS: Final = 23_400_000


def _uniforms(key: bytes, n: int) -> list[float]:
    """``n`` uniforms in (0, 1) from a hash: stateless, so any bar can be generated alone."""
    d = hashlib.blake2b(key, digest_size=8 * n).digest()
    return [(int.from_bytes(d[8 * i : 8 * i + 8], "big") + 0.5) / 2**64 for i in range(n)]


@dataclass(frozen=True, slots=True)
class _SymbolModel:
    sigma_day: float  # daily log-return volatility
    day_volume: float  # shares per day
    trade_size: float  # mean shares per trade


def _symbol_model(symbol: str) -> _SymbolModel:
    u = _uniforms(b"history-model|" + symbol.encode(), 3)
    price = start_price(symbol)
    # 1.2-3.5 % daily volatility and $50M-$2B a day (log-uniform): ordinary large caps.
    notional = math.exp(math.log(5e7) + u[1] * (math.log(2e9) - math.log(5e7)))
    return _SymbolModel(
        sigma_day=0.012 + u[0] * 0.023,
        day_volume=notional / price,
        trade_size=80.0 + u[2] * 120.0,
    )


def _cents_up(x: float) -> float:
    return math.ceil(round(x * 100, 6)) / 100


def _cents_down(x: float) -> float:
    return math.floor(round(x * 100, 6)) / 100


class SimulatedHistory:
    """Deterministic synthetic history for any symbol, timeframe and time range.

    The path is a random walk taken backwards from the simulated market's start price:
    the newest bar of every answer closes at ``start_price(symbol)``, where the live
    simulated market begins, so indicators warmed from it run smoothly into live ticks.
    Each bar's return, wicks and volume are drawn from a hash of (seed, symbol,
    timeframe, bucket start), so the same inputs always give the same bars, and two
    answers with different ``end_ms`` share the shape of their overlap (their levels
    differ by the walk in between, since each is anchored at its own end).

    Intraday bars cover the whole clock (no session hours); daily bars skip weekends.
    ``seed=None`` means seed 0: history stays reproducible even when the live market is
    seeded randomly.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = 0 if seed is None else seed

    async def bars(
        self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int
    ) -> list[Bar]:
        count = _check_count(count)
        starts = self._starts_back(timeframe, last_closed_start(timeframe, end_ms), count)
        return await self._generate(symbol, timeframe, starts)

    async def range(
        self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int
    ) -> list[Bar]:
        if not _check_range(timeframe, start_ms, end_ms):
            return []
        first = first_inside_start(timeframe, start_ms)
        starts: list[int] = []
        s = last_closed_start(timeframe, end_ms)
        while s >= first:
            if not self._skipped(timeframe, s):
                starts.append(s)
            s = timeframe.bucket(s - 1)[0]
        return await self._generate(symbol, timeframe, starts)

    def generate(self, symbol: str, timeframe: Timeframe, starts: Sequence[int]) -> list[Bar]:
        """Bars for the bucket ``starts`` (newest first), oldest first; the newest closes
        at ``start_price(symbol)``. Pure and synchronous."""
        model = _symbol_model(symbol)
        size = timeframe.millis
        fraction = 1.0 if size is None else size / _SESSION_MS
        sigma = model.sigma_day * math.sqrt(fraction)
        bar_volume = model.day_volume * fraction
        prefix = f"{self.seed}|{symbol}|{timeframe.value}|".encode()
        out: list[Bar] = []
        close = start_price(symbol)
        for start in starts:
            u = _uniforms(prefix + str(start).encode(), 5)
            radius = math.sqrt(-2.0 * math.log(u[0]))
            z_return = radius * math.cos(2.0 * math.pi * u[1])
            z_volume = radius * math.sin(2.0 * math.pi * u[1])
            open_ = max(MIN_PRICE, close * math.exp(-sigma * z_return))
            o, c = round(open_, 2), round(close, 2)
            # Wicks: exponential excursions beyond the body, about half a sigma on average.
            high = _cents_up(max(o, c) * math.exp(-0.5 * sigma * math.log(u[2])))
            low = max(0.01, _cents_down(min(o, c) * math.exp(0.5 * sigma * math.log(u[3]))))
            # Busier on big moves, log-normal otherwise.
            volume = max(
                1, round(bar_volume * (0.5 + abs(z_return)) * math.exp(0.4 * z_volume - 0.08))
            )
            trades = max(1, round(volume / model.trade_size))
            vwap = round((o + high + low + c) / 4, 4)
            if size is None:
                bar_start, bar_end = timeframe.bucket(start)
            else:
                bar_start, bar_end = start, start + size
            out.append(
                Bar(
                    symbol=symbol,
                    timeframe=timeframe,
                    start_ms=bar_start,
                    end_ms=bar_end,
                    open=o,
                    high=high,
                    low=low,
                    close=c,
                    volume=volume,
                    vwap=vwap,
                    trades=trades,
                    final=True,
                )
            )
            close = open_  # walking backwards: this bar's open is the previous bar's close
        out.reverse()
        return out

    async def _generate(self, symbol: str, timeframe: Timeframe, starts: list[int]) -> list[Bar]:
        if len(starts) <= _SIM_INLINE_MAX:
            return self.generate(symbol, timeframe, starts)
        return await asyncio.to_thread(self.generate, symbol, timeframe, starts)

    @staticmethod
    def _skipped(timeframe: Timeframe, start_ms: int) -> bool:
        return timeframe is Timeframe.D1 and day_window(start_ms).day.weekday() >= 5

    def _starts_back(self, timeframe: Timeframe, newest: int, count: int) -> list[int]:
        starts: list[int] = []
        s = newest
        size = timeframe.millis
        while len(starts) < count:
            if not self._skipped(timeframe, s):
                starts.append(s)
            s = s - size if size is not None else timeframe.bucket(s - 1)[0]
        return starts


# --- stored --------------------------------------------------------------------------------

_STORED: Final = frozenset({Timeframe.M1, Timeframe.D1})
_DERIVED_FROM_MINUTES: Final = frozenset({Timeframe.M5, Timeframe.M15, Timeframe.H1})

# DISTINCT ON keeps the highest revision should a writer ever keep several per bucket;
# the casts accept numeric as well as double precision columns.
_COLUMNS: Final = """DISTINCT ON (start_ms) start_ms, end_ms, open::float8 AS open,
    high::float8 AS high, low::float8 AS low, close::float8 AS close,
    volume::int8 AS volume, vwap::float8 AS vwap, trades::int8 AS trades,
    revision::int8 AS revision"""

_SQL_LATEST: Final = f"""
SELECT {_COLUMNS}
FROM bars
WHERE symbol = $1 AND timeframe = $2 AND start_ms < $3 AND end_ms <= $3
ORDER BY start_ms DESC, revision DESC
LIMIT $4
"""

_SQL_RANGE: Final = f"""
SELECT {_COLUMNS}
FROM bars
WHERE symbol = $1 AND timeframe = $2 AND start_ms >= $3 AND start_ms < $4 AND end_ms <= $4
ORDER BY start_ms ASC, revision DESC
"""


class StoredHistory:
    """Bars from the ``bars`` table, which holds 1m and 1d rows.

    5m, 15m and 1h bars are merged from the stored 1m rows (``merge_bars``); a bucket
    with missing minutes is merged from the minutes it has, as Polygon does for minutes
    without trades. 1s bars are not stored: always empty.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def bars(
        self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int
    ) -> list[Bar]:
        count = _check_count(count)
        if count == 0 or timeframe is Timeframe.S1:
            return []
        if timeframe in _STORED:
            rows = await self._fetch(_SQL_LATEST, symbol, timeframe.value, end_ms, count)
            return [_row_bar(symbol, timeframe, r) for r in reversed(rows)]
        size = timeframe.millis
        assert size is not None and timeframe in _DERIVED_FROM_MINUTES
        aligned_end = end_ms - end_ms % size
        # A bucket holds at most size/1m minutes, so the newest count*ratio minutes span
        # at least `count` buckets, and all but possibly the oldest of them completely.
        rows = await self._fetch(
            _SQL_LATEST, symbol, Timeframe.M1.value, aligned_end, count * (size // _MINUTE_MS)
        )
        minutes = [_row_bar(symbol, Timeframe.M1, r) for r in reversed(rows)]
        return _merge_into(timeframe, minutes)[-count:]

    async def range(
        self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int
    ) -> list[Bar]:
        if timeframe is Timeframe.S1 or not _check_range(timeframe, start_ms, end_ms):
            return []
        if timeframe in _STORED:
            rows = await self._fetch(_SQL_RANGE, symbol, timeframe.value, start_ms, end_ms)
            return [_row_bar(symbol, timeframe, r) for r in rows]
        size = timeframe.millis
        assert size is not None and timeframe in _DERIVED_FROM_MINUTES
        lo = first_inside_start(timeframe, start_ms)
        hi = end_ms - end_ms % size
        if hi <= lo:
            return []
        rows = await self._fetch(_SQL_RANGE, symbol, Timeframe.M1.value, lo, hi)
        return _merge_into(timeframe, [_row_bar(symbol, Timeframe.M1, r) for r in rows])

    async def _fetch(self, sql: str, *args: object) -> list[Any]:
        try:
            rows: list[Any] = await self._pool.fetch(sql, *args)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise HistoryUnavailable(
                f"stored history unavailable: {type(exc).__name__}: {exc}", provider="database"
            ) from None
        return rows


def _row_bar(symbol: str, timeframe: Timeframe, row: Any) -> Bar:
    o, h, low, c = row["open"], row["high"], row["low"], row["close"]
    vwap = row["vwap"]
    return Bar(
        symbol=symbol,
        timeframe=timeframe,
        start_ms=int(row["start_ms"]),
        end_ms=int(row["end_ms"]),
        open=o,
        high=h,
        low=low,
        close=c,
        volume=int(row["volume"] or 0),
        vwap=(h + low + c) / 3 if vwap is None else vwap,
        trades=int(row["trades"] or 0),
        final=True,
        revision=int(row["revision"] or 0),
    )


# --- chained -------------------------------------------------------------------------------


class ChainedHistory:
    """Asks ``providers`` in order (e.g. the database first, then Polygon).

    ``bars``: the first provider that returns ``count`` bars wins and later ones are not
    asked. When none has enough, the answers are merged by bucket, earlier providers
    winning a bucket both have, and the newest ``count`` are returned: e.g. the database's
    recent bars completed by older bars from Polygon.

    ``range``: the first provider with a non-empty answer wins; answers are not spliced,
    since a gap filled half from one source and half from another could show a seam in
    the middle of the range.

    A provider raising ``HistoryUnavailable`` is skipped (and logged). When every
    provider failed, or some failed and the others had nothing, ``HistoryUnavailable``
    is raised naming each failure; when all answered but had nothing, the answer is [].
    """

    def __init__(self, *providers: HistoryProvider) -> None:
        if not providers:
            raise ValueError("ChainedHistory needs at least one provider")
        self.providers = providers

    async def bars(
        self, symbol: str, timeframe: Timeframe, *, end_ms: int, count: int
    ) -> list[Bar]:
        count = _check_count(count)
        if count == 0:
            return []
        merged: dict[int, Bar] = {}
        failures: list[str] = []
        for provider in self.providers:
            try:
                got = await provider.bars(symbol, timeframe, end_ms=end_ms, count=count)
            except HistoryUnavailable as exc:
                failures.append(self._failed(provider, exc))
                continue
            if len(got) >= count:
                return got[-count:]
            for bar in got:
                merged.setdefault(bar.start_ms, bar)
        if not merged and failures:
            raise HistoryUnavailable("; ".join(failures))
        return [merged[s] for s in sorted(merged)][-count:]

    async def range(
        self, symbol: str, timeframe: Timeframe, start_ms: int, end_ms: int
    ) -> list[Bar]:
        failures: list[str] = []
        for provider in self.providers:
            try:
                got = await provider.range(symbol, timeframe, start_ms, end_ms)
            except HistoryUnavailable as exc:
                failures.append(self._failed(provider, exc))
                continue
            if got:
                return got
        if failures:
            raise HistoryUnavailable("; ".join(failures))
        return []

    @staticmethod
    def _failed(provider: HistoryProvider, exc: HistoryUnavailable) -> str:
        name = type(provider).__name__
        logger.warning("history provider %s failed: %s", name, exc.message)
        return f"{name}: {exc.message}"


__all__ = [
    "MAX_BARS",
    "ChainedHistory",
    "HistoryProvider",
    "HistoryUnavailable",
    "PolygonHistory",
    "SimulatedHistory",
    "StoredHistory",
    "first_inside_start",
    "last_closed_start",
    "merge_bars",
    "polygon_bar",
]
