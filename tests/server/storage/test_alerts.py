"""Alert persistence: owner scoping, the per-user limit under concurrency, and
exactly-once recording of firings (then publishing only what was new)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from server.delivery.bus import InProcessBus
from server.delivery.firings import AlertDelivery, Firing, alert_topic
from server.errors import LimitExceeded
from server.storage.alerts import (
    alert_history,
    delete_alert,
    get_alert,
    insert_alert,
    list_alerts,
    load_armed,
    record_firing,
    replace_alert,
    set_enabled,
)
from server.storage.database import Database
from tests.support.timing import TIMEOUT

DEFINITION = {"symbol": "AMZN", "conditions": [{"left": "LAST", "op": "greaterThan", "value": 1}]}


async def make(db: Database, owner: str = "alice", **kw: object) -> uuid.UUID:
    alert_id = uuid.uuid4()
    await insert_alert(
        db.pool,
        alert_id=alert_id,
        owner=owner,
        symbol="AMZN",
        definition=DEFINITION,
        enabled=True,
        expires_at=None,
        max_per_owner=int(kw.get("limit", 10)),  # type: ignore[call-overload]
    )
    return alert_id


async def test_owner_scoping(database: Database) -> None:
    mine = await make(database, "alice")
    await make(database, "bob")
    assert [a.id for a in await list_alerts(database.pool, owner="alice")] == [mine]
    assert await get_alert(database.pool, alert_id=mine, owner="bob") is None
    assert await set_enabled(database.pool, alert_id=mine, owner="bob", enabled=False) is None
    assert not await delete_alert(database.pool, alert_id=mine, owner="bob")
    assert (
        await replace_alert(
            database.pool,
            alert_id=mine,
            owner="bob",
            symbol="X",
            definition={},
            enabled=True,
            expires_at=None,
        )
        is None
    )
    stored = await get_alert(database.pool, alert_id=mine, owner="alice")
    assert stored is not None and stored.enabled and stored.definition == DEFINITION
    assert await delete_alert(database.pool, alert_id=mine, owner="alice")


async def test_limit_holds_under_concurrent_creates(database: Database) -> None:
    results = await asyncio.gather(
        *(make(database, "carol", limit=5) for _ in range(12)), return_exceptions=True
    )
    assert sum(isinstance(r, uuid.UUID) for r in results) == 5
    assert all(isinstance(r, LimitExceeded) for r in results if not isinstance(r, uuid.UUID))


async def test_firing_is_recorded_once_and_once_alerts_are_done(database: Database) -> None:
    alert_id = await make(database)
    fired_at = datetime(2026, 1, 2, 15, 0, tzinfo=UTC)
    args = dict(
        alert_id=alert_id,
        owner="alice",
        symbol="AMZN",
        dedup_key="once",
        fired_at=fired_at,
        payload={"price": 101.5},
        done=True,
    )
    first = await record_firing(database.pool, **args)  # type: ignore[arg-type]
    again = await record_firing(database.pool, **args)  # type: ignore[arg-type]
    assert first is not None and again is None
    stored = await get_alert(database.pool, alert_id=alert_id, owner="alice")
    assert stored is not None
    assert (stored.done, stored.fire_count, stored.last_fired_key) == (True, 1, "once")
    assert await load_armed(database.pool) == []
    (event,) = await alert_history(database.pool, owner="alice")
    assert event.payload == {"price": 101.5} and event.fired_at == fired_at
    assert await alert_history(database.pool, owner="bob") == []


async def test_delivery_persists_before_publishing_and_skips_duplicates(
    database: Database,
) -> None:
    alert_id = await make(database)
    bus = InProcessBus()
    got: list[object] = []
    bus.subscribe(alert_topic("alice"), got.append)
    delivery = AlertDelivery(database.pool, bus)
    delivery.start()
    for key in ("bar:1", "bar:2", "bar:1"):
        delivery.submit(Firing(alert_id, "alice", "AMZN", key, 1_700_000_000_000, {}, False))
    await delivery.close(stall_timeout_s=TIMEOUT)
    assert [e.dedup_key for e in got] == ["bar:1", "bar:2"]  # type: ignore[attr-defined]
    assert (delivery.written, delivery.duplicates) == (2, 1)
    assert len(await alert_history(database.pool, owner="alice")) == 2


@pytest.mark.parametrize("bad_owner", ["", "x" * 300])
async def test_history_of_unknown_owner_is_empty(database: Database, bad_owner: str) -> None:
    assert await alert_history(database.pool, owner=bad_owner) == []
