"""Every wait in the test suite is scaled from this one constant.

Set ``TICKGRAPH_TEST_TIME_SCALE`` (e.g. 3) on a slow or loaded machine.
"""

from __future__ import annotations

import os

SCALE = float(os.environ.get("TICKGRAPH_TEST_TIME_SCALE", "1"))

#: The ordinary upper bound for "this should happen soon".
TIMEOUT = 10.0 * SCALE


def timeout(factor: float = 1.0) -> float:
    return TIMEOUT * factor
