from __future__ import annotations

import pytest

from streams.backoff import Backoff


def upper(lo: float, hi: float) -> float:
    return hi


def lower(lo: float, hi: float) -> float:
    return lo


def test_grows_exponentially_to_the_cap_then_resets() -> None:
    b = Backoff(0.5, 8.0, uniform=upper)
    assert [b.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    b.reset()
    assert b.next_delay() == 0.5


def test_jitter_keeps_at_least_half() -> None:
    b = Backoff(1.0, 100.0, uniform=lower)
    assert [b.next_delay() for _ in range(3)] == [0.5, 1.0, 2.0]


def test_saturate_jumps_to_the_cap() -> None:
    assert Backoff(0.1, 30.0, uniform=upper).saturate() == 30.0


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)
