"""The GCRA arithmetic on its own: integer microseconds, no event loop, no clock."""

from __future__ import annotations

import random

import pytest

from server.limits.gcra import MICROS, Decision, decide, decide_interval, interval_us

MS = 1000


class Bucket:
    """One key's TAT, advanced only by allowed decisions (what both limiters store)."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.tat: int | None = None

    def hit(self, now: int, cost: int = 1) -> Decision:
        d = decide(self.tat, now, self.rate, self.burst, cost)
        if d.allowed:
            self.tat = d.new_tat
        return d


def test_burst_at_once_then_one_per_interval() -> None:
    b = Bucket(rate_per_s=10, burst=5)  # one cell per 100 ms
    t0 = 50 * MICROS
    first = [b.hit(t0) for _ in range(5)]
    assert all(d.allowed for d in first)
    assert [d.remaining for d in first] == [4, 3, 2, 1, 0]
    assert [d.reset_after_us for d in first] == [100 * MS, 200 * MS, 300 * MS, 400 * MS, 500 * MS]

    denied = b.hit(t0)
    assert not denied.allowed
    assert denied.retry_after_us == 100 * MS
    assert denied.retry_after_s == 0.1
    assert denied.new_tat == t0 + 500 * MS  # unchanged by the denial
    assert denied.remaining == 0

    # Steady state: exactly one request per interval, never two.
    for k in range(1, 50):
        now = t0 + k * 100 * MS
        assert b.hit(now).allowed
        assert not b.hit(now).allowed


def test_retry_after_is_exact_to_the_microsecond() -> None:
    b = Bucket(rate_per_s=3, burst=2)  # interval 333,333 µs
    t0 = 7 * MICROS + 123
    assert b.hit(t0).allowed and b.hit(t0 + 10).allowed
    denied = b.hit(t0 + 20)
    assert not denied.allowed
    wait = denied.retry_after_us
    assert wait == 333_333 - 20
    assert not decide(b.tat, t0 + 20 + wait - 1, 3, 2).allowed
    assert b.hit(t0 + 20 + wait).allowed


def test_denials_do_not_push_recovery_further_away() -> None:
    b = Bucket(rate_per_s=1, burst=1)
    assert b.hit(0).allowed
    for k in range(1, 1000):
        assert not b.hit(k * MS).allowed  # a thousand retries within the second
    assert b.hit(MICROS).allowed


def test_cost_greater_than_one() -> None:
    b = Bucket(rate_per_s=10, burst=5)
    d = b.hit(0, cost=3)
    assert d.allowed and d.remaining == 2 and d.reset_after_us == 300 * MS
    denied = b.hit(0, cost=3)
    assert not denied.allowed
    assert denied.remaining == 2  # two cost-1 requests would still fit
    assert denied.retry_after_us == 100 * MS  # one more cell is needed
    assert b.hit(0, cost=2).allowed
    assert b.hit(500 * MS, cost=5).allowed  # a full bucket pays for the whole burst


def test_cost_zero_reads_without_consuming() -> None:
    b = Bucket(rate_per_s=10, burst=5)
    b.hit(0, cost=2)
    peek = decide(b.tat, 0, 10, 5, cost=0)
    assert peek.allowed and peek.remaining == 3 and peek.new_tat == b.tat


def test_a_clock_stepping_back_never_grants_more() -> None:
    b = Bucket(rate_per_s=10, burst=5)
    t = 100 * MICROS
    for _ in range(5):
        assert b.hit(t).allowed
    # The clock steps back by a minute: still exhausted, and the wait grows by the step.
    back = b.hit(t - 60 * MICROS)
    assert not back.allowed
    assert back.retry_after_us == 60 * MICROS + 100 * MS
    # Back at the original time, the state is exactly as the step left it.
    assert b.hit(t + 100 * MS).allowed
    assert not b.hit(t + 100 * MS).allowed


def test_a_clock_jumping_forward_refills_no_more_than_the_burst() -> None:
    b = Bucket(rate_per_s=10, burst=5)
    b.hit(0)
    later = 10_000 * MICROS
    assert sum(b.hit(later).allowed for _ in range(20)) == 5


def test_never_more_than_burst_plus_rate_times_window() -> None:
    """The conformance bound of GCRA, on random arrivals and costs."""
    rng = random.Random(20240605)
    rate, burst = 7.0, 4
    interval = interval_us(rate)
    b = Bucket(rate, burst)
    now = 0
    granted: list[tuple[int, int]] = []  # (time, cost)
    for _ in range(3000):
        now += rng.choice([0, 0, 1, 50 * MS, 120 * MS, 400 * MS])
        cost = rng.choice([1, 1, 1, 2, 4])
        if b.hit(now, cost).allowed:
            granted.append((now, cost))
    assert len(granted) > 500
    times = [t for t, _ in granted]
    for i, start in enumerate(times):
        spent = 0
        for t, cost in granted[i:]:
            spent += cost
            # Cells granted in [start, t] never exceed burst + (t - start) / T.
            assert spent <= burst + (t - start) // interval


def test_remaining_is_what_a_burst_at_the_same_instant_would_get() -> None:
    rng = random.Random(7)
    b = Bucket(rate_per_s=4, burst=6)
    now = 0
    for _ in range(300):
        now += rng.randrange(0, 600 * MS)
        d = b.hit(now, rng.choice([1, 2, 3]))
        probe = Bucket(4, 6)
        probe.tat = b.tat
        extra = 0
        while probe.hit(now).allowed:
            extra += 1
        assert d.remaining == extra


def test_interval_is_rounded_to_whole_microseconds() -> None:
    assert interval_us(1) == MICROS
    assert interval_us(3) == 333_333
    assert interval_us(50 / 60) == 1_200_000
    assert interval_us(5 / 900) == 180 * MICROS
    assert interval_us(10_000_000) == 1  # never 0: that would mean "unlimited"


@pytest.mark.parametrize(
    ("rate", "burst", "cost"),
    [(0, 5, 1), (-1, 5, 1), (float("nan"), 5, 1), (float("inf"), 5, 1), (1, 0, 1), (1, 5, 6)],
)
def test_impossible_arguments_are_rejected(rate: float, burst: int, cost: int) -> None:
    with pytest.raises(ValueError):
        decide(None, 0, rate, burst, cost)


def test_negative_cost_is_rejected() -> None:
    with pytest.raises(ValueError, match="cost"):
        decide_interval(None, 0, 1000, 5, -1)
