"""AI analysis through the real server: streamed over graphql-transport-ws, requested
over HTTP, read back, turned into a bracket order, with the offline analyst and with the
Anthropic analyst against the local fake of the Messages API. Real PostgreSQL, real
WebSocket clients, the real paper broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from server.settings import Secret
from streams.polygon_server import PolygonProtocolServer, start_simulated_server
from tests.e2e.conftest import SettingsFactory, eventually
from tests.e2e.test_orders_e2e import PLACE, code, gql, limit, market, quoted, trader
from tests.server.analysis.helpers import eventually as until
from tests.support.fake_anthropic import API_KEY, FakeAnthropic, Script, snapshot_of
from tests.support.graphql_ws import GraphQLWS, graphql_ws
from tests.support.server import RunningServer, running_server
from tests.support.timing import TIMEOUT

RESULT = """result { analyst ruleBased stance confidence rationale
  keyLevels { kind price basis }
  tradeIdea { side entry stop target horizon }
  check { verdict figuresChecked ideaProblems unverifiedFigures { text where } } }"""
ANALYZE = f"""subscription($s: String!, $q: String) {{ analysis(symbol: $s, question: $q) {{
  analysisId text {RESULT} snapshot fingerprint
  usage {{ inputTokens outputTokens cacheReadTokens cacheWriteTokens costUsd cached }} }} }}"""
REVIEW = f"""subscription {{ portfolioReview(question: "How concentrated am I?") {{
  analysisId text {RESULT} snapshot usage {{ cached }} }} }}"""
ALERT = """mutation($s: String!, $v: Float!) { createAlert(input: { symbol: $s,
  conditions: [{ left: { price: LAST }, op: GREATER_THAN, value: $v }] }) { id } }"""
ANALYSIS = f"""query($id: ID!) {{ analysis(id: $id) {{ id symbol question analyst status
  cached charged {RESULT} snapshot fingerprint usage {{ cached }} error {{ code message }} }} }}"""


@pytest.fixture
async def upstream() -> AsyncIterator[PolygonProtocolServer]:
    async with await start_simulated_server(["AMZN", "MSFT"], seed=11, rate=100.0) as up:
        yield up


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


def settings(make_settings: SettingsFactory, upstream: PolygonProtocolServer, **kw: Any) -> Any:
    return make_settings(upstream, symbols=("AMZN", "MSFT"), trading_calendar="continuous", **kw)


@pytest.fixture
async def offline(
    make_settings: SettingsFactory, upstream: PolygonProtocolServer
) -> AsyncIterator[RunningServer]:
    async with running_server(settings(make_settings, upstream)) as srv:
        yield srv


@pytest.fixture
async def claude(
    make_settings: SettingsFactory, upstream: PolygonProtocolServer, fake: FakeAnthropic
) -> AsyncIterator[RunningServer]:
    overrides = {"anthropic_api_key": Secret(API_KEY), "anthropic_base_url": fake.base_url}
    async with running_server(settings(make_settings, upstream, **overrides)) as srv:
        yield srv


async def stream(ws: GraphQLWS, op: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every chunk of ``op`` until ``complete``, and the error it ended with, if any."""
    chunks: list[dict[str, Any]] = []
    error = None
    while True:
        msg = await ws.recv(TIMEOUT * 2)
        if msg["type"] == "ping":
            await ws.send({"type": "pong"})
            continue
        assert msg.get("id") == op, msg
        if msg["type"] == "complete":
            return chunks, error
        assert msg["type"] == "next", msg
        if "errors" in msg["payload"]:
            error = msg["payload"]["errors"][0]
            continue
        [chunk] = msg["payload"]["data"].values()
        chunks.append(chunk)


def parts(chunks: list[dict[str, Any]]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The prose, the result chunk and the usage chunk, checking their order."""
    kinds = [
        "text" if c["text"] is not None else "result" if c["result"] else "usage" for c in chunks
    ]
    assert kinds[-2:] == ["result", "usage"] and set(kinds[:-2]) == {"text"}, kinds
    assert len({c["analysisId"] for c in chunks}) == 1
    return "".join(c["text"] for c in chunks[:-2]), chunks[-2], chunks[-1]["usage"]


async def test_an_offline_analysis_streams_grounded_in_the_caller_s_holdings(
    offline: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=offline.http, timeout=TIMEOUT) as http:
        token = await trader(http, offline, tier="free")
        price = await quoted(offline)
        bought = await gql(http, PLACE, token, input=market("BUY", "10"))
        assert bought["data"]["placeOrder"]["status"] == "FILLED", bought
        below = str((price * Decimal("0.95")).quantize(Decimal("0.01")))
        resting = await gql(http, PLACE, token, input=limit("BUY", "5", below))
        assert "errors" not in resting, resting
        alert = await gql(http, ALERT, token, s="AMZN", v=float(price * 2))
        assert "errors" not in alert, alert
        async with graphql_ws(offline.ws, payload={"token": token}) as ws:
            op = await ws.subscribe(ANALYZE, {"s": "amzn", "q": "Should I add?"})
            chunks, error = await stream(ws, op)
        assert error is None
        prose, ready, usage = parts(chunks)
        result = ready["result"]
        assert result["ruleBased"] and result["analyst"] == "rule-based"
        assert prose.startswith("Rule-based") and prose == result["rationale"]
        assert result["stance"] in ("BULLISH", "NEUTRAL", "BEARISH")
        # Everything the offline analyst writes comes from the snapshot.
        assert result["check"]["verdict"] in ("PASSED", "FAILED")
        assert result["check"]["unverifiedFigures"] == []
        snapshot = ready["snapshot"]
        assert snapshot["symbol"] == "AMZN" and len(ready["fingerprint"]) == 64
        position = snapshot["position"]
        assert position["side"] == "long" and Decimal(position["qty"]) == 10
        [order] = snapshot["orders"]
        assert order["id"] == resting["data"]["placeOrder"]["id"]
        assert order["type"] == "limit" and Decimal(order["limitPrice"]) == Decimal(below)
        [watched] = snapshot["alerts"]
        assert watched["id"] == alert["data"]["createAlert"]["id"]
        assert snapshot["session"] is not None and snapshot["trade"]["price"] > 0
        assert usage == {
            "inputTokens": 0,
            "outputTokens": 0,
            "cacheReadTokens": 0,
            "cacheWriteTokens": 0,
            "costUsd": "0",
            "cached": False,
        }

        analysis_id = ready["analysisId"]
        stored = (await gql(http, ANALYSIS, token, id=analysis_id))["data"]["analysis"]
        assert stored["status"] == "COMPLETED" and stored["charged"] and not stored["cached"]
        assert stored["symbol"] == "AMZN" and stored["question"] == "Should I add?"
        assert stored["snapshot"] == snapshot and stored["result"] == result
        me = await gql(
            http,
            "{ me { usage { analyses { used limit remaining failed cached costUsd } } } }",
            token,
        )
        quota = me["data"]["me"]["usage"]["analyses"]
        assert (quota["used"], quota["limit"], quota["remaining"]) == (1, 5, 4)
        # Another user cannot read it.
        other = await trader(http, offline)
        assert (await gql(http, ANALYSIS, other, id=analysis_id))["data"]["analysis"] is None


async def test_a_portfolio_review_sees_every_position_and_the_account(
    offline: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=offline.http, timeout=TIMEOUT) as http:
        token = await trader(http, offline)
        await quoted(offline, "AMZN")
        await quoted(offline, "MSFT")
        for symbol, qty in (("AMZN", "10"), ("MSFT", "4")):
            placed = await gql(http, PLACE, token, input=market("BUY", qty, symbol))
            assert placed["data"]["placeOrder"]["status"] == "FILLED", placed
        async with graphql_ws(offline.ws, payload={"token": token}) as ws:
            chunks, error = await stream(ws, await ws.subscribe(REVIEW))
        assert error is None
        _, ready, _ = parts(chunks)
        snapshot = ready["snapshot"]
        assert snapshot["kind"] == "portfolio"
        assert sorted(h["symbol"] for h in snapshot["holdings"]) == ["AMZN", "MSFT"]
        account = (await gql(http, "{ account { equity cash } }", token))["data"]["account"]
        assert Decimal(snapshot["account"]["cash"]) == Decimal(account["cash"])
        assert Decimal(snapshot["exposure"]["longValue"]) > 0
        assert ready["result"]["tradeIdea"] is None


async def test_request_read_page_preferences_and_quota_over_http(offline: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=offline.http, timeout=TIMEOUT) as http:
        token = await trader(http, offline, tier="free")
        await quoted(offline)
        prefs = await gql(
            http,
            "mutation { setAnalysisPreferences(style: DAY, riskTolerance: LOW) "
            "{ style riskTolerance } }",
            token,
        )
        assert prefs["data"]["setAnalysisPreferences"] == {"style": "DAY", "riskTolerance": "LOW"}
        me = await gql(http, "{ me { analysisPreferences { style riskTolerance } } }", token)
        assert me["data"]["me"]["analysisPreferences"] == {"style": "DAY", "riskTolerance": "LOW"}

        ids = []
        for i in range(5):
            requested = await gql(
                http,
                'mutation($q: String) { requestAnalysis(symbol: "MSFT", question: $q) '
                "{ id status symbol } }",
                token,
                q=f"question {i}",
            )
            assert "errors" not in requested, requested
            ids.append(requested["data"]["requestAnalysis"]["id"])
        for ident in ids:

            async def done(ident: str = ident) -> bool:
                got = await gql(http, ANALYSIS, token, id=ident)
                return bool(got["data"]["analysis"]["status"] == "COMPLETED")

            await until(done, f"analysis {ident} completed")
        got = (await gql(http, ANALYSIS, token, id=ids[0]))["data"]["analysis"]
        # The day trader's timeframes: 5m signal, daily context.
        assert [s["timeframe"] for s in got["snapshot"]["series"]] == ["5m", "1d"]
        assert got["snapshot"]["preferences"] == {"style": "day", "riskTolerance": "low"}

        # The free tier's five are used up: refused before anything starts.
        refused = await gql(http, 'mutation { requestAnalysis(symbol: "MSFT") { id } }', token)
        assert code(refused) == "RATE_LIMITED", refused
        async with graphql_ws(offline.ws, payload={"token": token}) as ws:
            op = await ws.subscribe(ANALYZE, {"s": "MSFT"})
            msg = await ws.recv()
            assert msg["type"] == "error" and msg["id"] == op, msg
            assert msg["payload"][0]["extensions"]["code"] == "RATE_LIMITED"

        page = (
            "query($a: String) { analyses(first: 2, after: $a) { edges { cursor node { id } } "
            "pageInfo { hasNextPage endCursor } } }"
        )
        seen: list[str] = []
        after = None
        while True:
            body = (await gql(http, page, token, a=after))["data"]["analyses"]
            seen += [e["node"]["id"] for e in body["edges"]]
            if not body["pageInfo"]["hasNextPage"]:
                break
            after = body["pageInfo"]["endCursor"]
        assert seen == ids[::-1]  # newest first
        assert code(await gql(http, page, token, a="nonsense")) == "BAD_USER_INPUT"
        bad = await gql(http, 'mutation { requestAnalysis(symbol: "$$$") { id } }', token)
        assert code(bad) == "INVALID_SYMBOL"


async def test_anonymous_and_read_only_callers(offline: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=offline.http, timeout=TIMEOUT) as http:
        async with graphql_ws(offline.ws) as ws:
            op = await ws.subscribe(ANALYZE, {"s": "AMZN"})
            msg = await ws.recv()
            assert msg["type"] == "error" and msg["id"] == op
            assert msg["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        token = await trader(http, offline)
        key = await gql(
            http, 'mutation { createApiKey(name: "bot", scope: "read") { secret } }', token
        )
        secret = key["data"]["createApiKey"]["secret"]
        idea = await gql(
            http,
            f'mutation {{ placeOrderFromIdea(analysisId: "{uuid.uuid4()}") {{ id }} }}',
            secret,
        )
        assert code(idea) == "FORBIDDEN"


def with_idea(body: dict[str, Any]) -> dict[str, Any]:
    """The fake model's answer: a long idea 2% under / 4% over the last trade."""
    snapshot = snapshot_of(body) or {}
    price = Decimal(repr(snapshot["trade"]["price"]))

    def at(factor: str) -> str:
        return str((price * Decimal(factor)).quantize(Decimal("0.01")))

    return {
        "rationale": f"The last trade printed at ${snapshot['trade']['price']}. Buy the dip.",
        "stance": "bullish",
        "confidence": 70,
        "keyLevels": [],
        "tradeIdea": {
            "side": "buy",
            "entry": at("1"),
            "stop": at("0.98"),
            "target": at("1.04"),
            "horizon": "days",
        },
    }


async def test_a_model_idea_becomes_a_bracket_order_through_the_risk_checks(
    claude: RunningServer, fake: FakeAnthropic
) -> None:
    fake.answer = with_idea
    async with httpx.AsyncClient(base_url=claude.http, timeout=TIMEOUT) as http:
        token = await trader(http, claude)
        await quoted(claude)
        async with graphql_ws(claude.ws, payload={"token": token}) as ws:
            chunks, error = await stream(ws, await ws.subscribe(ANALYZE, {"s": "AMZN"}))
        assert error is None
        prose, ready, usage = parts(chunks)
        assert len(chunks) > 4  # the prose arrived in pieces, as the model wrote it
        assert ready["result"]["analyst"] == "claude-sonnet-4-6"
        assert not ready["result"]["ruleBased"] and prose == ready["result"]["rationale"]
        assert ready["result"]["check"]["verdict"] == "PASSED", ready["result"]["check"]
        assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0 and not usage["cached"]
        assert Decimal(usage["costUsd"]) > 0
        idea = ready["result"]["tradeIdea"]

        place = """mutation($id: ID!, $qty: Decimal) { placeOrderFromIdea(analysisId: $id,
          qty: $qty) { id status side type qty limitPrice orderClass source } }"""
        placed = await gql(http, place, token, id=ready["analysisId"], qty="3")
        assert "errors" not in placed, placed
        order = placed["data"]["placeOrderFromIdea"]
        assert (order["side"], order["type"], order["qty"]) == ("BUY", "LIMIT", "3")
        assert order["orderClass"] == "BRACKET" and order["source"] == "analysis"
        assert Decimal(order["limitPrice"]) == Decimal(idea["entry"])
        listed = await gql(
            http,
            '{ orders(symbol: "AMZN") { edges { node { parentId legRole limitPrice stopPrice '
            "source } } } }",
            token,
        )
        legs = {
            e["node"]["legRole"]: e["node"]
            for e in listed["data"]["orders"]["edges"]
            if e["node"]["parentId"] == order["id"]
        }
        assert Decimal(legs["TAKE_PROFIT"]["limitPrice"]) == Decimal(idea["target"])
        assert Decimal(legs["STOP_LOSS"]["stopPrice"]) == Decimal(idea["stop"])
        # A retry (a double click) is the same order, never a second one.
        again = await gql(http, place, token, id=ready["analysisId"], qty="3")
        assert again["data"]["placeOrderFromIdea"]["id"] == order["id"]
        # The risk checks apply: more than the buying power is refused.
        huge = await gql(
            http,
            place.replace("qty: $qty)", 'qty: $qty, idempotencyKey: "again")'),
            token,
            id=ready["analysisId"],
            qty="2000",
        )
        assert code(huge) == "INSUFFICIENT_BUYING_POWER", huge
        missing = await gql(http, place, token, id=str(uuid.uuid4()), qty="1")
        assert code(missing) == "NOT_FOUND"


@pytest.mark.parametrize(
    ("script", "expected", "reason"),
    [
        (Script.rate_limited(9), "ANALYST_UNAVAILABLE", "rate_limited"),
        (Script.overloaded(), "ANALYST_UNAVAILABLE", "overloaded"),
        (Script.cut(after_deltas=4), "ANALYST_UNAVAILABLE", "stream_cut"),
        (
            Script.malformed('{"rationale": "x", "stance": "sideways"}'),
            "ANALYSIS_INVALID",
            "schema",
        ),
    ],
)
async def test_a_failing_provider_ends_the_stream_with_a_clear_error_and_charges_nothing(
    claude: RunningServer, fake: FakeAnthropic, script: Script, expected: str, reason: str
) -> None:
    fake.enqueue(script)
    async with httpx.AsyncClient(base_url=claude.http, timeout=TIMEOUT) as http:
        token = await trader(http, claude, tier="free")
        await quoted(claude)
        async with graphql_ws(claude.ws, payload={"token": token}) as ws:
            chunks, error = await stream(ws, await ws.subscribe(ANALYZE, {"s": "AMZN"}))
            assert error is not None and all(c["text"] is not None for c in chunks)
            assert error["extensions"]["code"] == expected, error
            assert error["extensions"]["reason"] == reason
            if reason == "rate_limited":
                assert error["extensions"]["retryAfter"] == 9
            # The socket and the quota are intact: the next analysis goes through.
            chunks, error = await stream(ws, await ws.subscribe(ANALYZE, {"s": "AMZN"}))
            assert error is None and parts(chunks)
        me = await gql(http, "{ me { usage { analyses { used failed } } } }", token)
        assert me["data"]["me"]["usage"]["analyses"] == {"used": 1, "failed": 1}


@pytest.mark.parametrize("how", ["complete", "disconnect"])
async def test_leaving_closes_the_upstream_stream_at_once(
    claude: RunningServer, fake: FakeAnthropic, how: str
) -> None:
    fake.enqueue(Script.slow(0.05, chunk_chars=4))
    async with httpx.AsyncClient(base_url=claude.http, timeout=TIMEOUT) as http:
        token = await trader(http, claude)
        await quoted(claude)
        async with graphql_ws(claude.ws, payload={"token": token}) as ws:
            op = await ws.subscribe(ANALYZE, {"s": "AMZN"})
            first = (await ws.next_data(op))["analysis"]
            for _ in range(2):
                await ws.next_data(op)
            if how == "complete":
                await ws.complete(op)
            else:
                await ws.ws.close()
        await eventually(lambda: fake.disconnects == 1, "the fake sees the server leave")
        sent = fake.deltas_sent
        await asyncio.sleep(0.3)
        assert fake.deltas_sent == sent and fake.completed == 0
        stored: dict[str, Any] = {}

        async def recorded() -> bool:
            got = await gql(http, ANALYSIS, token, id=first["analysisId"])
            stored.update(got["data"]["analysis"])
            return bool(stored["status"] == "CANCELLED")

        await until(recorded, "the cancellation recorded")
        assert stored["charged"] and stored["error"]["code"] == "CANCELLED"
        # The subscription's place in the tier's quota is given back too.
        access = claude.runtime.services.access
        assert access is not None
        user = (await gql(http, "{ me { user { id } } }", token))["data"]["me"]["user"]["id"]
        await eventually(lambda: access.quota.usage(user).subscriptions == 0, "lease back")


async def test_an_identical_request_is_served_from_the_cache(
    claude: RunningServer, fake: FakeAnthropic, upstream: PolygonProtocolServer
) -> None:
    async with httpx.AsyncClient(base_url=claude.http, timeout=TIMEOUT) as http:
        token = await trader(http, claude)
        await quoted(claude)
        # A quiet market: the same snapshot twice (the feed stops; nothing else moves).
        await upstream.close()
        await asyncio.sleep(0.3)
        async with graphql_ws(claude.ws, payload={"token": token}) as ws:
            first, _ = await stream(ws, await ws.subscribe(ANALYZE, {"s": "AMZN"}))
            second, _ = await stream(ws, await ws.subscribe(ANALYZE, {"s": "AMZN"}))
        a, b = parts(first), parts(second)
        assert b[2]["cached"] and b[2]["inputTokens"] == 0 and b[2]["outputTokens"] == 0
        assert a[0] == b[0] and a[1]["fingerprint"] == b[1]["fingerprint"]
        assert len(fake.requests) == 1
