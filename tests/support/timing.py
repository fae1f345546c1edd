"""Every wait in the test suite is scaled from this one constant.

Set ``TICKGRAPH_TEST_TIME_SCALE`` (e.g. 3) on a slow or loaded machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

SCALE = float(os.environ.get("TICKGRAPH_TEST_TIME_SCALE", "1"))

#: The ordinary upper bound for "this should happen soon".
TIMEOUT = 10.0 * SCALE


def timeout(factor: float = 1.0) -> float:
    return TIMEOUT * factor


async def eventually(check: Callable[[], bool], what: str, within: float = TIMEOUT) -> None:
    """Wait until ``check()`` holds, polling every 10 ms; fail naming ``what``."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.01)
