"""Alpaca's REST rate limit, kept on our side (pure arithmetic; the clock is passed in).

Alpaca allows 200 requests a minute per account and answers 429 past it. Every request
of one account (all its users, orders, cancels, reconciliations) takes a slot here
first: at most ``limit`` in any ``window_s``. A 429 (someone else spent the limit: the
same key used elsewhere) pauses the whole account until its ``Retry-After`` (or
``X-Ratelimit-Reset``), so the storm is not made worse by everyone retrying at once.
"""

from __future__ import annotations

import math
from collections import deque


class Pacing:
    def __init__(self, limit: int = 200, window_s: float = 60.0) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("need limit >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._sent: deque[float] = deque()
        self._paused_until = 0.0
        self.throttled = 0

    def delay(self, now: float) -> float:
        """How long to wait before the next request may go (0: take the slot now)."""
        while self._sent and self._sent[0] <= now - self.window_s:
            self._sent.popleft()
        wait = max(0.0, self._paused_until - now)
        if len(self._sent) >= self.limit:
            wait = max(wait, self._sent[0] + self.window_s - now)
        if wait <= 0:
            self._sent.append(now)
        return wait

    def pause(self, now: float, retry_after_s: float) -> None:
        """A 429: nothing goes until ``retry_after_s`` from ``now``."""
        self.throttled += 1
        self._paused_until = max(self._paused_until, now + max(retry_after_s, 0.0))

    @property
    def paused_until(self) -> float:
        return self._paused_until


def retry_after(headers: dict[str, str], now_unix: float, default_s: float = 1.0) -> float:
    """Seconds to wait after a 429: ``Retry-After`` (seconds), else
    ``X-Ratelimit-Reset`` (unix seconds), else ``default_s``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, relative in (("retry-after", True), ("x-ratelimit-reset", False)):
        raw = lowered.get(name)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        seconds = value if relative else value - now_unix
        if math.isfinite(seconds) and 0 <= seconds <= 300:
            return seconds
    return default_s
