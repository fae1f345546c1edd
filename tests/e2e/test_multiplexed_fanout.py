"""Multiplexed subscriptions through the real server: subscribers of one document and
variables share one group that executes and encodes each event once, while what a
subscriber sees (snapshot, lane, admission, quota, its own end) stays its own.

The upstream is the project's replay server playing a real recorded AMZN day at 100x."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed

from streams.events import Quote
from streams.polygon_server import start_replay_server, start_simulated_server
from streams.recording import load_events
from tests.e2e.conftest import SettingsFactory, eventually
from tests.support.accounts import bearer, sign_up
from tests.support.data import AMZN_REPLAY, require
from tests.support.graphql_ws import GraphQLWS, graphql_ws
from tests.support.server import RunningServer, running_server
from tests.support.timing import SCALE, TIMEOUT

QUOTES = """subscription Q($s: [String!]!, $t: Int! = 0) { quotes(symbols: $s, throttleMs: $t) {
  symbol bidPrice askPrice bidSize askSize sequence exchangeTime snapshot } }"""
BATCHES = """subscription B($s: [String!]!, $w: Int!) { quoteBatches(symbols: $s, windowMs: $w) {
  droppedBefore quotes { symbol bidPrice askPrice sequence snapshot } } }"""
ALERT_EVENTS = "subscription { alertEvents { alertId symbol } }"
ALERT = """mutation { createAlert(input: {symbol: "AMZN", conditions:
  [{left: {price: LAST}, op: GREATER_THAN, value: 1}]}) { id } }"""

AMZN = {"s": ["AMZN"]}
#: Late joiners per case, and how long each listens.
JOINERS = 8
LISTEN_S = 0.4


@asynccontextmanager
async def replaying(
    make_settings: SettingsFactory, **overrides: Any
) -> AsyncIterator[RunningServer]:
    """The recorded AMZN day at 100x (a few hundred quotes a second) into a real server,
    up and streaming."""
    async with await start_replay_server(require(AMZN_REPLAY), speed=100.0) as upstream:
        settings = make_settings(upstream, **({"symbols": ("AMZN",)} | overrides))
        async with running_server(settings) as srv:
            state = srv.runtime.services.state
            await eventually(
                lambda: (st := state.get("AMZN")) is not None and st.last_quote is not None,
                "the first AMZN quote",
            )
            yield srv


def file_quote_sequences() -> list[int]:
    """The AMZN quotes' sequence numbers, in the order of the recording."""
    return [e.q for e in load_events(require(AMZN_REPLAY)) if type(e) is Quote]


async def read_for(client: GraphQLWS, seconds: float) -> list[dict[str, Any]]:
    """Every message the client gets within ``seconds`` (pings answered)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    out: list[dict[str, Any]] = []
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await client.recv(timeout=left)
        except TimeoutError:
            break
        if msg["type"] == "ping":
            await client.send({"type": "pong"})
            continue
        out.append(msg)
    return out


async def read_raw_for(client: GraphQLWS, seconds: float) -> list[str]:
    """Every frame the client gets within ``seconds``, as the server sent it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    out: list[str] = []
    while (left := deadline - loop.time()) > 0:
        try:
            raw = await asyncio.wait_for(client.ws.recv(), left)
        except TimeoutError:
            break
        assert isinstance(raw, str)
        out.append(raw)
    return out


async def first_message(client: GraphQLWS, op: str) -> dict[str, Any]:
    """The first message for ``op`` (others are left unread: fail on them)."""
    msg = await client.recv()
    assert msg.get("id") == op, msg
    return msg


def data_of(messages: list[dict[str, Any]], op: str, field: str = "quotes") -> list[Any]:
    """The payload data of ``op``'s ``next`` messages, checking there is nothing else."""
    out: list[Any] = []
    for msg in messages:
        if msg.get("id") != op:
            continue
        assert msg["type"] == "next", msg
        assert "errors" not in msg["payload"], msg
        out.append(msg["payload"]["data"][field])
    return out


def strictly_increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


def error_code(msg: dict[str, Any]) -> str:
    assert msg["type"] == "error", msg
    return str(msg["payload"][0]["extensions"]["code"])


async def test_one_group_executes_each_event_once_for_every_subscriber(
    make_settings: SettingsFactory,
) -> None:
    users, per_user = 4, 5  # a free user may hold 5 subscriptions
    n = users * per_user
    async with replaying(make_settings) as srv, AsyncExitStack() as stack:
        services = srv.runtime.services
        mux, bus = services.mux, services.bus
        assert bus is not None
        async with httpx.AsyncClient(base_url=srv.http) as http:
            tokens = [(await sign_up(http))["accessToken"] for _ in range(users)]
        # Different callers, one public document: one group.
        clients = [
            await stack.enter_async_context(graphql_ws(srv.ws, payload={"token": token}))
            for token in tokens
            for _ in range(per_user)
        ]
        for client in clients:
            await client.subscribe(QUOTES, AMZN, op_id="amzn")
        for client in clients:
            await client.next_data("amzn")
        await eventually(
            lambda: mux.stats()["groups"] == 1 and mux.stats()["members"] == n,
            f"one group of {n}",
        )
        # Count what the group is offered, on the same bus, from here on.
        offered = [0]

        def count(_item: object) -> None:
            offered[0] += 1

        bus.subscribe("Q.AMZN", count)
        encoded_before = mux.stats()["encoded"]
        raw = await asyncio.gather(*(read_raw_for(c, 2.0 * SCALE) for c in clients))
        # Read together, with no await between them: they describe the same moment.
        encoded = mux.stats()["encoded"] - encoded_before
        events = offered[0]
        bus.unsubscribe("Q.AMZN", count)
        assert mux.stats()["groups"] == 1 and mux.stats()["members"] == n

    assert events > 50, events
    # Each event executed and encoded once for the group: not once per subscriber.
    assert encoded == events, (encoded, events, n)

    frames: dict[int, str] = {}
    received: list[int] = []
    for frames_of_client in raw:
        sequences = []
        for frame in frames_of_client:
            msg = orjson.loads(frame)
            assert msg["id"] == "amzn" and msg["type"] == "next", msg
            quote = msg["payload"]["data"]["quotes"]
            assert not quote["snapshot"]
            sequences.append(quote["sequence"])
            # The same event reaches every subscriber as the very same bytes.
            assert frames.setdefault(quote["sequence"], frame) == frame
        assert strictly_increasing(sequences), sequences
        received.append(len(sequences))
    # No subscriber fell far behind the others. How many quotes reach anyone depends on
    # the machine's load: quotes of one upstream frame that arrive within one flush are
    # conflated to the newest, for every member alike, which is the point of conflation.
    assert min(received) >= max(received) // 2 > 0, (received, events)


async def test_variables_decide_the_group_and_each_operation_gets_its_own_messages(
    make_settings: SettingsFactory,
) -> None:
    async with (
        replaying(make_settings, symbols=("AMZN", "GOOG")) as srv,
        graphql_ws(srv.ws) as one,
        graphql_ws(srv.ws) as two,
    ):
        mux = srv.runtime.services.mux
        await one.subscribe(QUOTES, {"s": ["AMZN"], "t": 0}, op_id="a")
        # The same variables in another order: the same group.
        await one.subscribe(QUOTES, {"t": 0, "s": ["AMZN"]}, op_id="b")
        await two.subscribe(QUOTES, {"s": ["AMZN"], "t": 0}, op_id="c")
        # Other variables: other groups.
        await one.subscribe(QUOTES, {"s": ["AMZN"], "t": 200}, op_id="slow")
        await one.subscribe(QUOTES, {"s": ["AMZN", "GOOG"], "t": 0}, op_id="both")
        await eventually(lambda: mux.stats()["members"] == 5, "five subscribers")
        assert mux.stats()["groups"] == 3, mux.stats()
        messages, theirs = await asyncio.gather(read_for(one, 1.5), read_for(two, 1.5))
        assert mux.stats() | {"encoded": 0} == {"groups": 3, "members": 5, "encoded": 0}

    a, b = data_of(messages, "a"), data_of(messages, "b")
    c = data_of(theirs, "c")
    assert len(a) > 10 and len(b) > 10 and len(c) > 10
    # Two operations of one group on one connection: each its own messages, and once
    # both had joined, the same data (they joined a moment apart: other snapshots).
    both_in = max(a[0]["sequence"], b[0]["sequence"])
    live_a = [q for q in a if q["sequence"] > both_in]
    assert len(live_a) > 10 and live_a == [q for q in b if q["sequence"] > both_in]
    # The other connection sees the same events the same way.
    by_sequence = {q["sequence"]: q for q in live_a}
    live_c = [q for q in c if q["sequence"] in by_sequence]
    assert len(live_c) > 10 and all(q == by_sequence[q["sequence"]] for q in live_c)
    assert len(data_of(messages, "slow")) < len(a)
    assert {q["symbol"] for q in data_of(messages, "both")} == {"AMZN"}  # GOOG never quotes


async def test_a_member_leaving_ends_only_its_own_stream(make_settings: SettingsFactory) -> None:
    async with replaying(make_settings) as srv:
        services = srv.runtime.services
        mux, hub = services.mux, services.hub
        raw_sock = socket.create_connection(("127.0.0.1", srv.port))
        async with (
            graphql_ws(srv.ws) as completing,
            graphql_ws(srv.ws, sock=raw_sock) as vanishing,
            graphql_ws(srv.ws) as staying,
        ):
            for client in (completing, vanishing, staying):
                await client.subscribe(QUOTES, AMZN, op_id="q")
                await client.next_data("q")
            assert mux.stats()["groups"] == 1 and mux.stats()["members"] == 3

            stayed: list[int] = []
            stop = asyncio.Event()

            async def keep_reading() -> None:
                while not stop.is_set():
                    stayed.append((await staying.next_data("q"))["quotes"]["sequence"])

            reader = asyncio.create_task(keep_reading())
            try:
                await eventually(lambda: len(stayed) >= 10, "quotes for the staying member")
                await completing.complete("q")
                await eventually(lambda: mux.stats()["members"] == 2, "the completed one left")
                assert mux.stats()["groups"] == 1
                # Vanish: RST, no close frame.
                raw_sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                vanishing.ws.transport.abort()
                await eventually(lambda: mux.stats()["members"] == 1, "the vanished one left")
                assert mux.stats()["groups"] == 1
                after = len(stayed)
                await eventually(lambda: len(stayed) >= after + 20, "quotes after both left")
                # Whatever was already on its way to the completed one has arrived by now;
                # nothing more comes for the completed id.
                await read_for(completing, 0.2)
                late = await read_for(completing, 0.7)
                assert [m for m in late if m.get("id") == "q"] == [], late
            finally:
                stop.set()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            assert strictly_increasing(stayed), stayed
            await staying.complete("q")
            await eventually(lambda: mux.stats()["groups"] == 0, "the group closed")
            assert mux.stats()["members"] == 0
            await eventually(lambda: hub.interest() == {}, "interest released")
            assert hub.subscriber_count("Q", "AMZN") == 0
            assert mux.subscribers() == {}
            assert services.streams.totals().active == 0


def quotes_of(data: Any) -> list[dict[str, Any]]:
    """The quotes of one message, of either subscription."""
    if isinstance(data, dict) and "quotes" in data:
        assert data["droppedBefore"] == 0, data
        return list(data["quotes"])
    return [data]


async def test_a_late_joiner_gets_the_snapshot_first(make_settings: SettingsFactory) -> None:
    """Joining a busy group: the current quote (snapshot: true) comes first, as the
    schema promises, even when a live quote arrives before the snapshot was written.

    Fails against the current server (a bug, left failing on purpose): Group.add puts
    the snapshot into the member's conflating lane under the symbol's key, and a live
    quote published before the outbox flushes replaces it there (Lane.put), so the
    joiner never sees snapshot: true. The per-subscriber streams before multiplexing
    drained the snapshot before any live quote could reach them."""
    async with await start_simulated_server(["AAA"], seed=21, rate=3000.0) as upstream:
        async with (
            running_server(make_settings(upstream, symbols=("AAA",))) as srv,
            graphql_ws(srv.ws) as early,
        ):
            mux = srv.runtime.services.mux
            await early.subscribe(QUOTES, {"s": ["AAA"]}, op_id="early")
            await early.next_data("early")
            firsts: list[dict[str, Any]] = []
            # 15: each one's chance is high, and all stay within the anonymous burst rate.
            for _ in range(15):
                async with graphql_ws(srv.ws) as late:
                    await late.subscribe(QUOTES, {"s": ["AAA"]}, op_id="late")
                    firsts.append((await late.next_data("late"))["quotes"])
                assert mux.stats()["groups"] == 1
    missing = [q["sequence"] for q in firsts if not q["snapshot"]]
    assert missing == [], (
        f"{len(missing)} of {len(firsts)} late joiners got a live quote first and never "
        f"a snapshot (sequences {missing})"
    )


@pytest.mark.parametrize(
    ("query", "variables", "field"),
    [
        (QUOTES, {"s": ["AMZN"]}, "quotes"),
        (BATCHES, {"s": ["AMZN"], "w": 50}, "quoteBatches"),
    ],
    ids=["quotes", "quote-batches"],
)
async def test_a_late_joiner_never_gets_a_quote_older_than_its_snapshot(
    make_settings: SettingsFactory, query: str, variables: dict[str, Any], field: str
) -> None:
    """Joining a group that is already streaming: the snapshot is the state now, so
    nothing the group was still holding from before the join (a coalescing window's
    quotes) may follow it. The per-subscriber streams this replaced promised that a
    snapshot and a live update are never delivered out of order or twice.

    quote-batches fails against the current server (a bug, left failing on purpose): the
    group's open window (Group._batch) holds quotes that arrived before the join, the
    joiner's snapshot is the state's newest quote, and the window's batch is then
    published to every member, the joiner included: older quotes after the snapshot."""
    async with replaying(make_settings) as srv, graphql_ws(srv.ws) as early:
        mux = srv.runtime.services.mux
        await early.subscribe(query, variables, op_id="early")
        await read_for(early, 0.5)
        problems: list[str] = []
        for joiner in range(JOINERS):
            async with graphql_ws(srv.ws) as late:
                await late.subscribe(query, variables, op_id="late")
                messages = await read_for(late, LISTEN_S)
            assert mux.stats()["groups"] == 1
            quotes = [q for data in data_of(messages, "late", field) for q in quotes_of(data)]
            assert len(quotes) > 1, f"joiner {joiner}: nothing live after joining"
            assert not any(q["snapshot"] for q in quotes[1:])
            # (Whether the first one is a snapshot is test_a_late_joiner_gets_the_snapshot_first.)
            sequences = [q["sequence"] for q in quotes]
            if not strictly_increasing(sequences):
                stale = [s for s in sequences[1:] if s <= sequences[0]]
                problems.append(
                    f"joiner {joiner}: first {sequences[0]} (snapshot: {quotes[0]['snapshot']}), "
                    f"then {sequences[1:9]}... ({len(stale)} not newer than the first)"
                )
        assert mux.stats()["members"] == 1
    assert problems == [], "\n".join(problems)


async def test_admission_and_quota_stay_per_subscriber(make_settings: SettingsFactory) -> None:
    """Anonymous access off. Anonymous callers are refused at connection_init (4403), so
    none can even send the document; among signed-in users sharing a group, one over
    its tier's concurrent subscriptions is refused while the group streams on."""
    async with replaying(make_settings, allow_anonymous=False) as srv:
        mux = srv.runtime.services.mux
        async with httpx.AsyncClient(base_url=srv.http) as http:
            greedy, modest = await sign_up(http), await sign_up(http)
            me = (
                await http.post(
                    "/graphql",
                    json={"query": "{ me { limits { concurrentSubscriptions } } }"},
                    headers=bearer(greedy["accessToken"]),
                )
            ).json()
        allowed = me["data"]["me"]["limits"]["concurrentSubscriptions"]
        async with (
            graphql_ws(srv.ws, payload={"token": greedy["accessToken"]}) as mine,
            graphql_ws(srv.ws, payload={"token": modest["accessToken"]}) as theirs,
        ):
            await theirs.subscribe(QUOTES, AMZN, op_id="q")
            await theirs.next_data("q")
            ops = [f"q{i}" for i in range(allowed)]
            for op in ops:
                await mine.subscribe(QUOTES, AMZN, op_id=op)
            await eventually(lambda: mux.stats()["members"] == allowed + 1, "all admitted")

            # The same document once more from the same user: over its quota.
            await mine.subscribe(QUOTES, AMZN, op_id="extra")
            msgs = await read_for(mine, 0.5)
            refused = [m for m in msgs if m.get("id") == "extra"]
            assert len(refused) == 1 and error_code(refused[0]) == "LIMIT_EXCEEDED", refused
            assert mux.stats() | {"encoded": 0} == {
                "groups": 1,
                "members": allowed + 1,
                "encoded": 0,
            }

            # An anonymous caller with the same document never gets that far.
            async with graphql_ws(srv.ws, init=False) as anonymous:
                await anonymous.send({"type": "connection_init", "payload": {}})
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(TIMEOUT):
                        while True:
                            await anonymous.ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403

            # Everyone admitted streams on, each operation on its own.
            more, theirs_more = await asyncio.gather(read_for(mine, 1.0), read_for(theirs, 1.0))
            for op in ops:
                assert len(data_of(msgs + more, op)) > 5, op
            assert len(data_of(theirs_more, "q")) > 5
            # A slot given back is usable again.
            await mine.complete(ops[0])
            await eventually(lambda: mux.stats()["members"] == allowed, "the slot freed")
            await mine.subscribe(QUOTES, AMZN, op_id="again")
            while (msg := await mine.recv())["id"] != "again":
                pass
            assert msg["type"] == "next" and "errors" not in msg["payload"], msg


async def test_private_subscription_admits_each_subscriber_on_its_own(
    make_settings: SettingsFactory,
) -> None:
    """alertEvents with anonymous access on: the same document is refused to an
    anonymous caller and streams to a signed-in one, in a group of its own."""
    async with replaying(make_settings) as srv:
        mux = srv.runtime.services.mux
        async with httpx.AsyncClient(base_url=srv.http) as http:
            alice, bob = await sign_up(http), await sign_up(http)
            async with (
                graphql_ws(srv.ws, payload={"token": alice["accessToken"]}) as alice_ws,
                graphql_ws(srv.ws, payload={"token": bob["accessToken"]}) as bob_ws,
                graphql_ws(srv.ws) as anonymous,
            ):
                await alice_ws.subscribe(ALERT_EVENTS, op_id="a")
                await bob_ws.subscribe(ALERT_EVENTS, op_id="a")
                await eventually(lambda: mux.stats()["members"] == 2, "both subscribed")
                # Private data: one group per user, whatever the document.
                assert mux.stats()["groups"] == 2
                await anonymous.subscribe(ALERT_EVENTS, op_id="a")
                assert error_code(await first_message(anonymous, "a")) == "UNAUTHENTICATED"
                # The anonymous socket stays usable for public data.
                await anonymous.subscribe(QUOTES, AMZN, op_id="q")
                assert (await anonymous.next_data("q"))["quotes"]["symbol"] == "AMZN"

                created = (
                    await http.post(
                        "/graphql", json={"query": ALERT}, headers=bearer(alice["accessToken"])
                    )
                ).json()
                alert_id = created["data"]["createAlert"]["id"]
                fired = (await alice_ws.next_data("a"))["alertEvents"]
                assert fired == {"alertId": alert_id, "symbol": "AMZN"}
                with pytest.raises(TimeoutError):
                    await bob_ws.next_data("a", timeout=0.5)
                assert mux.stats()["groups"] == 3  # the two alert groups and the quotes


async def test_quote_batches_hold_every_quote_in_order(make_settings: SettingsFactory) -> None:
    in_file = file_quote_sequences()
    position = {q: i for i, q in enumerate(in_file)}
    async with replaying(make_settings) as srv, graphql_ws(srv.ws) as client:
        await client.subscribe(BATCHES, {"s": ["AMZN"], "w": 50}, op_id="b")
        start = asyncio.get_running_loop().time()
        messages = await read_for(client, 1.5)
        elapsed = asyncio.get_running_loop().time() - start
        for bad in (0, 4, 100_000):
            op = f"bad{bad}"
            await client.subscribe(BATCHES, {"s": ["AMZN"], "w": bad}, op_id=op)
            while (msg := await client.recv())["id"] != op:
                pass
            assert error_code(msg) == "BAD_USER_INPUT", (bad, msg)
            assert "windowMs" in msg["payload"][0]["message"]

    batches = data_of(messages, "b", "quoteBatches")
    assert all(b["droppedBefore"] == 0 for b in batches)
    first, live = batches[0]["quotes"], batches[1:]
    assert [q["symbol"] for q in first] == ["AMZN"] and first[0]["snapshot"]
    assert live and all(b["quotes"] for b in live), "an empty batch was sent"
    quotes = [q for b in live for q in b["quotes"]]
    assert not any(q["snapshot"] for q in quotes)
    sequences = [q["sequence"] for q in quotes]
    # Every quote of the recording from the snapshot on, once each, in order.
    start_at = position[first[0]["sequence"]] + 1
    assert sequences == in_file[start_at : start_at + len(sequences)]
    # Coalesced: at most one message per window, several quotes in each.
    assert len(live) <= elapsed / 0.05 + 2, (len(live), elapsed)
    assert len(quotes) / len(live) > 1.5, [len(b["quotes"]) for b in live]


async def test_throttled_and_unthrottled_subscribers_share_a_connection(
    make_settings: SettingsFactory,
) -> None:
    async with replaying(make_settings) as srv, graphql_ws(srv.ws) as client:
        await client.subscribe(QUOTES, {"s": ["AMZN"], "t": 200}, op_id="slow")
        await client.subscribe(QUOTES, {"s": ["AMZN"], "t": 0}, op_id="fast")
        start = asyncio.get_running_loop().time()
        messages = await read_for(client, 1.5)
        elapsed = asyncio.get_running_loop().time() - start
        assert srv.runtime.services.mux.stats()["groups"] == 2
    slow, fast = data_of(messages, "slow"), data_of(messages, "fast")
    # One update per 200 ms at most (+1 for the snapshot, +1 for the interval running).
    assert 2 <= len(slow) <= elapsed / 0.2 + 2, len(slow)
    assert len(fast) > 3 * len(slow), (len(fast), len(slow))
    assert strictly_increasing([q["sequence"] for q in slow if not q["snapshot"]])
    assert strictly_increasing([q["sequence"] for q in fast if not q["snapshot"]])
