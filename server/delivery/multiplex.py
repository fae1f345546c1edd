"""Multiplexed subscriptions: each event is executed and encoded once per group.

A naive GraphQL subscription executes its selection set and encodes the result for
every subscriber on every event: a thousand subscribers of one symbol cost a thousand
executions per tick. Here, subscriptions with the same document, operation name,
variables and visibility scope form a ``Group``. The group holds the one source
attachment (to the hub, the feed tracker, the bus), executes each event against the
selection once, encodes it once with orjson, and puts the bytes in every member's
lane (``server.delivery.outbox``), where only the operation id differs.

How a subscription joins. Subscription resolvers still run per subscriber, inside
strawberry's pipeline, so parsing, validation, depth and cost limits, admission
(rate limit, anonymous policy, quota lease) and argument errors stay per subscriber
and unchanged. A resolver returns a ``Feed``: a description of its stream (how to
attach the source, the snapshot a newcomer gets, how to render an item, how to
conflate) rather than a generator. When graphql-core iterates the Feed, the
iteration looks up the operation it runs for (``SUBSCRIBER``, set by the
graphql-transport-ws handler for each operation's task) and joins the group; the
handler then holds the membership until the subscriber completes or disconnects
(or the feed ends it, e.g. an overflowing queue that must not drop). The member
leaves the group, releases its own lease, and the group lets go of its source when
its last member leaves. Members never see each other's end.

What stays per member: the snapshot on joining (encoded once per snapshot item and
shared by everyone joining while it is current), the lane (conflation and the queue
bound are per connection, so one slow reader never holds back the others), and the
rendering of "you missed N items" for a reader whose queue overflowed.

Per-event execution must be synchronous (every field below a subscription resolves
without awaiting); an asynchronous field is reported to its subscribers as an error.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson
from graphql import GraphQLError, parse

from server.delivery.outbox import Flusher, Lane, Outbox
from server.delivery.registry import StreamRegistry

log = logging.getLogger(__name__)

Sink = Callable[[Any], None]
ErrorFormatter = Callable[[list[GraphQLError]], list[Any]]


def _plain_errors(errors: list[GraphQLError]) -> list[Any]:
    return [error.formatted for error in errors]


@dataclass(slots=True)
class Subscriber:
    """One ``subscribe`` message, as the transport handler received it, and the
    membership its feed joined (which the handler holds from then on)."""

    outbox: Outbox
    operation_id: str
    query: str
    variables: Mapping[str, Any] | None
    operation_name: str | None
    context: Any
    schema: Any  # strawberry.Schema: its graphql-core schema and executor class
    mux: Multiplexer
    member: Member | None = None


#: The operation the current task runs, set by the graphql-transport-ws handler.
SUBSCRIBER: ContextVar[Subscriber | None] = ContextVar("tickgraph_subscriber", default=None)


#: Lane keys of snapshot items, apart from the live items' keys.
_SNAPSHOT = object()


def _no_snapshot() -> Sequence[Any]:
    return ()


def _nothing() -> None:
    return None


@dataclass(eq=False, slots=True)
class Feed:
    """What a subscription field streams, returned by its resolver.

    * ``attach(sink)`` starts delivering items to ``sink`` (synchronously, never
      waiting) and returns the function that stops it. Called once per group.
    * ``snapshot()``: items a new member gets first (rendered with ``snapshot=True``),
      taken at the moment it joins, so no live item can fall between them.
    * ``render(item, snapshot, dropped_before)``: the GraphQL object for an item.
    * ``key(item)``: conflate per key (newest wins) for a reader that falls behind;
      ``None`` queues every item up to ``queue_size`` instead.
    * ``overflow_error(count)``: for queued streams that must not lose items, the
      error that ends the subscription when the queue overflows; without it the
      oldest items are dropped and the next one is rendered with ``dropped_before``.
    * ``throttle_s``: at most one item per key per interval (newest wins).
    * ``window_s``: coalesce the items of each window into one list, rendered once.
    * ``scope``: who may share a group: ``None`` for public data, else e.g. the user.
    * ``release()``: give back what this subscriber holds (its quota lease...).
    """

    attach: Callable[[Sink], Callable[[], None]]
    render: Callable[[Any, bool, int], Any]
    snapshot: Callable[[], Sequence[Any]] = _no_snapshot
    key: Callable[[Any], Hashable] | None = None
    queue_size: int = 1000
    overflow_error: Callable[[int], Exception] | None = None
    throttle_s: float = 0.0
    window_s: float = 0.0
    scope: Hashable = None
    symbols: tuple[str, ...] = ()
    release: Callable[[], None] = _nothing

    def __aiter__(self) -> _Membership:
        return _Membership(self)


class _Membership:
    """The source stream graphql-core iterates. Its first step joins the group and
    ends the iteration: the group writes the member's data from then on, and the
    transport handler holds the membership (``Subscriber.member``) until the
    subscriber completes, disconnects, or the feed ends it. Ending strawberry's
    per-operation pipeline there frees its executor, extensions and generators,
    most of what an idle subscription would otherwise cost in memory."""

    __slots__ = ("_feed", "_joined")

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        self._joined = False

    def __aiter__(self) -> _Membership:
        return self

    async def __anext__(self) -> Any:
        if self._joined:
            raise StopAsyncIteration
        self._joined = True
        subscriber = SUBSCRIBER.get()
        if subscriber is None:
            self._feed.release()
            raise RuntimeError(
                "tickgraph subscriptions are served by its graphql-transport-ws handler"
            )
        try:
            subscriber.member = subscriber.mux.join(self._feed, subscriber)
        except BaseException:
            self._feed.release()
            raise
        raise StopAsyncIteration

    async def aclose(self) -> None:
        if not self._joined:
            self._joined = True
            self._feed.release()


class Member:
    __slots__ = ("_left", "batch_offset", "ended", "feed", "group", "lane", "skip")

    def __init__(self, group: Group, feed: Feed, subscriber: Subscriber) -> None:
        self.group = group
        self.feed = feed
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._left = False
        #: Items the group held back (throttle) when this member joined: its snapshot
        #: already reflects them, so they are not sent to it again.
        self.skip: set[int] = set()
        #: Items of the forming batch that arrived before it joined (likewise).
        self.batch_offset = 0
        queued = feed.key is None
        self.lane: Lane = subscriber.outbox.lane(
            subscriber.operation_id,
            conflate=not queued,
            queue_size=feed.queue_size,
            rerender=group.rerender if queued and feed.overflow_error is None else None,
            on_overflow=self._overflow if queued and feed.overflow_error is not None else None,
        )

    def _overflow(self, count: int) -> None:
        assert self.feed.overflow_error is not None
        if not self.ended.done():
            self.ended.set_exception(self.feed.overflow_error(count))

    def leave(self) -> None:
        if self._left:
            return
        self._left = True
        self.lane.close()
        self.group.remove(self)
        if not self.ended.done():
            self.ended.cancel()
        try:
            self.feed.release()
        except Exception:
            log.exception("releasing a subscription failed")


class Group:
    """The subscribers of one (document, operation, variables, scope)."""

    def __init__(self, mux: Multiplexer, key: Hashable, feed: Feed, first: Subscriber) -> None:
        self.mux = mux
        self.key = key
        self.feed = feed
        built = first.schema.execution_context_class.build(
            first.schema._schema,
            _document(first.query),
            context_value=first.context,
            raw_variable_values=dict(first.variables or {}),
            operation_name=first.operation_name,
        )
        if isinstance(built, list):  # the pipeline accepted these variables already
            raise built[0]
        self.executor: Any = built  # graphql-core's Executor (the schema's subclass)
        # The schema decides what clients see of an error (production masks internals).
        self._format_errors: ErrorFormatter = getattr(
            first.schema, "format_event_errors", _plain_errors
        )
        self.members: list[Member] = []
        self._snapshots: dict[Hashable, tuple[Any, bytes]] = {}
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._held: dict[Hashable, Any] = {}
        self._held_seq = 0
        self._next_at = 0.0
        self._batch: list[Any] = []
        #: Events executed and encoded (once each, whatever the member count).
        self.encoded = 0
        self._detach = feed.attach(self._on_item)

    # --- members ---------------------------------------------------------------

    def add(self, feed: Feed, subscriber: Subscriber) -> Member:
        member = Member(self, feed, subscriber)
        key = feed.key
        for item in feed.snapshot():
            # Keyed apart from live data: a live update arriving before the next flush
            # follows the snapshot instead of replacing it, so "snapshot first" holds.
            lane_key = (_SNAPSHOT, key(item)) if key else None
            member.lane.put(lane_key, self._snapshot_payload(item), item)
        member.skip = {id(item) for item in self._held.values()}
        member.batch_offset = len(self._batch)
        self.members.append(member)
        return member

    def remove(self, member: Member) -> None:
        if member in self.members:
            self.members.remove(member)
            self.mux._left(self, member)
        if not self.members:
            self.close()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held.clear()
        self._batch.clear()
        detach, self._detach = self._detach, _nothing
        try:
            detach()
        except Exception:
            log.exception("detaching a subscription group failed")
        self.mux._closed(self)

    # --- events ----------------------------------------------------------------

    def _on_item(self, item: Any) -> None:
        feed = self.feed
        if feed.window_s:
            self._batch.append(item)
            if self._timer is None:
                self._timer = self._loop.call_later(feed.window_s, self._emit_batch)
        elif feed.throttle_s:
            self._throttled(item)
        else:
            self._publish(item)

    def _publish(self, item: Any) -> None:
        payload = self.encode(self.feed.render(item, False, 0))
        key = self.feed.key(item) if self.feed.key is not None else None
        for member in self.members:
            # A member that joined while the item was held back has it in its snapshot.
            if not member.skip or id(item) not in member.skip:
                member.lane.put(key, payload, item)

    def _throttled(self, item: Any) -> None:
        now = self._loop.time()
        if self._timer is None and now >= self._next_at:
            self._next_at = now + self.feed.throttle_s
            self._publish(item)
            return
        if self.feed.key is not None:
            self._held[self.feed.key(item)] = item
        else:
            self._held_seq += 1
            self._held[self._held_seq] = item
        if self._timer is None:
            self._timer = self._loop.call_at(self._next_at, self._release_held)

    def _release_held(self) -> None:
        self._timer = None
        held, self._held = self._held, {}
        self._next_at = self._loop.time() + self.feed.throttle_s
        for item in held.values():
            self._publish(item)
        for member in self.members:
            member.skip = set()

    def _emit_batch(self) -> None:
        self._timer = None
        batch, self._batch = self._batch, []
        if not batch:
            return
        payload = self.encode(self.feed.render(batch, False, 0))
        partial: dict[int, bytes | None] = {}
        for member in self.members:
            offset, member.batch_offset = member.batch_offset, 0
            if not offset:
                member.lane.put(None, payload, batch)
                continue
            # Joined mid-window: only what arrived after its snapshot.
            if offset not in partial:
                rest = batch[offset:]
                partial[offset] = self.encode(self.feed.render(rest, False, 0)) if rest else None
            part = partial[offset]
            if part is not None:
                member.lane.put(None, part, batch[offset:])

    # --- execution -------------------------------------------------------------

    def encode(self, value: Any) -> bytes:
        """Execute the operation's selection on ``value`` and encode the payload."""
        self.encoded += 1
        try:
            result = self.executor.build_per_event_executor(value).execute_operation(False)
            if self.executor.is_awaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise RuntimeError("a field below a subscription resolved asynchronously")
            data, errors = result.data, result.errors
        except Exception as exc:
            data, errors = None, [GraphQLError(str(exc), original_error=exc)]
        payload: dict[str, Any] = {"data": data}
        if errors:
            payload["errors"] = self._format_errors(list(errors))
        return orjson.dumps(payload, default=_json_default)

    def rerender(self, item: Any, dropped_before: int) -> bytes:
        return self.encode(self.feed.render(item, False, dropped_before))

    def _snapshot_payload(self, item: Any) -> bytes:
        key = self.feed.key
        if key is None:
            return self.encode(self.feed.render(item, True, 0))
        k = key(item)
        cached = self._snapshots.get(k)
        # The state's current item is the same object until the next update.
        if cached is not None and cached[0] is item:
            return cached[1]
        payload = self.encode(self.feed.render(item, True, 0))
        self._snapshots[k] = (item, payload)
        return payload


class Multiplexer:
    """Every group of this process."""

    def __init__(self, registry: StreamRegistry | None = None) -> None:
        self._registry = registry
        self.flusher = Flusher()
        self._groups: dict[Hashable, Group] = {}
        self._symbols: Counter[str] = Counter()

    def join(self, feed: Feed, subscriber: Subscriber) -> Member:
        key = (
            subscriber.query,
            subscriber.operation_name,
            orjson.dumps(subscriber.variables or {}, option=orjson.OPT_SORT_KEYS),
            feed.scope,
        )
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(self, key, feed, subscriber)
        try:
            member = group.add(feed, subscriber)
        except BaseException:
            if not group.members:
                group.close()
            raise
        self._symbols.update(feed.symbols)
        if self._registry is not None:
            self._registry.add(member.lane)
        return member

    def _left(self, group: Group, member: Member) -> None:
        for sym in member.feed.symbols:
            self._symbols[sym] -= 1
            if self._symbols[sym] <= 0:
                del self._symbols[sym]
        if self._registry is not None:
            self._registry.remove(member.lane)

    def _closed(self, group: Group) -> None:
        if self._groups.get(group.key) is group:
            del self._groups[group.key]

    def subscribers(self) -> dict[str, int]:
        """Live subscriptions per symbol in this process."""
        return dict(self._symbols)

    def stats(self) -> dict[str, int]:
        groups = list(self._groups.values())
        return {
            "groups": len(groups),
            "members": sum(len(g.members) for g in groups),
            "encoded": sum(g.encoded for g in groups),
        }


@lru_cache(maxsize=1024)
def _document(query: str) -> Any:
    """The parsed document (groups of one document text share it)."""
    return parse(query)


def _json_default(value: Any) -> Any:
    # Decimals (money) travel as strings, never as binary floats.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
