"""The servers a fan-out load test runs against: an upstream replay and a tickgraph.

- ``CloningSource`` replays a recording with every event cloned under extra symbols
  and counts the quotes it offers (per symbol, inside a measurement window).
- ``start_upstream`` serves it over the Polygon protocol, in this process.
- ``start_tickgraph`` runs ``tickgraph serve`` as a subprocess on a free loopback port
  and waits until its feed is connected.

``loadtests/fanout.py`` uses these unless told ``--url`` (a server someone else runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from streams.events import MarketEvent, Quote
from streams.polygon_server import PolygonProtocolServer, RecordingSource

LISTENING = re.compile(r"tickgraph listening on http://127\.0\.0\.1:(\d+)")
#: Variables of the caller's environment that would change what the server under test does.
_SCRUBBED_PREFIXES = ("TICKGRAPH_", "POLYGON_", "DATABASE_URL", "REDIS_URL", "ALPACA_")


def clone_symbols(base: str, count: int) -> tuple[str, ...]:
    """``base`` and ``count - 1`` clones of it: AMZN, AMZN1, AMZN2..."""
    if count < 1:
        raise ValueError("at least one symbol")
    return (base, *(f"{base}{n}" for n in range(1, count)))


class CloningSource:
    """A ``FrameSource``: a recording's frames, each event repeated under every clone
    symbol; counts the quotes offered while the measurement window is open."""

    hold_when_paused = True

    def __init__(
        self, path: Path, symbols: Sequence[str], *, speed: float | None, loop: bool
    ) -> None:
        self.inner = RecordingSource(path, speed=speed, loop=loop)
        self.symbols = tuple(symbols)
        self.unpaced = self.inner.unpaced
        self.quotes_offered: Counter[str] = Counter()
        self.events_offered_total = 0
        self.window: tuple[float, float] | None = None

    async def next_frame(self) -> Sequence[MarketEvent] | None:
        frame = await self.inner.next_frame()
        if frame is None:
            return None
        out: list[MarketEvent] = []
        for ev in frame:
            for sym in self.symbols:
                out.append(ev if ev.sym == sym else msgspec.structs.replace(ev, sym=sym))
        self.events_offered_total += len(out)
        window = self.window
        if window is not None and window[0] <= time.time() <= window[1]:
            for ev in out:
                if isinstance(ev, Quote):
                    self.quotes_offered[ev.sym] += 1
        return out

    def pause(self) -> None:
        self.inner.pause()

    def on_subscribe(self, channel: str, symbol: str) -> None:
        """A recording has what it has."""


async def start_upstream(source: CloningSource) -> PolygonProtocolServer:
    """The replay, listening on a free loopback port (``.url`` is ``POLYGON_WS_URL``)."""
    return await PolygonProtocolServer(source, host="127.0.0.1", port=0).start()


@dataclass
class TickgraphProcess:
    process: asyncio.subprocess.Process
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"


def _get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


async def wait_ready(http_url: str, timeout_s: float) -> None:
    """Until ``/readyz`` says the database and the feed are up."""
    deadline = time.monotonic() + timeout_s
    while await asyncio.to_thread(_get_status, f"{http_url}/readyz") != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{http_url}/readyz not ready after {timeout_s:.0f}s")
        await asyncio.sleep(0.2)


async def _drain(stream: asyncio.StreamReader | None, sink: list[str], keep: int = 50) -> None:
    """Read a pipe to the end so the child never blocks on it; keep the last lines."""
    if stream is None:
        return
    while line := await stream.readline():
        sink.append(line.decode(errors="replace").rstrip())
        del sink[:-keep]


@contextlib.asynccontextmanager
async def start_tickgraph(
    upstream_url: str,
    symbols: Sequence[str],
    data_dir: Path,
    *,
    database_url: str | None = None,
    start_timeout_s: float = 90.0,
) -> AsyncIterator[TickgraphProcess]:
    """``tickgraph serve --port 0`` fed by ``upstream_url``, anonymous access on; stopped
    with SIGTERM (then SIGKILL) on exit. The embedded database lives in ``data_dir``
    unless ``database_url`` is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(
        POLYGON_WS_URL=upstream_url,
        TICKGRAPH_SYMBOLS=",".join(symbols),
        TICKGRAPH_DATA_DIR=str(data_dir),
        TICKGRAPH_ALLOW_ANONYMOUS="true",
        TICKGRAPH_LOG_LEVEL="WARNING",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--port",
        "0",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    errors: list[str] = []
    stderr_task = asyncio.create_task(_drain(proc.stderr, errors))
    stdout_task: asyncio.Task[None] | None = None
    try:
        port = await asyncio.wait_for(_read_port(proc), start_timeout_s)
        stdout_task = asyncio.create_task(_drain(proc.stdout, []))
        running = TickgraphProcess(proc, port)
        await wait_ready(running.http_url, start_timeout_s)
        yield running
    except (TimeoutError, RuntimeError) as exc:
        raise RuntimeError(f"tickgraph did not start: {exc}; stderr: {errors[-10:]}") from exc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for task in (stderr_task, stdout_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _read_port(proc: asyncio.subprocess.Process) -> int:
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        match = LISTENING.search(line.decode(errors="replace"))
        if match:
            return int(match.group(1))
    await proc.wait()
    raise RuntimeError(f"tickgraph exited with {proc.returncode} before listening")


# --- /proc sampling ------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcSample:
    at: float  # time.monotonic()
    cpu_s: float  # user + system, this process only
    rss_bytes: int
    hwm_bytes: int  # peak RSS
    threads: int


def sample_process(pid: int) -> ProcSample | None:
    """CPU time and memory of ``pid`` from /proc (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    # The command name may contain spaces: the fields start after its closing ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    values: dict[str, int] = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key] = int(rest.split()[0])
    return ProcSample(
        at=time.monotonic(),
        cpu_s=(utime + stime) / CLOCK_TICKS,
        rss_bytes=values.get("VmRSS", 0) * 1024,
        hwm_bytes=values.get("VmHWM", 0) * 1024,
        threads=values.get("Threads", 0),
    )


def describe_upstream(server: PolygonProtocolServer) -> dict[str, int]:
    return {
        "frames_read": server.frames_read,
        "frames_sent": server.frames_sent,
        "events_sent": server.events_sent,
        "backpressure_waits": server.backpressure_waits,
        "slow_consumers_dropped": server.slow_consumers_dropped,
    }
