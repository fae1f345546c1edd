"""Alert history in PostgreSQL: firings and GAPs, the per-symbol evaluation watermarks,
and cursor pages of the history.

Writes are group commits (``record_events``): every firing of a batch, the alerts'
new firing state and the watermarks go in one transaction, so one commit makes a whole
batch durable, and the watermark can never claim an evaluation whose firings are not
stored. Events are stored under the engine's dedup key with a unique constraint, so
writing the same firing twice (a retry, a re-evaluation after a restart) stores it
once; the caller publishes only what was new. Every read is scoped by ``owner``.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeAlias

import orjson

from server.errors import InvalidInput

#: A pool or a connection; asyncpg ships no type information.
Executor: TypeAlias = Any

EventKind = Literal["firing", "gap"]


@dataclass(frozen=True, slots=True)
class AlertEventRow:
    id: int
    alert_id: uuid.UUID
    owner: str
    symbol: str
    dedup_key: str
    fired_at: datetime
    payload: dict[str, Any]
    kind: EventKind = "firing"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """A firing or a GAP to store. ``done``: the alert never fires again (ONCE);
    ``suppressed``: firings of this alert not delivered (rate limit) since the last one."""

    alert_id: uuid.UUID
    owner: str
    symbol: str
    dedup_key: str
    at_ms: int
    payload: dict[str, Any]
    kind: EventKind = "firing"
    done: bool = False
    suppressed: int = 0


_EVENT_COLUMNS = "id, alert_id, owner, symbol, dedup_key, fired_at, payload, kind"

# One statement, so one round trip and one commit (autocommit) per batch: the events, the
# alerts' new firing state (the newest firing per alert becomes its last one, unless a
# newer one is stored already, as when a re-evaluated window is written after the live
# firings that followed it) and the watermarks. Data-modifying CTEs all run, and
# atomically, whether or not the final SELECT reads them.
_RECORD = f"""
WITH v AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                         $5::timestamptz[], $6::text[], $7::text[], $8::bool[], $9::bigint[])
        AS v(a, o, s, k, f, p, kd, d, sup)
), ins AS (
    INSERT INTO alert_events (alert_id, owner, symbol, dedup_key, fired_at, payload, kind)
    SELECT a, o, s, k, f, p::jsonb, kd FROM v
    ON CONFLICT (alert_id, dedup_key) DO NOTHING
    RETURNING {_EVENT_COLUMNS}
), per_alert AS (
    SELECT v.a AS id, (array_agg(v.k ORDER BY v.f DESC))[1] AS k, max(v.f) AS f,
           count(*) AS n, bool_or(v.d) AS d, sum(v.sup) AS sup
    FROM ins JOIN v ON v.a = ins.alert_id AND v.k = ins.dedup_key
    WHERE v.kd = 'firing'
    GROUP BY v.a
), updated AS (
    UPDATE alerts AS al SET
        last_fired_key = CASE WHEN al.last_fired_at IS NULL OR pa.f >= al.last_fired_at
                              THEN pa.k ELSE al.last_fired_key END,
        last_fired_at = GREATEST(al.last_fired_at, pa.f),
        fire_count = al.fire_count + pa.n,
        done = al.done OR pa.d,
        suppressed_count = al.suppressed_count + pa.sup,
        updated_at = now()
    FROM per_alert AS pa
    WHERE al.id = pa.id
    RETURNING al.id
), marks AS (
    INSERT INTO alert_watermarks (symbol, evaluated_ms)
    SELECT * FROM unnest($10::text[], $11::bigint[])
    ON CONFLICT (symbol) DO UPDATE SET
        evaluated_ms = GREATEST(alert_watermarks.evaluated_ms, EXCLUDED.evaluated_ms),
        updated_at = now()
    RETURNING symbol
)
SELECT * FROM ins
"""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def _dt(ms: int) -> datetime:
    return _EPOCH + ms * 1000 * _MICRO


def _row(row: Any) -> AlertEventRow:
    return AlertEventRow(
        id=row["id"],
        alert_id=row["alert_id"],
        owner=row["owner"],
        symbol=row["symbol"],
        dedup_key=row["dedup_key"],
        fired_at=row["fired_at"],
        payload=orjson.loads(row["payload"]),
        kind=row["kind"],
    )


async def events_since(db: Executor, after_id: int, limit: int) -> list[AlertEventRow]:
    """Every alert event stored after ``after_id`` (its one writer commits in ``id``
    order), for the processes that deliver what the leader committed."""
    rows = await db.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM alert_events WHERE id > $1 ORDER BY id LIMIT $2",
        after_id,
        limit,
    )
    return [_row(r) for r in rows]


async def events_end(db: Executor) -> int:
    """The last alert event id stored (0 when none)."""
    value = await db.fetchval("SELECT coalesce(max(id), 0) FROM alert_events")
    return int(value)


async def record_events(
    db: Executor, events: Sequence[NewEvent], watermarks: Mapping[str, int] | None = None
) -> dict[tuple[uuid.UUID, str], AlertEventRow]:
    """Store ``events`` and advance ``watermarks`` atomically, in one statement (a group
    commit: one round trip, one commit).

    Returns the rows that were new, by (alert id, dedup key); an event already stored is
    absent (the caller must not publish it again). ``db`` is a pool or a connection.
    """
    unique: dict[tuple[uuid.UUID, str], NewEvent] = {}
    for ev in events:
        unique.setdefault((ev.alert_id, ev.dedup_key), ev)
    batch = list(unique.values())
    marks = dict(watermarks or {})
    if not batch and not marks:
        return {}
    rows = await db.fetch(
        _RECORD,
        [e.alert_id for e in batch],
        [e.owner for e in batch],
        [e.symbol for e in batch],
        [e.dedup_key for e in batch],
        [_dt(e.at_ms) for e in batch],
        [orjson.dumps(e.payload).decode() for e in batch],
        [e.kind for e in batch],
        [e.done for e in batch],
        [e.suppressed for e in batch],
        list(marks),
        list(marks.values()),
    )
    return {(r["alert_id"], r["dedup_key"]): _row(r) for r in rows}


async def record_firing(
    pool: Executor,
    *,
    alert_id: uuid.UUID,
    owner: str,
    symbol: str,
    dedup_key: str,
    fired_at: datetime,
    payload: dict[str, Any],
    done: bool,
) -> AlertEventRow | None:
    """One firing in its own transaction; ``None`` if it was stored already."""
    event = NewEvent(
        alert_id, owner, symbol, dedup_key, int(fired_at.timestamp() * 1000), payload, done=done
    )
    stored = await record_events(pool, [event])
    return stored.get((alert_id, dedup_key))


async def load_watermarks(db: Executor) -> dict[str, int]:
    rows = await db.fetch("SELECT symbol, evaluated_ms FROM alert_watermarks")
    return {r["symbol"]: r["evaluated_ms"] for r in rows}


# -- reading: newest first, in pages -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryCursor:
    """A position in an owner's history (newest first): after ``(fired_at, id)``."""

    fired_at: datetime
    id: int

    def encode(self) -> str:
        micros = (self.fired_at - _EPOCH) // _MICRO  # exact: no float on the way
        return base64.urlsafe_b64encode(f"h:{micros}:{self.id}".encode()).decode()

    @classmethod
    def decode(cls, raw: str) -> HistoryCursor:
        try:
            kind, micros, ident = base64.urlsafe_b64decode(raw.encode()).decode().split(":")
            if kind != "h":
                raise ValueError(kind)
            return cls(_EPOCH + int(micros) * _MICRO, int(ident))
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise InvalidInput(
                "not a cursor of alertHistory: pass an endCursor it returned", cursor=raw
            ) from None

    @classmethod
    def of(cls, row: AlertEventRow) -> HistoryCursor:
        return cls(row.fired_at, row.id)


async def alert_history(
    db: Executor,
    *,
    owner: str,
    alert_id: uuid.UUID | None = None,
    since: datetime | None = None,
    limit: int = 100,
    after: HistoryCursor | None = None,
) -> list[AlertEventRow]:
    """The owner's firings and GAPs, newest first, from after ``after``."""
    rows = await db.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM alert_events "
        "WHERE owner = $1 AND ($2::uuid IS NULL OR alert_id = $2) "
        "AND ($3::timestamptz IS NULL OR fired_at >= $3) "
        "AND ($4::timestamptz IS NULL OR (fired_at, id) < ($4, $5)) "
        "ORDER BY fired_at DESC, id DESC LIMIT $6",
        owner,
        alert_id,
        since,
        after.fired_at if after else None,
        after.id if after else 0,
        limit,
    )
    return [_row(r) for r in rows]


__all__ = [
    "AlertEventRow",
    "HistoryCursor",
    "NewEvent",
    "alert_history",
    "load_watermarks",
    "record_events",
    "record_firing",
]
