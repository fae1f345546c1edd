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

_INSERT = f"""
INSERT INTO alert_events (alert_id, owner, symbol, dedup_key, fired_at, payload, kind)
SELECT a, o, s, k, f, p::jsonb, kd
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
            $7::text[]) AS v(a, o, s, k, f, p, kd)
ON CONFLICT (alert_id, dedup_key) DO NOTHING
RETURNING {_EVENT_COLUMNS}
"""

# The newest firing per alert becomes its last one, unless a newer one is stored already
# (a re-evaluated window is written after the live firings that followed it).
_UPDATE_ALERTS = """
UPDATE alerts AS a SET
    last_fired_key = CASE WHEN a.last_fired_at IS NULL OR v.f >= a.last_fired_at
                          THEN v.k ELSE a.last_fired_key END,
    last_fired_at = GREATEST(a.last_fired_at, v.f),
    fire_count = a.fire_count + v.n,
    done = a.done OR v.d,
    suppressed_count = a.suppressed_count + v.sup,
    updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::int[], $5::bool[], $6::bigint[])
    AS v(id, k, f, n, d, sup)
WHERE a.id = v.id
"""

_WATERMARKS = """
INSERT INTO alert_watermarks (symbol, evaluated_ms)
SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (symbol) DO UPDATE SET
    evaluated_ms = GREATEST(alert_watermarks.evaluated_ms, EXCLUDED.evaluated_ms),
    updated_at = now()
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


async def record_events(
    conn: Executor, events: Sequence[NewEvent], watermarks: Mapping[str, int] | None = None
) -> dict[tuple[uuid.UUID, str], AlertEventRow]:
    """Store ``events`` and advance ``watermarks`` in one transaction (a group commit).

    Returns the rows that were new, by (alert id, dedup key); an event already stored is
    absent (the caller must not publish it again). ``conn`` is a connection.
    """
    unique: dict[tuple[uuid.UUID, str], NewEvent] = {}
    for ev in events:
        unique.setdefault((ev.alert_id, ev.dedup_key), ev)
    async with conn.transaction():
        stored: dict[tuple[uuid.UUID, str], AlertEventRow] = {}
        if unique:
            batch = list(unique.values())
            rows = await conn.fetch(
                _INSERT,
                [e.alert_id for e in batch],
                [e.owner for e in batch],
                [e.symbol for e in batch],
                [e.dedup_key for e in batch],
                [_dt(e.at_ms) for e in batch],
                [orjson.dumps(e.payload).decode() for e in batch],
                [e.kind for e in batch],
            )
            stored = {(r["alert_id"], r["dedup_key"]): _row(r) for r in rows}
            await _update_alerts(conn, [unique[k] for k in stored if unique[k].kind == "firing"])
        if watermarks:
            symbols = list(watermarks)
            await conn.execute(_WATERMARKS, symbols, [watermarks[s] for s in symbols])
    return stored


async def _update_alerts(conn: Executor, firings: Sequence[NewEvent]) -> None:
    per_alert: dict[uuid.UUID, list[NewEvent]] = {}
    for f in firings:
        per_alert.setdefault(f.alert_id, []).append(f)
    if not per_alert:
        return
    ids = list(per_alert)
    lasts = [max(per_alert[i], key=lambda f: f.at_ms) for i in ids]
    await conn.execute(
        _UPDATE_ALERTS,
        ids,
        [f.dedup_key for f in lasts],
        [_dt(f.at_ms) for f in lasts],
        [len(per_alert[i]) for i in ids],
        [any(f.done for f in per_alert[i]) for i in ids],
        [sum(f.suppressed for f in per_alert[i]) for i in ids],
    )


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
    async with pool.acquire() as conn:
        stored = await record_events(conn, [event])
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
