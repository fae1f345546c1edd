"""After a restart, an engine restored from the ledger matches exactly as the engine that
never stopped: same events, fills, prices, quantities, fill ids, statuses and seqs."""

from __future__ import annotations

from collections import Counter

import pytest

from brokers.paper.matching import MatchingEngine
from tests.brokers.paper.helpers import ny
from tests.brokers.paper.restart import Recorder, restored, shapes
from tests.brokers.paper.workload import workload

SEEDS = range(16)
CUTS = (0.15, 0.3, 0.45, 0.6, 0.75, 0.9)


def _clean_cuts(a_steps: list[tuple[str, object]], seed: int) -> list[int]:
    """Cut points near each fraction where no fill has eaten into a symbol's last
    quote since it came: the displayed size left is then what the feed last said
    (the one thing the ledger cannot tell; ``docs/trading.md``, "Restart")."""
    probe = Recorder(MatchingEngine(start_ms=ny(9, 0)))
    clean = []
    for i, (kind, arg) in enumerate(a_steps):
        if not probe.eaten:
            clean.append(i)
        probe.step(kind, arg)
    cuts = []
    for fraction in CUTS:
        target = int(len(a_steps) * fraction)
        cut = next((i for i in clean if i >= target), None)
        if cut is not None and cut not in cuts:
            cuts.append(cut)
    assert len(cuts) >= 3, f"seed {seed}: too few clean cut points"
    return cuts


def test_restored_engine_emits_what_the_engine_that_never_stopped_emits() -> None:
    covered: Counter[str] = Counter()
    restarts = 0
    for seed in SEEDS:
        steps = list(workload(seed))
        for cut in _clean_cuts(steps, seed):
            a = Recorder(MatchingEngine(start_ms=ny(9, 0)))
            for kind, arg in steps[:cut]:
                a.step(kind, arg)
            b, caught_up = restored(a, steps[:cut])
            assert caught_up == [], "a complete ledger needs no catch-up"
            assert [v.order.id for v in b.engine.open_orders()] == [
                v.order.id for v in a.engine.open_orders()
            ]
            covered += shapes(b.engine)
            mark = len(a.out)
            for kind, arg in steps[cut:]:
                a.step(kind, arg)
                b.step(kind, arg)
            assert b.out == a.out[mark:], f"seed {seed}, restart before step {cut}"
            restarts += 1
    assert restarts >= 3 * len(SEEDS)
    # Every kind of open order went through a restart and kept matching.
    for shape in (
        "type:market",
        "type:limit",
        "type:stop",
        "type:stop_limit",
        "type:trailing_stop",
        "tif:day",
        "tif:gtc",
        "tif:opg",
        "tif:cls",
        "class:bracket",
        "class:oco",
        "status:held",
        "status:accepted",
        "status:new",
        "status:partially_filled",
        "triggered:stop",
        "triggered:stop_limit",
        "triggered:trailing_stop",
        "trailing with a water mark",
        "replacement",
        "extended hours",
        "working bracket take_profit",
        "working bracket stop_loss",
        "working oco take_profit",
        "working oco stop_loss",
    ):
        assert covered[shape], f"no restart covered {shape}: {sorted(covered)}"


@pytest.mark.parametrize("seed", range(4))
def test_restore_at_every_step_of_a_short_run(seed: int) -> None:
    """Restarting anywhere (not only at clean points) changes nothing until the next
    quote of a symbol whose displayed size we had eaten into; with no fills at all
    in between, the runs are identical from every cut."""
    steps = list(workload(100 + seed, steps=160))
    for cut in range(0, len(steps), 7):
        a = Recorder(MatchingEngine(start_ms=ny(9, 0)))
        for kind, arg in steps[:cut]:
            a.step(kind, arg)
        if a.eaten:
            continue
        b, _ = restored(a, steps[:cut])
        mark = len(a.out)
        for kind, arg in steps[cut:]:
            a.step(kind, arg)
            b.step(kind, arg)
        assert b.out == a.out[mark:], f"restart before step {cut}"
