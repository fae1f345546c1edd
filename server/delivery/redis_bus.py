"""The Redis adapter of the ``Bus`` port: market events shared by every process.

* **Which topics cross processes.** A topic whose channel (``Q`` of ``Q.AMZN``) has a
  codec goes through Redis; any other topic (bars, indicators, fired alerts, order
  updates) stays in this process, delivered exactly as ``InProcessBus`` does, until
  the work behind it runs once per deployment (docs/scale-out.md).
* **Sharded pub/sub** (``SPUBLISH``/``SSUBSCRIBE``, Redis >= 7): one channel per topic,
  routed to one shard on a Redis Cluster, so the same code scales past one Redis.
  ``sharded=False`` uses ``PUBLISH``/``SUBSCRIBE`` for Redis 6.
* **Local first.** A publish is delivered to this process's handlers at once (the
  same synchronous call as the in-process bus) and queued for Redis; the process
  skips its own messages when Redis echoes them (the envelope names the origin).
  The leader's own subscribers therefore never wait for Redis, and keep streaming
  through a Redis outage.
* **Encoded once, decoded once.** The publisher encodes each event once (msgspec);
  each receiving process decodes it once, then hands the object to all its handlers.
* **Pipelined.** Publishes queue up and a writer task sends everything queued in one
  write and reads the replies: one round trip per batch, never one per event. While
  the writer waits for Redis, the next batch gathers. The queue is bounded (pub/sub
  is at-most-once): past ``max_pending`` the oldest frames are dropped and counted.
* **Reference-counted subscriptions.** Redis hears ``SSUBSCRIBE`` when a topic gets
  its first local handler and ``SUNSUBSCRIBE`` when its last one leaves; a
  subscribe-unsubscribe pair within one loop turn costs Redis nothing.
* **Reconnects.** Either connection failing (a Redis restart, the server dropping a
  subscriber past ``client-output-buffer-limit pubsub``, a silent half-open socket
  caught by the PING health check) is retried with equal-jitter backoff, and every
  wanted topic is subscribed again. Messages published meanwhile are lost: callers
  must refresh what they show from a snapshot (``on_connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis.asyncio import ConnectionPool
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.delivery.bus import Handler, InProcessBus
from server.delivery.redis_wire import (
    HEADER_SIZE,
    Codec,
    Replies,
    command,
    command_prefix,
    envelope,
    publish_head,
    unpack_header,
)
from streams.backoff import Backoff

log = logging.getLogger(__name__)

#: What a lost or unusable connection raises.
_DISCONNECTED = (RedisConnectionError, RedisTimeoutError, OSError, EOFError)


class _Remote:
    """A topic carried by Redis: its codec, channel bytes and local handlers."""

    __slots__ = ("_head", "_size", "channel", "codec", "decode", "encode", "handlers", "prefix")

    def __init__(self, name: str, codec: Codec, publish_command: bytes) -> None:
        self.channel = name.encode()
        self.codec = codec
        self.encode = codec.encode  # looked up once, not per message
        self.decode = codec.decode
        self.prefix = command_prefix(publish_command, self.channel)
        self.handlers: tuple[Handler, ...] = ()
        self._size = -1
        self._head = b""

    def frame(self, header: bytes, payload: bytes) -> bytes:
        """``SPUBLISH channel header+payload``: the command up to the message's bytes
        is kept for the last message size (a topic's events mostly encode to the same
        few sizes), so most frames are one join of four parts."""
        size = len(header) + len(payload)
        if size != self._size:
            self._size, self._head = size, publish_head(self.prefix, size)
        return b"".join((self._head, header, payload, b"\r\n"))


class RedisBus:
    def __init__(
        self,
        url: str,
        codecs: Mapping[str, Codec],
        *,
        sharded: bool = True,
        max_pending: int = 100_000,
        backoff_s: tuple[float, float] = (0.05, 2.0),
        health_interval_s: float = 5.0,
        reply_timeout_s: float = 5.0,
    ) -> None:
        # RESP2: pub/sub messages are plain arrays read straight off the parser;
        # under RESP3 (redis-py's default) they are push frames, which the client
        # routes through its push-notification handler first.
        self._pool = ConnectionPool.from_url(
            url, protocol=2, socket_keepalive=True, socket_connect_timeout=reply_timeout_s
        )
        self._codecs = dict(codecs)
        self._publish_cmd, self._sub_cmd, self._unsub_cmd, self._message_kind = (
            (b"SPUBLISH", b"SSUBSCRIBE", b"SUNSUBSCRIBE", b"smessage")
            if sharded
            else (b"PUBLISH", b"SUBSCRIBE", b"UNSUBSCRIBE", b"message")
        )
        self._local = InProcessBus()
        self._remote: dict[str, _Remote] = {}  # topics with a codec, looked up once
        self._by_channel: dict[bytes, _Remote] = {}
        self._wanted: set[bytes] = set()  # channels with local handlers
        self._requested: set[bytes] = set()  # sent to Redis on the current connection
        self.confirmed: set[bytes] = set()  # acknowledged by Redis
        self.origin = secrets.randbits(64)
        self._fence = 0
        self._header = envelope(self.origin, 0)
        self._fence_seen = 0
        self._out: deque[bytes] = deque(maxlen=max_pending)
        self._wake = asyncio.Event()
        self._sync = asyncio.Event()
        self._changed = asyncio.Event()
        self._write_backoff = Backoff(*backoff_s)
        self._read_backoff = Backoff(*backoff_s)
        self._health_interval = health_interval_s
        self._reply_timeout = reply_timeout_s
        self._sub_conn: AbstractConnection | None = None
        self._last_rx = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        #: Called with True when the subscriber connection is (re)established and
        #: subscribed, False when it is lost: a consumer refreshes its snapshots.
        self.on_connection: Callable[[bool], None] | None = None
        self.connected = False
        self.published = 0
        self.sent = 0
        self.batches = 0
        self.dropped = 0  # queued frames dropped: queue full, or lost with a connection
        self.received = 0
        self.stale = 0  # messages refused for a fence below one already seen
        self.decode_errors = 0
        self.handler_errors = 0
        self.reconnects = 0

    # -- the Bus port -------------------------------------------------------------

    def publish(self, topic: str, message: Any) -> None:
        remote = self._remote.get(topic) or self._route(topic)
        if remote is None:
            self._local.publish(topic, message)
            return
        self.published += 1
        if remote.handlers:
            self._deliver(remote, message)
        out = self._out
        if len(out) == out.maxlen:
            self.dropped += 1
        out.append(remote.frame(self._header, remote.encode(message)))
        if not self._wake.is_set():
            self._wake.set()

    def subscribe(self, topic: str, handler: Handler) -> None:
        remote = self._route(topic)
        if remote is None:
            self._local.subscribe(topic, handler)
            return
        remote.handlers = (*remote.handlers, handler)
        if remote.channel not in self._wanted:
            self._wanted.add(remote.channel)
            self._sync.set()

    def unsubscribe(self, topic: str, handler: Handler) -> None:
        remote = self._route(topic)
        if remote is None:
            self._local.unsubscribe(topic, handler)
            return
        remote.handlers = tuple(h for h in remote.handlers if h is not handler)
        if not remote.handlers and remote.channel in self._wanted:
            self._wanted.discard(remote.channel)
            self._sync.set()

    def topics(self) -> list[str]:
        """Topics with local handlers, carried by Redis or not."""
        remote = [r.channel.decode() for r in self._remote.values() if r.handlers]
        return sorted([*remote, *self._local.topics()])

    # -- leadership ---------------------------------------------------------------

    @property
    def fence(self) -> int:
        return self._fence

    @fence.setter
    def fence(self, value: int) -> None:
        """The fencing token stamped on what this bus publishes from now on (0: none,
        which every reader that has seen a leader's message refuses)."""
        self._fence = value
        self._header = envelope(self.origin, value)

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="redis-bus-writer"),
            asyncio.create_task(self._read_loop(), name="redis-bus-reader"),
            asyncio.create_task(self._control_loop(), name="redis-bus-control"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._pool.disconnect()

    async def wait_subscribed(self, topics: Iterable[str], timeout: float) -> None:
        """Wait until Redis has acknowledged a subscription to each of ``topics``."""
        channels = {t.encode() for t in topics}
        async with asyncio.timeout(timeout):
            while not channels <= self.confirmed:
                self._changed.clear()
                await self._changed.wait()

    async def wait_sent(self, timeout: float) -> None:
        """Wait until everything published so far has been written and acknowledged."""
        target = self.published
        async with asyncio.timeout(timeout):
            while self.sent + self.dropped < target:
                self._changed.clear()
                await self._changed.wait()

    # -- internals ----------------------------------------------------------------

    def _route(self, topic: str) -> _Remote | None:
        remote = self._remote.get(topic)
        if remote is None:
            codec = self._codecs.get(topic.partition(".")[0])
            if codec is None:
                return None
            remote = self._remote[topic] = _Remote(topic, codec, self._publish_cmd)
            self._by_channel[remote.channel] = remote
        return remote

    def _deliver(self, remote: _Remote, message: Any) -> None:
        for handler in remote.handlers:
            try:
                handler(message)
            except Exception:
                self.handler_errors += 1
                log.exception("bus handler failed for %s", remote.channel.decode())

    def _signal(self) -> None:
        self._changed.set()

    async def _connect(self, purpose: str, backoff: Backoff) -> AbstractConnection:
        """A new connection, retried with backoff until Redis answers."""
        while True:
            conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                return conn
            except _DISCONNECTED as exc:
                await conn.disconnect()
                delay = backoff.next_delay()
                log.warning(
                    "redis bus %s: cannot connect (%s); retrying in %.2fs", purpose, exc, delay
                )
                await asyncio.sleep(delay)

    async def _write_loop(self) -> None:
        conn: AbstractConnection | None = None
        replies: Replies | None = None
        try:
            while True:
                if not self._out:
                    self._wake.clear()
                    await self._wake.wait()
                if conn is None or replies is None:
                    conn = await self._connect("publisher", self._write_backoff)
                    replies = Replies(conn)
                batch = list(self._out)
                self._out.clear()
                try:
                    await conn.send_packed_command(batch, check_health=False)
                    # One deadline for the batch's replies, not one timer per reply,
                    # and the replies taken many per socket read.
                    async with asyncio.timeout(self._reply_timeout):
                        await replies.read(len(batch))
                except _DISCONNECTED as exc:
                    # Whether Redis took them is unknown; pub/sub is at-most-once.
                    self.dropped += len(batch)
                    log.warning("redis bus publisher lost its connection: %s", exc)
                    await conn.disconnect()
                    conn = None
                    self.reconnects += 1
                    await asyncio.sleep(self._write_backoff.next_delay())
                    continue
                except RedisError:
                    # A reply was an error (e.g. a command Redis does not know):
                    # the connection is fine, the batch's replies are not read
                    # consistently any more, so start on a fresh one.
                    self.dropped += len(batch)
                    log.exception("redis bus publish failed")
                    await conn.disconnect()
                    conn = None
                    continue
                self._write_backoff.reset()
                self.sent += len(batch)
                self.batches += 1
                self._signal()
        finally:
            if conn is not None:
                await conn.disconnect()

    async def _read_loop(self) -> None:
        while True:
            conn = await self._connect("subscriber", self._read_backoff)
            self._sub_conn = conn
            self._requested = set()
            self.confirmed = set()
            self._last_rx = time.monotonic()
            try:
                await self._send_subscriptions(conn)
                self.connected = True
                self._notify(True)
                replies = Replies(conn)
                message_kind, receive = self._message_kind, self._receive
                while True:
                    # Every message already read is dispatched without an await
                    # between them; then one read of the socket (up to 64 KiB, a few
                    # hundred messages), and a yield so that a subscriber kept busy
                    # by Redis never starves the loop's other tasks.
                    for reply in replies.drain():
                        if reply[0] == message_kind:
                            receive(reply[1], reply[2])
                        else:
                            self._dispatch(reply)
                    await asyncio.sleep(0)
                    await replies.fill()
                    self._last_rx = time.monotonic()
            except _DISCONNECTED as exc:
                log.warning("redis bus subscriber lost its connection: %s", exc)
            finally:
                self._sub_conn = None
                self.connected = False
                self.confirmed = set()
                await conn.disconnect()
            self.reconnects += 1
            self._notify(False)
            await asyncio.sleep(self._read_backoff.next_delay())

    async def _control_loop(self) -> None:
        """Subscription changes, and the PING that proves a quiet connection alive."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._health_interval):
                    await self._sync.wait()
            self._sync.clear()
            conn = self._sub_conn
            if conn is None:
                continue
            try:
                await self._send_subscriptions(conn)
                quiet = time.monotonic() - self._last_rx
                if quiet > 2 * self._health_interval:
                    log.warning("redis bus subscriber silent for %.1fs; reconnecting", quiet)
                    await conn.disconnect()
                elif quiet >= self._health_interval / 2:
                    await conn.send_packed_command(command(b"PING"), check_health=False)
            except _DISCONNECTED:
                continue  # the reader sees it too and reconnects

    async def _send_subscriptions(self, conn: AbstractConnection) -> None:
        # One channel per command: on a Redis Cluster, one SSUBSCRIBE may only name
        # channels of one slot. All of them still go in one write.
        add = self._wanted - self._requested
        drop = self._requested - self._wanted
        if not add and not drop:
            return
        frames = [command(self._sub_cmd, c) for c in add]
        frames += [command(self._unsub_cmd, c) for c in drop]
        self._requested = set(self._wanted)
        await conn.send_packed_command(frames, check_health=False)

    def _dispatch(self, reply: Any) -> None:
        kind = reply[0]
        if kind == self._message_kind:
            self._receive(reply[1], reply[2])
        elif kind == self._sub_cmd.lower():
            self.confirmed.add(reply[1])
            self._read_backoff.reset()
            self._signal()
        elif kind == self._unsub_cmd.lower():
            self.confirmed.discard(reply[1])
            self._signal()

    def _receive(self, channel: bytes, data: bytes) -> None:
        self.received += 1
        remote = self._by_channel.get(channel)
        if remote is None or not remote.handlers or len(data) < HEADER_SIZE:
            return
        origin, fence = unpack_header(data)
        if origin == self.origin:
            return  # delivered locally when it was published
        if fence < self._fence_seen:
            self.stale += 1
            return
        self._fence_seen = fence
        try:
            message = remote.decode(memoryview(data)[HEADER_SIZE:])
        except Exception:
            # Logged once per burst of them: a misbehaving publisher must not turn
            # into a flood of tracebacks.
            self.decode_errors += 1
            if self.decode_errors & (self.decode_errors - 1) == 0:
                log.warning(
                    "undecodable message on %s (%d so far)",
                    channel.decode(),
                    self.decode_errors,
                    exc_info=True,
                )
            return
        self._deliver(remote, message)

    def _notify(self, connected: bool) -> None:
        if self.on_connection is None:
            return
        try:
            self.on_connection(connected)
        except Exception:
            log.exception("redis bus connection listener failed")
