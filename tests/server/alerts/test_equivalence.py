"""The indexed engine fires exactly what the naive loop over every alert fires.

Seeded random workloads: random alerts of every operator, operand kind and trigger
mode, on prices and thresholds drawn from a coarse grid (so ties, touches and gaps
happen all the time), random trades/quotes/indicator updates (with invalid and
unknown values), bar closes and revised closes, and alert mutations in between.
Every call's result must be identical, Fired values included.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from server.alerts import AlertEngine, FireState, InvalidAlert, validate
from server.alerts.naive import NaiveEngine
from server.market.timeframes import Timeframe
from tests.server.alerts.helpers import MIN, T0

SYMBOLS = ("AAA", "BBB")
GRID = [95.0 + 0.5 * i for i in range(21)]  # 95.0 .. 105.0
INDICATORS = {"EMA(3)": 1, "MACD(12,26,9)": 3, "BB(20,2)": 3}
OUTPUTS = {
    "EMA(3)": ["value"],
    "MACD(12,26,9)": ["macd", "signal", "hist"],
    "BB(20,2)": ["upper", "middle", "lower"],
}
COMPARE = ["greaterThan", "lessThan", "crossing", "crossingUp", "crossingDown"]
CHANNEL = ["enteringChannel", "exitingChannel", "insideChannel", "outsideChannel"]
MOVING = ["movingUp", "movingDown"]


def operand(rng: random.Random) -> Any:
    if rng.random() < 0.7:
        return rng.choice(["LAST", "LAST", "BID", "ASK", "MID"])
    key = rng.choice(list(INDICATORS))
    return {
        "indicator": key,
        "timeframe": rng.choice(["1m", "5m"]),
        "output": rng.choice(OUTPUTS[key]),
    }


def bound(rng: random.Random) -> Any:
    return rng.choice(GRID) if rng.random() < 0.7 else operand(rng)


def condition(rng: random.Random) -> dict[str, Any]:
    op = rng.choice(COMPARE * 3 + CHANNEL + MOVING)
    left = operand(rng)
    c: dict[str, Any] = {"left": left, "op": op}
    if op in COMPARE:
        if rng.random() < 0.8:
            c["value"] = rng.choice(GRID)
        else:
            right = operand(rng)
            while right == left:
                right = operand(rng)
            c["right"] = right
    elif op in CHANNEL:
        lo, hi = bound(rng), bound(rng)
        if isinstance(lo, float) and isinstance(hi, float) and lo > hi:
            lo, hi = hi, lo
        c["channel"] = {"lower": lo, "upper": hi}
    else:
        pct = rng.random() < 0.5
        c["move"] = {
            "by": rng.choice([0.5, 1.0, 2.0]) if not pct else rng.choice([0.5, 1.0, 1.5]),
            "percent": pct,
            "bars": rng.randint(1, 4),
            "timeframe": rng.choice(["1m", "1m", "5m"]),
        }
    return c


def definition(rng: random.Random, now: int) -> dict[str, Any]:
    n = rng.choice([1, 1, 1, 2, 2, 3])
    mode = rng.choice(["once", "oncePerBar", "oncePerBarClose", "everyTime", "everyTime"])
    trigger: dict[str, Any] = {"mode": mode}
    if mode in ("oncePerBar", "oncePerBarClose"):
        trigger["timeframe"] = rng.choice(["1m", "1m", "5m"])
    if mode == "everyTime":
        trigger["cooldownMs"] = rng.choice([0, 0, 1000, 5000, 30000])
    d: dict[str, Any] = {
        "symbol": rng.choice(SYMBOLS),
        "conditions": [condition(rng) for _ in range(n)],
        "trigger": trigger,
        "enabled": rng.random() < 0.9,
    }
    if rng.random() < 0.2:
        d["expiresMs"] = now + rng.randint(1, 10 * MIN)
    return d


class Twin:
    """Both engines, fed the same calls; every result compared."""

    def __init__(self, scan_all: bool = False) -> None:
        self.fast = AlertEngine()
        self.slow = NaiveEngine(scan_all=scan_all)
        self.fired = 0

    def call(self, name: str, *args: Any) -> None:
        a = getattr(self.fast, name)(*args)
        b = getattr(self.slow, name)(*args)
        if name == "expire":
            a, b = sorted(a), sorted(b)
        assert a == b, (name, args)
        if name.startswith("on_"):
            self.fired += len(a)


def run(seed: int, events: int, n_alerts: int, scan_all: bool = False) -> int:
    rng = random.Random(seed)
    twin = Twin(scan_all)
    t = T0 + rng.randint(0, MIN)
    ids: list[str] = []
    next_id = 0
    revisions: dict[str, int] = {}

    def add_one() -> None:
        nonlocal next_id
        next_id += 1
        aid = f"a{next_id}"
        alert = validate(definition(rng, t), alert_id=aid, owner="u", now_ms=t)
        twin.call("add", alert)
        ids.append(aid)
        revisions[aid] = 0

    for _ in range(n_alerts):
        add_one()
    minute = t // MIN
    for _ in range(events):
        t += rng.choice([0, 1, 10, 250, 1000, 4000, 15000])
        if t // MIN != minute:  # bar closes of the bars that ended
            for m in range(minute, t // MIN):
                for sym in SYMBOLS:
                    twin.call("on_bar_close", sym, Timeframe.M1, m * MIN, t)
                    if (m + 1) % 5 == 0:
                        twin.call("on_bar_close", sym, Timeframe.M5, (m - 4) * MIN, t)
            minute = t // MIN
        sym = rng.choice(SYMBOLS)
        r = rng.random()
        if r < 0.35:
            price = (
                rng.choice(GRID) if rng.random() < 0.97 else rng.choice([0.0, float("nan"), -1.0])
            )
            twin.call("on_trade", sym, price, t)
        elif r < 0.65:
            bid = rng.choice(GRID)
            ask = bid + rng.choice([0.0, 0.5, 1.0])
            if rng.random() < 0.05:
                bid = 0.0
            if rng.random() < 0.03:
                ask = float("nan")
            twin.call("on_quote", sym, bid, ask, t)
        elif r < 0.8:
            tfm = rng.choice([Timeframe.M1, Timeframe.M5])
            batch: dict[str, tuple[float, ...] | None] = {}
            for key in rng.sample(list(INDICATORS), rng.randint(1, 2)):
                if rng.random() < 0.08:
                    batch[key] = None
                else:
                    vals = [rng.choice(GRID) for _ in range(INDICATORS[key])]
                    if rng.random() < 0.05:
                        vals[0] = float("nan")
                    batch[key] = tuple(vals)
            bar = tfm.bucket(t)[0]
            if len(batch) == 1 and rng.random() < 0.5:
                ((key, one),) = batch.items()
                twin.call("on_indicator", sym, tfm, key, one, t, bar, False)
            else:
                twin.call("on_indicators", sym, tfm, batch, t, bar, False)
        elif r < 0.83:  # a revised close of the last bar
            twin.call("on_bar_close", sym, Timeframe.M1, (minute - 1) * MIN, t)
        elif r < 0.86:
            add_one()
        elif r < 0.88 and ids:
            aid = ids.pop(rng.randrange(len(ids)))
            twin.call("remove", aid)
        elif r < 0.92 and ids:
            aid = rng.choice(ids)
            twin.call("set_enabled", aid, rng.random() < 0.6)
        elif r < 0.94 and ids:
            aid = rng.choice(ids)
            revisions[aid] += rng.choice([0, 1])
            d = definition(rng, t)
            d["revision"] = revisions[aid]
            alert = validate(d, alert_id=aid, owner="u", now_ms=t)
            twin.call("update", alert)
        elif r < 0.96 and ids:  # a restart of one alert: remove, restore with its state
            aid = rng.choice(ids)
            stored = twin.fast.get(aid)
            state = twin.fast.fire_state(aid)
            assert stored is not None and state is not None
            assert state == twin.slow.fire_state(aid)
            twin.call("remove", aid)
            twin.call("restore", stored, state)
        else:
            twin.call("expire", t)
    return twin.fired


@pytest.mark.parametrize("seed", range(40))
def test_indexed_engine_fires_exactly_like_the_naive_loop(seed: int) -> None:
    run(seed, events=1500, n_alerts=25)


@pytest.mark.parametrize("seed", range(5))
def test_many_alerts_on_few_thresholds(seed: int) -> None:
    fired = run(1000 + seed, events=1500, n_alerts=150)
    assert fired > 0


def test_the_naive_loop_over_all_alerts_agrees_too() -> None:
    run(3000, events=1500, n_alerts=40, scan_all=True)


def test_the_workload_fires_every_mode_and_operator() -> None:
    """Guard against a vacuous comparison: the random workload really fires a lot."""
    total = sum(run(2000 + s, events=1500, n_alerts=25) for s in range(5))
    assert total > 200


def test_restore_of_unknown_state_is_refused_consistently() -> None:
    twin = Twin()
    alert = validate(
        {"symbol": "AAA", "conditions": [{"left": "LAST", "op": "greaterThan", "value": 1}]},
        alert_id="x",
        owner="u",
        now_ms=0,
    )
    twin.call("restore", alert, FireState(done=True))
    with pytest.raises(InvalidAlert):
        twin.fast.add(alert)
    with pytest.raises(InvalidAlert):
        twin.slow.add(alert)
