"""The ``replay`` and ``record`` sub-commands.

``server/cli.py`` registers them on its own sub-parsers::

    from streams.commands import add_record_command, add_replay_command
    add_replay_command(subparsers)
    record = add_record_command(subparsers)
    record.set_defaults(url=..., api_key=...)   # from Settings, if it wants
    ...
    return args.handler(args)

Each handler returns the exit code. ``python -m streams.commands`` runs them on
their own (handy while developing, and used by the tests for a real process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

from streams.polygon_server import (
    Faults,
    PolygonProtocolServer,
    RecordingSource,
    start_replay_server,
    start_simulated_server,
)
from streams.progress import add_progress_flag, progress_bar, progress_wanted
from streams.recorder import RecordResult, record
from streams.recording import count_lines

DEFAULT_REPLAY_PORT: Final = 9100
#: Symbols of the built-in simulated market when recording it without ``--symbols``.
DEFAULT_SIM_SYMBOLS: Final = ("AAPL", "MSFT", "AMZN", "GOOG", "NVDA", "SPY")
CHANNELS: Final = ("T", "Q", "A", "AM")
DEFAULT_POLYGON_URL: Final = "wss://socket.polygon.io/stocks"
SIM_RATE: Final = 50.0  # events/s per symbol of the simulated market when recording it
#: Symbols as Polygon writes them (the same shape as ``server.market.symbols.SYMBOL_PATTERN``).
_SYMBOL: Final = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")


# --- argument types: each raises ArgumentTypeError, which argparse reports cleanly ------


def _existing_file(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {raw}")
    return path


def _speed(raw: str) -> float | None:
    if raw.strip().lower() == "max":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'max', got {raw!r}") from None
    if not value > 0.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"speed must be a positive number, got {raw!r}")
    return value


def _port(raw: str) -> int:
    value = _int(raw)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, got {raw}")
    return value


def _int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {raw!r}") from None


def _positive_int(raw: str) -> int:
    value = _int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {raw}")
    return value


def _non_negative_int(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {raw}")
    return value


def _positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {raw!r}")
    return value


def _symbols(raw: str) -> tuple[str, ...]:
    symbols = tuple(s.strip().upper() for s in raw.split(",") if s.strip())
    if not symbols:
        raise argparse.ArgumentTypeError("expected at least one symbol, e.g. AMZN,GOOG")
    for s in symbols:
        if s != "*" and not _SYMBOL.match(s):
            raise argparse.ArgumentTypeError(f"not a valid symbol: {s!r}")
    return symbols


def _channels(raw: str) -> tuple[str, ...]:
    channels = tuple(c.strip().upper() for c in raw.split(",") if c.strip())
    unknown = [c for c in channels if c not in CHANNELS]
    if not channels or unknown:
        raise argparse.ArgumentTypeError(
            f"channels must be among {','.join(CHANNELS)}, got {raw!r}"
        )
    return channels


def _ws_url(raw: str) -> str:
    if not raw.startswith(("ws://", "wss://")):
        raise argparse.ArgumentTypeError(f"expected a ws:// or wss:// URL, got {raw!r}")
    return raw


# --- replay ------------------------------------------------------------------------------


def add_replay_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="serve a recorded feed over the Polygon WebSocket protocol",
        description=(
            "Serve a recorded Polygon feed (JSONL, optionally gzip) at "
            "ws://HOST:PORT/stocks, speaking Polygon's protocol. Playback advances only "
            "while some client is subscribed, so a new client starts at the beginning "
            "and a reconnecting one continues where it was. At a paced speed a client "
            "that stops reading for 10 s is disconnected as a slow consumer, as a live "
            "feed does; at --speed max playback goes exactly as fast as the slowest "
            "subscribed client reads, and nobody is disconnected for being slow."
        ),
    )
    parser.add_argument("file", type=_existing_file, help="recording (.jsonl or .jsonl.gz)")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_REPLAY_PORT, help="port (default 9100, 0: any)"
    )
    parser.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        help="times real time, or 'max': as fast as the slowest client reads, never "
        "disconnecting it (default 1)",
    )
    parser.add_argument("--loop", action="store_true", help="start over at the end, forever")
    parser.add_argument(
        "--accept-key",
        action="append",
        dest="accept_keys",
        metavar="KEY",
        help="accept only this API key (repeatable; default: any key)",
    )
    faults = parser.add_argument_group("fault injection")
    faults.add_argument(
        "--drop-after",
        type=_positive_int,
        metavar="N",
        help="abort each connection after N data frames",
    )
    faults.add_argument(
        "--drop-once", action="store_true", help="with --drop-after: drop only the first one"
    )
    faults.add_argument(
        "--auth-failures",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="fail the first N auth attempts",
    )
    faults.add_argument(
        "--garbage-every",
        type=_positive_int,
        metavar="N",
        help="precede every Nth data frame with a malformed one",
    )
    faults.add_argument(
        "--evict",
        action="store_true",
        help="a new authenticated client evicts the others (max_connections)",
    )
    add_progress_flag(parser)
    parser.set_defaults(handler=replay_handler)
    return parser


def faults_from_args(args: argparse.Namespace) -> Faults:
    return Faults(
        drop_after_frames=args.drop_after,
        drop_every_connection=not args.drop_once,
        auth_failures=args.auth_failures,
        garbage_every=args.garbage_every,
        max_connections_evict=args.evict,
    )


def replay_handler(args: argparse.Namespace) -> int:
    return asyncio.run(run_replay(args, install_signals=True))


async def run_replay(
    args: argparse.Namespace,
    *,
    stop: asyncio.Event | None = None,
    install_signals: bool = False,
    on_ready: Callable[[PolygonProtocolServer], None] | None = None,
) -> int:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM with ``install_signals``).

    ``on_ready`` is called with the listening server (its URL is also printed).
    """
    stop = stop if stop is not None else asyncio.Event()
    try:
        server = await start_replay_server(
            args.file,
            speed=args.speed,
            loop=args.loop,
            host=args.host,
            port=args.port,
            faults=faults_from_args(args),
            api_keys=args.accept_keys,
        )
    except OSError as exc:
        print(f"replay: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        speed = "max" if args.speed is None else f"{args.speed:g}x"
        print(f"POLYGON_WS_URL={server.url}", flush=True)
        if on_ready is not None:
            on_ready(server)
        print(
            f"replaying {args.file} at {speed}{' in a loop' if args.loop else ''}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        with _signals_set(stop, install_signals):
            shown = asyncio.create_task(_show_playback(server, args))
            try:
                await _serve_until(server, stop)
            finally:
                shown.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await shown
    finally:
        await server.close()
    return 0


async def _show_playback(server: PolygonProtocolServer, args: argparse.Namespace) -> None:
    """The playback position (lines of the file read), redrawn a few times a second."""
    if not progress_wanted(getattr(args, "progress", None)):
        return
    source = server.source
    if not isinstance(source, RecordingSource):
        return
    total = await asyncio.to_thread(count_lines, args.file)
    with progress_bar(True, desc="replay", unit=" lines", total=total or None) as bar:
        while True:
            read = source.stats.lines
            position = read % total if total and args.loop else read
            bar.n = min(position, total) if total else position
            bar.set_postfix(loops=source.stats.loops, connections=server.connections, refresh=False)
            bar.refresh()
            await asyncio.sleep(0.25)


async def _serve_until(server: PolygonProtocolServer, stop: asyncio.Event) -> None:
    finished = asyncio.create_task(server.finished.wait())
    stopped = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if finished in done and not stop.is_set():
            print(
                "replay: end of recording; connections stay open (Ctrl-C to stop)",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
    finally:
        finished.cancel()
        stopped.cancel()


@contextlib.contextmanager
def _signals_set(stop: asyncio.Event, install: bool) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (a clean shutdown) instead of killing the loop."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if install:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


# --- record ------------------------------------------------------------------------------


def add_record_command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "record",
        help="record a Polygon feed to a JSONL(.gz) file for replay",
        description=(
            "Record frames from a Polygon stocks WebSocket (--url/--api-key), or from the "
            "built-in simulated market when neither is given, into FILE "
            "(gzip when it ends in .gz). Stops at --duration or --max-frames, or Ctrl-C."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="output file")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    parser.add_argument(
        "--symbols",
        type=_symbols,
        metavar="SYMS",
        help="comma-separated, e.g. AMZN,GOOG (default: all, i.e. T.* Q.*)",
    )
    parser.add_argument(
        "--channels", type=_channels, default=("T", "Q"), help="of T,Q,A,AM (default T,Q)"
    )
    parser.add_argument("--duration", type=_positive_float, metavar="S", help="seconds")
    parser.add_argument("--max-frames", type=_positive_int, metavar="N", help="data frames")
    parser.add_argument("--url", type=_ws_url, help="feed URL, e.g. wss://socket.polygon.io/stocks")
    parser.add_argument("--api-key", help="API key (a local replay accepts any)")
    parser.add_argument(
        "--seed", type=_int, default=1, help="seed of the simulated market (no --url/--api-key)"
    )
    add_progress_flag(parser)
    parser.set_defaults(handler=record_handler, url=None, api_key=None)
    return parser


def topics_of(args: argparse.Namespace) -> list[str]:
    symbols: Sequence[str] = args.symbols or ("*",)
    return [f"{ch}.{sym}" for ch in args.channels for sym in symbols]


def record_handler(args: argparse.Namespace) -> int:
    problem = _check_out(args.out, overwrite=args.overwrite)
    if problem:
        print(f"record: {problem}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(run_record(args, install_signals=True))
    except Exception as exc:  # the client's errors: AuthError, connection refused...
        print(f"record: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"recorded {result.frames} frames ({result.events} events) to {result.path}")
    return 0


def _check_out(out: Path, *, overwrite: bool) -> str | None:
    if out.exists() and not overwrite:
        return f"{out} exists (use --overwrite to replace it)"
    if not out.parent.is_dir():
        return f"directory {out.parent} does not exist"
    return None


async def run_record(
    args: argparse.Namespace, *, stop: asyncio.Event | None = None, install_signals: bool = False
) -> RecordResult:
    """Record per ``args``; from the simulated market when neither URL nor key is given."""
    stop = stop if stop is not None else asyncio.Event()
    simulated: PolygonProtocolServer | None = None
    if args.url is None and args.api_key is None:
        symbols = [s for s in (args.symbols or ()) if s != "*"] or list(DEFAULT_SIM_SYMBOLS)
        simulated = await start_simulated_server(symbols, args.seed, SIM_RATE)
        url, api_key = simulated.url, "simulated"
    else:
        url = args.url or DEFAULT_POLYGON_URL
        api_key = args.api_key or "local"  # a local replay accepts any key
    shown = progress_wanted(getattr(args, "progress", None))
    try:
        with (
            _signals_set(stop, install_signals),
            progress_bar(shown, desc="record", unit=" frames", total=args.max_frames) as bar,
        ):
            events = 0

            def on_frame(n: int) -> None:
                nonlocal events
                events += n
                bar.update(1)
                if bar.n % 100 == 0:  # the postfix is formatted text: not per frame
                    bar.set_postfix(events=events, refresh=False)

            return await record(
                url,
                api_key,
                topics_of(args),
                args.out,
                duration_s=args.duration,
                max_frames=args.max_frames,
                stop=stop,
                on_frame=on_frame,
            )
    finally:
        if simulated is not None:
            await simulated.close()


# --- standalone ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m streams.commands", description="Polygon feed replay and recording"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_replay_command(subparsers)
    add_record_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    code: int = handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
