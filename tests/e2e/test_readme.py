"""The README's tour, executed: every ``graphql`` block (queries and mutations over HTTP,
subscriptions over WebSocket, with the token once ``Login`` ran, as a reader pastes it
into the Headers pane), every ``curl`` example under bash, the Python program as a
process, every ``json`` block parsed, in the README's order, against a real server on
its embedded defaults. The README cannot rot: change the API and this fails.

Besides "no errors", some operations have more to prove (``EXPECT``); the README must
keep those operation names. And it must mention every root field of the schema and
every error code, so a new part of the API cannot stay undocumented.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import OperationDefinitionNode, OperationType, parse

from schema import build_schema
from schema.cost import COST_CODE
from schema.hardening import ALIASES_CODE, DEPTH_CODE, INTROSPECTION_CODE, SIZE_CODE
from schema.request_errors import REQUEST_CODES
from server.errors import TickgraphError
from server.http.request_errors import METHOD_NOT_ALLOWED, NOT_FOUND, UNSUPPORTED_MEDIA_TYPE
from server.web.graphiql import DEFAULT_QUERY
from server.websocket.guard import BODY_CODE, SUBSCRIPTIONS_CODE
from tests.e2e.conftest import eventually
from tests.support.graphql_ws import GraphQLWS, graphql_ws
from tests.support.postgres import settings_for
from tests.support.server import RunningServer, running_server
from tests.support.timing import TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
README_ADDRESS = "127.0.0.1:8000"
#: Codes only the start-up sees (the server does not run without them).
START_UP_ONLY = frozenset({"MIGRATION_FAILED", "MIGRATION_CHECKSUM_MISMATCH", "JWT_KEYS_INVALID"})


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int

    def __str__(self) -> str:
        return f"README.md:{self.line} ({self.lang})"


def readme_blocks() -> list[Block]:
    text = README.read_text()
    return [
        Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


@dataclass
class Tour:
    """What the reader has at each point of the tour: a server, maybe a token."""

    server: RunningServer
    http: httpx.AsyncClient
    stack: AsyncExitStack
    tmp: Path
    token: str | None = None
    user_id: str | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    streams: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    program_output: list[str] = field(default_factory=list)
    private_streams: int = 0
    ran: list[str] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def local(self, text: str) -> str:
        """The README's address, pointed at the server under test."""
        return text.replace(README_ADDRESS, f"127.0.0.1:{self.server.port}")

    async def run(self, block: Block) -> None:
        runner = {"graphql": self.graphql, "sh": self.shell, "python": self.program}.get(block.lang)
        if block.lang == "json":
            json.loads(block.text)  # a reader copies it: it must be valid JSON
        elif runner is not None:
            await runner(block)

    async def graphql(self, block: Block) -> None:
        [operation] = [
            d for d in parse(block.text).definitions if isinstance(d, OperationDefinitionNode)
        ]
        assert operation.name is not None, f"{block}: name the operation (GraphiQL tabs)"
        name = operation.name.value
        self.ran.append(name)
        if operation.operation is OperationType.SUBSCRIPTION:
            await self.subscribe(name, block)
            return
        response = await self.http.post(
            "/graphql", json={"query": block.text}, headers=self.headers()
        )
        body: dict[str, Any] = response.json()
        self.results[name] = body
        check = EXPECT.get(name)
        if check is None or not getattr(check, "expects_errors", False):
            assert response.status_code == 200 and "errors" not in body, f"{block}: {body}"
        if check is not None:
            await check(self, body)

    async def subscribe(self, name: str, block: Block) -> None:
        payload = {"token": self.token} if self.token else None
        client = await self.stack.enter_async_context(graphql_ws(self.server.ws, payload=payload))
        op = await client.subscribe(block.text)
        received = self.streams.setdefault(name, [])
        if re.search(r"\b(analysis|portfolioReview)\(", block.text):
            await self.read_to_end(name, block, client, op, received)
            return
        private = "alertEvents" in block.text or "orderUpdates" in block.text
        first = asyncio.Event()

        async def read(ws: GraphQLWS) -> None:
            while True:
                message = await ws.recv(timeout=TIMEOUT * 6)
                if message["type"] == "ping":
                    await ws.send({"type": "pong"})
                    continue
                assert message.get("id") == op and message["type"] == "next", (block, message)
                assert "errors" not in message["payload"], (block, message)
                received.append(message["payload"]["data"])
                first.set()

        reader = asyncio.create_task(read(client))
        self.stack.callback(reader.cancel)
        if private:
            # No snapshot: firings come later. Wait until the server has it running.
            self.private_streams += 1
            await self.wait_for_private_streams()
            return
        async with asyncio.timeout(TIMEOUT):
            await first.wait()
        # Market streams stay within the free tier's concurrent subscriptions.
        await client.complete(op)
        reader.cancel()

    async def read_to_end(
        self, name: str, block: Block, ws: GraphQLWS, op: str, received: list[dict[str, Any]]
    ) -> None:
        """A stream that ends by itself (an analysis): every chunk until ``complete``."""
        while True:
            message = await ws.recv(timeout=TIMEOUT * 2)
            if message["type"] == "ping":
                await ws.send({"type": "pong"})
                continue
            assert message.get("id") == op, (block, message)
            if message["type"] == "complete":
                break
            assert message["type"] == "next" and "errors" not in message["payload"], (
                block,
                message,
            )
            received.append(message["payload"]["data"])
        check = EXPECT.get(name)
        if check is not None:
            await check(self, {"chunks": received})

    async def wait_for_private_streams(self) -> None:
        quota = self.server.runtime.services.access.quota  # type: ignore[union-attr]
        assert self.user_id is not None
        user_id = self.user_id
        await eventually(
            lambda: quota.usage(user_id).subscriptions == self.private_streams,
            f"{self.private_streams} alertEvents subscriptions running",
        )

    async def shell(self, block: Block) -> None:
        if not block.text.lstrip().startswith("curl "):
            return  # ./dev commands: CI itself runs those
        env = {**os.environ, "TOKEN": self.token or ""}
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            self.local(block.text),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(TIMEOUT):
            out, err = await proc.communicate()
        assert proc.returncode == 0, f"{block}: {err.decode()}"
        body = json.loads(out)
        assert "errors" not in body and body["data"], f"{block}: {body}"
        self.ran.append(f"curl@{block.line}")

    async def program(self, block: Block) -> None:
        script = self.tmp / "alerts.py"
        script.write_text(self.local(block.text))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            env={**os.environ, "TOKEN": self.token or ""},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

        async def stop() -> None:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

        self.stack.push_async_callback(stop)

        async def read() -> None:
            assert proc.stdout is not None
            while line := await proc.stdout.readline():
                self.program_output.append(line.decode())

        reader = asyncio.create_task(read())
        self.stack.callback(reader.cancel)
        self.private_streams += 1
        await self.wait_for_private_streams()
        self.ran.append(f"python@{block.line}")


Check = Callable[[Tour, dict[str, Any]], Awaitable[None]]


def expects_errors(check: Check) -> Check:
    check.expects_errors = True  # type: ignore[attr-defined]
    return check


async def _registered(tour: Tour, body: dict[str, Any]) -> None:
    user = body["data"]["register"]
    assert user["email"] == "ada@example.com" and user["tier"] == "FREE"
    tour.user_id = user["id"]


async def _logged_in(tour: Tour, body: dict[str, Any]) -> None:
    tour.token = body["data"]["login"]["accessToken"]


async def _me(tour: Tour, body: dict[str, Any]) -> None:
    assert body["data"]["me"]["user"]["email"] == "ada@example.com"


async def _fired(tour: Tour, body: dict[str, Any]) -> None:
    """Both subscribers the README started see the firing: GraphiQL's and alerts.py."""
    alert_id = body["data"]["createAlert"]["id"]

    def seen() -> bool:
        in_graphiql = any(e["alertEvents"]["alertId"] == alert_id for e in tour.streams["MyAlerts"])
        in_program = any(alert_id in line for line in tour.program_output)
        return in_graphiql and in_program

    await eventually(seen, "the firing in both subscriptions", timeout=TIMEOUT * 2)
    [line] = [line for line in tour.program_output if alert_id in line]
    assert line.startswith("next ") and json.loads(line[5:])["data"]["alertEvents"]["values"]


async def _history(tour: Tour, body: dict[str, Any]) -> None:
    fired = body["data"]["alertHistory"]
    alert_id = tour.results["FirstAlert"]["data"]["createAlert"]["id"]
    assert [e["alertId"] for e in fired] == [alert_id]
    [alert] = body["data"]["alerts"]
    assert alert["status"] == "DONE" and alert["fireCount"] == 1


async def _rsi(tour: Tour, body: dict[str, Any]) -> None:
    assert body["data"]["createAlert"]["status"] == "ACTIVE"


async def _bot_key(tour: Tour, body: dict[str, Any]) -> None:
    secret = body["data"]["createApiKey"]["secret"]
    me = await tour.http.post(
        "/graphql",
        json={"query": "{ me { user { email } } }"},
        headers={"authorization": f"Bearer {secret}"},
    )
    assert me.json()["data"]["me"]["user"]["email"] == "ada@example.com"


@expects_errors
async def _mistake(tour: Tour, body: dict[str, Any]) -> None:
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INVALID_SYMBOL" and error["path"] == ["quote"]


async def _first_trade(tour: Tour, body: dict[str, Any]) -> None:
    """The market order filled, and the subscription the README started saw it."""
    order = body["data"]["placeOrder"]
    assert order["status"] == "FILLED" and order["filledQty"] == "10", order

    def seen() -> bool:
        return any(
            u["orderUpdates"]["kind"] == "FILL" and u["orderUpdates"]["order"]["id"] == order["id"]
            for u in tour.streams["MyOrders"]
        )

    await eventually(seen, "the fill on orderUpdates")


async def _tidy(tour: Tour, body: dict[str, Any]) -> None:
    [canceled] = body["data"]["cancelAllOrders"]
    assert canceled["status"] == "CANCELED"
    closing = body["data"]["closePosition"]
    assert closing["side"] == "SELL" and closing["qty"] == "10" and closing["status"] == "FILLED"


async def _analyzed(tour: Tour, body: dict[str, Any]) -> None:
    """The offline analyst's prose streamed in pieces, then its checked result, then a
    usage that cost nothing."""
    chunks = [c["analysis"] for c in body["chunks"]]
    texts = [c["text"] for c in chunks if c["text"] is not None]
    *_, ready, usage = chunks
    assert len(texts) > 1 and all(c["text"] is not None for c in chunks[:-2]), chunks
    assert "".join(texts).startswith("Rule-based read of AAPL")
    result = ready["result"]
    assert result["analyst"] == "rule-based" and result["check"]["unverifiedFigures"] == []
    assert usage["usage"] == {
        "inputTokens": 0,
        "outputTokens": 0,
        "costUsd": "0",
        "cached": False,
    }
    tour.results["AnalyzeAapl"] = {"analysisId": ready["analysisId"]}


async def _my_analyses(tour: Tour, body: dict[str, Any]) -> None:
    [edge] = body["data"]["analyses"]["edges"]
    assert edge["node"]["id"] == tour.results["AnalyzeAapl"]["analysisId"]
    assert edge["node"]["status"] == "COMPLETED" and edge["node"]["symbol"] == "AAPL"
    me = body["data"]["me"]
    assert me["analysisPreferences"] == {"style": "SWING", "riskTolerance": "MEDIUM"}
    quota = me["usage"]["analyses"]
    assert (quota["used"], quota["limit"], quota["remaining"]) == (1, 5, 4)


#: Operations with more to prove than "no errors".
EXPECT: dict[str, Check] = {
    "Register": _registered,
    "Login": _logged_in,
    "Me": _me,
    "FirstAlert": _fired,
    "History": _history,
    "RsiAlert": _rsi,
    "BotKey": _bot_key,
    "FirstTrade": _first_trade,
    "Tidy": _tidy,
    "AnalyzeAapl": _analyzed,
    "MyAnalyses": _my_analyses,
    "Mistake": _mistake,
}


@pytest.fixture
async def tour(fresh_database_url: str, tmp_path: Path) -> AsyncIterator[Tour]:
    # `./dev serve` as it comes: the embedded simulated market, default symbols.
    settings = dataclasses.replace(
        settings_for(fresh_database_url, tmp_path / "data"), simulated_seed=10
    )
    async with (
        running_server(settings) as srv,
        httpx.AsyncClient(base_url=srv.http, timeout=TIMEOUT) as http,
        AsyncExitStack() as stack,
    ):
        yield Tour(srv, http, stack, tmp_path)


async def test_every_example_of_the_readme_runs(tour: Tour) -> None:
    # The feed is live before the tour starts, as it is for a reader.
    await eventually(lambda: tour.server.runtime.services.state.get("AAPL") is not None, "data")
    for block in readme_blocks():
        await tour.run(block)
    missing = set(EXPECT) - set(tour.ran)
    assert not missing, f"the README lost these examples: {missing}"
    assert any(r.startswith("curl@") for r in tour.ran) and any(
        r.startswith("python@") for r in tour.ran
    )
    # The error example shows what the server really answers.
    shown = [json.loads(b.text) for b in readme_blocks() if b.lang == "json" and "errors" in b.text]
    real = tour.results["Mistake"]["errors"][0]
    assert [s["errors"][0]["extensions"]["code"] for s in shown] == [real["extensions"]["code"]]
    assert shown[0]["errors"][0]["path"] == real["path"]


def test_graphiql_opens_with_the_readme_s_first_example() -> None:
    first = next(b for b in readme_blocks() if b.lang == "graphql")
    assert first.text in DEFAULT_QUERY


def test_the_readme_mentions_every_root_field() -> None:
    schema = build_schema()._schema
    text = README.read_text()
    missing = [
        f"{root.name}.{name}"
        for root in (schema.query_type, schema.mutation_type, schema.subscription_type)
        if root is not None
        for name in root.fields
        if not re.search(rf"\b{name}\b", text)
    ]
    assert not missing, f"document these in README.md: {missing}"


def test_the_readme_lists_every_error_code() -> None:
    import server.app  # noqa: F401 - every error class, through the app's imports

    codes: set[str] = set()
    pending = [TickgraphError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    codes |= REQUEST_CODES | {METHOD_NOT_ALLOWED, NOT_FOUND, UNSUPPORTED_MEDIA_TYPE}
    codes |= {SIZE_CODE, DEPTH_CODE, ALIASES_CODE, INTROSPECTION_CODE, COST_CODE}
    codes |= {SUBSCRIPTIONS_CODE, BODY_CODE}
    text = README.read_text()
    missing = sorted(c for c in codes - START_UP_ONLY if f"`{c}`" not in text)
    assert not missing, f"list these in README.md's error table: {missing}"


def test_docs_refer_only_to_files_in_the_repository() -> None:
    link = re.compile(r"\]\(([^)#]+)(?:#[^)]*)?\)")
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "../shared" not in text, f"{doc.name} points outside the repository"
        for target in link.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address, not a file
            resolved = (doc.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), f"{doc.name}: {target} is outside the repo"
            assert resolved.exists(), f"{doc.name}: {target} does not exist"
