"""How a subscription group turns an event into the bytes of its payload.

A group's operation is compiled once, when the group forms, into a plan
(``server.delivery.compiled``): arguments coerced once, the selection resolved with the
group's variables, and per event only the work that depends on the event. An operation
the compiler cannot handle is executed by graphql-core, as before, and so is an event
the plan hands back (graphql-core would execute it asynchronously); both are counted
(``ExecutionStats``). A plan that fails unexpectedly (a bug) is logged, counted and not
trusted again: its group goes on with graphql-core. The result is the same either way,
byte for byte (``tests/server/delivery/test_compiled_exactness.py``).

Plans are cached by document, operation and variables, so a group that forms again
(or another group of the same operation in another scope) does not compile again; a
plan is shared only when nothing in it can see the group's context (``Plan.signature``).
Such groups also share payloads: within one flush, an event rendered by the same
function and executed by plans of one signature is encoded once, whichever group got
it first (``FlushMemo``), e.g. a thousand groups of one document that differ only
in their symbol lists. Groups of one render function share the rendered item too,
whatever their documents.
"""

from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from graphql import GraphQLError

from server.delivery.compiled import Abandon, Plan, Unsupported, compile_plan

log = logging.getLogger(__name__)

ErrorFormatter = Callable[[list[GraphQLError]], list[Any]]
#: Plans kept for groups to come (by document, operation name and variables).
PLAN_CACHE_SIZE = 1024
#: Payloads kept for other groups within one flush, at most.
MEMO_SIZE = 20_000


def plain_errors(errors: list[GraphQLError]) -> list[Any]:
    return [error.formatted for error in errors]


def json_default(value: Any) -> Any:
    # Decimals (money) travel as strings, never as binary floats.
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(payload: dict[str, Any]) -> bytes:
    """The payload as JSON. Without ``default`` first: orjson is measurably slower with
    one, and payloads rarely hold anything it does not know (the same bytes either way)."""
    try:
        return orjson.dumps(payload)
    except TypeError:
        return orjson.dumps(payload, default=json_default)


@dataclass
class ExecutionStats:
    """Counters of the multiplexer's executions, over its life."""

    #: Groups whose operation runs as a compiled plan, and groups executed by graphql-core.
    compiled_groups: int = 0
    graphql_groups: int = 0
    #: Payloads produced by a plan, and by graphql-core (its groups and handed-back events).
    plan_executions: int = 0
    graphql_executions: int = 0
    #: Events a plan handed back to graphql-core (it would have gone asynchronous).
    abandoned: int = 0
    #: Events a plan failed on unexpectedly (a bug: logged, executed by graphql-core).
    plan_failures: int = 0
    #: Payloads taken from another group's execution of the same event.
    shared: int = 0
    #: Events of conflating streams replaced by a newer one before they were executed.
    superseded: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class PlanCache:
    """Compiled plans (or the reason there is none), least recently used out first."""

    def __init__(self, size: int = PLAN_CACHE_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, Plan | Unsupported] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], Plan]) -> Plan | Unsupported:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        try:
            entry = build()
        except Unsupported as exc:
            entry = exc
        except RecursionError:
            entry = Unsupported("nested too deeply to compile")
        except SyntaxError as exc:  # e.g. more nested blocks than Python allows
            entry = Unsupported(f"cannot compile: {exc.msg}")
        # A plan that sees the context belongs to its group alone: never kept.
        if isinstance(entry, Unsupported) or entry.signature is not None:
            self._entries[key] = entry
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return entry


class Sharing:
    """Which live groups may share work within a flush: the render of an item (groups
    of one ``Feed.render`` function) and its payload (also one plan signature). Each
    key gets a small number (signatures are deep tuples, too costly to hash per event),
    dropped when its last group leaves."""

    __slots__ = ("_counts", "_ids", "_keys", "_next")

    def __init__(self) -> None:
        self._ids: dict[Hashable, int] = {}
        self._keys: dict[int, Hashable] = {}
        self._counts: dict[int, int] = {}
        self._next = 0

    def join(self, key: Hashable) -> int:
        number = self._ids.get(key)
        if number is None:
            self._next += 1
            number = self._ids[key] = self._next
            self._keys[number] = key
            self._counts[number] = 0
        self._counts[number] += 1
        return number

    def leave(self, number: int | None) -> None:
        if number is None:
            return
        self._counts[number] -= 1
        if self._counts[number] <= 0:
            del self._counts[number]
            del self._ids[self._keys.pop(number)]

    def shared(self, number: int) -> bool:
        """More than one live group has this number."""
        return self._counts.get(number, 0) > 1


class FlushMemo:
    """What groups share within one flush: by (``Sharing`` number, item), the value
    (a rendered item, or a payload) computed for the item by the first group."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[Any, Any]] = {}

    def get(self, key: Hashable, item: Any) -> Any:
        hit = self._entries.get(key)
        # The item is kept alive by the entry, so its id cannot be reused meanwhile.
        return hit[1] if hit is not None and hit[0] is item else None

    def put(self, key: Hashable, item: Any, value: Any) -> None:
        if len(self._entries) >= MEMO_SIZE:
            self._entries.clear()
        self._entries[key] = (item, value)

    def clear(self) -> None:
        if self._entries:
            self._entries.clear()


class Execution:
    """One group's operation, executed on rendered events."""

    __slots__ = ("_executor", "_format_errors", "_stats", "plan", "unsupported")

    def __init__(
        self,
        executor: Any,
        *,
        plan: Plan | Unsupported,
        format_errors: ErrorFormatter,
        stats: ExecutionStats,
    ) -> None:
        self._executor = executor
        self._format_errors = format_errors
        self._stats = stats
        self.plan: Plan | None = plan if isinstance(plan, Plan) else None
        self.unsupported = str(plan) if isinstance(plan, Unsupported) else None
        if self.plan is not None:
            stats.compiled_groups += 1
        else:
            stats.graphql_groups += 1

    @property
    def signature(self) -> Hashable | None:
        return self.plan.signature if self.plan is not None else None

    def payload(self, value: Any) -> tuple[bytes, bool]:
        """The encoded payload of ``value`` and whether it is free of errors."""
        plan = self.plan
        if plan is None:
            data, errors = self._graphql(value)
        else:
            try:
                data, errors = plan.execute(value, self._executor)
                self._stats.plan_executions += 1
            except Abandon:
                self._stats.abandoned += 1
                data, errors = self._graphql(value)
            except Exception:
                # A bug in the plan: never trusted again for this group.
                self._stats.plan_failures += 1
                self.plan = None
                log.exception("a compiled plan failed: this group goes to graphql-core")
                data, errors = self._graphql(value)
        payload: dict[str, Any] = {"data": data}
        if errors:
            payload["errors"] = self._format_errors(list(errors))
        try:
            return encode(payload), not errors
        except TypeError as exc:  # e.g. an integer beyond 64 bits in a JSON scalar
            error = GraphQLError(f"the result could not be encoded: {exc}", original_error=exc)
            return encode({"data": None, "errors": self._format_errors([error])}), False

    def _graphql(self, value: Any) -> tuple[Any, Any]:
        self._stats.graphql_executions += 1
        try:
            result = self._executor.build_per_event_executor(value).execute_operation(False)
            if self._executor.is_awaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise RuntimeError("a field below a subscription resolved asynchronously")
            return result.data, result.errors
        except Exception as exc:
            return None, [GraphQLError(str(exc), original_error=exc)]


def plan_for(
    cache: PlanCache, key: Hashable, executor: Any, strawberry_schema: Any
) -> Plan | Unsupported:
    return cache.get(key, lambda: compile_plan(executor, strawberry_schema))
