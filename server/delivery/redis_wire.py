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

import math
import struct
from collections.abc import Callable
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
    """MessagePack through msgspec: encoding and decoding (with validation) run in C.

    ``encode``/``decode`` are the msgspec methods themselves, not wrappers: this is on
    the path of every event, and a Python frame per call was a tenth of the cost."""

    __slots__ = ("decode", "encode")

    def __init__(self, kind: type) -> None:
        self.encode: Callable[[Any], bytes] = msgspec.msgpack.Encoder().encode
        decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(kind)
        self.decode: Callable[[memoryview], Any] = decoder.decode


def market_codecs() -> dict[str, Codec]:
    """The channels that cross processes today: market events (``Q.AMZN``, ``T.AMZN``,
    ``A.AMZN``, ``AM.AMZN``), each a ``Received``. One codec instance is shared."""
    codec = MsgspecCodec(Received)
    return dict.fromkeys(CHANNEL_OF.values(), codec)


def envelope(origin: int, fence: int) -> bytes:
    return HEADER.pack(origin, fence)


#: ``(origin, fence)`` from the start of a message (the struct's own method: no Python
#: frame on the subscriber's hot path).
unpack_header: Callable[[bytes], tuple[int, int]] = HEADER.unpack_from


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command_prefix(command: bytes, channel: bytes) -> bytes:
    """The RESP of ``command channel`` up to the message argument of a 3-part command."""
    return b"*3\r\n" + bulk(command) + bulk(channel)


def publish_head(prefix: bytes, size: int) -> bytes:
    """A publish command up to its message's bytes: ``prefix`` and the bulk-string
    header of a ``size``-byte message (the message and ``\\r\\n`` follow)."""
    return prefix + b"$%d\r\n" % size


def command(*parts: bytes) -> bytes:
    """Any command as RESP (subscriptions, PING: not on the hot path)."""
    return b"*%d\r\n" % len(parts) + b"".join(bulk(p) for p in parts)


class Replies:
    """The replies on one redis-py connection, many per socket read.

    ``conn.read_response`` costs an await, a timeout guard and redis-py's checks per
    reply; the bus reads tens of thousands of replies per second (a publish batch's
    acknowledgements, a subscriber's messages), so it takes them straight from the
    connection's hiredis reader: ``drain()`` returns the replies already parsed from
    what was read, ``fill()`` reads the next chunk of the socket into the parser. This leans
    on redis-py's hiredis parser (``_AsyncHiredisParser._reader``, ``read_from_socket``,
    ``NOT_ENOUGH_DATA``); when those are not there (no hiredis, another redis-py) it
    falls back to one ``read_response`` per reply, slower but the same replies, and
    ``fast`` says which path is in use (``loadtests.redis_bus_bench`` reports it).
    """

    __slots__ = ("_conn", "_fill", "_gets", "_pending", "fast")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._pending: list[Any] = []
        parser = getattr(conn, "_parser", None)
        reader = getattr(parser, "_reader", None)
        fill = getattr(parser, "read_from_socket", None)
        self.fast = (
            _NOT_ENOUGH_DATA is not None
            and reader is not None
            and fill is not None
            and callable(getattr(reader, "gets", None))
        )
        self._gets = reader.gets if self.fast and reader is not None else None
        self._fill = fill

    def drain(self) -> list[Any]:
        """Every complete reply already read, in order (possibly none). Error replies
        are raised (``redis.exceptions.ResponseError``)."""
        gets = self._gets
        if gets is None:
            out, self._pending = self._pending, []
            return out
        out = []
        while (reply := gets()) is not _NOT_ENOUGH_DATA:
            if isinstance(reply, Exception):
                raise reply
            out.append(reply)
        return out

    async def fill(self) -> None:
        """Read more from the socket (waits until there is something to read)."""
        if self._gets is None:
            self._pending.append(await self._conn.read_response(timeout=math.inf))
            return
        assert self._fill is not None
        await self._fill()

    async def read(self, count: int) -> None:
        """Read and check ``count`` replies (a publish batch's acknowledgements: the
        connection carries nothing else, so nothing past them is consumed)."""
        left = count - len(self.drain())
        while left > 0:
            await self.fill()
            left -= len(self.drain())


def _not_enough_data() -> object | None:
    try:
        from redis._parsers import hiredis
    except ImportError:
        return None
    sentinel: object | None = getattr(hiredis, "NOT_ENOUGH_DATA", None)
    return sentinel if getattr(hiredis, "HIREDIS_AVAILABLE", False) else None


_NOT_ENOUGH_DATA = _not_enough_data()
