"""Reconnect delays: exponential growth with jitter, capped, reset after a healthy run.

Pure: the random source is injected, so tests get exact sequences.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Equal-jitter exponential backoff.

    The n-th delay is drawn from ``[d/2, d]`` where ``d = min(maximum, initial * 2**n)``:
    half the delay is guaranteed (so a flapping upstream is never hammered) and the
    other half is random (so many processes restarting together spread out).
    """

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        multiplier: float = 2.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if initial <= 0 or maximum < initial or multiplier < 1:
            raise ValueError("need 0 < initial <= maximum and multiplier >= 1")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self._uniform = uniform
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * self.multiplier**self.attempt)
        self.attempt += 1
        return self._uniform(ceiling / 2, ceiling)

    def saturate(self) -> float:
        """Jump straight to the longest delay (e.g. when another client evicted us)."""
        self.attempt = max(self.attempt, 64)
        return self.next_delay()

    def reset(self) -> None:
        self.attempt = 0
