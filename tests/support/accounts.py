"""Sign a fresh user up through the real GraphQL API and hand back a token."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

PASSWORD = "correct horse battery staple"

REGISTER = "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { id } }"
LOGIN = """mutation($e: String!, $p: String!) { login(email: $e, password: $p) {
  accessToken accessTokenExpiresAt refreshToken } }"""


async def sign_up(http: httpx.AsyncClient, email: str | None = None) -> dict[str, Any]:
    """Register and log in; returns ``{"email", "accessToken", "refreshToken", "id"}``."""
    email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
    registered = (
        await http.post(
            "/graphql", json={"query": REGISTER, "variables": {"e": email, "p": PASSWORD}}
        )
    ).json()
    assert "errors" not in registered, registered
    login = (
        await http.post("/graphql", json={"query": LOGIN, "variables": {"e": email, "p": PASSWORD}})
    ).json()
    assert "errors" not in login, login
    return {"email": email, "id": registered["data"]["register"]["id"], **login["data"]["login"]}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}
