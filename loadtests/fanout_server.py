"""The servers a fan-out load test runs against: an upstream replay and the targets.

- ``CloningSource`` replays a recording (at ``--speed``) with every event cloned under
  extra symbols and counts the quotes it offers (per symbol, inside a measurement
  window); ``loadtests.fanout_pacing.PacedQuoteSource`` does the same at a fixed rate.
- ``start_upstream`` serves either over the Polygon protocol, in this process.
- ``start_target`` runs a target as a subprocess on a free loopback port, fed by that
  upstream: ``tickgraph serve`` (ready once ``/readyz`` says its feed is up) or one of
  the baselines of ``loadtests.fanout_baselines`` (ready once they say they listen).

``loadtests/fanout.py`` uses these unless told ``--url`` (a server someone else runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from streams.events import MarketEvent, Quote
from streams.polygon_server import FrameSource, PolygonProtocolServer, RecordingSource

LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
STATS = re.compile(r"stats on (http://127\.0\.0\.1:\d+/stats)")
TARGETS = ("tickgraph", "raw", "strawberry")
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

    #: A replay at ``speed`` has no rate to set, and never drops its backlog.
    paced = False
    lag_resets = 0

    def open_window(self, start: float, end: float) -> None:
        """Count offered quotes per symbol between these epoch times (from zero)."""
        self.quotes_offered = Counter()
        self.window = (start, end)

    def configure(self, *, rate: float | None = None, symbols: Sequence[str] | None = None) -> None:
        """Clone under other symbols from now on; a replay at ``speed`` has no rate."""
        if rate is not None:
            raise ValueError("a replay at --speed has no rate: use --rate")
        if symbols is not None:
            self.symbols = tuple(symbols)

    def pause(self) -> None:
        self.inner.pause()

    def on_subscribe(self, channel: str, symbol: str) -> None:
        """A recording has what it has."""


class OfferedSource(FrameSource, Protocol):
    """A frame source that counts what it offers (``CloningSource``, ``PacedQuoteSource``)."""

    quotes_offered: Counter[str]
    events_offered_total: int
    #: Whether ``configure(rate=...)`` works.
    paced: bool

    @property
    def lag_resets(self) -> int:
        """Times the source dropped a backlog rather than burst it (see fanout_pacing)."""
        ...

    def open_window(self, start: float, end: float) -> None: ...

    def configure(
        self, *, rate: float | None = None, symbols: Sequence[str] | None = None
    ) -> None: ...


async def start_upstream(source: FrameSource) -> PolygonProtocolServer:
    """The replay, listening on a free loopback port (``.url`` is ``POLYGON_WS_URL``).

    A target that reads slowly is never disconnected (the real feed would): the harness
    wants to measure it, so the replay waits for it instead, and what it offered is
    counted at the source."""
    server = PolygonProtocolServer(source, host="127.0.0.1", port=0, slow_consumer_timeout_s=None)
    return await server.start()


@dataclass
class TargetProcess:
    kind: str
    process: asyncio.subprocess.Process
    port: int
    #: The last lines it wrote to stderr, kept up to date while it runs.
    stderr_tail: list[str] = field(default_factory=list)
    #: Where a baseline serves its counters.
    stats_url: str | None = None

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


def _tickgraph_command(
    upstream_url: str,
    symbols: Sequence[str],
    data_dir: Path,
    database_url: str | None,
    extra_env: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
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
    env.update(extra_env or {})
    return [sys.executable, "-m", "server.cli", "serve", "--port", "0"], env


def _baseline_command(
    kind: str, upstream_url: str, symbols: Sequence[str], loop: str
) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    argv = [sys.executable, "-m", "loadtests.fanout_baselines", kind]
    argv += ["--upstream", upstream_url, "--symbols", ",".join(symbols), "--port", "0"]
    return [*argv, "--loop", loop], env


@contextlib.asynccontextmanager
async def start_target(
    kind: str,
    upstream_url: str,
    symbols: Sequence[str],
    data_dir: Path,
    *,
    database_url: str | None = None,
    loop: str = "uvloop",
    start_timeout_s: float = 90.0,
    extra_env: Mapping[str, str] | None = None,
) -> AsyncIterator[TargetProcess]:
    """``kind`` (one of ``TARGETS``) on a free loopback port, fed by ``upstream_url`` with
    ``symbols``; stopped with SIGTERM (then SIGKILL) on exit.

    tickgraph runs with anonymous access on and its embedded database in ``data_dir``
    unless ``database_url`` is given; it is ready once ``/readyz`` answers 200. A
    baseline is ready once it prints its port (it listens only after its upstream
    subscription is acknowledged). All run on ``loop`` ("uvloop" or "asyncio"; tickgraph
    through ``TICKGRAPH_EVENT_LOOP``). ``extra_env``: more settings for tickgraph."""
    if kind == "tickgraph":
        argv, env = _tickgraph_command(upstream_url, symbols, data_dir, database_url, extra_env)
        env["TICKGRAPH_EVENT_LOOP"] = loop
    elif kind in TARGETS:
        argv, env = _baseline_command(kind, upstream_url, symbols, loop)
    else:
        raise ValueError(f"unknown target {kind!r}; one of {', '.join(TARGETS)}")
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    errors: list[str] = []
    stderr_task = asyncio.create_task(_drain(proc.stderr, errors))
    stdout_task: asyncio.Task[None] | None = None
    try:
        try:
            port, stats_url = await asyncio.wait_for(_read_port(proc, kind), start_timeout_s)
            stdout_task = asyncio.create_task(_drain(proc.stdout, []))
            running = TargetProcess(kind, proc, port, stats_url=stats_url)
            if kind == "tickgraph":
                await wait_ready(running.http_url, start_timeout_s)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{kind} did not start: {exc}; stderr: {errors[-10:]}") from exc
        running.stderr_tail = errors
        yield running
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


def start_tickgraph(
    upstream_url: str,
    symbols: Sequence[str],
    data_dir: Path,
    *,
    database_url: str | None = None,
    start_timeout_s: float = 90.0,
) -> contextlib.AbstractAsyncContextManager[TargetProcess]:
    """``tickgraph serve --port 0`` fed by ``upstream_url`` (see ``start_target``)."""
    return start_target(
        "tickgraph",
        upstream_url,
        symbols,
        data_dir,
        database_url=database_url,
        start_timeout_s=start_timeout_s,
    )


async def _read_port(proc: asyncio.subprocess.Process, kind: str) -> tuple[int, str | None]:
    """The port from the "listening on" line, and a stats URL said before it, if any."""
    assert proc.stdout is not None
    stats_url: str | None = None
    while line := await proc.stdout.readline():
        text = line.decode(errors="replace")
        if stats := STATS.search(text):
            stats_url = stats.group(1)
        if match := LISTENING.search(text):
            return int(match.group(1)), stats_url
    await proc.wait()
    raise RuntimeError(f"{kind} exited with {proc.returncode} before listening")


def _get_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except (OSError, ValueError):
        return None


async def target_stats(target: TargetProcess) -> dict[str, Any] | None:
    """A baseline's counters (tickgraph has none: ``None``)."""
    if target.stats_url is None:
        return None
    return await asyncio.to_thread(_get_json, target.stats_url)


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


_ESTABLISHED = "01"


def _tcp_rows(tcp_table: Path) -> list[list[str]] | None:
    try:
        lines = tcp_table.read_text().splitlines()[1:]
    except OSError:
        return None
    return [f for line in lines if len(f := line.split()) >= 5 and f[3] == _ESTABLISHED]


def send_queue(port: int, tcp_table: Path = Path("/proc/net/tcp")) -> int | None:
    """Bytes the kernel holds for the server on ``port`` that its clients have not taken
    (``tx_queue``, unsent included, of its established sockets). A client that stops
    reading leaves up to the socket's send buffer here (autotuned up to
    ``net.ipv4.tcp_wmem``'s maximum, 4 MiB by default) before the server notices."""
    rows = _tcp_rows(tcp_table)
    if rows is None:
        return None
    suffix = f":{port:04X}"
    return sum(int(f[4].partition(":")[0], 16) for f in rows if f[1].endswith(suffix))


def kernel_backlog(port: int, tcp_table: Path = Path("/proc/net/tcp")) -> int | None:
    """Bytes of the replay on ``port`` that sit in the kernel, not yet read by its readers:
    what the replay's sockets have not had acknowledged (``tx_queue``, unsent included)
    plus what its readers' sockets hold unread (``rx_queue``). On loopback both ends are
    in this machine's table. ``None`` where there is no such table."""
    rows = _tcp_rows(tcp_table)
    if rows is None:
        return None
    suffix = f":{port:04X}"
    total = 0
    for fields in rows:
        tx, _, rx = fields[4].partition(":")
        if fields[1].endswith(suffix):  # the replay's end
            total += int(tx, 16)
        elif fields[2].endswith(suffix):  # a reader's end
            total += int(rx, 16)
    return total


def upstream_backlog(server: PolygonProtocolServer) -> int:
    """Everything the replay has taken from its source and its readers have not read yet:
    its own buffers, the transports' and the kernel's."""
    return server.buffered_bytes() + (kernel_backlog(server.port) or 0)


def describe_upstream(server: PolygonProtocolServer) -> dict[str, int]:
    return {
        "frames_read": server.frames_read,
        "frames_sent": server.frames_sent,
        "events_sent": server.events_sent,
        "backpressure_waits": server.backpressure_waits,
        "slow_consumers_dropped": server.slow_consumers_dropped,
    }
