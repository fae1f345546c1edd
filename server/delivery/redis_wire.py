"""What the Redis bus puts on the wire: message envelopes, codecs and RESP frames.

A message on a Redis channel is a 16-byte header followed by the codec's payload:

* ``origin`` (u64): the publishing bus, so a process skips its own messages (it has
  already delivered them locally, without the Redis round trip);
* ``fence`` (u64): the publisher's fencing token (0 when it holds no lease). Readers
  drop a message whose fence is lower than the highest they have seen, so a leader
  that was paused past its lease and wakes up cannot interleave stale events with
  its successor's.

Publishes are framed here as raw RESP (``*3 SPUBLISH channel message``), once per
event, so a batch is one ``writelines`` and one round trip; redis-py's pipeline would
pack every command again in Python.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

import msgspec

from streams.events import CHANNEL_OF, Received

HEADER = struct.Struct(">QQ")
HEADER_SIZE = HEADER.size


class Codec(Protocol):
    """Turns one kind of bus message into bytes and back (each direction once)."""

    def encode(self, message: Any) -> bytes: ...

    def decode(self, data: memoryview) -> Any: ...


class MsgspecCodec:
    """MessagePack through msgspec: encoding and decoding (with validation) run in C."""

    __slots__ = ("_decoder", "_encoder")

    def __init__(self, kind: type) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(kind)

    def encode(self, message: Any) -> bytes:
        return self._encoder.encode(message)

    def decode(self, data: memoryview) -> Any:
        return self._decoder.decode(data)


def market_codecs() -> dict[str, Codec]:
    """The channels that cross processes today: market events (``Q.AMZN``, ``T.AMZN``,
    ``A.AMZN``, ``AM.AMZN``), each a ``Received``. One codec instance is shared."""
    codec = MsgspecCodec(Received)
    return dict.fromkeys(CHANNEL_OF.values(), codec)


def envelope(origin: int, fence: int) -> bytes:
    return HEADER.pack(origin, fence)


def read_envelope(data: bytes) -> tuple[int, int]:
    origin, fence = HEADER.unpack_from(data)
    return origin, fence


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command_prefix(command: bytes, channel: bytes) -> bytes:
    """The RESP of ``command channel`` up to the message argument of a 3-part command."""
    return b"*3\r\n" + bulk(command) + bulk(channel)


def publish_frame(prefix: bytes, header: bytes, payload: bytes) -> bytes:
    """One complete ``SPUBLISH channel header+payload`` command, joined once."""
    return b"".join((prefix, b"$%d\r\n" % (len(header) + len(payload)), header, payload, b"\r\n"))


def command(*parts: bytes) -> bytes:
    """Any command as RESP (subscriptions, PING: not on the hot path)."""
    return b"*%d\r\n" % len(parts) + b"".join(bulk(p) for p in parts)
