"""Structured logging: one line per significant event; JSON in production.

Secrets never reach the log: ``Settings`` holds them in ``Secret`` wrappers whose
``repr`` is masked, and nothing here formats settings objects wholesale.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

# Record attributes that are not ours to ship: the standard ones, and uvicorn's
# terminal-coloured duplicate of the message.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


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


def configure(level: str, *, json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that are chatty at INFO about things we already report ourselves.
    for name in ("websockets", "WebSocketClient", "RESTClient", "asyncio", "pgserver"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
