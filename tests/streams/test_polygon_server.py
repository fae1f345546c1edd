"""The local Polygon protocol server, driven by the real ``polygon.WebSocketClient``.

Where the exact wire conversation matters (the connected/auth frames the client
consumes itself, closes, a client that stops reading), a plain ``websockets``
client speaks the protocol by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from polygon import WebSocketClient
from polygon.exceptions import AuthError
from polygon.websocket.models import EquityQuote, EquityTrade
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

from streams.commands import add_record_command, add_replay_command, run_record, run_replay
from streams.events import MarketEvent, Quote, Status, Trade
from streams.polygon_protocol import RejectReason, channel_of, decode_frame
from streams.polygon_server import (
    GARBAGE_ROTATION,
    Faults,
    GarbageKind,
    PolygonProtocolServer,
    RecordingSource,
    garbage_frame,
    start_simulated_server,
)
from streams.recorder import record
from streams.recording import event_time_ms, is_gzip, load_events, read_frames
from tests.support.data import AAPL_REPLAY_PARTIAL, AMZN_REPLAY, require
from tests.support.timing import TIMEOUT, timeout

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def aapl_path() -> Path:
    return require(AAPL_REPLAY_PARTIAL)


@pytest.fixture(scope="module")
def aapl_events(aapl_path: Path) -> list[MarketEvent]:
    return load_events(aapl_path)


@contextlib.asynccontextmanager
async def replay(
    path: Path, *, speed: float | None = None, loop: bool = False, **kwargs: Any
) -> AsyncIterator[PolygonProtocolServer]:
    server = PolygonProtocolServer(RecordingSource(path, speed=speed, loop=loop), **kwargs)
    async with server:
        yield server


async def wait_until(predicate: Callable[[], bool], within: float = TIMEOUT) -> None:
    """Poll a condition the code under test exposes no event for (counters, buffers)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - there is no event to wait on
            await asyncio.sleep(0.005)


class PolygonCollector:
    """Runs a real ``polygon.WebSocketClient`` and keeps what its processor receives."""

    def __init__(
        self,
        feed: str,
        topics: Sequence[str],
        *,
        raw: bool = True,
        api_key: str = "test-key",
        max_reconnects: int | None = 0,
    ) -> None:
        self.raw = raw
        self.client = WebSocketClient(
            api_key=api_key,
            feed=feed,
            market="stocks",
            secure=False,
            raw=raw,
            subscriptions=list(topics),
            max_reconnects=max_reconnects,
        )
        self.frames: list[str] = []  # raw mode: every frame as received
        self.events: list[MarketEvent] = []  # raw mode: decoded market events
        self.statuses: list[Status] = []
        self.parsed: list[Any] = []  # parsed mode: EquityTrade / EquityQuote ...
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def on_message(self, message: Any) -> None:
        if self.raw:
            self.frames.append(message)
            decoded = decode_frame(message)
            self.events.extend(decoded.events)
            self.statuses.extend(decoded.statuses)
        else:
            self.parsed.extend(message)
        self._changed.set()

    def start(self) -> PolygonCollector:
        self.task = asyncio.create_task(self.client.connect(self.on_message))
        return self

    async def wait_for(self, predicate: Callable[[], bool], within: float = TIMEOUT) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                if self.task is not None and self.task.done():
                    self.task.result()  # surface the client's error
                    raise AssertionError("client ended before the condition held")
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    # Wake up now and then to notice a client that ended.
                    await asyncio.wait_for(self._changed.wait(), 0.5)

    async def stop(self) -> None:
        await self.client.close()
        if self.task is not None:
            # Closing in the middle of a max-speed flood, the close frame can queue behind
            # megabytes in flight and miss the client's 1 s close timeout; the client then
            # reports the close as an error. That says nothing about the server.
            with contextlib.suppress(ConnectionClosedError):
                await asyncio.wait_for(self.task, TIMEOUT)


@contextlib.asynccontextmanager
async def polygon_client(
    server: PolygonProtocolServer, topics: Sequence[str], **kwargs: Any
) -> AsyncIterator[PolygonCollector]:
    collector = PolygonCollector(server.feed, topics, **kwargs).start()
    try:
        yield collector
    finally:
        await collector.stop()


class HandClient:
    """A plain WebSocket client speaking the protocol by hand."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def recv_frame(self) -> list[dict[str, Any]]:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), TIMEOUT))
        assert isinstance(frame, list)
        return frame

    async def send(self, action: str, params: str) -> None:
        await self.ws.send(json.dumps({"action": action, "params": params}))

    async def login(self, key: str = "k") -> None:
        assert (await self.recv_frame())[0]["status"] == "connected"
        await self.send("auth", key)
        assert (await self.recv_frame())[0]["status"] == "auth_success"

    async def until_status(self, message: str) -> list[dict[str, Any]]:
        """Data events received before the status with ``message``."""
        data: list[dict[str, Any]] = []
        while True:
            frame = await self.recv_frame()
            if frame[0]["ev"] == "status":
                if frame[0]["message"] == message:
                    return data
                continue
            data.extend(frame)

    async def until_status_frame(self, status: str) -> dict[str, Any]:
        """The next status event with ``status``, skipping anything else."""
        while True:
            frame = await self.recv_frame()
            if frame[0]["ev"] == "status" and frame[0]["status"] == status:
                return frame[0]

    async def until_n_events(self, n: int) -> list[dict[str, Any]]:
        """At least ``n`` data events, skipping status frames."""
        data: list[dict[str, Any]] = []
        while len(data) < n:
            frame = await self.recv_frame()
            if frame[0]["ev"] != "status":
                data.extend(frame)
        return data


@contextlib.asynccontextmanager
async def hand_client(server: PolygonProtocolServer, **kwargs: Any) -> AsyncIterator[HandClient]:
    # A short close timeout: a client that stopped reading with data in flight cannot
    # see the server's close frame, and would wait the default 10 s for it.
    async with connect(server.url, open_timeout=TIMEOUT, close_timeout=0.5, **kwargs) as ws:
        yield HandClient(ws)


def status(status: str, message: str) -> dict[str, str]:
    return {"ev": "status", "status": status, "message": message}


def q_of(ev: MarketEvent) -> int:
    assert isinstance(ev, Trade | Quote)
    return ev.q


# --- the protocol ----------------------------------------------------------------------


async def test_conversation_matches_polygon(aapl_path: Path) -> None:
    async with replay(aapl_path, speed=None) as server, hand_client(server) as c:
        assert await c.recv_frame() == [status("connected", "Connected Successfully")]
        await c.send("subscribe", "T.AAPL")
        assert await c.recv_frame() == [status("error", "not authorized")]
        assert not server.playing
        await c.send("auth", "any-key")
        assert await c.recv_frame() == [status("auth_success", "authenticated")]
        await c.send("subscribe", "T.AAPL,Q.AAPL")
        assert await c.recv_frame() == [status("success", "subscribed to: T.AAPL")]
        assert await c.recv_frame() == [status("success", "subscribed to: Q.AAPL")]
        first = await c.recv_frame()
        assert first[0]["ev"] in ("T", "Q") and first[0]["sym"] == "AAPL"
        await c.send("unsubscribe", "T.AAPL")
        await c.until_status("unsubscribed to: T.AAPL")
    assert server.open_connections == 0


async def test_frames_are_text_and_other_paths_are_not_served(aapl_path: Path) -> None:
    async with replay(aapl_path) as server:
        async with hand_client(server) as c:
            assert isinstance(await asyncio.wait_for(c.ws.recv(), TIMEOUT), str)
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url.replace("/stocks", "/options"), open_timeout=TIMEOUT):
                pass
        assert info.value.response.status_code == 404
        assert server.url == f"ws://127.0.0.1:{server.port}/stocks"


async def test_auth_success_with_the_polygon_client(aapl_path: Path) -> None:
    async with (
        replay(aapl_path, api_keys={"good"}) as server,
        polygon_client(server, ["T.AAPL", "Q.AAPL"], api_key="good") as client,
    ):
        await client.wait_for(lambda: len(client.statuses) == 2)
        assert {s.message for s in client.statuses} == {
            "subscribed to: T.AAPL",
            "subscribed to: Q.AAPL",
        }
        await client.wait_for(lambda: len(client.events) > 0)


async def test_auth_failed_raises_polygons_auth_error(aapl_path: Path) -> None:
    async with replay(aapl_path, api_keys={"good"}) as server:
        client = PolygonCollector(server.feed, ["T.AAPL"], api_key="bad")
        with pytest.raises(AuthError, match="authentication failed"):
            await asyncio.wait_for(client.client.connect(client.on_message), TIMEOUT)
        # The server closes a connection whose auth failed.
        await wait_until(lambda: server.open_connections == 0)
        assert server.frames_read == 0


async def test_auth_failures_fault_fails_the_first_attempts_only(aapl_path: Path) -> None:
    async with replay(aapl_path, faults=Faults(auth_failures=2)) as server:
        for _ in range(2):
            client = PolygonCollector(server.feed, ["T.AAPL"])
            with pytest.raises(AuthError):
                await asyncio.wait_for(client.client.connect(client.on_message), TIMEOUT)
        async with polygon_client(server, ["T.AAPL"]) as client:
            await client.wait_for(lambda: len(client.events) > 0)
        assert server.connections == 3


# --- data --------------------------------------------------------------------------------


async def test_replay_sends_the_files_events_in_order(
    aapl_path: Path, aapl_events: list[MarketEvent]
) -> None:
    trades = [ev for ev in aapl_events if isinstance(ev, Trade)]
    frames_with_trades = sum(
        any(isinstance(ev, Trade) for ev in f.events) for f in read_frames(aapl_path)
    )
    async with replay(aapl_path) as server, polygon_client(server, ["T.AAPL"]) as client:
        await asyncio.wait_for(server.finished.wait(), TIMEOUT)
        await client.wait_for(lambda: len(client.events) >= len(trades))
        assert client.events == trades
        # Quotes were filtered out, and a frame with nothing subscribed is not sent.
        data_frames = [f for f in client.frames if not decode_frame(f).statuses]
        assert len(data_frames) == frames_with_trades == server.frames_sent
        assert server.events_sent == len(trades)


async def test_bigger_replay_is_complete_and_in_order() -> None:
    path = require(AMZN_REPLAY)
    expected = load_events(path)
    async with (
        replay(path) as server,
        polygon_client(server, ["T.AMZN", "Q.AMZN"]) as client,
    ):
        await client.wait_for(lambda: len(client.events) >= len(expected), timeout(3))
        assert server.finished.is_set() and server.frames_sent == 37_080
    assert len(client.events) == 66_483
    assert client.events == expected


async def test_the_parsing_client_reads_the_same_events(
    aapl_path: Path, aapl_events: list[MarketEvent]
) -> None:
    async with (
        replay(aapl_path) as server,
        polygon_client(server, ["T.AAPL", "Q.AAPL"], raw=False) as client,
    ):
        await client.wait_for(lambda: len(client.parsed) >= len(aapl_events))
    for got, ev in zip(client.parsed, aapl_events, strict=True):
        if isinstance(ev, Trade):
            assert isinstance(got, EquityTrade)
            assert (got.symbol, got.price, got.size, got.id) == (ev.sym, ev.p, ev.s, ev.i)
            assert (got.exchange, got.tape, got.conditions) == (ev.x, ev.z, list(ev.c))
        else:
            assert isinstance(got, EquityQuote) and isinstance(ev, Quote)
            assert (got.bid_price, got.bid_size, got.ask_price, got.ask_size) == (
                ev.bp,
                ev.bs,
                ev.ap,
                ev.ask_size,
            )
        assert (got.timestamp, got.sequence_number) == (ev.t, ev.q)


async def test_each_connection_gets_only_its_topics(
    aapl_path: Path, aapl_events: list[MarketEvent]
) -> None:
    trades = [ev for ev in aapl_events if isinstance(ev, Trade)]
    quotes = [ev for ev in aapl_events if isinstance(ev, Quote)]
    async with (
        replay(aapl_path, speed=50.0) as server,
        polygon_client(server, ["T.*"]) as wildcard,
    ):
        await wildcard.wait_for(lambda: len(wildcard.events) > 0)
        async with (
            polygon_client(server, ["Q.AAPL"]) as late,
            polygon_client(server, ["T.MSFT", "Q.MSFT"]) as other,
        ):
            await asyncio.wait_for(server.finished.wait(), TIMEOUT)
            await wildcard.wait_for(lambda: len(wildcard.events) == len(trades))
            await late.wait_for(lambda: bool(late.events) and late.events[-1] == quotes[-1])
            await other.wait_for(lambda: len(other.statuses) == 2)
    assert wildcard.events == trades
    # Joined late: a contiguous tail of the quotes, and nothing else.
    assert 0 < len(late.events) < len(quotes) and late.events == quotes[-len(late.events) :]
    assert other.events == [] and len(other.frames) == 2  # just the two acks


async def test_loop_keeps_time_and_sequence_increasing(
    aapl_path: Path, aapl_events: list[MarketEvent]
) -> None:
    n = len(aapl_events)
    async with (
        replay(aapl_path, loop=True) as server,
        polygon_client(server, ["T.AAPL", "Q.AAPL"]) as client,
    ):
        await client.wait_for(lambda: len(client.events) >= 2 * n + 100)
        assert not server.finished.is_set()
    events = client.events
    last_q: dict[str, int] = defaultdict(int)
    for ev in events:
        assert q_of(ev) > last_q[channel_of(ev)]
        last_q[channel_of(ev)] = q_of(ev)
    times = [event_time_ms(ev) for ev in events]
    assert all(a <= b for a, b in pairwise(times))
    assert times[n] > times[n - 1]  # the loop boundary moves time strictly forward
    # Loop 1 is loop 0 shifted by a constant.
    dt, dq = times[n] - times[0], q_of(events[n]) - q_of(events[0])
    for a, b in zip(events[:n], events[n : 2 * n], strict=True):
        assert (event_time_ms(b) - event_time_ms(a), q_of(b) - q_of(a)) == (dt, dq)
        assert (b.sym, channel_of(b)) == (a.sym, channel_of(a))


async def test_playback_pauses_while_nobody_is_subscribed(
    aapl_path: Path, aapl_events: list[MarketEvent]
) -> None:
    in_file = [(ev.sym, channel_of(ev), q_of(ev)) for ev in aapl_events]
    async with replay(aapl_path, speed=20.0) as server:
        async with hand_client(server) as c:
            await c.login()
            assert server.frames_read == 0  # connected, not subscribed: nothing plays
            await c.send("subscribe", "T.AAPL,Q.AAPL")
            got = await c.until_n_events(20)
            await c.send("unsubscribe", "T.AAPL,Q.AAPL")
            got.extend(await c.until_status("unsubscribed to: Q.AAPL"))
            assert not server.playing
            position = server.frames_read
            # A negative check has no event to await: at 20x the whole file would play
            # in 2.5 s; in 0.5 s at most the one frame being paced is taken, and held.
            await asyncio.sleep(0.5)
            assert server.frames_read <= position + 1
            # A client that comes back continues exactly where the replay was.
            await c.send("subscribe", "T.AAPL,Q.AAPL")
            more = await c.until_n_events(10)
        received = [(e["sym"], e["ev"], e["q"]) for e in got + more]
        assert received == in_file[: len(received)]


# --- faults ------------------------------------------------------------------------------


async def test_drop_fault_aborts_after_n_frames(aapl_path: Path) -> None:
    async with (
        replay(aapl_path, faults=Faults(drop_after_frames=5)) as server,
        hand_client(server) as c,
    ):
        await c.login()
        await c.send("subscribe", "T.AAPL,Q.AAPL")
        data = 0
        with pytest.raises(ConnectionClosedError) as info:
            while True:
                frame = await c.recv_frame()
                data += frame[0]["ev"] != "status"
        assert data == 5
        assert info.value.rcvd is None  # no close frame: the TCP connection was aborted
        assert server.connections_dropped == 1


async def test_polygon_client_reconnects_after_a_drop(aapl_path: Path) -> None:
    faults = Faults(drop_after_frames=5, drop_every_connection=False)
    async with (
        replay(aapl_path, faults=faults) as server,
        polygon_client(server, ["T.AAPL", "Q.AAPL"], max_reconnects=3) as client,
    ):
        await asyncio.wait_for(server.finished.wait(), TIMEOUT)
        await client.wait_for(lambda: server.connections == 2 and len(client.events) > 100)
        assert server.connections_dropped == 1
        # Resubscribed after reconnecting, and the feed went on in order.
        assert sum(s.message == "subscribed to: T.AAPL" for s in client.statuses) == 2
        trade_qs = [e.q for e in client.events if isinstance(e, Trade)]
        assert all(a < b for a, b in pairwise(trade_qs))


async def test_garbage_fault_injects_frames_the_decoder_rejects(
    aapl_path: Path, aapl_events: list[MarketEvent]
) -> None:
    expected_reasons = {
        GarbageKind.BAD_JSON: RejectReason.MALFORMED_FRAME,
        GarbageKind.NAN_PRICE: RejectReason.MALFORMED_FRAME,
        GarbageKind.NEGATIVE_PRICE: RejectReason.INVALID_PRICE,
        GarbageKind.CROSSED_QUOTE: RejectReason.CROSSED_QUOTE,
        GarbageKind.UNKNOWN_EVENT: RejectReason.UNKNOWN_EVENT,
        GarbageKind.MISSING_FIELD: RejectReason.MALFORMED_EVENT,
    }
    async with (
        replay(aapl_path, faults=Faults(garbage_every=3)) as server,
        polygon_client(server, ["T.AAPL", "Q.AAPL"]) as client,
    ):
        await asyncio.wait_for(server.finished.wait(), TIMEOUT)
        await client.wait_for(lambda: len(client.events) == len(aapl_events))
    rejected = [d for d in map(decode_frame, client.frames) if d.rejects]
    assert len(rejected) == server.garbage_sent == 280 // 3
    reasons = [d.rejects[0].reason for d in rejected]
    rotation = [expected_reasons[kind] for kind in GARBAGE_ROTATION]
    assert reasons == [rotation[i % len(rotation)] for i in range(len(reasons))]
    assert all(not d.events and len(d.rejects) == 1 for d in rejected)
    # Garbage comes on top of the data, which is intact.
    assert client.events == aapl_events
    # Every third data frame is preceded by garbage.
    kinds = ["g" if decode_frame(f).rejects else "d" for f in client.frames if "status" not in f]
    assert "".join(kinds).startswith("ddgd" * 10)


def test_garbage_frames_are_about_the_given_symbol() -> None:
    for kind in GarbageKind:
        frame = garbage_frame(kind, "AMZN", 1_000)
        assert b'"AMZN"' in frame
    assert b"NaN" in garbage_frame(GarbageKind.NAN_PRICE, "X", 1)


async def test_max_connections_evicts_the_older_connection(aapl_path: Path) -> None:
    faults = Faults(max_connections_evict=True)
    async with (
        replay(aapl_path, speed=1.0, faults=faults) as server,
        hand_client(server) as old,
        hand_client(server) as new,
    ):
        await old.login()
        await old.send("subscribe", "T.AAPL")
        await old.until_status("subscribed to: T.AAPL")
        await new.login()
        frame = await old.until_status_frame("max_connections")
        assert frame["message"].startswith("Maximum number of websocket connections exceeded")
        with pytest.raises(ConnectionClosed) as info:
            await old.recv_frame()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        assert server.evictions == 1
        await new.send("subscribe", "T.AAPL")
        await new.until_status("subscribed to: T.AAPL")


# --- flow control ------------------------------------------------------------------------


async def test_max_speed_with_a_stalled_reader_keeps_memory_bounded() -> None:
    limit = 64 * 1024
    path = require(AMZN_REPLAY)
    async with (
        replay(path, max_buffered_bytes=limit, slow_consumer_timeout_s=None) as server,
        hand_client(server, max_queue=1) as stalled,
    ):
        await stalled.login()
        await stalled.send("subscribe", "T.AMZN,Q.AMZN")
        # The client now reads nothing: socket buffers fill, then ours, then the pump
        # has to wait for room.
        await wait_until(lambda: server.backpressure_waits > 0)
        read_when_full = server.frames_read
        # Our buffer holds at most the limit plus one frame (< 16 KB), and the
        # transport's at most websockets' high-water mark (32 KiB) plus one frame.
        assert server.buffered_bytes() <= limit + 32 * 1024 + 2 * 16 * 1024
        assert read_when_full < 37_080  # the file was not slurped into memory
        assert not server.finished.is_set()
        # Reading again resumes the flow, in order.
        last_q: dict[str, int] = defaultdict(int)
        count = 0
        async with asyncio.timeout(TIMEOUT):
            while count < 10_000:
                for ev in await stalled.recv_frame():
                    if ev["ev"] == "status":
                        continue
                    assert ev["q"] > last_q[ev["ev"]]
                    last_q[ev["ev"]] = ev["q"]
                    count += 1
        assert server.frames_read > read_when_full


async def test_a_slow_consumer_is_disconnected_and_others_go_on() -> None:
    async with (
        replay(
            require(AMZN_REPLAY), max_buffered_bytes=8 * 1024, slow_consumer_timeout_s=0.2
        ) as server,
        hand_client(server, max_queue=1) as stalled,
        polygon_client(server, ["T.AMZN"]) as reader,
    ):
        await stalled.login()
        await stalled.send("subscribe", "T.AMZN,Q.AMZN")
        await wait_until(lambda: server.slow_consumers_dropped == 1)
        count = len(reader.events)
        await reader.wait_for(lambda: len(reader.events) > count + 100)


# --- the simulated market ----------------------------------------------------------------


async def test_simulated_server_produces_plausible_data() -> None:
    server = await start_simulated_server(["AAPL", "MSFT"], seed=7, rate=200.0)
    try:
        async with polygon_client(server, ["T.*", "Q.*", "Q.NEWCO"], raw=False) as client:

            def seen(kind: type[EquityQuote | EquityTrade], symbol: str) -> bool:
                return any(type(m) is kind and m.symbol == symbol for m in client.parsed)

            await client.wait_for(
                lambda: (
                    all(seen(EquityQuote, s) for s in ("AAPL", "MSFT", "NEWCO"))
                    and seen(EquityTrade, "AAPL")
                )
            )
    finally:
        await server.close()
    now_ms = time.time() * 1000
    last_q: dict[str, int] = defaultdict(int)
    for m in client.parsed:
        assert abs(m.timestamp - now_ms) < 60_000  # stamped with the wall clock
        assert m.sequence_number > last_q[m.symbol]
        last_q[m.symbol] = m.sequence_number
        if isinstance(m, EquityQuote):
            assert 0 < m.bid_price < m.ask_price and m.bid_size > 0 and m.ask_size > 0
        else:
            assert m.price > 0 and m.size > 0 and isinstance(m.id, str)
    # Q.NEWCO added NEWCO to the market, so T.* now covers its trades too.
    assert {m.symbol for m in client.parsed if isinstance(m, EquityTrade)} <= {
        "AAPL",
        "MSFT",
        "NEWCO",
    }


# --- recorder and commands ---------------------------------------------------------------


async def test_record_round_trip(
    aapl_path: Path, aapl_events: list[MarketEvent], tmp_path: Path
) -> None:
    out = tmp_path / "aapl.jsonl.gz"
    async with replay(aapl_path) as server:
        result = await asyncio.wait_for(
            record(server.url, "key", ["T.AAPL", "Q.AAPL"], out, max_frames=280), TIMEOUT
        )
    assert (result.frames, result.events, result.status_frames) == (280, 644, 2)
    assert is_gzip(out)
    assert load_events(out) == aapl_events


async def test_record_stops_after_its_duration(tmp_path: Path) -> None:
    out = tmp_path / "sim.jsonl.gz"
    server = await start_simulated_server(["AAPL"], seed=1, rate=200.0)
    try:
        started = time.monotonic()
        result = await asyncio.wait_for(
            record(server.url, "key", ["Q.AAPL"], out, duration_s=0.5), TIMEOUT
        )
        assert time.monotonic() - started >= 0.5
    finally:
        await server.close()
    assert result.frames > 0 and result.status_frames == 1
    assert len(load_events(out)) == result.events  # closed properly: the gzip is complete


async def test_record_surfaces_auth_errors_and_closes_the_file(
    aapl_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "none.jsonl"
    async with replay(aapl_path, api_keys={"good"}) as server:
        with pytest.raises(AuthError):
            await asyncio.wait_for(record(server.url, "bad", ["T.AAPL"], out), TIMEOUT)
    assert out.read_bytes() == b""


def _parse(add: Callable[[Any], argparse.ArgumentParser], argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tickgraph")
    add(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def test_replay_and_record_commands_round_trip(
    aapl_path: Path, aapl_events: list[MarketEvent], tmp_path: Path, capsys: Any
) -> None:
    replay_args = _parse(add_replay_command, ["replay", str(aapl_path), "--port", "0"])
    assert replay_args.speed == 1.0 and replay_args.handler.__name__ == "replay_handler"
    replay_args.speed = None  # as --speed max
    ready: asyncio.Future[PolygonProtocolServer] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    serving = asyncio.create_task(run_replay(replay_args, stop=stop, on_ready=ready.set_result))
    server = await asyncio.wait_for(ready, TIMEOUT)
    out = tmp_path / "rec.jsonl"
    record_args = _parse(
        add_record_command,
        [
            "record",
            "--out",
            str(out),
            "--url",
            server.url,
            "--symbols",
            "aapl",
            "--max-frames",
            "280",
        ],
    )
    result = await asyncio.wait_for(run_record(record_args), TIMEOUT)
    assert result.frames == 280 and not is_gzip(out)
    assert load_events(out) == aapl_events
    stop.set()
    assert await asyncio.wait_for(serving, TIMEOUT) == 0
    assert f"POLYGON_WS_URL={server.url}" in capsys.readouterr().out


async def test_record_command_falls_back_to_the_simulated_market(tmp_path: Path) -> None:
    out = tmp_path / "sim.jsonl.gz"
    args = _parse(
        add_record_command,
        ["record", "--out", str(out), "--symbols", "ZZZ", "--channels", "Q", "--max-frames", "20"],
    )
    result = await asyncio.wait_for(run_record(args), TIMEOUT)
    assert result.frames == 20
    events = load_events(out)
    assert events and {(type(ev), ev.sym) for ev in events} == {(Quote, "ZZZ")}


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "/no/such/file.jsonl.gz"],
        ["replay", "{aapl}", "--speed", "0"],
        ["replay", "{aapl}", "--speed", "-2"],
        ["replay", "{aapl}", "--speed", "fast"],
        ["replay", "{aapl}", "--port", "70000"],
        ["replay", "{aapl}", "--drop-after", "0"],
        ["replay", "{aapl}", "--garbage-every", "x"],
        ["record"],  # --out is required
        ["record", "--out", "x.jsonl", "--channels", "T,X"],
        ["record", "--out", "x.jsonl", "--symbols", "not a symbol"],
        ["record", "--out", "x.jsonl", "--duration", "0"],
        ["record", "--out", "x.jsonl", "--url", "http://example.com"],
    ],
)
def test_commands_reject_bad_arguments(argv: list[str], aapl_path: Path, capsys: Any) -> None:
    argv = [a.replace("{aapl}", str(aapl_path)) for a in argv]
    parser = argparse.ArgumentParser(prog="tickgraph")
    sub = parser.add_subparsers(dest="command", required=True)
    add_replay_command(sub)
    add_record_command(sub)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_record_command_refuses_to_overwrite(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "exists.jsonl"
    out.write_text("keep me\n")
    args = _parse(add_record_command, ["record", "--out", str(out)])
    assert args.handler(args) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "keep me\n"


async def test_replay_process_serves_and_stops_cleanly_on_sigterm(aapl_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams.commands",
        "replay",
        str(aapl_path),
        "--port",
        "0",
        "--speed",
        "max",
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode().strip()
        assert line.startswith("POLYGON_WS_URL=ws://127.0.0.1:")
        url = line.split("=", 1)[1]
        feed = url.removeprefix("ws://").removesuffix("/stocks")
        client = PolygonCollector(feed, ["T.AAPL"]).start()
        await client.wait_for(lambda: len(client.events) > 10)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
        # The server closed the connection cleanly (1001), so the client just returns.
        assert client.task is not None
        await asyncio.wait_for(client.task, TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
