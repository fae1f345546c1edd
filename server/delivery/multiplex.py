"""Multiplexed subscriptions: each event is executed and encoded at most once per group.

A naive GraphQL subscription executes its selection set and encodes the result for
every subscriber on every event: a thousand subscribers of one symbol cost a thousand
executions per tick. Here, subscriptions with the same document, operation name,
variables and visibility scope form a ``Group``. The group holds the one source
attachment (to the hub, the feed tracker, the bus), executes each event against the
selection once, encodes it once with orjson, and puts the bytes in every member's
lane (``server.delivery.outbox``), where only the operation id differs.

Executing is cheap: the group's operation is compiled when the group forms
(``server.delivery.execution``, ``server.delivery.compiled``), so an event costs what
its selection reads, not a graphql-core execution. And it happens only when needed:
for a conflating stream (a key per item: quotes per symbol, the forming bar, an
indicator's provisional value) the group keeps the newest item per key and executes
it when the flusher is about to write (``Flusher.prepare``), so an item the next one
replaces before the flush is never executed at all. Streams that must not conflate
(trades, bar closes, alert firings) are executed every item, in order, as it arrives.

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
import logging
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from graphql import parse

from server.delivery.execution import (
    ErrorFormatter,
    Execution,
    ExecutionStats,
    FlushMemo,
    PlanCache,
    Sharing,
    plain_errors,
    plan_for,
)
from server.delivery.outbox import Flusher, Lane, Outbox
from server.delivery.registry import StreamRegistry
from streams.events import Received

log = logging.getLogger(__name__)

Sink = Callable[[Any], None]


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
    * ``render(item, snapshot, dropped_before)``: the GraphQL object for an item. It
      must depend on its arguments only, and what it returns is only read: within one
      flush, every group of the same render function executes the same rendered object,
      and groups whose compiled plans have the same signature share the payload too (a
      module-level function shares; a closure made per subscription does not, which is
      correct but costs a render and an execution per group).
    * ``key(item)``: conflate per key (newest wins) for a reader that falls behind;
      ``None`` queues every item up to ``queue_size`` instead.
    * ``overflow_error(count)``: for queued streams that must not lose items, the
      error that ends the subscription when the queue overflows; without it the
      oldest items are dropped and the next one is rendered with ``dropped_before``.
    * ``throttle_s``: at most one item per key per interval (newest wins).
    * ``window_s``: coalesce the items of each window into one list, rendered once.
    * ``scope``: who may share a group: ``None`` for public data, else e.g. the user.
    * ``release()``: give back what this subscriber holds (its quota lease...).
    * ``position(item)``: for a stream whose items carry an increasing cursor (the
      order ledger's seq): the group takes in each position once, and a member is not
      sent a live item at or below the last position of its snapshot. A source that
      cannot order its snapshot and its live items by the event loop alone (the
      database read before joining, live items from another process) stays exact.
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
    position: Callable[[Any], int] | None = None

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
    __slots__ = ("_left", "batch_offset", "ended", "feed", "floor", "group", "joined", "lane")

    def __init__(self, group: Group, feed: Feed, subscriber: Subscriber) -> None:
        self.group = group
        self.feed = feed
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._left = False
        #: The sequence number of the last item the group took in before this member
        #: joined. Items up to it that the group still holds (throttled, or waiting for
        #: the flush) are in its snapshot already, so they are not sent to it again.
        self.joined = group.seq
        #: Items of the forming batch that arrived before it joined (likewise).
        self.batch_offset = 0
        #: The last position of its snapshot (``Feed.position``).
        self.floor = -1
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

    def __init__(
        self, mux: Multiplexer, key: tuple[Hashable, ...], feed: Feed, first: Subscriber
    ) -> None:
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
        format_errors: ErrorFormatter = getattr(first.schema, "format_event_errors", plain_errors)
        # Compiled once per document, operation and variables (the scope does not
        # change what is selected); see server.delivery.execution.
        plan = plan_for(mux.plans, key[:3], built, first.schema)
        self.execution = Execution(
            built, plan=plan, format_errors=format_errors, stats=mux.execution
        )
        if self.execution.unsupported is not None:
            log.info("subscription group executed by graphql-core: %s", self.execution.unsupported)
        self.members: list[Member] = []
        self._snapshots: dict[Hashable, tuple[Any, bytes]] = {}
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        #: Every item taken in gets the next number (see Member.joined).
        self.seq = 0
        #: The last ``Feed.position`` taken in.
        self._position = -1
        self._held: dict[Hashable, tuple[Any, int]] = {}
        self._next_at = 0.0
        self._batch: list[Any] = []
        #: Conflating streams: the newest item per key since the last flush.
        self._pending: dict[Hashable, tuple[Any, int]] = {}
        #: Items handled: each executed and encoded once for all members, or not at
        #: all when a newer one of the same key replaced it before the flush; plus
        #: snapshots and re-renders.
        self.encoded = 0
        # Groups of one render function share rendered items; of one plan signature
        # too, payloads (see Multiplexer.sharing).
        signature = self.execution.signature
        self.render_id = mux.sharing.join(("render", feed.render))
        self.share_id = (
            mux.sharing.join((signature, feed.render)) if signature is not None else None
        )
        try:
            self._detach = feed.attach(self._on_item)
        except BaseException:
            self._leave_sharing()
            raise

    # --- members ---------------------------------------------------------------

    def add(self, feed: Feed, subscriber: Subscriber) -> Member:
        member = Member(self, feed, subscriber)
        key = feed.key
        position = feed.position
        for item in feed.snapshot():
            # Keyed apart from live data: a live update arriving before the next flush
            # follows the snapshot instead of replacing it, so "snapshot first" holds.
            lane_key = (_SNAPSHOT, key(item)) if key else None
            member.lane.put(lane_key, self._snapshot_payload(item), item)
            if position is not None:
                member.floor = max(member.floor, position(item))
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
        self._pending.clear()
        detach, self._detach = self._detach, _nothing
        try:
            detach()
        except Exception:
            log.exception("detaching a subscription group failed")
        self.mux._closed(self)

    # --- events ----------------------------------------------------------------

    def _on_item(self, item: Any) -> None:
        feed = self.feed
        if feed.position is not None:
            position = feed.position(item)
            if position <= self._position:
                return  # delivered already
            self._position = position
        self.seq += 1
        if feed.window_s:
            self._batch.append(item)
            if self._timer is None:
                self._timer = self._loop.call_later(feed.window_s, self._emit_batch)
        elif feed.throttle_s:
            self._throttled(item, self.seq)
        else:
            self._publish(item, self.seq)

    def _publish(self, item: Any, seq: int) -> None:
        key_of = self.feed.key
        if key_of is None:
            # Every item, in order, now.
            payload = self._live_payload(item)
            if type(item) is Received:
                self.mux.flusher.stamp(item.received_ns)
            position = self.feed.position
            at = position(item) if position is not None else 0
            for member in self.members:
                if seq > member.joined and (position is None or at > member.floor):
                    member.lane.put(None, payload, item)
            return
        # The newest per key, executed at the flush (``prepare``).
        key = key_of(item)
        pending = self._pending
        if key in pending:
            self.mux.execution.superseded += 1
        elif not pending:
            self.mux.flusher.prepare(self)
        pending[key] = (item, seq)
        self.encoded += 1

    def prepare(self) -> None:
        """At the flush: execute each key's newest item once, into every member's lane."""
        pending, self._pending = self._pending, {}
        stamp = self.mux.flusher.stamp
        for key, (item, seq) in pending.items():
            try:
                payload = self._live_payload(item, count=False)
            except Exception:
                # A render bug costs this item only, not the rest of the flush.
                log.exception("rendering a subscription item failed")
                continue
            if type(item) is Received:
                stamp(item.received_ns)
            for member in self.members:
                # A member that joined after the item arrived has it in its snapshot.
                if seq > member.joined:
                    member.lane.put(key, payload, item)

    def _throttled(self, item: Any, seq: int) -> None:
        now = self._loop.time()
        if self._timer is None and now >= self._next_at:
            self._next_at = now + self.feed.throttle_s
            self._publish(item, seq)
            return
        if self.feed.key is not None:
            self._held[self.feed.key(item)] = (item, seq)
        else:
            self._held[seq] = (item, seq)
        if self._timer is None:
            self._timer = self._loop.call_at(self._next_at, self._release_held)

    def _release_held(self) -> None:
        self._timer = None
        held, self._held = self._held, {}
        self._next_at = self._loop.time() + self.feed.throttle_s
        for item, seq in held.values():
            self._publish(item, seq)

    def _emit_batch(self) -> None:
        self._timer = None
        batch, self._batch = self._batch, []
        if not batch:
            return
        payload = self.encode(self.feed.render(batch, False, 0))
        first = batch[0]
        if type(first) is Received:  # the window's oldest item
            self.mux.flusher.stamp(first.received_ns)
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
        return self.execution.payload(value)[0]

    def _live_payload(self, item: Any, *, count: bool = True) -> bytes:
        """A live item's payload, shared with the other groups of the same plan
        signature that get the same item within this flush (see ``Feed.render``)."""
        if count:
            self.encoded += 1
        mux = self.mux
        share = self.share_id
        if share is None or not mux.sharing.shared(share):
            return self.execution.payload(self._rendered(item))[0]
        key = (share, id(item))
        payload: bytes | None = mux.memo.get(key, item)
        if payload is not None:
            mux.execution.shared += 1
            return payload
        payload, clean = self.execution.payload(self._rendered(item))
        if clean:  # errors carry this document's locations: never shared
            mux.memo.put(key, item, payload)
        return payload

    def _rendered(self, item: Any) -> Any:
        """The item's GraphQL object, rendered once per flush for all the groups of
        this render function (plans only read it)."""
        render = self.feed.render
        mux = self.mux
        if not mux.sharing.shared(self.render_id):
            return render(item, False, 0)
        key = (-self.render_id, id(item))  # negative: apart from payloads' numbers
        value = mux.memo.get(key, item)
        if value is None:
            value = render(item, False, 0)
            mux.memo.put(key, item, value)
        return value

    def _leave_sharing(self) -> None:
        self.mux.sharing.leave(self.render_id)
        self.mux.sharing.leave(self.share_id)

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
        self._groups: dict[tuple[Hashable, ...], Group] = {}
        self._symbols: Counter[str] = Counter()
        self.plans = PlanCache()
        self.execution = ExecutionStats()
        #: Renders and payloads of the current flush, shared between groups.
        self.memo = FlushMemo()
        self.flusher.after_flush.append(self.memo.clear)
        #: Groups that may share renders and payloads (memoised only when more than one
        #: live group could use them).
        self.sharing = Sharing()

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
            group._leave_sharing()

    def subscribers(self) -> dict[str, int]:
        """Live subscriptions per symbol in this process."""
        return dict(self._symbols)

    def stats(self) -> dict[str, int]:
        """Live groups, their members, and the items they handled (``Group.encoded``)."""
        groups = list(self._groups.values())
        return {
            "groups": len(groups),
            "members": sum(len(g.members) for g in groups),
            "encoded": sum(g.encoded for g in groups),
        }

    def execution_stats(self) -> dict[str, int]:
        """How events were executed over the multiplexer's life: groups on a compiled
        plan or on graphql-core, executions of each, events handed back to graphql-core
        or superseded before their flush, payloads shared between groups."""
        return self.execution.as_dict()


@lru_cache(maxsize=1024)
def _document(query: str) -> Any:
    """The parsed document (groups of one document text share it)."""
    return parse(query)
