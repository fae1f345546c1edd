"""Alerts: create, change, delete, list, history, and live firings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from schema.bars import IndicatorInput, Timeframe
from schema.context import Info
from schema.pagination import DEFAULT_PAGE, PageInfo, page_size
from schema.scalars import Long, Timestamp, uuid_argument
from schema.subscription_quota import admit_subscription, releaser
from schema.trading import OrderInput
from server.alerts import AlertStatus, Operator, PriceSource, TriggerMode
from server.alerts.model import InvalidAlert
from server.delivery.bus import attach_topic
from server.delivery.firings import alert_topic
from server.delivery.multiplex import Feed
from server.errors import InvalidInput, TickgraphError
from server.services.alerts import AlertService
from server.services.container import Services
from server.storage.alert_events import AlertEventRow, HistoryCursor, alert_history
from server.storage.alerts import StoredAlert

MAX_HISTORY = 1_000
#: Firings buffered for a subscriber that reads slowly; past it the stream ends with
#: SLOW_CONSUMER and the client re-reads alertHistory.
ALERT_EVENT_QUEUE = 1_000

strawberry.enum(
    PriceSource,
    name="PriceSource",
    description="LAST trade price, BID, ASK, or MID ((bid + ask) / 2).",
)
strawberry.enum(Operator, name="AlertOperator")
strawberry.enum(TriggerMode, name="TriggerMode")
strawberry.enum(AlertStatus, name="AlertStatus")


class SlowConsumer(TickgraphError):
    code = "SLOW_CONSUMER"


@strawberry.input(description="An indicator output on bars of the alert's symbol.")
class IndicatorRefInput:
    timeframe: Timeframe
    indicator: IndicatorInput
    output: str = strawberry.field(
        default="value", description='e.g. "signal" of MACD, "upper" of BBANDS; "value" = first.'
    )

    def doc(self) -> dict[str, Any]:
        return {
            "indicator": self.indicator.spec().key,
            "timeframe": self.timeframe.value,
            "output": self.output,
        }


@strawberry.input(description="Exactly one of price or indicator.")
class OperandInput:
    price: PriceSource | None = None
    indicator: IndicatorRefInput | None = None

    def doc(self, where: str) -> Any:
        if (self.price is None) == (self.indicator is None):
            raise InvalidAlert("give exactly one of price or indicator", field=where)
        return self.price.value if self.price is not None else self.indicator.doc()  # type: ignore[union-attr]


@strawberry.input(description="Exactly one of value, price or indicator.")
class BoundInput:
    value: float | None = None
    price: PriceSource | None = None
    indicator: IndicatorRefInput | None = None

    def doc(self, where: str) -> Any:
        given = [x for x in (self.value, self.price, self.indicator) if x is not None]
        if len(given) != 1:
            raise InvalidAlert("give exactly one of value, price or indicator", field=where)
        if self.value is not None:
            return self.value
        return OperandInput(price=self.price, indicator=self.indicator).doc(where)


@strawberry.input
class ChannelInput:
    lower: BoundInput
    upper: BoundInput


@strawberry.input(description="movingUp/movingDown by `by` (percent if set) within `bars` bars.")
class MoveInput:
    by: float
    bars: int
    timeframe: Timeframe
    percent: bool = False


@strawberry.input(
    description="left op right. The right side is `value`, `right`, `channel` (channel "
    "operators) or `move` (movingUp/movingDown)."
)
class ConditionInput:
    left: OperandInput
    op: Operator
    value: float | None = None
    right: OperandInput | None = None
    channel: ChannelInput | None = None
    move: MoveInput | None = None

    def doc(self, where: str) -> dict[str, Any]:
        out: dict[str, Any] = {"left": self.left.doc(f"{where}.left"), "op": self.op.value}
        given = [
            name
            for name, v in (
                ("value", self.value),
                ("right", self.right),
                ("channel", self.channel),
                ("move", self.move),
            )
            if v is not None
        ]
        if len(given) != 1:
            raise InvalidAlert("give exactly one of value, right, channel or move", field=where)
        if self.value is not None:
            out["value"] = self.value
        elif self.right is not None:
            out["right"] = self.right.doc(f"{where}.right")
        elif self.channel is not None:
            out["channel"] = {
                "lower": self.channel.lower.doc(f"{where}.channel.lower"),
                "upper": self.channel.upper.doc(f"{where}.channel.upper"),
            }
        elif self.move is not None:
            out["move"] = {
                "by": self.move.by,
                "percent": self.move.percent,
                "bars": self.move.bars,
                "timeframe": self.move.timeframe.value,
            }
        return out


@strawberry.input
class TriggerInput:
    mode: TriggerMode = TriggerMode.ONCE
    timeframe: Timeframe | None = strawberry.field(
        default=None, description="Bar timeframe of ONCE_PER_BAR and ONCE_PER_BAR_CLOSE."
    )
    cooldown_ms: int = strawberry.field(default=0, description="EVERY_TIME: minimum gap.")


@strawberry.input(description="An alert: all conditions (AND) on one symbol.")
class AlertInput:
    symbol: str
    conditions: list[ConditionInput]
    trigger: TriggerInput | None = None
    expires_at: Timestamp | None = None
    enabled: bool = True
    order: OrderInput | None = strawberry.field(
        default=None,
        description="An order to place each time the alert fires (alerts that trade): "
        "stored with the firing in one transaction, checked against your account at "
        "firing time; a refusal is recorded on the firing (`order.rejected`).",
    )

    def doc(self, services: Services) -> dict[str, Any]:
        trigger = self.trigger or TriggerInput()
        mode = trigger.mode
        trig: dict[str, Any] = {"mode": mode.value}
        if trigger.timeframe is not None:
            trig["timeframe"] = trigger.timeframe.value
        if mode is TriggerMode.EVERY_TIME:
            trig["cooldownMs"] = trigger.cooldown_ms
        out: dict[str, Any] = {
            "symbol": services.directory.resolve(self.symbol, stream=True),
            "conditions": [c.doc(f"conditions[{i}]") for i, c in enumerate(self.conditions)],
            "trigger": trig,
            "enabled": self.enabled,
        }
        if self.expires_at is not None:
            out["expiresMs"] = int(self.expires_at)
        if self.order is not None:
            out["order"] = self.order.doc()
        return out


def _ms(dt: datetime | None) -> Timestamp | None:
    return Timestamp(dt.timestamp() * 1000) if dt is not None else None


@strawberry.type
class Alert:
    id: strawberry.ID
    symbol: str
    status: AlertStatus
    enabled: bool
    definition: JSON = strawberry.field(description="The stored definition document.")
    expires_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    last_fired_at: Timestamp | None
    fire_count: int
    suppressed_count: Long = strawberry.field(
        description="Firings not delivered because of the tier's firing rate."
    )

    @classmethod
    def of(cls, stored: StoredAlert, status: AlertStatus) -> Alert:
        return cls(
            id=strawberry.ID(str(stored.id)),
            symbol=stored.symbol,
            status=status,
            enabled=stored.enabled,
            definition=cast(JSON, stored.definition),
            expires_at=_ms(stored.expires_at),
            created_at=_ms(stored.created_at),  # type: ignore[arg-type]
            updated_at=_ms(stored.updated_at),  # type: ignore[arg-type]
            last_fired_at=_ms(stored.last_fired_at),
            fire_count=stored.fire_count,
            suppressed_count=Long(stored.suppressed_count),
        )


@strawberry.enum(
    description="A firing, or a GAP: a window in which the alert was not "
    "evaluated (the server was down) and could not be re-evaluated from history."
)
class AlertEventKind(Enum):
    FIRING = "firing"
    GAP = "gap"


@strawberry.type(description="A window in which an alert was not evaluated.")
class AlertGap:
    from_: Timestamp = strawberry.field(name="from")
    to: Timestamp
    reason: str


@strawberry.type(
    description="One firing of an alert, with the values that made it fire; or a GAP "
    "(kind GAP, gap set): from..to the alert was not evaluated, so it may have missed "
    "firings there."
)
class AlertEvent:
    id: strawberry.ID
    alert_id: strawberry.ID
    symbol: str
    kind: AlertEventKind
    fired_at: Timestamp = strawberry.field(
        description="The firing's event time; for a GAP, its end."
    )
    key: str
    values: JSON
    gap: AlertGap | None = None
    suppressed_before: int = strawberry.field(
        default=0,
        description="Firings of this alert not delivered (its tier's firing rate) since "
        "the one before this.",
    )
    order: JSON | None = strawberry.field(
        default=None,
        description="An alert that trades: the order this firing placed (`id`, `symbol`, "
        "`side`), or why it was refused (`rejected`: `code`, `message`).",
    )

    @classmethod
    def of(cls, row: AlertEventRow) -> AlertEvent:
        payload = row.payload
        gap = None
        if row.kind == "gap":
            gap = AlertGap(
                from_=Timestamp(float(payload.get("fromMs", 0))),
                to=Timestamp(float(payload.get("toMs", 0))),
                reason=str(payload.get("reason", "")),
            )
        return cls(
            id=strawberry.ID(str(row.id)),
            alert_id=strawberry.ID(str(row.alert_id)),
            symbol=row.symbol,
            kind=AlertEventKind(row.kind),
            fired_at=_ms(row.fired_at),  # type: ignore[arg-type]
            key=row.dedup_key,
            values=cast(JSON, payload),
            gap=gap,
            suppressed_before=int(payload.get("suppressedBefore", 0)),
            order=cast(JSON, payload["order"]) if "order" in payload else None,
        )


@strawberry.type
class AlertEventEdge:
    cursor: str
    node: AlertEvent


@strawberry.type(description="A page of alert history, newest first.")
class AlertEventConnection:
    edges: list[AlertEventEdge]
    page_info: PageInfo


def _service(info: Info) -> AlertService:
    service = info.context.services.alerts
    assert service is not None
    return service


def _owner(info: Info) -> str:
    """Alerts are private: every read and write is scoped to the caller."""
    return info.context.caller.owner()


def _id(raw: strawberry.ID) -> uuid.UUID:
    return uuid_argument(raw, "an alert id")


@strawberry.type(
    description="How fired alerts are being made durable in this server process: "
    "counts since start-up, and the durability lag (decided to committed) of recent ones."
)
class AlertDeliveryStatus:
    decided: Long
    written: Long
    duplicates: Long
    pending: int
    suppressed: Long = strawberry.field(description="Over their tier's firing rate.")
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float


@strawberry.type
class AlertsQuery:
    @strawberry.field(description="Alert delivery in this server process.")
    def alert_delivery(self, info: Info) -> AlertDeliveryStatus:
        info.context.caller.user()  # signed-in callers only
        services = info.context.services
        delivery = services.delivery
        assert delivery is not None
        st = delivery.status()
        rates = services.analytics.rates if services.analytics is not None else None
        return AlertDeliveryStatus(
            decided=Long(st.decided),
            written=Long(st.written),
            duplicates=Long(st.duplicates),
            pending=st.pending,
            suppressed=Long(rates.suppressed if rates is not None else 0),
            lag_p50_ms=st.lag_p50_ms,
            lag_p99_ms=st.lag_p99_ms,
            lag_max_ms=st.lag_max_ms,
        )

    @strawberry.field(description="Your alerts, oldest first.")
    async def alerts(self, info: Info) -> list[Alert]:
        return [Alert.of(s, st) for s, st in await _service(info).list(_owner(info))]

    @strawberry.field(
        description="Your alerts' firings and GAPs, newest first: the newest `limit`. "
        "Use alertHistoryConnection to page through all of it."
    )
    async def alert_history(
        self,
        info: Info,
        alert_id: strawberry.ID | None = None,
        since: Timestamp | None = None,
        limit: int = 100,
    ) -> list[AlertEvent]:
        if not 1 <= limit <= MAX_HISTORY:
            raise InvalidInput(f"limit must be between 1 and {MAX_HISTORY}")
        rows = await _history(info, alert_id, since, limit, None)
        return [AlertEvent.of(r) for r in rows]

    @strawberry.field(
        description="Your alerts' firings and GAPs, newest first, a page at a time: "
        "`first` events after the `after` cursor (an endCursor of the previous page)."
    )
    async def alert_history_connection(
        self,
        info: Info,
        alert_id: strawberry.ID | None = None,
        since: Timestamp | None = None,
        first: int = DEFAULT_PAGE,
        after: str | None = None,
    ) -> AlertEventConnection:
        size = page_size(first, MAX_HISTORY)
        cursor = HistoryCursor.decode(after) if after is not None else None
        rows = await _history(info, alert_id, since, size + 1, cursor)
        page = rows[:size]
        edges = [
            AlertEventEdge(cursor=HistoryCursor.of(r).encode(), node=AlertEvent.of(r)) for r in page
        ]
        return AlertEventConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > size,
                end_cursor=edges[-1].cursor if edges else after,
            ),
        )


async def _history(
    info: Info,
    alert_id: strawberry.ID | None,
    since: Timestamp | None,
    limit: int,
    after: HistoryCursor | None,
) -> list[AlertEventRow]:
    services = info.context.services
    assert services.database is not None
    return await alert_history(
        services.database.pool,
        owner=_owner(info),
        alert_id=_id(alert_id) if alert_id is not None else None,
        since=datetime.fromtimestamp(since / 1000, tz=UTC) if since else None,
        limit=limit,
        after=after,
    )


@strawberry.type
class AlertsMutation:
    @strawberry.mutation(description="Validate, store and arm an alert.")
    async def create_alert(self, info: Info, input: AlertInput) -> Alert:
        service = _service(info)
        caller = info.context.caller
        stored = await service.create(
            _owner(info),
            input.doc(info.context.services),
            max_alerts=caller.limits.alerts,
            limits=caller.limits,
        )
        return Alert.of(stored, service.status(stored))

    @strawberry.mutation(description="Replace an alert's definition; it re-arms afresh.")
    async def update_alert(self, info: Info, id: strawberry.ID, input: AlertInput) -> Alert:
        service = _service(info)
        stored = await service.update(_owner(info), _id(id), input.doc(info.context.services))
        return Alert.of(stored, service.status(stored))

    @strawberry.mutation
    async def set_alert_enabled(self, info: Info, id: strawberry.ID, enabled: bool) -> Alert:
        service = _service(info)
        stored = await service.set_enabled(_owner(info), _id(id), enabled)
        return Alert.of(stored, service.status(stored))

    @strawberry.mutation(description="True if it existed (and was yours).")
    async def delete_alert(self, info: Info, id: strawberry.ID) -> bool:
        return await _service(info).delete(_owner(info), _id(id))


@strawberry.type
class AlertsSubscription:
    @strawberry.subscription(
        description="Your alerts' firings as they happen (each is stored before it is sent). "
        "A reader too slow to keep up gets SLOW_CONSUMER and should re-read alertHistory."
    )
    async def alert_events(self, info: Info) -> AsyncIterable[AlertEvent]:
        services = info.context.services
        assert services.bus is not None
        bus = services.bus
        owner = _owner(info)
        lease = await admit_subscription(info, [])
        topic = alert_topic(owner)

        return Feed(
            attach=attach_topic(bus, topic),
            render=_render_event,
            queue_size=ALERT_EVENT_QUEUE,
            # Firings must not be lost silently: end the stream, say why.
            overflow_error=_slow_consumer,
            # Private: only the owner's own subscriptions share a group.
            scope=("alerts", owner),
            release=releaser(lease),
        )


def _render_event(row: AlertEventRow, _snapshot: bool, _dropped: int) -> AlertEvent:
    return AlertEvent.of(row)


def _slow_consumer(dropped: int) -> SlowConsumer:
    return SlowConsumer(
        f"{dropped} alert events could not be delivered in time; "
        "re-read alertHistory and subscribe again",
        dropped=dropped,
    )
