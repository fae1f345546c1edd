"""The one place polygon-api-client is imported.

The library attaches its own stdout handler to its loggers at import time, which
bypasses our structured (JSON) logging and mixes log lines into stdout. We remove
those handlers; the records still propagate to the root logger and are formatted
like every other line.
"""

from __future__ import annotations

import logging

from polygon import WebSocketClient
from polygon.exceptions import AuthError

for _name in ("WebSocketClient", "RESTClient"):
    _logger = logging.getLogger(_name)
    for _handler in list(_logger.handlers):
        _logger.removeHandler(_handler)

__all__ = ["AuthError", "WebSocketClient"]
