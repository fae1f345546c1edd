"""Analyses and analysis preferences in PostgreSQL (``0009_analyses.sql``).

Every read and write is scoped by ``user_id``, except the answer cache's lookup, which
is by snapshot fingerprint: the same fingerprint means the same inputs (the snapshot
holds the user's own position, orders and preferences), so the answer reveals nothing
of the user who paid for it.

The quota is taken in ``reserve``: under a per-user advisory lock it counts the day's
charged analyses and the ones still running, and inserts the new row as ``running``,
so concurrent requests cannot slip past the limit together. A ``running`` row older
than the analysis timeout is from a process that died: it is marked failed there and
then, and stops holding a place.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeAlias

import msgspec

from server.analysis.result import AnalysisResult, Usage
from server.analysis.snapshot import Preferences, RiskTolerance, Snapshot, Style, decode
from server.errors import InvalidInput

#: A pool or a connection (asyncpg is untyped).
Executor: TypeAlias = Any

_RESULT = msgspec.json.Decoder(AnalysisResult)
_ENCODER = msgspec.json.Encoder()

_COLUMNS = (
    "id, user_id, subject, question, analyst, status, charged, cached, fingerprint, "
    "snapshot, result, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
    "cost_usd, error_code, error_message, created_at, finished_at"
)


class Status(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Refusal(StrEnum):
    """Why ``reserve`` said no."""

    QUOTA = "quota"
    CONCURRENCY = "concurrency"


@dataclass(frozen=True, slots=True)
class Reservation:
    refused: Refusal | None
    #: Charged analyses today and analyses running now (before this one).
    used_today: int
    running: int


@dataclass(frozen=True, slots=True)
class StoredAnalysis:
    id: uuid.UUID
    user_id: uuid.UUID
    subject: str
    question: str
    analyst: str
    status: Status
    charged: bool
    cached: bool
    fingerprint: str | None
    snapshot: Snapshot | None
    result: AnalysisResult | None
    usage: Usage
    error_code: str | None
    error_message: str | None
    created_at: datetime
    finished_at: datetime | None

    @property
    def cursor(self) -> str:
        return encode_cursor(self.created_at, self.id)


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """A user's analyses since a moment (the start of the day)."""

    charged: int
    cached: int
    failed: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: Decimal


def _usage(row: Any) -> Usage:
    return Usage(
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cache_read_tokens=row["cache_read_tokens"],
        cache_write_tokens=row["cache_write_tokens"],
        cost_usd=row["cost_usd"],
        cached=row["cached"],
    )


def _stored(row: Any) -> StoredAnalysis:
    snapshot = row["snapshot"]
    result = row["result"]
    return StoredAnalysis(
        id=row["id"],
        user_id=row["user_id"],
        subject=row["subject"],
        question=row["question"],
        analyst=row["analyst"],
        status=Status(row["status"]),
        charged=row["charged"],
        cached=row["cached"],
        fingerprint=row["fingerprint"],
        snapshot=decode(snapshot) if snapshot is not None else None,
        result=_RESULT.decode(result) if result is not None else None,
        usage=_usage(row),
        error_code=row["error_code"],
        error_message=row["error_message"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
    )


# ------------------------------------------------------------------ cursors


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(created_at: datetime, analysis_id: uuid.UUID) -> str:
    micros = (created_at - _EPOCH) // _MICROSECOND
    raw = f"{micros}:{analysis_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """``(created_at, id)`` of the row a cursor names; ``InvalidInput`` if it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, _, ident = raw.partition(":")
        return _EPOCH + int(micros) * _MICROSECOND, uuid.UUID(ident)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "invalid cursor: pass a cursor from a previous page", field="after"
        ) from None


# ------------------------------------------------------------------ lifecycle


async def reserve(
    pool: Any,
    *,
    analysis_id: uuid.UUID,
    user_id: uuid.UUID,
    subject: str,
    question: str,
    question_key: str,
    analyst: str,
    limit: int,
    max_running: int,
    day_start: datetime,
    stale_before: datetime,
    now: datetime | None = None,
) -> Reservation:
    """Take a place in the user's quota and insert the ``running`` row, or refuse.

    Charged analyses since ``day_start`` plus running ones must stay below ``limit``,
    and running ones below ``max_running``. Running rows created before
    ``stale_before`` are marked failed first (their process is gone). ``now`` is the
    row's creation time (default: the database's clock): every window (the day, the
    cache, staleness) is then measured on the caller's clock."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('analyses:' || $1))", str(user_id)
        )
        await conn.execute(
            "UPDATE analyses SET status = 'failed', error_code = 'ABANDONED', "
            "error_message = 'the server stopped while the analysis ran', finished_at = now() "
            "WHERE user_id = $1 AND status = 'running' AND created_at < $2",
            user_id,
            stale_before,
        )
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE charged AND created_at >= $2) AS used, "
            "count(*) FILTER (WHERE status = 'running') AS running "
            "FROM analyses WHERE user_id = $1 AND (created_at >= $2 OR status = 'running')",
            user_id,
            day_start,
        )
        used, running = int(row["used"]), int(row["running"])
        refused: Refusal | None = None
        if running >= max_running:
            refused = Refusal.CONCURRENCY
        elif used + running >= limit:
            refused = Refusal.QUOTA
        if refused is None:
            await conn.execute(
                "INSERT INTO analyses "
                "(id, user_id, subject, question, question_key, analyst, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, now()))",
                analysis_id,
                user_id,
                subject,
                question,
                question_key,
                analyst,
                now,
            )
    return Reservation(refused, used, running)


async def finish(
    db: Executor,
    analysis_id: uuid.UUID,
    *,
    status: Status,
    charged: bool,
    cached: bool = False,
    fingerprint: str | None = None,
    snapshot_json: bytes | None = None,
    result: AnalysisResult | None = None,
    usage: Usage | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> None:
    """Record how a running analysis ended (once: a finished row is not changed again)."""
    usage = usage or Usage(cost_usd=None)
    await db.execute(
        "UPDATE analyses SET status = $2, charged = $3, cached = $4, fingerprint = $5, "
        "snapshot = $6::jsonb, result = $7::jsonb, input_tokens = $8, output_tokens = $9, "
        "cache_read_tokens = $10, cache_write_tokens = $11, cost_usd = $12, "
        "error_code = $13, error_message = $14, finished_at = now() "
        "WHERE id = $1 AND status = 'running'",
        analysis_id,
        status.value,
        charged,
        cached,
        fingerprint,
        snapshot_json.decode() if snapshot_json is not None else None,
        _ENCODER.encode(result).decode() if result is not None else None,
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.cost_usd,
        error_code,
        error_message,
    )


async def find_cached(
    db: Executor,
    *,
    subject: str,
    fingerprint: str,
    question_key: str,
    analyst: str,
    since: datetime,
) -> AnalysisResult | None:
    """The newest completed, uncached answer to the same request made after ``since``."""
    raw = await db.fetchval(
        "SELECT result FROM analyses WHERE subject = $1 AND fingerprint = $2 "
        "AND question_key = $3 AND analyst = $4 AND status = 'completed' AND NOT cached "
        "AND created_at > $5 ORDER BY created_at DESC LIMIT 1",
        subject,
        fingerprint,
        question_key,
        analyst,
        since,
    )
    return _RESULT.decode(raw) if raw is not None else None


# ------------------------------------------------------------------ reads


async def get(db: Executor, *, user_id: uuid.UUID, analysis_id: uuid.UUID) -> StoredAnalysis | None:
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM analyses WHERE id = $1 AND user_id = $2", analysis_id, user_id
    )
    return _stored(row) if row is not None else None


async def page(
    db: Executor,
    *,
    user_id: uuid.UUID,
    after: str | None,
    first: int,
    statuses: tuple[Status, ...] = (Status.COMPLETED,),
) -> tuple[list[StoredAnalysis], bool]:
    """The user's analyses, newest first: ``first`` of them after the ``after`` cursor,
    and whether there are more."""
    args: list[Any] = [user_id, [s.value for s in statuses], first + 1]
    where = "user_id = $1 AND status = ANY($2::text[])"
    if after is not None:
        created_at, ident = decode_cursor(after)
        args += [created_at, ident]
        # Keyset: strictly older than the cursor's row in (created_at, id) order.
        where += " AND (created_at, id) < ($4, $5)"
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM analyses WHERE {where} ORDER BY created_at DESC, id DESC LIMIT $3",
        *args,
    )
    items = [_stored(r) for r in rows[:first]]
    return items, len(rows) > first


async def usage_since(db: Executor, *, user_id: uuid.UUID, since: datetime) -> UsageTotals:
    row = await db.fetchrow(
        "SELECT count(*) FILTER (WHERE charged) AS charged, "
        "count(*) FILTER (WHERE cached) AS cached, "
        "count(*) FILTER (WHERE status = 'failed') AS failed, "
        "coalesce(sum(input_tokens), 0) AS input_tokens, "
        "coalesce(sum(output_tokens), 0) AS output_tokens, "
        "coalesce(sum(cache_read_tokens), 0) AS cache_read_tokens, "
        "coalesce(sum(cache_write_tokens), 0) AS cache_write_tokens, "
        "coalesce(sum(cost_usd), 0) AS cost_usd "
        "FROM analyses WHERE user_id = $1 AND created_at >= $2",
        user_id,
        since,
    )
    return UsageTotals(
        charged=int(row["charged"]),
        cached=int(row["cached"]),
        failed=int(row["failed"]),
        input_tokens=int(row["input_tokens"]),
        output_tokens=int(row["output_tokens"]),
        cache_read_tokens=int(row["cache_read_tokens"]),
        cache_write_tokens=int(row["cache_write_tokens"]),
        cost_usd=Decimal(row["cost_usd"]),
    )


# ------------------------------------------------------------------ preferences


async def get_preferences(db: Executor, *, user_id: uuid.UUID) -> Preferences:
    row = await db.fetchrow(
        "SELECT analysis_style, risk_tolerance FROM users WHERE id = $1", user_id
    )
    if row is None:
        return Preferences()
    style, risk = row["analysis_style"], row["risk_tolerance"]
    return Preferences(
        style=Style(style) if style else None,
        risk_tolerance=RiskTolerance(risk) if risk else None,
    )


async def set_preferences(db: Executor, *, user_id: uuid.UUID, preferences: Preferences) -> bool:
    """Store the user's stated style and risk tolerance (``None`` clears one); False if
    there is no such user."""
    status = await db.execute(
        "UPDATE users SET analysis_style = $2, risk_tolerance = $3, updated_at = now() "
        "WHERE id = $1",
        user_id,
        preferences.style.value if preferences.style else None,
        preferences.risk_tolerance.value if preferences.risk_tolerance else None,
    )
    return bool(status.endswith(" 1"))
