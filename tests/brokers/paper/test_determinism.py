"""The same recorded feed and the same orders give the same fills, byte for byte: the
real AMZN day of 2012-06-21, replayed in fresh interpreters with different hash seeds,
and through the naive book."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from brokers.paper.naive import NaiveBook
from tests.brokers.paper.amzn_day import PLAN, digest, replay
from tests.support.timing import timeout

ROOT = Path(__file__).resolve().parents[3]


def run_fresh(seed: str, book: str = "indexed") -> tuple[str, int]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-m", "tests.brokers.paper.amzn_day", book],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout(12),
        check=True,
    )
    sha, count = done.stdout.split()
    return sha, int(count)


def test_the_amzn_day_replays_identically() -> None:
    events = replay()
    here = digest(events)
    assert digest(replay()) == here  # twice in this process
    assert digest(replay(NaiveBook)) == here  # the reference book agrees
    first = run_fresh("1")
    second = run_fresh("2")
    assert first == second == (here, len(events))
    assert run_fresh("3", "naive") == first


def test_the_day_exercises_every_kind_of_order() -> None:
    events = replay()
    kinds = Counter(str(e["kind"]) for e in events)
    for kind in (
        "accepted",
        "held",
        "new",
        "triggered",
        "partial_fill",
        "fill",
        "canceled",
        "replaced",
        "cancel_rejected",
    ):
        assert kinds[kind], kind
    reasons = {e.get("reason") for e in events}
    assert {"ioc_remainder", "fok_not_fillable", "oco_sibling_filled"} <= reasons
    ordered = {str(e["orderId"]).split(".")[0] for e in events}
    assert len(ordered) == len(PLAN) - 1  # every request but the cancel made an order
    # Fills are at real prices of the day and every fill time is an exchange time.
    prices = [float(str(e["fill"]["price"])) for e in events if "fill" in e]  # type: ignore[index]
    assert prices and all(220.51 <= p <= 226.03 for p in prices)
