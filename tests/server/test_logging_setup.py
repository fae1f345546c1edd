"""Production log lines are one JSON object each, with our extra fields and nothing
terminal-specific."""

from __future__ import annotations

import logging

import orjson

from server.logging_setup import JsonFormatter


def test_json_lines_carry_extras_but_not_colour_codes() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started %d", (7,), None)
    record.color_message = "Started \x1b[36m%d\x1b[0m"
    record.feed_state = "connected"
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["msg"] == "Started 7" and doc["feed_state"] == "connected"
    assert doc["level"] == "info" and doc["logger"] == "uvicorn.error"
    assert "color_message" not in doc
