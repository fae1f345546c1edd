"""Structured logging: one line per significant event; JSON in production.

Two rules hold at every level, DEBUG included:

* **No secret reaches the log.** Our code never logs credentials, documents or
  variables; ``Settings`` holds secrets in ``Secret`` wrappers whose ``repr`` is
  masked. Libraries are another matter: at DEBUG, the ``websockets`` protocol under
  uvicorn logs every frame and the handshake's headers (access tokens, API keys,
  passwords in a ``login`` sent over a WebSocket). So the loggers that log traffic are
  held at INFO or above whatever the configured level (``TRAFFIC_LOGGERS``), and as a
  second line of defence every formatted line goes through ``redact``: anything
  shaped like a token, key, bearer credential or password field is replaced, and so
  is every secret value the process was configured with (``register_secret``).
* **Clients cannot flood the log.** Whatever a client can provoke (a malformed
  request, a refused document, even an internal error) is logged through a throttle:
  per message template, a burst and then one line a second, with the number of lines
  suppressed reported on the next one that goes out.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Iterable

import orjson

from server.observability.access_log import ACCESS_LOGGER
from server.observability.access_log import BURST as ACCESS_BURST
from server.observability.access_log import RATE as ACCESS_RATE
from server.observability.correlation import CorrelationFilter

# Record attributes that are not ours to ship: the standard ones, and uvicorn's
# terminal-coloured duplicate of the message.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
    "cid_part",
}

#: Loggers that log network traffic (frames, headers, bodies) at DEBUG: never below
#: INFO. "uvicorn.error" is the logger uvicorn hands the websockets protocol.
TRAFFIC_LOGGERS = (
    "uvicorn.error",
    "uvicorn.protocols",
    "websockets",
    "WebSocketClient",
    "RESTClient",
    "httpx",
    "httpcore",
    "hpack",
    "urllib3",
    "asyncpg",
    "anthropic",
    "alpaca",
    "strawberry",
)
#: Libraries chatty at INFO about things we already report ourselves.
QUIET_LOGGERS = ("websockets", "WebSocketClient", "RESTClient", "asyncio", "pgserver")

_KEY_NAMES = (
    r"password|new_?password|old_?password|passwd|token|access_?token|refresh_?token|"
    r"id_?token|secret|client_?secret|api_?key|api_?secret|authorization|cookie|"
    r"apca-api-secret-key|apca-api-key-id|x-api-key|private_?keys?"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # JWTs, whole or cut short (a logged frame may end mid-token).
    (re.compile(r"eyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*){0,2}"), "[redacted-jwt]"),
    # Our API keys.
    (re.compile(r"\btg_[A-Za-z0-9_-]{4,}"), "tg_[redacted]"),
    # PEM blocks (signing keys).
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
        "[redacted-private-key]",
    ),
    # Credentials after an authorization scheme.
    (re.compile(r"(?i)\b(bearer|apikey|basic)(\s+|%20)[^\s\"',}]+"), r"\1 [redacted]"),
    # Password-like fields in JSON, GraphQL arguments, headers and query strings.
    (
        re.compile(
            r"(?i)((?:\"|'|\b)(?:" + _KEY_NAMES + r")(?:\"|')?\s*[:=]\s*)"
            r"(\"(?:[^\"\\]|\\.)*(?:\"|$)|'[^']*(?:'|$)|[^\s,&}\]\"')]+)"
        ),
        r'\1"[redacted]"',
    ),
    # URLs with a password in them.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1[redacted]@"),
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Never log ``value`` (a configured key, a broker secret once decrypted...)."""
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    if _secrets:
        with _secrets_lock:
            known = sorted(_secrets, key=len, reverse=True)
        for secret in known:
            if secret in text:
                text = text.replace(secret, "[redacted]")
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """Readable lines for development, with ``[cid]`` after the logger's name when the
    line was written for a request or connection."""

    def format(self, record: logging.LogRecord) -> str:
        cid = getattr(record, "cid", None)
        parent = getattr(record, "parent", None)
        record.cid_part = (f" [{parent}>{cid}]" if parent else f" [{cid}]") if cid else ""
        return super().format(record)


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then removes anything secret from the whole line
    (message, extra fields and traceback alike)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class Throttle(logging.Filter):
    """Per message template: ``burst`` lines, then at most ``rate`` a second; the count
    of suppressed lines is added to the next line of that template that goes out.

    DEBUG lines are let through: an operator who asks for DEBUG asks for every line
    (tests and investigations read them one by one), and production runs at INFO."""

    def __init__(
        self,
        *,
        burst: int = 20,
        rate: float = 1.0,
        max_keys: int = 10_000,
        exempt: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        #: Loggers with a budget of their own.
        self.exempt = exempt
        self.burst = float(burst)
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: dict[tuple[str, object, int], list[float]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or record.name in self.exempt:
            return True
        key = (record.name, record.msg, record.levelno)
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_keys:
                    self._buckets.clear()
                bucket = self._buckets[key] = [self.burst, now, 0.0]
            tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens < 1.0:
                bucket[0] = tokens
                bucket[2] += 1
                return False
            bucket[0] = tokens - 1.0
            suppressed, bucket[2] = int(bucket[2]), 0.0
        if suppressed:
            record.msg = f"{record.msg} ({suppressed} similar lines suppressed)"
        return True


def configure(level: str, *, json: bool, secrets: Iterable[str | None] = ()) -> None:
    for secret in secrets:
        register_secret(secret)
    handler = logging.StreamHandler(sys.stderr)
    inner = (
        JsonFormatter()
        if json
        else TextFormatter("%(asctime)s %(levelname)-7s %(name)s%(cid_part)s: %(message)s")
    )
    handler.setFormatter(RedactingFormatter(inner))
    handler.addFilter(CorrelationFilter())
    # The access log has a budget of its own (server.observability.access_log).
    handler.addFilter(Throttle(exempt=frozenset({ACCESS_LOGGER})))
    logging.getLogger(ACCESS_LOGGER).filters[:] = [Throttle(burst=ACCESS_BURST, rate=ACCESS_RATE)]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in TRAFFIC_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
