"""The configuration: do the settings validate, are secrets present where they are
needed, and is anything insecure for the environment it runs in."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from server.auth.tokens import KEY_FILE_NAME
from server.commands.doctor.finding import Finding, fail, ok, warn
from server.settings import (
    LOCAL_REPLAY_KEY,
    Environment,
    MarketSource,
    Secret,
    Settings,
    SettingsError,
)

AREA = "configuration"


def load(environ: Mapping[str, str]) -> tuple[Settings | None, list[Finding]]:
    """The settings, or None and one failure per invalid variable."""
    try:
        settings = Settings.from_env(environ)
    except SettingsError as exc:
        return None, [fail(AREA, problem) for problem in exc.problems]
    return settings, []


def check(settings: Settings, environ: Mapping[str, str]) -> list[Finding]:
    findings = [*_secrets(settings, environ), *_data_dir(settings)]
    if settings.environment is Environment.PRODUCTION:
        findings += _production(settings)
    if settings.alpaca_api_key_id is not None and settings.alpaca_live:
        findings.append(warn(AREA, "ALPACA_LIVE is on: orders go to a live account (real money)"))
    described = settings.describe()
    summary = (
        f"settings valid: {described['environment']}; database {described['database']}, "
        f"bus {described['bus']}, market {described['market']}, broker "
        f"{described['broker']}, analyst {described['analyst']}, metrics {described['metrics']}"
    )
    return [ok(AREA, summary), *findings]


def feed_on_loopback(settings: Settings) -> bool:
    """Whether POLYGON_WS_URL is on this machine (a replay or a local fake)."""
    host = settings.polygon_endpoint.feed.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _secrets(settings: Settings, environ: Mapping[str, str]) -> list[Finding]:
    out: list[Finding] = []
    if (
        settings.market_source is MarketSource.POLYGON
        and settings.polygon_api_key == Secret(LOCAL_REPLAY_KEY)
        and not feed_on_loopback(settings)
    ):
        out.append(
            fail(
                AREA,
                f"POLYGON_WS_URL points at {settings.polygon_endpoint.feed} but "
                "POLYGON_API_KEY is unset: only a local replay accepts no key",
            )
        )
    if environ.get("ANTHROPIC_BASE_URL") and settings.anthropic_api_key is None:
        out.append(warn(AREA, "ANTHROPIC_BASE_URL is set but ANTHROPIC_API_KEY is not: unused"))
    return out


def _data_dir(settings: Settings) -> list[Finding]:
    out: list[Finding] = []
    directory = settings.data_dir
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK | os.X_OK):
        out.append(fail(AREA, f"TICKGRAPH_DATA_DIR {directory} cannot be created or written"))
    key_file = directory / KEY_FILE_NAME
    if settings.jwt_private_keys is None and key_file.exists():
        out += _key_file(key_file)
    return out


def _key_file(path: Path) -> list[Finding]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return [
            fail(
                AREA,
                f"the JWT signing key file {path} is readable by others (mode {mode:04o}); "
                f"chmod 600 it and rotate the key (tickgraph housekeeping --job "
                "rotate-signing-key)",
            )
        ]
    return []


def _production(settings: Settings) -> list[Finding]:
    out: list[Finding] = []
    if settings.metrics and settings.metrics_token is None:
        out.append(
            fail(
                AREA,
                "TICKGRAPH_METRICS is on without TICKGRAPH_METRICS_TOKEN: anyone can "
                "read /metrics (who trades how much)",
            )
        )
    if settings.database_url is None:
        out.append(warn(AREA, "DATABASE_URL is unset: the embedded PostgreSQL is for development"))
    elif not _tls(settings.database_url, "postgres"):
        out.append(
            warn(
                AREA,
                "DATABASE_URL has no sslmode=require/verify-*: the password and data "
                "cross the network in clear",
            )
        )
    if settings.redis_url is not None and not _tls(settings.redis_url, "redis"):
        out.append(warn(AREA, "REDIS_URL is redis:// to another host: use rediss:// (TLS)"))
    if settings.jwt_private_keys is None:
        out.append(
            warn(
                AREA,
                "JWT keys come from a file in TICKGRAPH_DATA_DIR: fine for one host; "
                "several hosts must share TICKGRAPH_JWT_PRIVATE_KEYS",
            )
        )
    if settings.allow_anonymous:
        out.append(
            warn(AREA, "TICKGRAPH_ALLOW_ANONYMOUS is on: anyone may query without an account")
        )
    if settings.graphiql:
        out.append(warn(AREA, "TICKGRAPH_GRAPHIQL is on in production"))
    return out


def _tls(url: Secret, kind: str) -> bool:
    """Whether a database or Redis URL encrypts, or need not (loopback, Unix socket)."""
    parts = urlsplit(url.reveal())
    host = parts.hostname or ""
    query = parse_qs(parts.query)
    if not host or host in ("localhost", "::1") or host.startswith(("127.", "/")):
        return True
    if "host" in query and query["host"][0].startswith("/"):
        return True  # a Unix socket given as a parameter
    if kind == "redis":
        return parts.scheme in ("rediss", "unix")
    return query.get("sslmode", [""])[0] in ("require", "verify-ca", "verify-full")
