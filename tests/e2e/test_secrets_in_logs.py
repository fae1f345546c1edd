"""No credential reaches the log at any level: a real ``tickgraph serve`` at DEBUG, driven
through every path a credential takes (HTTP bodies and headers, the WebSocket handshake,
``connection_init``, frames carrying a password, refresh, password change, API keys,
failures), then the whole log searched for every secret and for fragments of them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.test_cli import amzn_replay
from tests.support.cli import LISTENING, clean_env, process
from tests.support.graphql_ws import PROTOCOL, graphql_ws
from tests.support.timing import TIMEOUT

PASSWORD = "horse battery staple correct 1"
NEW_PASSWORD = "staple horse correct battery 2"
WRONG_PASSWORD = "not my password at all 3"


async def post(http: httpx.AsyncClient, query: str, token: str | None = None, **v: Any) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await http.post("/graphql", json={"query": query, "variables": v}, headers=headers)
    return response.json()


def fragments(secret: str) -> list[str]:
    """The secret and pieces of it long enough to identify it."""
    pieces = [secret]
    if secret.count(".") == 2:  # a JWT: its signature and its payload alone
        pieces += secret.split(".")[1:]
    pieces += [secret[i : i + 16] for i in range(0, max(1, len(secret) - 16), 8)]
    return [p for p in pieces if len(p) >= 12]


async def test_no_credential_reaches_the_log_at_debug(tmp_path: Path, postgres_url: str) -> None:
    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    configured = {
        "POLYGON_API_KEY": "pk-live-" + uuid.uuid4().hex,
        "ANTHROPIC_API_KEY": "sk-ant-" + uuid.uuid4().hex,
        "ALPACA_API_KEY_ID": "PK" + uuid.uuid4().hex[:18].upper(),
        "ALPACA_API_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex[:8],
        "TICKGRAPH_METRICS_TOKEN": "metrics-" + uuid.uuid4().hex,
    }
    secrets: list[str] = [*configured.values(), PASSWORD, NEW_PASSWORD, WRONG_PASSWORD]
    secrets += [line for line in pem.splitlines() if "PRIVATE KEY" not in line]
    email = f"logs-{uuid.uuid4().hex[:8]}@example.com"

    async with amzn_replay() as upstream_url:
        env = clean_env(
            POLYGON_WS_URL=upstream_url,
            TICKGRAPH_SYMBOLS="AMZN",
            DATABASE_URL=postgres_url,
            TICKGRAPH_DATA_DIR=str(tmp_path),
            TICKGRAPH_LOG_LEVEL="DEBUG",
            TICKGRAPH_JWT_PRIVATE_KEYS=pem,
            TICKGRAPH_ACCESS_LOG_PROBES="true",
            **configured,
        )
        async with process("serve", "--port", "0", env=env, ready=LISTENING) as (proc, m):
            base = f"http://127.0.0.1:{m.group(1)}"
            ws_url = f"ws://127.0.0.1:{m.group(1)}/graphql"
            async with httpx.AsyncClient(base_url=base) as http:
                login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) "
                login += "{ accessToken refreshToken } }"
                await post(
                    http,
                    "mutation($e: String!, $p: String!) { register(email: $e, password: $p) "
                    "{ id } }",
                    e=email,
                    p=PASSWORD,
                )
                await post(http, login, e=email, p=WRONG_PASSWORD)
                # A password written into the document itself, not a variable.
                inline = (
                    await post(
                        http,
                        login.replace(", $p: String!", "").replace("$p", f'"{PASSWORD}"'),
                        e=email,
                    )
                )["data"]["login"]
                pair = (await post(http, login, e=email, p=PASSWORD))["data"]["login"]
                secrets += [pair["accessToken"], pair["refreshToken"]]
                secrets += [inline["accessToken"], inline["refreshToken"]]
                await post(http, "{ me { user { id } } }", pair["accessToken"])
                created = await post(
                    http,
                    'mutation { createApiKey(name: "bot", scope: "read") { secret } }',
                    pair["accessToken"],
                )
                key = created["data"]["createApiKey"]["secret"]
                secrets.append(key)
                await post(http, "{ alerts { id } }", key)
                await post(http, "{ alerts { id } }", "tg_" + "x" * 40)  # a wrong key
                await post(http, "{ me { user { id } } }", pair["accessToken"][:-4] + "AAAA")
                refreshed = (
                    await post(
                        http,
                        "mutation($r: String!) { refreshToken(refreshToken: $r) "
                        "{ accessToken refreshToken } }",
                        r=pair["refreshToken"],
                    )
                )["data"]["refreshToken"]
                secrets += [refreshed["accessToken"], refreshed["refreshToken"]]
                changed = (
                    await post(
                        http,
                        "mutation($o: String!, $n: String!) { changePassword(oldPassword: $o, "
                        "newPassword: $n) { accessToken refreshToken } }",
                        refreshed["accessToken"],
                        o=PASSWORD,
                        n=NEW_PASSWORD,
                    )
                )["data"]["changePassword"]
                secrets += [changed["accessToken"], changed["refreshToken"]]
                # Malformed bodies that carry a credential.
                await http.post(
                    "/graphql",
                    content=b'{"query": "mutation { login(password: \\"' + PASSWORD.encode(),
                    headers={"content-type": "application/json"},
                )
                token = changed["accessToken"]
                # WebSocket: token in connection_init, in the handshake header, an API key,
                # and a password sent in a frame.
                async with graphql_ws(ws_url, payload={"token": token}) as client:
                    op = await client.subscribe("{ me { user { id } } }")
                    await client.recv()
                    await client.complete(op)
                async with graphql_ws(
                    ws_url, additional_headers={"authorization": f"Bearer {token}"}
                ) as client:
                    await client.subscribe("{ alerts { id } }")
                    await client.recv()
                async with graphql_ws(ws_url, payload={"token": key}) as client:
                    await client.subscribe("{ alerts { id } }")
                    await client.recv()
                async with graphql_ws(ws_url) as client:
                    await client.subscribe(login, {"e": email, "p": NEW_PASSWORD})
                    await client.recv()
                # Refused credentials over WebSocket.
                async with connect(ws_url, subprotocols=[PROTOCOL]) as ws:  # type: ignore[list-item]
                    await ws.send(
                        orjson.dumps(
                            {"type": "connection_init", "payload": {"token": token[:-3] + "xyz"}}
                        ).decode()
                    )
                    with contextlib.suppress(ConnectionClosed):
                        async with asyncio.timeout(TIMEOUT):
                            async for _ in ws:
                                pass
                await post(
                    http,
                    "mutation($r: String!) { logout(refreshToken: $r) }",
                    r=changed["refreshToken"],
                )
                # Scrapes, with the metrics token and with a wrong one (the access log
                # writes a line for each: with TICKGRAPH_ACCESS_LOG_PROBES, /metrics too).
                metrics_token = configured["TICKGRAPH_METRICS_TOKEN"]
                scraped = await http.get(
                    "/metrics", headers={"authorization": f"Bearer {metrics_token}"}
                )
                assert scraped.status_code == 200
                refused = await http.get(
                    "/metrics", headers={"authorization": f"Bearer {metrics_token[:-4]}0000"}
                )
                assert refused.status_code == 401
                await http.get(f"/metrics?token={metrics_token}")
            proc.send_signal(signal.SIGTERM)
            assert proc.stdout is not None and proc.stderr is not None
            async with asyncio.timeout(TIMEOUT):
                log = (await proc.stdout.read()).decode() + (await proc.stderr.read()).decode()
                await proc.wait()

    assert " DEBUG " in log and "feed connected" in log, "the DEBUG log was not captured"
    assert "tickgraph.access" in log and "GET /metrics 200" in log, "no access log lines"
    leaks = sorted({piece for secret in secrets for piece in fragments(secret) if piece in log})
    assert leaks == [], f"{len(leaks)} secret fragments in the log, e.g. {leaks[:3]}"
