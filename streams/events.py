"""Polygon stocks WebSocket events as frozen msgspec structs.

Field names follow the wire format (``sym``, ``bp``, ``as`` ...) so that a frame
decodes straight into these structs with no intermediate dicts; readable aliases
are properties. Prices are floats here: this is market data, never money that we
account for (orders and cash use ``Decimal``).

Unknown wire fields (``pt``, ``trfi``, ``trft``, ``ds`` ...) are ignored, so new
fields Polygon adds never break decoding.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

#: Milliseconds since the Unix epoch, as Polygon sends them.
EpochMs = Annotated[int, msgspec.Meta(gt=0)]


class Trade(msgspec.Struct, frozen=True, gc=False, tag_field="ev", tag="T"):
    """``T``: one print on the tape."""

    sym: str
    p: float
    s: int
    t: EpochMs
    q: int = 0
    x: int = 0
    i: str = ""
    z: int = 0
    c: tuple[int, ...] = ()

    @property
    def symbol(self) -> str:
        return self.sym

    @property
    def price(self) -> float:
        return self.p

    @property
    def size(self) -> int:
        return self.s


class Quote(
    msgspec.Struct, frozen=True, gc=False, tag_field="ev", tag="Q", rename={"ask_size": "as"}
):
    """``Q``: the top of book as the feed gives it; sizes are in shares."""

    sym: str
    bp: float
    ap: float
    t: EpochMs
    bs: int = 0
    ask_size: int = 0
    bx: int = 0
    ax: int = 0
    c: int = 0
    i: tuple[int, ...] = ()
    q: int = 0
    z: int = 0

    @property
    def symbol(self) -> str:
        return self.sym


class Aggregate(msgspec.Struct, frozen=True, gc=False, tag_field="ev", tag="A"):
    """``A``: a one-second aggregate. ``s``/``e`` are the window start/end (ms)."""

    sym: str
    o: float
    h: float
    l: float  # noqa: E741 - wire name
    c: float
    v: int
    s: EpochMs
    e: EpochMs
    vw: float = 0.0
    av: int = 0
    op: float = 0.0
    a: float = 0.0
    z: int = 0

    @property
    def symbol(self) -> str:
        return self.sym


class MinuteAggregate(Aggregate, frozen=True, gc=False, tag="AM"):
    """``AM``: a one-minute aggregate, same fields as ``A``."""


class Status(msgspec.Struct, frozen=True, gc=False, tag_field="ev", tag="status"):
    """``status``: connection, auth and subscription notices from the server."""

    status: str
    message: str = ""


MarketEvent = Trade | Quote | Aggregate | MinuteAggregate
WireEvent = Trade | Quote | Aggregate | MinuteAggregate | Status

#: The channel prefix of each market event type, as used in subscriptions (``T.AAPL``).
CHANNEL_OF: dict[type, str] = {Trade: "T", Quote: "Q", Aggregate: "A", MinuteAggregate: "AM"}


class Received(msgspec.Struct, frozen=True, gc=False):
    """A market event with the server's receive time (ns since the epoch).

    The receive time is taken once per upstream frame, before decoding, so that
    end-to-end latency measured by clients includes our whole pipeline.

    ``flags``: for a trade, what it may update under the consolidated tape's condition
    rules (``streams.conditions``: high/low, last, volume), decided once at ingest.
    """

    event: MarketEvent
    received_ns: int
    flags: int = 7
