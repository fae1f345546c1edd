"""The ``tickgraph`` command: serve, replay, record, migrate, doctor, housekeeping,
admin, schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from server.exits import EXIT_CONFIG, EXIT_STATUSES
from server.settings import MarketSource, Settings, SettingsError
from streams.progress import add_progress_flag, progress_bar, progress_wanted

log = logging.getLogger("tickgraph")

#: ``tickgraph serve`` options and the environment variables they override.
SERVE_OPTIONS: dict[str, str] = {
    "host": "TICKGRAPH_HOST",
    "port": "TICKGRAPH_PORT",
    "symbols": "TICKGRAPH_SYMBOLS",
    "data_dir": "TICKGRAPH_DATA_DIR",
    "env": "TICKGRAPH_ENV",
    "log_level": "TICKGRAPH_LOG_LEVEL",
    "polygon_ws_url": "POLYGON_WS_URL",
}


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def load_settings(args: argparse.Namespace) -> Settings:
    given = {opt: var for opt, var in SERVE_OPTIONS.items() if getattr(args, opt, None) is not None}
    overrides = {var: str(getattr(args, opt)) for opt, var in given.items()}
    # A bad value is reported as the user gave it: "--port", not TICKGRAPH_PORT.
    labels = {var: _flag(opt) for opt, var in given.items()}
    return Settings.from_env(os.environ, overrides, labels=labels)


def setting_names(args: argparse.Namespace) -> dict[str, str]:
    """How to name each setting in a message: the flag if it was given, the variable if
    that was set, both when the default was used (the user may pick either)."""
    names = {}
    for opt, var in SERVE_OPTIONS.items():
        if getattr(args, opt, None) is not None:
            names[var] = _flag(opt)
        elif os.environ.get(var, "").strip():
            names[var] = var
        else:
            names[var] = f"{_flag(opt)} or {var}"
    return names


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the server (the default command)",
        description="Run the GraphQL server. Options override the environment variables "
        "named in brackets; everything else is configured by environment (see README).",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="interface to listen on [TICKGRAPH_HOST, 127.0.0.1]")
    p.add_argument("--port", help="port, 0 for any free one [TICKGRAPH_PORT, 8000]")
    p.add_argument("--symbols", help="comma-separated universe [TICKGRAPH_SYMBOLS]")
    p.add_argument("--data-dir", help="local state, embedded database [TICKGRAPH_DATA_DIR]")
    p.add_argument("--env", help="development or production [TICKGRAPH_ENV]")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR [TICKGRAPH_LOG_LEVEL]")
    p.add_argument("--polygon-ws-url", help="upstream feed URL [POLYGON_WS_URL]")
    p.set_defaults(handler=_serve)


def _add_migrate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate",
        help="apply database migrations and exit",
        description="Apply the pending schema migrations to the database of DATABASE_URL "
        "(or the embedded one) and exit. The server does this at start-up too; several "
        "processes starting at once apply each migration exactly once.",
    )
    p.add_argument("--data-dir", help="local state, embedded database [TICKGRAPH_DATA_DIR]")
    add_progress_flag(p)
    p.set_defaults(handler=_migrate)


def _add_admin(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "admin",
        help="grant (or --revoke) the administrator role to an existing account",
        description="There is deliberately no API for this: an operator with access to "
        "the database's configuration runs it.",
    )
    p.add_argument("email")
    p.add_argument("--revoke", action="store_true", help="withdraw the role")
    p.add_argument("--data-dir", help="local state, embedded database [TICKGRAPH_DATA_DIR]")
    p.set_defaults(handler=_admin)


def _admin(args: argparse.Namespace) -> int:
    settings = load_settings(args)

    async def run() -> int:
        from server.auth.users import normalize_email, set_admin
        from server.storage.database import Database

        async with await Database.open(settings) as db:
            _, normalized = normalize_email(args.email)
            user_id = await db.pool.fetchval(
                "SELECT id FROM users WHERE email_normalized = $1", normalized
            )
            if user_id is None:
                print(f"tickgraph: no account {normalized}", file=sys.stderr)
                return 1
            await set_admin(db.pool, user_id, not args.revoke)
        role = "no longer an administrator" if args.revoke else "now an administrator"
        print(f"{normalized} is {role}")
        return 0

    return asyncio.run(run())


def _add_schema(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("schema", help="print the GraphQL schema (SDL)")
    p.set_defaults(handler=_schema)


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    from server.logging_setup import configure

    configure(settings.log_level, json=settings.log_json, secrets=settings.secret_values())
    from server.scaleout.setup import ExitStatus
    from server.serving import loop_factory
    from server.startup import serve

    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        code = runner.run(serve(settings, setting_names(args)))
    # A process that lost the leader's lease asks its supervisor to start it again.
    return code or ExitStatus.code


def _migrate(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    from server.logging_setup import configure

    configure(settings.log_level, json=settings.log_json, secrets=settings.secret_values())

    async def run() -> tuple[str, ...]:
        from server.storage.database import Database

        with progress_bar(
            progress_wanted(args.progress), desc="migrate", unit=" files", total=0
        ) as bar:

            def progress(done: int, total: int, current: str | None) -> None:
                bar.total = total
                bar.n = done
                bar.set_postfix_str(current or "", refresh=False)
                bar.refresh()

            db = await Database.open(settings, progress=progress)
        await db.close()
        return db.applied_migrations

    applied = asyncio.run(run())
    print(f"migrations applied: {', '.join(applied)}" if applied else "migrations up to date")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from schema import build_schema

    sys.stdout.write(build_schema().as_str() + "\n")
    return 0


def _record_defaults(args: argparse.Namespace) -> None:
    """``tickgraph record`` records the configured feed unless told otherwise; with no
    Polygon settings at all it records the built-in simulated market."""
    if args.url or args.api_key:
        return
    settings = Settings.from_env(os.environ)
    if settings.market_source is MarketSource.POLYGON and settings.polygon_api_key:
        args.url = settings.polygon_endpoint.url
        args.api_key = settings.polygon_api_key.reveal()


def build_parser() -> argparse.ArgumentParser:
    from server.commands.doctor import add_doctor_command
    from server.commands.housekeeping import add_housekeeping_command
    from streams.commands import add_record_command, add_replay_command

    parser = argparse.ArgumentParser(
        prog="tickgraph",
        description="Real-time market data and trading over GraphQL.",
        epilog="`tickgraph COMMAND --help` describes a command; without one, tickgraph serves.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(sub)
    add_replay_command(sub)
    add_record_command(sub)
    _add_migrate(sub)
    add_doctor_command(sub)
    add_housekeeping_command(sub)
    _add_admin(sub)
    _add_schema(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]
    args = parser.parse_args(argv)
    try:
        if args.command == "record":
            _record_defaults(args)
        code = int(args.handler(args))
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"tickgraph: configuration error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
