"""What a fan-out run measures: phases (one set of subscribers) made of steps (one
measurement window each), the issue's scenarios as a suite, and the client plans.

A *phase* connects its subscribers once and measures one window per *step*; a step may
change the offered rate first (the saturation scenario climbs its rates on the same
connections). A phase with ``slow_clients`` measures its first step with the fast
clients alone, then connects the slow ones and measures the remaining steps.

The suite (``python -m loadtests.fanout --suite``), at ``--scale 1``:

- broadcast: 1,000 subscribers of one symbol's quotes, 100 quotes/s (100k deliveries/s
  offered);
- sparse: 1,000 subscribers, each of 5 symbols out of 20, 400 quotes/s in total
  (20/s per symbol, 250 subscribers per symbol: 100k deliveries/s offered);
- saturation: 1,000 subscribers, each of 1 of 2 symbols, at 25, 50, 75 and 100
  quotes/s (12.5k to 50k deliveries/s offered); the point reported is the step with
  the most deliveries/s whose p99 stays within 50 ms;
- coalescing (tickgraph only): 200 ``quoteBatches`` subscribers (window 100 ms), each of
  1 of 2 symbols, 2,000 quotes/s in total (1,000 per symbol, 200k quote deliveries/s
  offered in 2,000 messages/s);
- slow_clients: 100 subscribers that never read connect first and their buffers are
  filled (1,000 quotes/s for 3 s), then 900 that read, each of 1 of 2 symbols at
  40 quotes/s (18k deliveries/s offered): measured with the slow ones, then again once
  they have gone. On a freshly started server, so its memory figures start clean.
- distinct_lists (tickgraph, raw): the sparse load, but every subscriber has a symbol
  list of its own (5 of 20, no two alike): 1,000 subscription groups of one document,
  as a thousand users of one client application with their own watchlists;
- distinct_documents (tickgraph, raw): the same, and every subscriber's document differs
  too (one more field under an alias of its own): 1,000 groups that share nothing,
  each executing every event it gets.

Each phase starts with a few quotes of each of its symbols (so every subscriber gets a
snapshot at once), then the offered rate stays at a trickle while its subscribers
connect; every step starts once the server has read the backlog the previous one left.
``--scale`` multiplies the subscriber counts (rates stay: per-subscriber load is the
same, the fan-out smaller), ``--duration`` sets the window length (the saturation steps
are 3/4 of it).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from loadtests.fanout_clients import ConnectionPlan, ProcessPlan
from loadtests.fanout_server import TARGETS, clone_symbols

#: The saturation scenario's offered rates (quotes/s in total, over 2 symbols).
SATURATION_RATES = (25.0, 50.0, 75.0, 100.0)
#: The latency bound of the saturation point.
P99_LIMIT_MS = 50.0
#: The slow-client scenario's steps.
SLOW_WITH = "with slow"
SLOW_WITHOUT = "without slow"
#: tickgraph's anonymous quota: distinct symbols streamed at once per caller (= per IP).
ANONYMOUS_SYMBOLS_PER_IP = 10
#: ... and subscriptions at once.
ANONYMOUS_SUBSCRIPTIONS_PER_IP = 5
BASE_SYMBOL = "AMZN"


@dataclass(frozen=True, slots=True)
class Step:
    """One measurement window."""

    label: str
    duration_s: float
    #: Quotes/s offered in total before this window (None: leave the source alone).
    rate: float | None = None
    warmup_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Phase:
    """One set of subscribers, measured over one or more steps."""

    name: str
    symbols: tuple[str, ...]
    clients: int  # fast ones
    symbols_per_client: int
    steps: tuple[Step, ...]
    batch_window_ms: int | None = None
    #: Subscribers that never read: connected (and their buffers filled at
    #: ``fill_rate`` for ``fill_s``) before the others, gone after the first step.
    slow_clients: int = 0
    fill_rate: float | None = None
    fill_s: float = 3.0
    targets: tuple[str, ...] = TARGETS
    #: "lists": every subscriber a symbol list of its own; "documents": also a document
    #: of its own (see ``distinct_symbols`` and ``ConnectionPlan.variant``).
    distinct: str = ""
    #: Start the target afresh for this phase (its memory figures then start clean:
    #: RSS does not shrink after earlier phases' connections close).
    fresh_server: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"{self.name}: at least one step")
        if self.slow_clients and len(self.steps) < 2:
            raise ValueError(f"{self.name}: slow clients need a step with and one without")


def suite(scale: float = 1.0, duration_s: float = 4.0) -> list[Phase]:
    """The issue's scenarios, in the order they run on each target."""

    def n(count: int) -> int:
        return max(1, round(count * scale))

    def step(label: str, rate: float, factor: float = 1.0) -> Step:
        return Step(label, round(duration_s * factor, 3), rate=rate)

    return [
        Phase(
            "broadcast",
            (BASE_SYMBOL,),
            n(1000),
            1,
            (step("100/s", 100.0),),
            description="every subscriber on one symbol",
        ),
        Phase(
            "sparse",
            clone_symbols(BASE_SYMBOL, 20),
            n(1000),
            5,
            (step("400/s", 400.0),),
            description="each subscriber on 5 of 20 symbols",
        ),
        Phase(
            "saturation",
            clone_symbols(BASE_SYMBOL, 2),
            n(1000),
            1,
            tuple(step(f"{r:g}/s", r, 0.75) for r in SATURATION_RATES),
            description=f"climbing rates; best = most deliveries/s with p99 <= {P99_LIMIT_MS:g} ms",
        ),
        Phase(
            "coalescing",
            clone_symbols(BASE_SYMBOL, 2),
            n(200),
            1,
            (step("2000/s", 2000.0),),
            batch_window_ms=100,
            targets=("tickgraph",),
            description="quoteBatches(windowMs: 100), 1,000 quotes/s per symbol; "
            "each quote in a batch counts as a delivery",
        ),
        *(
            Phase(
                f"distinct_{kind}",
                clone_symbols(BASE_SYMBOL, 20),
                n(1000),
                5,
                (step("400/s", 400.0),),
                targets=("tickgraph", "raw"),
                distinct=kind,
                description=f"sparse, every subscriber {what} of its own: 1,000 groups",
            )
            for kind, what in (
                ("lists", "a symbol list"),
                ("documents", "a symbol list and a document"),
            )
        ),
        Phase(
            "slow_clients",
            clone_symbols(BASE_SYMBOL, 2),
            n(900),
            1,
            (step(SLOW_WITH, 40.0), step(SLOW_WITHOUT, 40.0)),
            slow_clients=n(100),
            fill_rate=1000.0,
            fill_s=3.0,
            fresh_server=True,
            description="100 more subscribers that never read, then without them",
        ),
    ]


# --- client plans ------------------------------------------------------------------------


def source_ip(connection: int, per_ip: int, base: int = 0) -> str:
    """127.10.0.1, 127.10.0.2, ...: ``per_ip`` consecutive connections share one;
    ``base`` skips that many addresses (a fresh range per phase)."""
    n = base + connection // per_ip
    return f"127.{10 + n // 62_500}.{(n // 250) % 250}.{n % 250 + 1}"


def clients_per_ip(requested: int, symbols_per_client: int, symbol_count: int) -> int:
    """At most ``requested`` (whose default is tickgraph's anonymous quota of
    subscriptions per caller, i.e. per IP), and few enough that the clients of one
    address stream at most its quota of distinct symbols: consecutive clients subscribe
    to consecutive symbols, so k of them cover ``min(symbol_count, symbols_per_client +
    k - 1)``."""
    if symbol_count <= ANONYMOUS_SYMBOLS_PER_IP:
        return max(1, requested)
    return max(1, min(requested, ANONYMOUS_SYMBOLS_PER_IP - symbols_per_client + 1))


def distinct_lists(count: int, symbols: Sequence[str], per_client: int) -> list[tuple[str, ...]]:
    """``count`` symbol lists, no two alike (as sets): list ``i`` starts with
    ``symbols[i % n]``, so every symbol starts as many lists, and takes the others from
    a shuffle seeded by ``i``. Deterministic; fails if there are not enough
    combinations."""
    n = len(symbols)
    k = min(per_client, n)
    seen: set[frozenset[int]] = set()
    out: list[tuple[str, ...]] = []
    for index in range(count):
        rng = random.Random(index)
        first = index % n
        others = [i for i in range(n) if i != first]
        for _attempt in range(10_000):
            chosen = (first, *rng.sample(others, k - 1))
            if frozenset(chosen) not in seen:
                break
        else:
            raise ValueError(f"not {count} distinct lists of {k} out of {n} symbols")
        seen.add(frozenset(chosen))
        out.append(tuple(symbols[i] for i in chosen))
    return out


def assign_symbols(index: int, symbols: Sequence[str], per_client: int) -> tuple[str, ...]:
    """Client ``index``'s symbols: ``per_client`` consecutive ones, in rotation."""
    k = min(per_client, len(symbols))
    return tuple(symbols[(index + j) % len(symbols)] for j in range(k))


@dataclass(frozen=True, slots=True)
class ClientLayout:
    """Where a phase's subscribers connect from, and how many addresses they use."""

    per_ip: int
    spread: bool = True
    ip_base: int = 0

    def ip(self, connection: int) -> str | None:
        return source_ip(connection, self.per_ip, self.ip_base) if self.spread else None

    def addresses(self, connections: int) -> int:
        return math.ceil(connections / self.per_ip)


def plan_connections(
    phase: Phase, layout: ClientLayout, *, slow: bool = False, feed_clock: bool = False
) -> list[ConnectionPlan]:
    """The fast (or, with ``slow``, the slow) subscribers of ``phase``. Slow ones come
    after the fast ones in symbol rotation and address range, and take every symbol of
    a phase of few. ``feed_clock``: the feed stamps quotes with the time it sends them,
    so subscribers select ``exchangeTime``."""
    count = phase.slow_clients if slow else phase.clients
    offset = phase.clients if slow else 0
    # Slow subscribers take every symbol of a small phase: the most for them to not read.
    per_client = (
        len(phase.symbols)
        if slow and len(phase.symbols) <= ANONYMOUS_SYMBOLS_PER_IP // ANONYMOUS_SUBSCRIPTIONS_PER_IP
        else phase.symbols_per_client
    )
    lists = (
        distinct_lists(offset + count, phase.symbols, per_client)
        if phase.distinct
        else [assign_symbols(i, phase.symbols, per_client) for i in range(offset + count)]
    )
    return [
        ConnectionPlan(
            symbols=lists[offset + i],
            local_ip=layout.ip(offset + i),
            slow=slow,
            batch_window_ms=phase.batch_window_ms,
            feed_clock=feed_clock,
            variant=offset + i if phase.distinct == "documents" else None,
        )
        for i in range(count)
    ]


def split_processes(
    connections: Sequence[ConnectionPlan],
    procs: int,
    url: str,
    *,
    first_index: int = 0,
    connect_concurrency: int = 50,
    deflate: bool = False,
) -> list[ProcessPlan]:
    """Deal the connections round-robin over at most ``procs`` processes."""
    procs = max(1, min(procs, len(connections)))
    return [
        ProcessPlan(
            index=first_index + k,
            url=url,
            connections=tuple(connections[k::procs]),
            connect_concurrency=connect_concurrency,
            deflate=deflate,
        )
        for k in range(procs)
    ]


def subscribers_per_symbol(plans: Sequence[ProcessPlan]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for plan in plans:
        for conn in plan.connections:
            counts.update(conn.symbols)
    return counts
