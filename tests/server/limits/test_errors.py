"""``RATE_LIMITED`` errors carry ``retryAfter`` in seconds, rounded up to milliseconds."""

from __future__ import annotations

from server.errors import TickgraphError, Unavailable
from server.limits.errors import LimiterUnavailable, RateLimited, ceil_ms


def test_retry_after_is_rounded_up_to_whole_milliseconds() -> None:
    assert ceil_ms(0.007) == 0.007  # 0.007 * 1000 is 7.000000000000001 in floats
    assert ceil_ms(0.007001) == 0.008  # one microsecond more: the next millisecond
    assert ceil_ms(1.2) == 1.2
    assert ceil_ms(0.000001) == 0.001  # never 0 while a wait remains
    assert ceil_ms(0) == 0
    assert ceil_ms(-1) == 0


def test_rate_limited_extensions() -> None:
    err = RateLimited("slow down", retry_after_s=0.1234567, kind="login_ip", scope="ip")
    assert isinstance(err, TickgraphError)
    assert err.extensions == {"code": "RATE_LIMITED", "retryAfter": 0.124, "scope": "ip"}
    assert err.retry_after_s == 0.124
    assert err.message == "slow down"


def test_limiter_unavailable_is_unavailable() -> None:
    err = LimiterUnavailable("down")
    assert isinstance(err, Unavailable) and err.extensions["code"] == "UNAVAILABLE"
