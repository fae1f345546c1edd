"""Pure parsing and encoding of the Polygon stocks WebSocket protocol.

Every server frame is a JSON array of events. Decoding is done once, with msgspec,
straight into the frozen structs of :mod:`streams.events`. A frame that is fine
takes the fast path (one typed decode); a frame with a bad event falls back to
decoding event by event, so one malformed event costs only itself. Nothing here
raises on bad input: rejects are returned with a reason so the caller can count
and log them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from streams.events import (
    CHANNEL_OF,
    Aggregate,
    MarketEvent,
    MinuteAggregate,
    Quote,
    Status,
    Trade,
    WireEvent,
)

_frame_decoder = msgspec.json.Decoder(list[WireEvent])
_raw_frame_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_event_decoder = msgspec.json.Decoder(WireEvent)
_head_decoder = msgspec.json.Decoder(dict[str, object])
_encoder = msgspec.json.Encoder()


class RejectReason(StrEnum):
    """Why an upstream frame or event was dropped. Stable: used as a metric label."""

    MALFORMED_FRAME = "malformed_frame"
    UNKNOWN_EVENT = "unknown_event"
    MALFORMED_EVENT = "malformed_event"
    INVALID_PRICE = "invalid_price"
    INVALID_SIZE = "invalid_size"
    INVALID_TIME = "invalid_time"
    INVALID_SEQUENCE = "invalid_sequence"
    INVALID_CODE = "invalid_code"
    CROSSED_QUOTE = "crossed_quote"
    INVALID_BAR = "invalid_bar"
    REORDERED = "reordered"
    # Judged against the feed's own clock and the receive time (streams.screening).
    TIMESTAMP_AHEAD = "timestamp_ahead"
    TIMESTAMP_STALE = "timestamp_stale"
    TIMESTAMP_UNCONFIRMED = "timestamp_unconfirmed"
    # Judged against the symbol's reference price (streams.screening).
    PRICE_OUT_OF_BAND = "price_out_of_band"
    PRICE_UNCONFIRMED = "price_unconfirmed"


# Bounds every numeric field of an event must respect: what the feed can plausibly send
# and what every later stage (bars, day statistics, the database's bigint columns,
# GraphQL's 64-bit Long) can represent. See docs/market-data.md.

#: Highest price accepted (the most expensive US share has traded below $1M).
MAX_PRICE = 10_000_000.0
#: Largest print or quote size, in shares. The largest prints on record are ~1e8 shares;
#: with this bound a day's volume cannot exceed 2**63-1 before 9.2e9 prints of a symbol.
MAX_SIZE = 1_000_000_000
#: Largest aggregate volume (a 64-bit signed integer).
MAX_VOLUME = 2**63 - 1
#: Sequence numbers are 64-bit signed (Long in the API).
MAX_SEQUENCE = 2**63 - 1
#: Exchange, tape and condition ids are small integers.
MAX_CODE = 32_767
#: Event times outside 1990-01-01 .. 2200-01-01 (epoch ms) are garbage, whatever the
#: clocks say; plausibility against the clocks is ``streams.screening``'s job.
MIN_TIME_MS = 631_152_000_000
MAX_TIME_MS = 7_258_118_400_000


@dataclass(frozen=True, slots=True)
class Reject:
    reason: RejectReason
    detail: str


@dataclass(slots=True)
class DecodedFrame:
    """The outcome of decoding one frame."""

    events: list[MarketEvent] = field(default_factory=list)
    statuses: list[Status] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def _price_ok(p: float) -> bool:
    """A trade price or bar price: finite, positive, at most ``MAX_PRICE`` (NaN fails)."""
    return 0.0 < p <= MAX_PRICE


def _side_ok(p: float) -> bool:
    """A quote side: 0 means "no quote on that side", which real feeds do send."""
    return 0.0 <= p <= MAX_PRICE


def _codes_ok(codes: tuple[int, ...]) -> bool:
    for code in codes:  # noqa: SIM110 - a loop beats all() on the one or two codes of a print
        if not 0 <= code <= MAX_CODE:
            return False
    return True


def check_event(ev: MarketEvent) -> Reject | None:
    """Every numeric field within its bounds (the constants above), plus the checks
    msgspec's types cannot express. ``None`` means the event is sound on its own; the
    clocks and the reference price are judged later (``streams.screening``)."""
    kind = type(ev)
    if kind is Trade:
        t: Trade = ev  # type: ignore[assignment]
        if not 0.0 < t.p <= MAX_PRICE:
            return Reject(RejectReason.INVALID_PRICE, f"trade {t.sym} price {t.p!r}")
        if not 0 <= t.s <= MAX_SIZE:
            return Reject(RejectReason.INVALID_SIZE, f"trade {t.sym} size {t.s}")
        if not MIN_TIME_MS <= t.t <= MAX_TIME_MS:
            return Reject(RejectReason.INVALID_TIME, f"trade {t.sym} time {t.t}")
        if not 0 <= t.q <= MAX_SEQUENCE:
            return Reject(RejectReason.INVALID_SEQUENCE, f"trade {t.sym} q={t.q}")
        if not (0 <= t.x <= MAX_CODE and 0 <= t.z <= MAX_CODE and _codes_ok(t.c)):
            return Reject(RejectReason.INVALID_CODE, f"trade {t.sym} x={t.x} z={t.z} c={t.c}")
        return None
    if kind is Quote:
        q: Quote = ev  # type: ignore[assignment]
        if not (_side_ok(q.bp) and _side_ok(q.ap)):
            return Reject(RejectReason.INVALID_PRICE, f"quote {q.sym} {q.bp!r} x {q.ap!r}")
        if not (0 <= q.bs <= MAX_SIZE and 0 <= q.ask_size <= MAX_SIZE):
            return Reject(RejectReason.INVALID_SIZE, f"quote {q.sym} sizes {q.bs}/{q.ask_size}")
        if q.bp > 0.0 and q.ap > 0.0 and q.bp > q.ap:
            return Reject(RejectReason.CROSSED_QUOTE, f"quote {q.sym} {q.bp} > {q.ap}")
        if not MIN_TIME_MS <= q.t <= MAX_TIME_MS:
            return Reject(RejectReason.INVALID_TIME, f"quote {q.sym} time {q.t}")
        if not 0 <= q.q <= MAX_SEQUENCE:
            return Reject(RejectReason.INVALID_SEQUENCE, f"quote {q.sym} q={q.q}")
        codes_ok = (
            0 <= q.bx <= MAX_CODE
            and 0 <= q.ax <= MAX_CODE
            and 0 <= q.c <= MAX_CODE
            and 0 <= q.z <= MAX_CODE
            and _codes_ok(q.i)
        )
        if not codes_ok:
            return Reject(RejectReason.INVALID_CODE, f"quote {q.sym} codes")
        return None
    # Aggregates (A and AM).
    a: Aggregate = ev  # type: ignore[assignment]
    prices = (a.o, a.h, a.l, a.c)
    if not all(_price_ok(x) for x in prices) or not all(_side_ok(x) for x in (a.vw, a.op, a.a)):
        return Reject(RejectReason.INVALID_PRICE, f"bar {a.sym} ohlc {prices!r}")
    if not (0 <= a.v <= MAX_VOLUME and 0 <= a.av <= MAX_VOLUME):
        return Reject(RejectReason.INVALID_SIZE, f"bar {a.sym} v={a.v} av={a.av}")
    if not (MIN_TIME_MS <= a.s <= a.e <= MAX_TIME_MS):
        return Reject(RejectReason.INVALID_TIME, f"bar {a.sym} window {a.s}..{a.e}")
    if not (a.l <= min(a.o, a.c) and max(a.o, a.c) <= a.h) or not 0 <= a.z <= MAX_CODE:
        return Reject(RejectReason.INVALID_BAR, f"bar {a.sym} ohlc {prices!r} v={a.v}")
    return None


def _classify_decode_error(raw: bytes, err: msgspec.DecodeError) -> Reject:
    try:
        head = _head_decoder.decode(raw)
    except msgspec.DecodeError:
        return Reject(RejectReason.MALFORMED_EVENT, str(err))
    ev = head.get("ev")
    if not isinstance(ev, str) or ev not in ("T", "Q", "A", "AM", "status"):
        return Reject(RejectReason.UNKNOWN_EVENT, f"ev={ev!r}")
    return Reject(RejectReason.MALFORMED_EVENT, f"{ev}: {err}")


def _sort(decoded: Iterable[WireEvent], out: DecodedFrame) -> None:
    for ev in decoded:
        if type(ev) is Status:
            out.statuses.append(ev)
            continue
        reject = check_event(ev)  # type: ignore[arg-type]
        if reject is None:
            out.events.append(ev)  # type: ignore[arg-type]
        else:
            out.rejects.append(reject)


def decode_frame(data: bytes | str) -> DecodedFrame:
    """Decode one server frame into events, status notices and rejects."""
    out = DecodedFrame()
    try:
        _sort(_frame_decoder.decode(data), out)
        return out
    except msgspec.DecodeError:
        pass
    # Slow path: find the bad events and keep the good ones.
    try:
        raws = _raw_frame_decoder.decode(data)
    except msgspec.DecodeError as err:
        out.rejects.append(Reject(RejectReason.MALFORMED_FRAME, str(err)))
        return out
    for raw in raws:
        try:
            ev = _event_decoder.decode(raw)
        except msgspec.DecodeError as err:
            out.rejects.append(_classify_decode_error(bytes(raw), err))
            continue
        _sort((ev,), out)
    return out


# --- client -> server messages -------------------------------------------------------


def auth_message(api_key: str) -> bytes:
    return _encoder.encode({"action": "auth", "params": api_key})


def subscribe_message(topics: Iterable[str], *, unsubscribe: bool = False) -> bytes:
    action = "unsubscribe" if unsubscribe else "subscribe"
    return _encoder.encode({"action": action, "params": ",".join(sorted(topics))})


def topics_for(symbol: str, channels: Iterable[str] = ("T", "Q")) -> list[str]:
    """Upstream topics for one symbol, e.g. ``["T.AAPL", "Q.AAPL"]``."""
    return [f"{ch}.{symbol}" for ch in channels]


def parse_topics(params: str) -> list[tuple[str, str]]:
    """Parse a subscribe ``params`` string into ``(channel, symbol)`` pairs.

    Blank entries are ignored; an entry without a dot is returned with an empty
    symbol so the caller can reject it with a clear message.
    """
    out: list[tuple[str, str]] = []
    for raw in params.split(","):
        part = raw.strip()
        if not part:
            continue
        channel, _, symbol = part.partition(".")
        out.append((channel, symbol))
    return out


# --- server -> client frames (replay server, simulated market, recorder) -------------


def status_frame(status: str, message: str) -> bytes:
    return _encoder.encode([Status(status=status, message=message)])


def encode_events(events: Iterable[WireEvent]) -> bytes:
    """Encode events as one wire frame (a JSON array)."""
    return _encoder.encode(list(events))


def channel_of(ev: MarketEvent) -> str:
    return CHANNEL_OF[type(ev)]


__all__ = [
    "Aggregate",
    "DecodedFrame",
    "MinuteAggregate",
    "Reject",
    "RejectReason",
    "auth_message",
    "channel_of",
    "check_event",
    "decode_frame",
    "encode_events",
    "parse_topics",
    "status_frame",
    "subscribe_message",
    "topics_for",
]
