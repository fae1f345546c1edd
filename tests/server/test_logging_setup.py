"""Production log lines are one JSON object each, with our extra fields and nothing
terminal-specific."""

from __future__ import annotations

import logging

import orjson
import pytest

from server.logging_setup import JsonFormatter, Throttle, redact, register_secret


def test_json_lines_carry_extras_but_not_colour_codes() -> None:
    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "Started %d", (7,), None)
    record.color_message = "Started \x1b[36m%d\x1b[0m"
    record.feed_state = "connected"
    doc = orjson.loads(JsonFormatter().format(record))
    assert doc["msg"] == "Started 7" and doc["feed_state"] == "connected"
    assert doc["level"] == "info" and doc["logger"] == "uvicorn.error"
    assert "color_message" not in doc


# -- nothing secret, whatever a library logs ---------------------------------------------

JWT = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImFiYyJ9.eyJzdWIiOiIxMjMiLCJzY29wZSI6ImZ1bGwifQ."
    "c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl"
)


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f"> GET /graphql HTTP/1.1\nAuthorization: Bearer {JWT}", JWT.split(".")[2]),
        (f'< TEXT \'{{"type":"connection_init","payload":{{"token":"{JWT[:40]}', JWT[5:40]),
        ('< TEXT \'{"variables":{"password":"hunter2 hunter2"}}\'', "hunter2"),
        ('mutation { login(email: "a@b.c", password: "hunter2 hunter2") }', "hunter2"),
        ('{"refreshToken": "Zm9vYmFyYmF6cXV4cXV1eA"}', "Zm9vYmFyYmF6cXV4cXV1eA"),
        ("key tg_1a2b3c4d_supersecretpart used", "supersecretpart"),
        ("postgresql://app:pa55word@db:5432/tickgraph", "pa55word"),
        ("APCA-API-SECRET-KEY: abcdefabcdef", "abcdefabcdef"),
    ],
)
def test_secrets_are_redacted_from_any_line(line: str, secret: str) -> None:
    assert secret not in redact(line)


def test_configured_secrets_are_redacted_wherever_they_appear() -> None:
    register_secret("configured-value-1234")
    assert "configured-value-1234" not in redact("connecting with configured-value-1234!")


def test_ordinary_lines_are_left_alone() -> None:
    line = "feed connected: 3 topics, 12 tokens in the document, password policy ok"
    assert redact(line) == line


def test_the_throttle_lets_a_burst_through_then_counts_what_it_suppressed() -> None:
    throttle = Throttle(burst=3, rate=0.0001)

    def record() -> logging.LogRecord:
        return logging.LogRecord(
            "x", logging.WARNING, __file__, 1, "bad input from %s", ("c",), None
        )

    passed = [throttle.filter(record()) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7
    throttle.rate = 1e9  # refill at once
    again = record()
    assert throttle.filter(again)
    assert again.getMessage().endswith("(7 similar lines suppressed)")
    # Another template has its own budget.
    other = logging.LogRecord("x", logging.WARNING, __file__, 1, "other %s", ("c",), None)
    assert throttle.filter(other)
    # DEBUG, asked for explicitly, is never thinned.
    debug = [logging.LogRecord("x", logging.DEBUG, __file__, 1, "d", (), None) for _ in range(50)]
    assert all(throttle.filter(r) for r in debug)


def test_text_lines_show_the_correlation_id() -> None:
    from server.logging_setup import TextFormatter
    from server.observability.correlation import CORRELATION_ID, CorrelationFilter

    formatter = TextFormatter("%(name)s%(cid_part)s: %(message)s")
    stamp = CorrelationFilter()

    def line() -> str:
        record = logging.LogRecord("tickgraph.x", logging.INFO, __file__, 1, "hello", None, None)
        stamp.filter(record)
        return formatter.format(record)

    assert line() == "tickgraph.x: hello"
    token = CORRELATION_ID.set("abc123")
    try:
        assert line() == "tickgraph.x [abc123]: hello"
    finally:
        CORRELATION_ID.reset(token)
