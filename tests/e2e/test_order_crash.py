"""Orders through SIGKILL at seeded random points of their lifecycle, with a real server
process on a database that outlives it (docs/trading.md, "Durability").

One database, KILLS runs in sequence. Each run starts the server, checks what the last
kill left, then puts a few hundred orders a second on it from several elite users at
once (market orders, limits that fill, limits that rest, cancels of the resting ones,
each placement with an idempotency key) and kills it with SIGKILL after a seeded random
delay. The next start (or the last one) must show:

(a) every order whose ``placeOrder`` returned success exists exactly once in ``orders``,
    under the key it was placed with; every cancel answered CANCELED is canceled;
(b) no order went to the broker twice: at most one acknowledgement event (accepted, new,
    rejected) and at most one terminal event per order in the ledger, one row per fill id;
(c) each user's ``account`` (cash, positions) is the fold of the ledger's fills from the
    starting cash (computed here, independently of the server's own rebuild);
(d) re-sending every request of the killed run with its key returns the same order for
    the ones that succeeded, and creates nothing more than the requests the crash cut off.

A resting order is not re-armed in the paper engine after a restart yet (that is the
broker's ``restore``): nothing here depends on whether it is.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from server.storage.order_reads import load_fills
from server.trading.account import fold_account
from streams.polygon_server import start_simulated_server
from tests.support.accounts import bearer
from tests.support.server_process import Server, elite_token, server_env, tickgraph, until
from tests.support.timing import timeout

SEED = 20261204
KILLS = 20
USERS = 6
SYMBOLS = ("AMZN", "MSFT")
#: Orders a second over all users: a few hundred, under the elite tier's order burst
#: (60 a user) for the longest run, so the rate limit rarely decides an outcome.
RATE = 300.0
#: Requests each user keeps in flight.
IN_FLIGHT = 3
#: The kill comes this long (seconds, uniform) after the load starts.
KILL_AFTER = (0.05, 1.0)

PLACE = """mutation($input: OrderInput!, $key: String) {
  placeOrder(input: $input, idempotencyKey: $key) { id status } }"""
CANCEL = "mutation($id: ID!) { cancelOrder(id: $id) { id status } }"
ACCOUNT = "{ account { cash positions { symbol qty } } }"
SNAPSHOT = "query($s: String!) { snapshot(symbol: $s) { lastTrade { price } } }"
ACKS = ("accepted", "new", "rejected")
TERMINAL = ("fill", "canceled", "expired", "replaced", "rejected", "done_for_day")
#: What the transport raises for a request the kill cut off: its outcome is unknown.
CUT_OFF = (httpx.TransportError, ValueError)


@dataclass
class User:
    id: str
    token: str


@dataclass
class Placement:
    user: User
    key: str
    doc: dict[str, Any]
    #: The order id when placeOrder succeeded; None when the outcome is unknown.
    order_id: str | None = None
    status: str | None = None
    error: str | None = None


@dataclass
class Run:
    seed: int
    placements: list[Placement] = field(default_factory=list)
    #: Orders whose cancelOrder answered CANCELED.
    canceled: set[str] = field(default_factory=set)

    def sent(self) -> list[Placement]:
        """What must be re-sent: the successes, and the ones the kill cut off."""
        return [p for p in self.placements if p.error is None]


async def post(http: httpx.AsyncClient, user: User, query: str, **v: Any) -> dict[str, Any]:
    response = await http.post(
        "/graphql", json={"query": query, "variables": v}, headers=bearer(user.token)
    )
    body: dict[str, Any] = response.json()
    return body


async def last_prices(http: httpx.AsyncClient, user: User) -> dict[str, Decimal]:
    async def read() -> dict[str, Decimal | None]:
        out: dict[str, Decimal | None] = {}
        for symbol in SYMBOLS:
            body = await post(http, user, SNAPSHOT, s=symbol)
            trade = body["data"]["snapshot"]["lastTrade"]
            out[symbol] = None if trade is None else Decimal(str(trade["price"]))
        return out

    prices = await until(read, lambda p: None not in p.values(), "a trade of each", timeout(3))
    return {s: p for s, p in prices.items() if p is not None}


def order_doc(rng: random.Random, prices: dict[str, Decimal]) -> dict[str, Any]:
    """A market order, a limit that crosses (fills at once) or one 5% away (rests)."""
    symbol = rng.choice(SYMBOLS)
    side = rng.choice(("BUY", "SELL"))
    doc: dict[str, Any] = {"symbol": symbol, "side": side, "qty": str(rng.randint(1, 5))}
    kind = rng.random()
    if kind < 0.45:
        return doc | {"type": "MARKET", "timeInForce": "DAY"}
    away = Decimal("0.02") if kind < 0.6 else Decimal("-0.05")  # crossing, or resting
    sign = 1 if side == "BUY" else -1
    price = (prices[symbol] * (1 + sign * away)).quantize(Decimal("0.01"))
    return doc | {"type": "LIMIT", "timeInForce": "GTC", "limitPrice": str(price)}


async def trade(
    http: httpx.AsyncClient,
    user: User,
    *,
    run: Run,
    rng: random.Random,
    prices: dict[str, Decimal],
    pace_s: float,
    killed: asyncio.Event,
) -> None:
    """One user's load: placements at ``pace_s`` apart (IN_FLIGHT at a time), and a cancel
    of one of its resting orders now and then."""
    resting: list[str] = []
    gate = asyncio.Semaphore(IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()

    async def place(p: Placement) -> None:
        try:
            body = await post(http, user, PLACE, input=p.doc, key=p.key)
        except CUT_OFF:
            return
        finally:
            gate.release()
        if "errors" in body:
            p.error = str(body["errors"][0].get("extensions", {}).get("code"))
            return
        p.order_id, p.status = (
            body["data"]["placeOrder"]["id"],
            body["data"]["placeOrder"]["status"],
        )
        if p.status == "NEW":
            resting.append(p.order_id)

    async def cancel(order_id: str) -> None:
        try:
            body = await post(http, user, CANCEL, id=order_id)
        except CUT_OFF:
            return
        finally:
            gate.release()
        if "errors" not in body and body["data"]["cancelOrder"]["status"] == "CANCELED":
            run.canceled.add(order_id)

    n = 0
    while not killed.is_set():
        await gate.acquire()
        if killed.is_set():
            break
        if resting and rng.random() < 0.15:
            job = cancel(resting.pop(rng.randrange(len(resting))))
        else:
            p = Placement(user, f"crash-{run.seed}-{user.id[:8]}-{n}", order_doc(rng, prices))
            n += 1
            run.placements.append(p)
            job = place(p)
        task = asyncio.create_task(job)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        with suppress(TimeoutError):
            await asyncio.wait_for(killed.wait(), pace_s)
    await asyncio.gather(*tasks)


async def load_and_kill(srv: Server, users: list[User], seed: int) -> Run:
    run = Run(seed)
    rng = random.Random(seed)
    prices = await last_prices(srv.http, users[0])
    killed = asyncio.Event()
    async with httpx.AsyncClient(
        base_url=srv.http.base_url, timeout=timeout(3), limits=httpx.Limits(max_connections=64)
    ) as http:
        load = [
            asyncio.create_task(
                trade(
                    http,
                    u,
                    run=run,
                    rng=random.Random(rng.random()),
                    prices=prices,
                    pace_s=len(users) / RATE,
                    killed=killed,
                )
            )
            for u in users
        ]
        await asyncio.sleep(rng.uniform(*KILL_AFTER))
        srv.proc.send_signal(signal.SIGKILL)
        killed.set()
        await srv.proc.wait()
        await asyncio.gather(*load)
    return run


async def check_orders(db: asyncpg.Pool, run: Run) -> None:
    """(a) every success stored once, under its key; every CANCELED cancel canceled."""
    placed = [p for p in run.placements if p.order_id is not None]
    rows = await db.fetch(
        "SELECT id, owner, idempotency_key, status FROM orders WHERE id = ANY($1)",
        [p.order_id for p in placed],
    )
    stored = {r["id"]: r for r in rows}
    for p in placed:
        row = stored.get(p.order_id)
        assert row is not None, f"seed {run.seed}: order {p.order_id} ({p.key}) was lost"
        assert (row["owner"], row["idempotency_key"]) == (p.user.id, p.key), (run.seed, dict(row))
    for order_id in run.canceled:
        status = await db.fetchval("SELECT status FROM orders WHERE id = $1", order_id)
        assert status == "canceled", f"seed {run.seed}: canceled {order_id} is {status}"


async def check_ledger(db: asyncpg.Pool, seed: int) -> None:
    """(b) nothing reached the broker twice, nothing ended twice, no fill booked twice."""
    twice = await db.fetch(
        "SELECT order_id, kind, count(*) AS n FROM order_events WHERE kind = ANY($1) "
        "GROUP BY order_id, kind HAVING count(*) > 1",
        list(ACKS),
    )
    assert not twice, f"seed {seed}: acknowledged twice: {[dict(r) for r in twice[:5]]}"
    ended = await db.fetch(
        "SELECT order_id, array_agg(kind ORDER BY seq) AS kinds FROM order_events "
        "WHERE kind = ANY($1) GROUP BY order_id HAVING count(*) > 1",
        list(TERMINAL),
    )
    assert not ended, f"seed {seed}: ended twice: {[dict(r) for r in ended[:5]]}"
    fills = await db.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT fill_id) AS d FROM order_events "
        "WHERE fill_id IS NOT NULL"
    )
    assert fills["n"] == fills["d"], (seed, dict(fills))


async def ledger_account(db: asyncpg.Pool, user: User) -> tuple[Decimal, dict[str, Decimal]]:
    """The account as the fold of the user's ledger fills: cash, and qty by symbol."""
    cash = await db.fetchval("SELECT starting_cash FROM trading_accounts WHERE owner = $1", user.id)
    assert cash is not None, f"user {user.id} has no trading account"
    account = fold_account(cash, [f for _, f in await load_fills(db, user.id)])
    return account.cash, {s: p.qty for s, p in account.positions.items() if p.qty}


async def check_accounts(srv: Server, db: asyncpg.Pool, users: list[User], seed: int) -> None:
    """(c) each account, after the restart, is the fold of the ledger's fills. The ledger
    is written behind the fills (group commit), so read it before and after the account
    and compare when it held still."""
    await asyncio.gather(*(check_account(srv, db, user, seed) for user in users))


async def check_account(srv: Server, db: asyncpg.Pool, user: User, seed: int) -> None:
    async def read() -> tuple[Any, Any, Any]:
        before = await ledger_account(db, user)
        body = await post(srv.http, user, ACCOUNT)
        after = await ledger_account(db, user)
        assert "errors" not in body, body
        account = body["data"]["account"]
        served = (
            Decimal(account["cash"]),
            {p["symbol"]: Decimal(p["qty"]) for p in account["positions"]},
        )
        return before, served, after

    def agree(seen: tuple[Any, Any, Any]) -> bool:
        before, served, after = seen
        return bool(before == after == served)

    try:
        await until(read, agree, "the account to equal the ledger", timeout(1))
    except AssertionError:
        seen = await read()
        raise AssertionError(f"seed {seed}: user {user.id}: ledger/served/ledger {seen}") from None


#: Refusals after which the same request may be accepted later.
RETRYABLE = {"RATE_LIMITED", "SERVICE_UNAVAILABLE"}


def codes(body: dict[str, Any]) -> set[str]:
    return {str((e.get("extensions") or {}).get("code")) for e in body.get("errors") or []}


async def check_resend(srv: Server, db: asyncpg.Pool, run: Run) -> None:
    """(d) every request re-sent with its key: the same order for a success; an order
    at most once for one the kill cut off; nothing else new."""
    total = await db.fetchval("SELECT count(*) FROM orders")
    sent = run.sent()
    keys = [p.key for p in sent]
    stored_before = {
        r["idempotency_key"]: r["id"]
        for r in await db.fetch(
            "SELECT idempotency_key, id FROM orders WHERE idempotency_key = ANY($1)", keys
        )
    }
    answers = await asyncio.gather(
        *(post(srv.http, p.user, PLACE, input=p.doc, key=p.key) for p in sent)
    )
    created = 0
    for p, body in zip(sent, answers, strict=True):
        if p.order_id is not None:
            assert "errors" not in body, (run.seed, p.key, body)
            assert body["data"]["placeOrder"]["id"] == p.order_id, (run.seed, p.key, body)
        elif p.key in stored_before:  # cut off after its commit: that order, not another
            assert "errors" not in body, (run.seed, p.key, body)
            assert body["data"]["placeOrder"]["id"] == stored_before[p.key], (run.seed, body)
        elif "errors" not in body:
            created += 1
    assert await db.fetchval("SELECT count(*) FROM orders") == total + created, run.seed
    again = await asyncio.gather(
        *(post(srv.http, p.user, PLACE, input=p.doc, key=p.key) for p in sent)
    )
    first = [b.get("data") and b["data"]["placeOrder"]["id"] for b in answers]
    second = [b.get("data") and b["data"]["placeOrder"]["id"] for b in again]
    assert [s for f, s in zip(first, second, strict=True) if f] == [f for f in first if f]
    # A request refused the first time for a reason that passes (its rate, on a busy
    # machine) may be accepted the second: one order more, once.
    late = [
        codes(a) for a, b, f in zip(answers, again, first, strict=True) if not f and b.get("data")
    ]
    assert all(c <= RETRYABLE for c in late), (run.seed, late)
    expected = total + created + len(late)
    assert await db.fetchval("SELECT count(*) FROM orders") == expected, run.seed


async def traders(srv: Server, db_url: str) -> list[User]:
    """USERS elite users, each with its trading account opened by one request alone.

    Opened one at a time on purpose: the first requests of a new user racing each other
    open the account with no cash (``ensure_account``: see the report of this test),
    which is not what this test is about."""
    users = [User(*await elite_token(srv.http, db_url)) for _ in range(USERS)]
    for user in users:
        body = await post(srv.http, user, ACCOUNT)
        assert "errors" not in body, body
    return users


@asynccontextmanager
async def restarted(env: dict[str, str], log: Path, last: Run | None) -> AsyncIterator[Server]:
    """The server started again; a start-up that fails names the run it followed."""
    try:
        async with tickgraph(env, log) as srv:
            yield srv
            return
    except AssertionError as exc:
        if last is None or not str(exc).startswith("server exited"):
            raise
        raise AssertionError(f"no restart after the kill of seed {last.seed}: {exc}") from None


@pytest.mark.timeout(timeout(18))
async def test_orders_survive_sigkill_at_seeded_random_points(
    fresh_database_url: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    seeds = random.Random(SEED)
    figures: list[dict[str, Any]] = []
    async with await start_simulated_server(list(SYMBOLS), seed=7, rate=50.0) as upstream:
        env = server_env(
            fresh_database_url,
            f"ws://127.0.0.1:{upstream.port}/stocks",
            tmp_path,
            symbols=",".join(SYMBOLS),
            TICKGRAPH_TRADING_CALENDAR="continuous",
            TICKGRAPH_PAPER_STARTING_CASH="10000000",
        )
        log = tmp_path / "server.log"
        db = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=USERS)
        users: list[User] = []
        last: Run | None = None
        try:
            for n in range(KILLS + 1):
                t0 = time.monotonic()
                async with restarted(env, log, last) as srv:
                    t1 = time.monotonic()
                    if not users:
                        users = await traders(srv, fresh_database_url)
                    if last is not None:
                        await check_orders(db, last)
                        await check_ledger(db, last.seed)
                        await check_accounts(srv, db, users, last.seed)
                        await check_resend(srv, db, last)
                        await check_ledger(db, last.seed)
                        figures[-1]["start_s"] = round(t1 - t0, 2)
                        figures[-1]["check_s"] = round(time.monotonic() - t1, 2)
                    if n == KILLS:
                        break
                    t2 = time.monotonic()
                    last = await load_and_kill(srv, users, seeds.randrange(2**32))
                    figures.append(
                        {
                            "seed": last.seed,
                            "placed": sum(p.order_id is not None for p in last.placements),
                            "cut_off": sum(
                                p.order_id is None and p.error is None for p in last.placements
                            ),
                            "refused": dict(Counter(p.error for p in last.placements if p.error)),
                            "load_s": round(time.monotonic() - t2, 2),
                        }
                    )
                    print(f"run {n}: {figures[-1]}", flush=True)
        finally:
            await db.close()
    placed = sum(f["placed"] for f in figures)
    print(f"order crash runs: {len(figures)}, placed {placed}, {time.monotonic() - started:.1f} s")
    print(json.dumps(figures))
    # The kills landed in real load: orders answered, and requests cut off mid-way.
    assert placed >= KILLS * 5, figures
    assert sum(f["cut_off"] for f in figures) >= KILLS, figures
