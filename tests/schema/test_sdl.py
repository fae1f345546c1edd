"""The checked-in SDL is what clients generate code from: it must match the code."""

from __future__ import annotations

from pathlib import Path

from schema import build_schema

SDL = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_checked_in_schema_is_current() -> None:
    current = build_schema().as_str() + "\n"
    assert SDL.read_text() == current, "schema.graphql is stale: run ./dev schema > schema.graphql"
