"""``tickgraph doctor``: is this configuration going to work, and is it safe?

One line per finding (``ok``/``warn``/``fail``, the area, what was found), in the order
configuration, database, Redis, feed, broker; the status is 1 when anything failed
(with ``--strict``, when anything is not ok). The network checks run concurrently, each
bounded by ``--timeout``. Nothing is changed (no migration, no key file, no order),
and no secret is ever printed: every line is scrubbed of the configured secrets as a
last line of defence.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping

from server.commands.doctor import broker, config, database, feed, redis_check
from server.commands.doctor.finding import Finding, Status, fail

DEFAULT_TIMEOUT_S = 5.0


async def diagnose(environ: Mapping[str, str], timeout_s: float) -> list[Finding]:
    settings, problems = config.load(environ)
    if settings is None:
        return [*problems, fail("doctor", "the other checks need valid settings: fix those first")]
    checks = await asyncio.gather(
        database.check(settings, timeout_s),
        redis_check.check(settings, timeout_s),
        feed.check(settings, timeout_s),
        broker.check(settings, timeout_s),
    )
    db, redis, feed_findings, broker_finding = checks
    findings = [*config.check(settings, environ), db, redis, *feed_findings, broker_finding]
    secrets = settings.secret_values()
    return [_scrubbed(f, secrets) for f in findings]


def _scrubbed(finding: Finding, secrets: list[str]) -> Finding:
    message = finding.message
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in message:
            message = message.replace(secret, "[redacted]")
    return Finding(finding.status, finding.area, message)


def exit_status(findings: list[Finding], *, strict: bool) -> int:
    worst = {f.status for f in findings}
    if Status.FAIL in worst or (strict and Status.WARN in worst):
        return 1
    return 0


def add_doctor_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "doctor",
        help="check the configuration, database, Redis, feed and broker (one line each)",
        description="Check what `tickgraph serve` would run with, from the same environment: "
        "the settings (and anything insecure for TICKGRAPH_ENV), the database (connects, "
        "migrations current), Redis (PING, version 7+), the feed (reachable; the key "
        "accepted) and the broker (an Alpaca account request). Changes nothing; prints no "
        "secret. Exit status 1 when a check failed.",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"per network check (default {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.set_defaults(handler=_doctor)


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {raw!r}") from None
    if not 0.1 <= value <= 120:
        raise argparse.ArgumentTypeError("must be between 0.1 and 120 seconds")
    return value


def _doctor(args: argparse.Namespace) -> int:
    findings = asyncio.run(diagnose(os.environ, args.timeout))
    for finding in findings:
        print(finding.line())
    sys.stdout.flush()
    return exit_status(findings, strict=args.strict)
