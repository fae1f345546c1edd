"""Errors raised when a limit says no, or when the limiter itself cannot answer."""

from __future__ import annotations

from collections import Counter

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


#: Refusals of this process by (limit, tier), for ``/metrics``. Counted where the
#: refusal is made (a refusal is rare next to the requests allowed, and each one is
#: already an exception), so no allowed request pays for the count.
DENIALS: Counter[tuple[str, str]] = Counter()


class RateLimited(TickgraphError):
    """Too many requests: ``extensions.retryAfter`` says how many seconds to wait.

    ``kind`` names what was used up ("requests", "orders", "login_ip"...) and ``tier``
    whose; both only label the refusal in the metrics and are not sent to the client."""

    code = "RATE_LIMITED"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float,
        kind: str,
        tier: str = "",
        **extensions: object,
    ) -> None:
        retry_after = ceil_ms(retry_after_s)
        super().__init__(message, retryAfter=retry_after, **extensions)
        self.retry_after_s = retry_after
        DENIALS[(kind, tier)] += 1


class LimiterUnavailable(Unavailable):
    """The shared limiter (Redis) did not answer and this limit fails closed."""
