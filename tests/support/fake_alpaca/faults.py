"""What can go wrong between a client and Alpaca, on demand; and Alpaca's rate limit.

A ``Fault`` applies to one request (queued with ``fake.inject``) or to every request
(``fake.always``). ``landed`` says whether Alpaca processed the request before the
fault struck: a submit that times out or is answered 504 *after* it landed has placed
the order all the same, which is the case that must be resolved by client order id.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_alpaca.wire import CODE_INTERNAL, CODE_RATE_LIMITED, AlpacaError


@dataclass(frozen=True)
class Fault:
    #: Answer with this status (and ``body``) instead of the real answer.
    status: int | None = None
    body: dict[str, Any] | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Wait this long before answering (or, when not ``landed``, before processing).
    #: Cut short by ``fake.release_held()`` and when the fake stops.
    delay_s: float = 0.0
    #: Reset the TCP connection instead of answering.
    drop: bool = False
    #: Process the request first: the order is placed although the client sees a fault.
    landed: bool = False
    #: Which requests it applies to: an HTTP method, a path pattern (fnmatch, e.g.
    #: ``"/v2/orders*"``). None matches any.
    method: str | None = None
    path: str | None = None

    def on(self, method: str | None = None, path: str | None = None) -> Fault:
        return dataclasses.replace(self, method=method, path=path)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or fnmatch.fnmatchcase(path, self.path)
        )

    @classmethod
    def server_error(cls, status: int = 500, *, landed: bool = False) -> Fault:
        return cls(
            status, {"code": CODE_INTERNAL, "message": "internal server error"}, landed=landed
        )

    @classmethod
    def gateway_timeout(cls, *, landed: bool = True) -> Fault:
        """A load balancer's 504 (HTML, not Alpaca's JSON), by default after the request
        reached Alpaca. alpaca-py retries 504s, POSTs included."""
        body = b"<html><body><h1>504 Gateway Time-out</h1></body></html>"
        return cls(504, body, {"Content-Type": "text/html"}, landed=landed)

    @classmethod
    def rate_limited(cls, retry_after_s: int = 1) -> Fault:
        error = AlpacaError(429, CODE_RATE_LIMITED, "rate limit exceeded")
        return cls(429, error.body(), {"Retry-After": str(retry_after_s)})

    @classmethod
    def hold(cls, delay_s: float, *, landed: bool = True) -> Fault:
        """A slow answer: the request is processed (``landed``) and the answer held, or
        the request itself is held and lands late, after the client may have looked."""
        return cls(delay_s=delay_s, landed=landed)

    @classmethod
    def connection_reset(cls, *, landed: bool = True) -> Fault:
        return cls(drop=True, landed=landed)


class RateLimiter:
    """A fixed window per account, as Alpaca's ``X-Ratelimit-*`` headers describe it:
    ``limit`` requests per ``window_s``, the window starting at its first request."""

    def __init__(self, limit: int = 200, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._windows: dict[str, tuple[float, int]] = {}  # key id -> (start, count)

    def reset(self) -> None:
        self._windows.clear()

    def take(self, key_id: str) -> dict[str, str]:
        """Count one request; its rate-limit headers, or ``AlpacaError`` 429."""
        now = time.monotonic()
        start, count = self._windows.get(key_id, (now, 0))
        if now - start >= self.window_s:
            start, count = now, 0
        reset_in = start + self.window_s - now
        headers = {
            "X-Ratelimit-Limit": str(self.limit),
            "X-Ratelimit-Reset": str(math.ceil(time.time() + reset_in)),
        }
        if count >= self.limit:
            raise AlpacaError(
                429,
                CODE_RATE_LIMITED,
                "rate limit exceeded",
                headers={
                    **headers,
                    "X-Ratelimit-Remaining": "0",
                    "Retry-After": str(max(1, math.ceil(reset_in))),
                },
            )
        self._windows[key_id] = (start, count + 1)
        return {**headers, "X-Ratelimit-Remaining": str(self.limit - count - 1)}
