"""Pure parsing and encoding of the Polygon stocks WebSocket protocol.

Every server frame is a JSON array of events. Decoding is done once, with msgspec,
straight into the frozen structs of :mod:`streams.events`. A frame that is fine
takes the fast path (one typed decode); a frame with a bad event falls back to
decoding event by event, so one malformed event costs only itself. Nothing here
raises on bad input: rejects are returned with a reason so the caller can count
and log them.
"""

from __future__ import annotations

import math
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
    CROSSED_QUOTE = "crossed_quote"
    INVALID_BAR = "invalid_bar"
    REORDERED = "reordered"


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
    return math.isfinite(p) and p > 0.0


def check_event(ev: MarketEvent) -> Reject | None:
    """Semantic checks msgspec's types cannot express. ``None`` means the event is sound."""
    if isinstance(ev, Trade):
        if not _price_ok(ev.p):
            return Reject(RejectReason.INVALID_PRICE, f"trade {ev.sym} price {ev.p!r}")
        if ev.s < 0:
            return Reject(RejectReason.INVALID_SIZE, f"trade {ev.sym} size {ev.s}")
        return None
    if isinstance(ev, Quote):
        # A zero side means "no quote on that side", which real feeds do send.
        if not (math.isfinite(ev.bp) and math.isfinite(ev.ap)) or ev.bp < 0.0 or ev.ap < 0.0:
            return Reject(RejectReason.INVALID_PRICE, f"quote {ev.sym} {ev.bp!r} x {ev.ap!r}")
        if ev.bs < 0 or ev.ask_size < 0:
            return Reject(RejectReason.INVALID_SIZE, f"quote {ev.sym} sizes {ev.bs}/{ev.ask_size}")
        if ev.bp > 0.0 and ev.ap > 0.0 and ev.bp > ev.ap:
            return Reject(RejectReason.CROSSED_QUOTE, f"quote {ev.sym} {ev.bp} > {ev.ap}")
        return None
    # Aggregates (A and AM).
    prices = (ev.o, ev.h, ev.l, ev.c)
    if not all(_price_ok(x) for x in prices):
        return Reject(RejectReason.INVALID_PRICE, f"bar {ev.sym} ohlc {prices!r}")
    if not (ev.l <= min(ev.o, ev.c) and max(ev.o, ev.c) <= ev.h) or ev.v < 0 or ev.e < ev.s:
        return Reject(RejectReason.INVALID_BAR, f"bar {ev.sym} ohlc {prices!r} v={ev.v}")
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
