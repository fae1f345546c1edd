"""Users' alerts: validate, store, arm, and keep the engine and the database in step.

A definition is validated completely (including its indicators) before anything is
stored; it is stored before it is armed; at start-up every stored alert that is not
done is re-armed with its persisted firing state, so a restart neither loses an
alert nor fires one twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import asyncpg

from server.alerts import Alert, AlertEngine, AlertStatus, FireState, validate
from server.alerts.model import InvalidAlert
from server.analytics import Analytics
from server.errors import TickgraphError
from server.indicators import IndicatorSpec
from server.limits.tiers import FREE, Tier, TierLimits, limits_for
from server.services.alert_recovery import AlertRecovery
from server.storage import alerts as alert_store
from server.storage.alert_events import load_watermarks

if TYPE_CHECKING:
    from server.services.orders.alert_orders import AlertOrders

log = logging.getLogger(__name__)

DEFAULT_MAX_ALERTS_PER_USER = 500


class AlertNotFound(TickgraphError):
    code = "NOT_FOUND"


@lru_cache(maxsize=1024)
def output_index(key: str, output: str) -> int | None:
    """Where ``output`` sits in the value tuple of the indicator ``key``."""
    try:
        outputs = IndicatorSpec.parse(key).outputs
    except TickgraphError:
        return None
    if output == "value":
        return 0
    return outputs.index(output) if output in outputs else None


def canonical_definition(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition with every indicator key in canonical form ("rsi" → "RSI(14)")
    and its output checked, so equal indicators are shared and bad ones are refused."""

    def fix(node: Any, where: str) -> Any:
        if isinstance(node, dict):
            out = {k: fix(v, f"{where}.{k}") for k, v in node.items()}
            if isinstance(node.get("indicator"), str):
                spec = IndicatorSpec.parse(node["indicator"])
                out["indicator"] = spec.key
                output = node.get("output", "value")
                if output_index(spec.key, output) is None:
                    raise InvalidAlert(
                        f"{spec.key} has no output {output!r}; it has {', '.join(spec.outputs)}",
                        field=where,
                    )
            return out
        if isinstance(node, list):
            return [fix(v, f"{where}[{i}]") for i, v in enumerate(node)]
        return node

    fixed: dict[str, Any] = fix(definition, "definition")
    return fixed


class AlertService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        analytics: Analytics,
        *,
        max_per_user: int = DEFAULT_MAX_ALERTS_PER_USER,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        recovery: AlertRecovery | None = None,
    ) -> None:
        self._pool = pool
        #: Re-evaluates (or records as GAPs) what the restart missed; None: nothing is.
        self.recovery = recovery
        self._analytics = analytics
        self.engine: AlertEngine = analytics.engine
        self.max_per_user = max_per_user
        self._wall_ms = wall_ms
        # Alert changes and indicator (re)subscriptions happen one at a time.
        self._lock = asyncio.Lock()
        #: Each owner's tier limits (firing rates), learnt at start-up and from every
        #: create/update, refreshed by ``run_expiry``.
        self._owner_limits: dict[str, TierLimits] = {}
        #: Order templates of alerts that trade (``server.services.orders.alert_orders``).
        self.trades: AlertOrders | None = None

    def _order_template(self, definition: dict[str, Any]) -> dict[str, Any] | None:
        template = definition.get("order")
        if template is None:
            return None
        if self.trades is None:
            raise InvalidAlert("this server places no orders from alerts", field="order")
        if not isinstance(template, dict):
            raise InvalidAlert("order is an order input", field="order")
        return self.trades.validate(template)

    async def _arm_order(
        self, alert_id: uuid.UUID, owner: str, template: dict[str, Any] | None
    ) -> None:
        if self.trades is not None:
            await self.trades.arm(alert_id, owner, template)

    def limits_for(self, owner: str) -> TierLimits:
        return self._owner_limits.get(owner, FREE)

    async def refresh_owner_limits(self) -> None:
        """Read the tiers of every owner with alerts (a tier changes with setUserTier)."""
        rows = await self._pool.fetch(
            "SELECT u.id::text AS owner, u.tier FROM users u "
            "WHERE u.id::text IN (SELECT DISTINCT owner FROM alerts WHERE NOT done)"
        )
        self._owner_limits.update({r["owner"]: limits_for(Tier(r["tier"])) for r in rows})

    async def start(self) -> int:
        """Re-arm every stored alert that is not done, and set up the recovery of the
        window since their last durable evaluation. Returns how many."""
        armed = 0
        restored: list[tuple[Alert, FireState]] = []
        for stored in await alert_store.load_armed(self._pool):
            try:
                alert = self._validate(stored.id, stored.owner, stored.definition, restoring=True)
            except TickgraphError as exc:
                log.error("stored alert %s no longer validates (%s); not armed", stored.id, exc)
                continue
            state = FireState.from_persisted(
                revision=alert.revision,
                last_key=stored.last_fired_key,
                last_fired_ms=_ms(stored.last_fired_at),
                done=stored.done,
            )
            self.engine.restore(alert, state)
            restored.append((alert, state))
            await self._arm_order(stored.id, stored.owner, stored.definition.get("order"))
            armed += 1
        if self.recovery is not None:
            watermarks = await load_watermarks(self._pool)
            watch = self.recovery.arm(restored, watermarks)
            self._analytics.expect_resume(watch, self.recovery.on_resume)
        await self.refresh_owner_limits()
        await self._analytics.sync_alert_indicators()
        return armed

    def _validate(
        self, alert_id: uuid.UUID, owner: str, definition: dict[str, Any], *, restoring: bool
    ) -> Alert:
        return validate(
            canonical_definition(_without_order(definition)),
            alert_id=str(alert_id),
            owner=owner,
            # A stored alert's expiry is handled by the engine, not refused.
            now_ms=-(1 << 62) if restoring else self._wall_ms(),
            existing=0 if restoring else self.engine.open_count(owner),
            max_per_user=self.max_per_user,
        )

    async def create(
        self,
        owner: str,
        definition: dict[str, Any],
        *,
        max_alerts: int | None = None,
        limits: TierLimits | None = None,
    ) -> alert_store.StoredAlert:
        """``max_alerts``: the owner's limit (their tier's), else the service default;
        ``limits``: the owner's tier (its firing rates apply to this owner's alerts)."""
        limit = self.max_per_user if max_alerts is None else max_alerts
        if limits is not None:
            self._owner_limits[owner] = limits
        template = self._order_template(definition)
        async with self._lock:
            alert_id = uuid.uuid4()
            alert = validate(
                canonical_definition({**_without_order(definition), "revision": 0}),
                alert_id=str(alert_id),
                owner=owner,
                now_ms=self._wall_ms(),
                existing=self.engine.open_count(owner),
                max_per_user=limit,
            )
            stored = await alert_store.insert_alert(
                self._pool,
                alert_id=alert_id,
                owner=owner,
                symbol=alert.symbol,
                definition=_with_order(alert.definition(), template),
                enabled=alert.enabled,
                expires_at=_dt(alert.expires_ms),
                max_per_owner=limit,
            )
            await self._arm_order(alert_id, owner, template)
            self.engine.add(alert)
            await self._analytics.sync_alert_indicators()
            return stored

    async def update(
        self, owner: str, alert_id: uuid.UUID, definition: dict[str, Any]
    ) -> alert_store.StoredAlert:
        template = self._order_template(definition)
        async with self._lock:
            current = await alert_store.get_alert(self._pool, alert_id=alert_id, owner=owner)
            if current is None:
                raise AlertNotFound(f"no alert {alert_id}")
            revision = int(current.definition.get("revision", 0)) + 1
            alert = validate(
                canonical_definition({**_without_order(definition), "revision": revision}),
                alert_id=str(alert_id),
                owner=owner,
                now_ms=self._wall_ms(),
                existing=max(0, self.engine.open_count(owner) - 1),
                max_per_user=self.max_per_user,
            )
            stored = await alert_store.replace_alert(
                self._pool,
                alert_id=alert_id,
                owner=owner,
                symbol=alert.symbol,
                definition=_with_order(alert.definition(), template),
                enabled=alert.enabled,
                expires_at=_dt(alert.expires_ms),
            )
            if stored is None:
                raise AlertNotFound(f"no alert {alert_id}")
            await self._arm_order(alert_id, owner, template)
            if str(alert_id) in self.engine:
                self.engine.update(alert)
            else:
                # Done or expired before a restart, so not armed: arm the new revision.
                # restore() skips the per-user check, which the database already made.
                self.engine.restore(alert)
            await self._analytics.sync_alert_indicators()
            return stored

    async def set_enabled(
        self, owner: str, alert_id: uuid.UUID, enabled: bool
    ) -> alert_store.StoredAlert:
        async with self._lock:
            stored = await alert_store.set_enabled(
                self._pool, alert_id=alert_id, owner=owner, enabled=enabled
            )
            if stored is None:
                raise AlertNotFound(f"no alert {alert_id}")
            if str(alert_id) in self.engine:
                self.engine.set_enabled(str(alert_id), enabled)
            return stored

    async def delete(self, owner: str, alert_id: uuid.UUID) -> bool:
        async with self._lock:
            deleted = await alert_store.delete_alert(self._pool, alert_id=alert_id, owner=owner)
            if deleted:
                self.engine.remove(str(alert_id))
                await self._analytics.sync_alert_indicators()
            return deleted

    async def list(self, owner: str) -> list[tuple[alert_store.StoredAlert, AlertStatus]]:
        out = []
        for stored in await alert_store.list_alerts(self._pool, owner=owner):
            out.append((stored, self.status(stored)))
        return out

    async def get(self, owner: str, alert_id: uuid.UUID) -> alert_store.StoredAlert:
        stored = await alert_store.get_alert(self._pool, alert_id=alert_id, owner=owner)
        if stored is None:
            raise AlertNotFound(f"no alert {alert_id}")
        return stored

    def status(self, stored: alert_store.StoredAlert) -> AlertStatus:
        live = self.engine.status(str(stored.id))
        if live is not None:
            return live
        if stored.done:
            expired = stored.expires_at is not None and stored.fire_count == 0
            return AlertStatus.EXPIRED if expired else AlertStatus.DONE
        return AlertStatus.ACTIVE if stored.enabled else AlertStatus.DISABLED

    async def run_expiry(self, interval_s: float = 1.0, refresh_every: int = 60) -> None:
        """Retire expired alerts in the database as the engine expires them; re-read
        the owners' tiers every ``refresh_every`` rounds."""
        rounds = 0
        while True:
            await asyncio.sleep(interval_s)
            rounds += 1
            if rounds % refresh_every == 0:
                try:
                    await self.refresh_owner_limits()
                except (asyncpg.PostgresError, OSError):
                    log.warning("could not refresh the owners' tiers", exc_info=True)
            expired = self.engine.expire(self._wall_ms())
            if expired:
                try:
                    await alert_store.mark_done(self._pool, [uuid.UUID(i) for i in expired])
                except (asyncpg.PostgresError, OSError):
                    log.exception("could not mark %d expired alerts", len(expired))


def _without_order(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition the alert engine validates (the order template is not its)."""
    return {k: v for k, v in definition.items() if k != "order"}


def _with_order(definition: dict[str, Any], template: dict[str, Any] | None) -> dict[str, Any]:
    return definition if template is None else {**definition, "order": template}


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)
