"""Progress of long command-line operations (``record``, ``replay``, ``migrate``).

tqdm, on stderr, and only when stderr is a terminal unless ``--progress`` forces it
(``--no-progress`` turns it off): stdout stays what scripts parse (``POLYGON_WS_URL=...``,
the final summary) and logs and CI output get no carriage-return redraws. tqdm rather
than rich: one small pure-Python package with no dependencies of its own, and it throttles
its own redraws, so calling ``update`` per frame costs a counter increment.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tqdm import tqdm


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr (default: only when stderr is a terminal)",
    )


def progress_wanted(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    return sys.stderr.isatty()


def progress_bar(
    enabled: bool, *, desc: str, unit: str, total: float | None = None, **options: Any
) -> tqdm[Any]:
    """A bar on stderr; when not ``enabled``, tqdm's no-op (same calls, no output)."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.25,
        **options,
    )
