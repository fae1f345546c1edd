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

# Bounds every numeric field must respect, checked by msgspec while it decodes (in C,
# so they cost the hot path nothing): what the feed can plausibly send and what every
# later stage (bars, day statistics, the database's bigint columns, GraphQL's 64-bit
# Long) can represent. docs/market-data.md lists them; a field out of bounds costs only
# its event (``polygon_protocol`` names the reason).

#: Highest price accepted (the most expensive US share has traded below $1M).
MAX_PRICE = 10_000_000.0
#: Largest print or quote size, in shares. The largest prints on record are ~1e8 shares;
#: with this bound a day's volume cannot exceed 2**63-1 before 9.2e9 prints of a symbol.
MAX_SIZE = 1_000_000_000
#: Largest aggregate volume, sequence number: 64-bit signed integers.
MAX_VOLUME = 2**63 - 1
MAX_SEQUENCE = 2**63 - 1
#: Exchange, tape and condition ids are small integers.
MAX_CODE = 32_767
#: Event times outside 1990-01-01 .. 2200-01-01 (epoch ms) are garbage, whatever the
#: clocks say; plausibility against the clocks is ``streams.screening``'s job.
MIN_TIME_MS = 631_152_000_000
MAX_TIME_MS = 7_258_118_400_000

#: Milliseconds since the Unix epoch, as Polygon sends them.
EpochMs = Annotated[int, msgspec.Meta(ge=MIN_TIME_MS, le=MAX_TIME_MS)]
#: A trade or bar price: positive, finite.
Price = Annotated[float, msgspec.Meta(gt=0.0, le=MAX_PRICE)]
#: A quote side or an optional price: 0 means "none".
OptionalPrice = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_PRICE)]
Size = Annotated[int, msgspec.Meta(ge=0, le=MAX_SIZE)]
Volume = Annotated[int, msgspec.Meta(ge=0, le=MAX_VOLUME)]
Sequence = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQUENCE)]
Code = Annotated[int, msgspec.Meta(ge=0, le=MAX_CODE)]


class Trade(msgspec.Struct, frozen=True, gc=False, tag_field="ev", tag="T"):
    """``T``: one print on the tape."""

    sym: str
    p: Price
    s: Size
    t: EpochMs
    q: Sequence = 0
    x: Code = 0
    i: str = ""
    z: Code = 0
    c: tuple[Code, ...] = ()

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
    bp: OptionalPrice
    ap: OptionalPrice
    t: EpochMs
    bs: Size = 0
    ask_size: Size = 0
    bx: Code = 0
    ax: Code = 0
    c: Code = 0
    i: tuple[Code, ...] = ()
    q: Sequence = 0
    z: Code = 0

    @property
    def symbol(self) -> str:
        return self.sym


class Aggregate(msgspec.Struct, frozen=True, gc=False, tag_field="ev", tag="A"):
    """``A``: a one-second aggregate. ``s``/``e`` are the window start/end (ms)."""

    sym: str
    o: Price
    h: Price
    l: Price  # noqa: E741 - wire name
    c: Price
    v: Volume
    s: EpochMs
    e: EpochMs
    vw: OptionalPrice = 0.0
    av: Volume = 0
    op: OptionalPrice = 0.0
    a: OptionalPrice = 0.0
    z: Code = 0

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
