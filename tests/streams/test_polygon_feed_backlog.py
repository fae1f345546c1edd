"""The feed knows when it is behind: upstream data waiting unread in the kernel.

The replay runs at max speed in a thread of its own (its own event loop), so it keeps
sending while the feed's loop is held up, as a real upstream would."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from streams.backoff import Backoff
from streams.feed_status import FeedStatusTracker
from streams.polygon_feed import BEHIND_BYTES, PolygonFeed
from streams.polygon_server import start_replay_server
from tests.support.data import AMZN_REPLAY, require
from tests.support.timing import TIMEOUT


@contextmanager
def replay_in_a_thread() -> Iterator[int]:
    """The AMZN day at max speed, served from another thread; its port."""
    ready: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        async def main() -> None:
            async with await start_replay_server(require(AMZN_REPLAY), speed=None) as server:
                ready.append(server.port)
                while not stop.is_set():  # noqa: ASYNC110 - a thread's flag
                    await asyncio.sleep(0.01)

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not ready:
        assert time.monotonic() < deadline, "the replay did not start"
        time.sleep(0.01)
    try:
        yield ready[0]
    finally:
        stop.set()
        thread.join(TIMEOUT)


async def test_the_feed_is_behind_while_it_cannot_keep_up_and_not_once_it_does() -> None:
    seen: list[tuple[int, bool]] = []
    frames = 0
    feed: PolygonFeed

    def on_frame(_frame: str | bytes, _received_ns: int) -> None:
        nonlocal frames
        frames += 1
        if frames in (100, 101):
            # Held up (as by expensive work): the replay keeps sending meanwhile.
            time.sleep(0.3)
            seen.append((feed.unread_bytes(), feed.behind()))

    with replay_in_a_thread() as port:
        feed = PolygonFeed(
            api_key="k",
            feed=f"127.0.0.1:{port}",
            secure=False,
            on_frame=on_frame,
            status=FeedStatusTracker("polygon", "test"),
            backoff=Backoff(0.05, 0.2),
            topics=["T.AMZN", "Q.AMZN"],
        )
        assert feed.unread_bytes() == 0 and not feed.behind()  # not connected
        task = asyncio.create_task(feed.run())
        try:
            async with asyncio.timeout(TIMEOUT):
                while len(seen) < 2:  # noqa: ASYNC110 - polling the recorder
                    await asyncio.sleep(0.01)
            assert seen[0][0] > BEHIND_BYTES and seen[0][1], seen
            # Nothing holds it up any more: it reads the rest of the day and catches up.
            async with asyncio.timeout(TIMEOUT):
                while feed.behind() or feed.unread_bytes():  # noqa: ASYNC110 - polling
                    await asyncio.sleep(0.01)
            assert frames > 1000
        finally:
            await feed.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
