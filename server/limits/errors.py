"""Errors raised when a limit says no, or when the limiter itself cannot answer."""

from __future__ import annotations

from server.errors import TickgraphError, Unavailable


def ceil_ms(seconds: float) -> float:
    """``seconds`` (to the microsecond, like every limiter time) rounded UP to whole ms.

    Rounding up matters: a client that waits exactly ``retryAfter`` must not be
    refused again for the fraction of a millisecond we rounded away. The value goes
    through integer µs first, because ``0.007 * 1000`` is ``7.000000000000001`` in
    floating point and a plain ``ceil`` would add a spurious millisecond.
    """
    micros = max(0, round(seconds * 1_000_000))
    return -(-micros // 1000) / 1000


class RateLimited(TickgraphError):
    """Too many requests: ``extensions.retryAfter`` says how many seconds to wait."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_s: float, **extensions: object) -> None:
        retry_after = ceil_ms(retry_after_s)
        super().__init__(message, retryAfter=retry_after, **extensions)
        self.retry_after_s = retry_after


class LimiterUnavailable(Unavailable):
    """The shared limiter (Redis) did not answer and this limit fails closed."""
