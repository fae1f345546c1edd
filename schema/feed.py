"""The upstream feed's status, for dashboards and for clients that want to know
whether the prices they see are live."""

from __future__ import annotations

from collections.abc import AsyncIterable
from enum import Enum

import strawberry

from schema.context import Info
from schema.scalars import Long, Timestamp, ms_from_ns
from schema.subscription_quota import admit_subscription, releaser
from server.delivery.multiplex import Feed
from streams.feed_status import FeedStatus as FeedStatusState


@strawberry.enum(description="What the upstream connection is doing.")
class FeedState(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    AUTH_FAILED = "auth_failed"
    EVICTED = "evicted"
    STOPPED = "stopped"


@strawberry.type
class RejectCount:
    reason: str
    count: Long


@strawberry.type(description="The upstream market-data connection of this server process.")
class FeedStatus:
    source: str = strawberry.field(description="simulated or polygon.")
    url: str
    state: FeedState
    since: Timestamp = strawberry.field(description="When the current state began.")
    connected_since: Timestamp | None
    last_error: str | None
    reconnects: int
    next_retry_at: Timestamp | None
    topics: list[str] = strawberry.field(description="Upstream subscriptions, e.g. Q.AMZN.")
    events: Long = strawberry.field(description="Market events accepted since start.")
    last_event_at: Timestamp | None
    rejected: list[RejectCount] = strawberry.field(
        description="Upstream input dropped since start, by reason."
    )

    @classmethod
    def of(cls, s: FeedStatusState) -> FeedStatus:
        return cls(
            source=s.source,
            url=s.url,
            state=FeedState(s.state.value),
            since=ms_from_ns(s.since_ns),
            connected_since=ms_from_ns(s.connected_since_ns) if s.connected_since_ns else None,
            last_error=s.last_error,
            reconnects=s.reconnects,
            next_retry_at=ms_from_ns(s.next_retry_ns) if s.next_retry_ns else None,
            topics=list(s.topics),
            events=Long(s.events),
            last_event_at=ms_from_ns(s.last_event_ns) if s.last_event_ns else None,
            rejected=[RejectCount(reason=r, count=Long(n)) for r, n in sorted(s.rejected.items())],
        )


@strawberry.type
class FeedQuery:
    @strawberry.field
    def feed_status(self, info: Info) -> FeedStatus:
        return FeedStatus.of(info.context.services.feed_status.snapshot())


@strawberry.type
class FeedSubscription:
    @strawberry.subscription(description="The current status first, then every change of state.")
    async def feed_status(self, info: Info) -> AsyncIterable[FeedStatus]:
        lease = await admit_subscription(info, [])
        tracker = info.context.services.feed_status
        return Feed(
            attach=tracker.listen,
            render=_render_status,
            snapshot=lambda: [tracker.snapshot()],
            # Only the newest status matters to a reader that fell behind.
            key=lambda _snap: 0,
            release=releaser(lease),
        )


def _render_status(snap: FeedStatusState, _snapshot: bool, _dropped: int) -> FeedStatus:
    return FeedStatus.of(snap)
