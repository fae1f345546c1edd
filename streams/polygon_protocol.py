"""Pure parsing and encoding of the Polygon stocks WebSocket protocol.

Every server frame is a JSON array of events. Decoding is done once, with msgspec,
straight into the frozen structs of :mod:`streams.events`. A frame that is fine
takes the fast path (one typed decode); a frame with a bad event falls back to
decoding event by event, so one malformed event costs only itself. Nothing here
raises on bad input: rejects are returned with a reason so the caller can count
and log them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from streams.events import (
    CHANNEL_OF,
    MAX_CODE,
    MAX_PRICE,
    MAX_SEQUENCE,
    MAX_SIZE,
    MAX_TIME_MS,
    MAX_VOLUME,
    MIN_TIME_MS,
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


def check_event(ev: MarketEvent) -> Reject | None:
    """The checks across fields that msgspec's per-field bounds cannot express (the
    bounds themselves are in ``streams.events`` and enforced while decoding). ``None``
    means the event is sound on its own; the clocks and the reference price are judged
    later (``streams.screening``)."""
    kind = type(ev)
    if kind is Trade:
        return None
    if kind is Quote:
        q: Quote = ev  # type: ignore[assignment]
        if q.bp > q.ap > 0.0:
            return Reject(RejectReason.CROSSED_QUOTE, f"quote {q.sym} {q.bp} > {q.ap}")
        return None
    a: Aggregate = ev  # type: ignore[assignment]
    if not (a.l <= min(a.o, a.c) and max(a.o, a.c) <= a.h) or a.e < a.s:
        return Reject(RejectReason.INVALID_BAR, f"bar {a.sym} ohlc {a.o, a.h, a.l, a.c!r}")
    return None


#: Which reason a field out of its bounds gives, per event type.
_FIELD_REASONS: dict[str, dict[str, RejectReason]] = {
    "T": {
        "p": RejectReason.INVALID_PRICE,
        "s": RejectReason.INVALID_SIZE,
        "t": RejectReason.INVALID_TIME,
        "q": RejectReason.INVALID_SEQUENCE,
        "x": RejectReason.INVALID_CODE,
        "z": RejectReason.INVALID_CODE,
        "c": RejectReason.INVALID_CODE,
    },
    "Q": {
        "bp": RejectReason.INVALID_PRICE,
        "ap": RejectReason.INVALID_PRICE,
        "bs": RejectReason.INVALID_SIZE,
        "as": RejectReason.INVALID_SIZE,
        "t": RejectReason.INVALID_TIME,
        "q": RejectReason.INVALID_SEQUENCE,
        "bx": RejectReason.INVALID_CODE,
        "ax": RejectReason.INVALID_CODE,
        "c": RejectReason.INVALID_CODE,
        "i": RejectReason.INVALID_CODE,
        "z": RejectReason.INVALID_CODE,
    },
    "A": {
        **{f: RejectReason.INVALID_PRICE for f in ("o", "h", "l", "c", "vw", "op", "a")},
        "v": RejectReason.INVALID_SIZE,
        "av": RejectReason.INVALID_SIZE,
        "s": RejectReason.INVALID_TIME,
        "e": RejectReason.INVALID_TIME,
        "z": RejectReason.INVALID_CODE,
    },
}
_FIELD_REASONS["AM"] = _FIELD_REASONS["A"]
#: msgspec's message for a value out of its bounds: "Expected `int` <= 1000 - at `$.s`"
#: or "Number out of range - at `$.p`"; the field is the first name of the path.
_OUT_OF_BOUNDS = re.compile(r"(?:[<>]=? |out of range).* - at `\$\.(\w+)")


def _classify_decode_error(raw: bytes, err: msgspec.DecodeError) -> Reject:
    try:
        head = _head_decoder.decode(raw)
    except msgspec.DecodeError:
        return Reject(RejectReason.MALFORMED_EVENT, str(err))
    ev = head.get("ev")
    if not isinstance(ev, str) or ev not in ("T", "Q", "A", "AM", "status"):
        return Reject(RejectReason.UNKNOWN_EVENT, f"ev={ev!r}")
    bounds = _OUT_OF_BOUNDS.search(str(err))
    if bounds is not None:
        reason = _FIELD_REASONS.get(ev, {}).get(bounds.group(1))
        if reason is not None:
            return Reject(reason, f"{ev} {head.get('sym')!r}: {err}")
    return Reject(RejectReason.MALFORMED_EVENT, f"{ev}: {err}")


def _sort(decoded: Iterable[WireEvent], out: DecodedFrame) -> None:
    events = out.events
    for ev in decoded:
        kind = type(ev)
        if kind is Trade:
            events.append(ev)  # type: ignore[arg-type]
            continue
        if kind is Status:
            out.statuses.append(ev)  # type: ignore[arg-type]
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
    "MAX_CODE",
    "MAX_PRICE",
    "MAX_SEQUENCE",
    "MAX_SIZE",
    "MAX_TIME_MS",
    "MAX_VOLUME",
    "MIN_TIME_MS",
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
