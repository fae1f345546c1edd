"""The generic cell rate algorithm (GCRA): a token bucket stored as one number.

The state of a key is its *theoretical arrival time* (TAT): the time at which the
bucket would be full again. With emission interval ``T = 1 / rate`` and a bucket of
``burst`` cells, a request of ``cost`` cells arriving at ``now`` is allowed when

    max(TAT, now) + cost*T - burst*T <= now

and then ``TAT := max(TAT, now) + cost*T``. So ``burst`` requests may arrive at
once, after which one more is allowed every ``T``; ``retry_after`` is exactly how
long until the request would be allowed, and nothing needs a timer or a refill task.

Time is integer microseconds, not float seconds: a TAT is advanced by ``T`` over and
over, and float additions would drift; with integers the in-process limiter and the
Redis Lua script (whose numbers are doubles, exact for integers below 2**53 µs, about
285 years) compute bit-identical decisions. ``rate`` is turned into an integer ``T``
once (``interval_us``), so 3/s means one request every 333,333 µs.

Only differences between times are used, so any clock with a fixed epoch works
(``time.monotonic_ns``, Redis ``TIME``). A clock that steps back can only make
decisions stricter (``max(TAT, now)`` keeps the later TAT); a clock that jumps
forward at most refills the bucket, never beyond ``burst``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MICROS = 1_000_000


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one request against one key."""

    allowed: bool
    #: The key's TAT after the decision (unchanged when denied), in the clock's µs.
    new_tat: int
    #: 0 when allowed; otherwise how long until the same request would be allowed.
    retry_after_us: int
    #: Cost-1 requests that would still be allowed at the same instant.
    remaining: int
    #: How long until the bucket is full again (``new_tat - now``, at least 0).
    reset_after_us: int

    @property
    def retry_after_s(self) -> float:
        return self.retry_after_us / MICROS

    @property
    def reset_after_s(self) -> float:
        return self.reset_after_us / MICROS


def interval_us(rate_per_s: float) -> int:
    """The emission interval for ``rate_per_s``, rounded to whole µs (at least 1)."""
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError(f"rate_per_s must be a positive number, not {rate_per_s!r}")
    return max(1, round(MICROS / rate_per_s))


def validate(interval: int, burst: int, cost: int) -> None:
    """Reject arguments no state could ever satisfy: they are the caller's bug."""
    if interval < 1:
        raise ValueError(f"interval must be at least 1 µs, not {interval}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst}")
    if not 0 <= cost <= burst:
        # A request costing more than the whole bucket would be denied forever.
        raise ValueError(f"cost must be between 0 and burst ({burst}), not {cost}")


def decide(tat: int | None, now: int, rate_per_s: float, burst: int, cost: int = 1) -> Decision:
    """Decide a request of ``cost`` cells at ``now`` (µs) for a key whose TAT is ``tat``.

    ``tat`` is ``None`` for a key never seen (or forgotten): the same as a full bucket.
    ``cost=0`` reads the state without consuming anything (always allowed).
    """
    return decide_interval(tat, now, interval_us(rate_per_s), burst, cost)


def decide_interval(
    tat: int | None, now: int, interval: int, burst: int, cost: int = 1
) -> Decision:
    """``decide`` with the emission interval already in µs (what the Lua script gets)."""
    validate(interval, burst, cost)
    start = now if tat is None or tat < now else tat
    capacity = interval * burst
    new_tat = start + interval * cost
    allow_at = new_tat - capacity
    if now >= allow_at:
        return Decision(
            allowed=True,
            new_tat=new_tat,
            retry_after_us=0,
            remaining=max(0, (capacity - (new_tat - now)) // interval),
            reset_after_us=new_tat - now,
        )
    # Denied: the state is not touched, so a client hammering a full bucket does not
    # push its own recovery further away (and cannot be starved by its retries).
    return Decision(
        allowed=False,
        new_tat=start,
        retry_after_us=allow_at - now,
        remaining=max(0, (capacity - (start - now)) // interval),
        reset_after_us=start - now,
    )
