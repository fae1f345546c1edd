"""Trigger modes, expiry, enable/disable, updates and restarts (exactly-once keys)."""

from __future__ import annotations

import pytest

from server.alerts import AlertEngine, AlertStatus, FireState, InvalidAlert
from server.market.timeframes import Timeframe
from tests.server.alerts.helpers import (
    ENGINES,
    MIN,
    T0,
    Engine,
    alert,
    cond,
    fired_at,
    ind,
    keys,
    trades,
)

GT = cond("LAST", "greaterThan", value=100)
UP = cond("LAST", "crossingUp", value=100)
PER_BAR = {"mode": "oncePerBar", "timeframe": "1m"}
CLOSE = {"mode": "oncePerBarClose", "timeframe": "1m"}
M1 = Timeframe.M1


def every(ms: int) -> dict[str, object]:
    return {"mode": "everyTime", "cooldownMs": ms}


# ---------------------------------------------------------------- once


@pytest.mark.parametrize("make", ENGINES)
def test_once_fires_once_and_is_done(make: type[Engine]) -> None:
    e = make()
    e.add(alert(GT))
    r = trades(e, [101, 99, 102, 103])
    assert fired_at(r) == [0] and keys(r) == ["r0:once"]
    assert r[0][0].done
    assert e.fire_state("a1") == FireState(True, T0, None)


def test_a_done_alert_is_disarmed() -> None:
    e = AlertEngine()
    e.add(alert(cond(ind("RSI(14)"), "greaterThan", value=70)))
    assert e.required_indicators()
    e.on_indicator("AMZN", M1, "RSI(14)", (71.0,), T0, T0, False)
    assert e.status("a1") is AlertStatus.DONE
    assert not e.required_indicators()
    assert e.open_count("alice") == 0


# ---------------------------------------------------------------- once per bar


@pytest.mark.parametrize("make", ENGINES)
def test_once_per_bar_level_fires_at_the_first_event_of_each_bar(make: type[Engine]) -> None:
    e = make()
    e.add(alert(GT, trigger=PER_BAR))
    # 20 s apart: bars of 3 trades; true throughout except the 99.
    r = trades(e, [101, 102, 103, 99, 104, 105, 106, 107, 108], step=20_000)
    assert fired_at(r) == [0, 4, 6]
    assert keys(r) == [f"r0:bar:{T0}", f"r0:bar:{T0 + MIN}", f"r0:bar:{T0 + 2 * MIN}"]
    assert r[4][0].bar_start_ms == T0 + MIN


@pytest.mark.parametrize("make", ENGINES)
def test_once_per_bar_edge_fires_at_most_once_per_bar(make: type[Engine]) -> None:
    e = make()
    e.add(alert(cond("LAST", "crossing", value=100), trigger=PER_BAR))
    r = trades(e, [99, 101, 99, 101, 99, 101], step=15_000)
    # 1st bar: t=0,15,30,45 s -> crossings at 15 s (fires), 30 s, 45 s (same bar);
    # 2nd bar: 60 s (99: a crossing down) fires, 75 s does not.
    assert fired_at(r) == [1, 4]


# ---------------------------------------------------------------- every time


@pytest.mark.parametrize("make", ENGINES)
def test_every_time_level_repeats_after_the_cooldown(make: type[Engine]) -> None:
    e = make()
    e.add(alert(GT, trigger=every(2500)))
    r = trades(e, [101, 101, 101, 101, 101, 101], step=1000)
    assert fired_at(r) == [0, 3]  # 0 s, then the first event at or after 2.5 s
    assert keys(r) == [f"r0:t:{T0}", f"r0:t:{T0 + 3000}"]


@pytest.mark.parametrize("make", ENGINES)
def test_every_time_edge_in_the_cooldown_is_skipped_not_postponed(make: type[Engine]) -> None:
    e = make()
    e.add(alert(UP, trigger=every(10_000)))
    r = trades(e, [99, 101, 99, 101, 102, 103, 99, 101], step=2000)
    # crossings at 2 s (fires), 6 s (cooldown), 14 s (fires).
    assert fired_at(r) == [1, 7]


@pytest.mark.parametrize("make", ENGINES)
def test_zero_cooldown_fires_at_most_once_per_millisecond(make: type[Engine]) -> None:
    e = make()
    e.add(alert(cond("LAST", "crossing", value=100), trigger=every(0)))
    r = trades(e, [99, 101, 99, 101], step=0)
    assert fired_at(r) == [1]
    assert fired_at([e.on_trade("AMZN", 99.0, T0 + 1)]) == [0]


# ---------------------------------------------------------------- once per bar close


@pytest.mark.parametrize("make", ENGINES)
def test_once_per_bar_close_is_evaluated_only_at_closes(make: type[Engine]) -> None:
    e = make()
    e.add(alert(GT, trigger=CLOSE))
    assert fired_at(trades(e, [101, 102], step=1000)) == []  # ticks never fire it
    e.on_trade("AMZN", 99.0, T0 + 50_000)
    assert e.on_bar_close("AMZN", M1, T0, T0 + MIN) == []  # closed at 99
    e.on_trade("AMZN", 101.0, T0 + MIN + 1)
    assert e.on_bar_close("AMZN", Timeframe.M5, T0, T0 + 5 * MIN) == []  # other timeframe
    (f,) = e.on_bar_close("AMZN", M1, T0 + MIN, T0 + 2 * MIN)
    assert (f.key, f.bar_start_ms, f.conditions[0].left) == (
        f"r0:close:{T0 + MIN}",
        T0 + MIN,
        101.0,
    )
    # A revised close of the same bar does not fire again; the next bar does.
    assert e.on_bar_close("AMZN", M1, T0 + MIN, T0 + 2 * MIN + 5) == []
    assert e.on_bar_close("AMZN", M1, T0 + 2 * MIN, T0 + 3 * MIN) != []


@pytest.mark.parametrize("make", ENGINES)
def test_once_per_bar_close_edges_compare_consecutive_closes(make: type[Engine]) -> None:
    e = make()
    e.add(alert(UP, trigger=CLOSE))
    for i, (intrabar, close) in enumerate([(150, 99), (150, 99.5), (50, 101), (150, 102)]):
        start = T0 + i * MIN
        e.on_trade("AMZN", intrabar, start + 1)  # intrabar swings do not count
        e.on_trade("AMZN", close, start + 2)
        r = e.on_bar_close("AMZN", M1, start, start + MIN)
        assert bool(r) == (i == 2), i
        if r:
            assert (r[0].conditions[0].previous_left, r[0].conditions[0].left) == (99.5, 101.0)


# ---------------------------------------------------------------- expiry


@pytest.mark.parametrize("make", ENGINES)
def test_expiry_is_exclusive_and_reported_once(make: type[Engine]) -> None:
    e = make()
    e.add(alert(GT, trigger=every(0), expiresMs=T0 + 2000))
    r = trades(e, [101, 102, 103, 104], step=1000)
    assert fired_at(r) == [0, 1]  # not at T0 + 2000
    assert e.expire(T0 + 1999) == []
    assert e.expire(T0 + 2000) == ["a1"]
    assert e.expire(T0 + 9000) == []


def test_expired_status_and_the_owner_count() -> None:
    e = AlertEngine(max_per_user=1)
    e.add(alert(GT, expiresMs=T0))
    e.expire(T0)
    assert e.status("a1") is AlertStatus.EXPIRED
    e.add(alert(GT, id="a2"))  # the expired one no longer counts
    assert e.set_enabled("a1", True).enabled  # enabling an expired alert does not arm it
    assert e.status("a1") is AlertStatus.EXPIRED


# ---------------------------------------------------------------- enable / disable


@pytest.mark.parametrize("make", ENGINES)
def test_disabled_alerts_do_not_fire_and_rearm_with_a_fresh_baseline(make: type[Engine]) -> None:
    e = make()
    e.add(alert(UP, trigger=every(0)))
    e.on_trade("AMZN", 99.0, T0)
    e.set_enabled("a1", False)
    assert e.on_trade("AMZN", 101.0, T0 + 1) == []
    e.on_trade("AMZN", 99.0, T0 + 2)
    e.set_enabled("a1", True)
    # 99 was seen while disarmed: the first observation after re-arming is a baseline.
    assert e.on_trade("AMZN", 101.0, T0 + 3) == []
    e.on_trade("AMZN", 99.0, T0 + 4)
    assert e.on_trade("AMZN", 101.0, T0 + 5) != []


@pytest.mark.parametrize("make", ENGINES)
def test_a_level_fires_when_re_enabled(make: type[Engine]) -> None:
    e = make()
    e.add(alert(GT, enabled=False))
    assert e.on_trade("AMZN", 101.0, T0) == []
    e.set_enabled("a1", True)
    assert e.on_trade("AMZN", 101.5, T0 + 1) != []


def test_status_of_disabled_and_unknown_alerts() -> None:
    e = AlertEngine()
    e.add(alert(GT, enabled=False))
    assert e.status("a1") is AlertStatus.DISABLED
    assert e.status("nope") is None
    with pytest.raises(InvalidAlert):
        e.set_enabled("nope", True)


# ---------------------------------------------------------------- updates


@pytest.mark.parametrize("make", ENGINES)
def test_update_with_a_new_revision_fires_afresh(make: type[Engine]) -> None:
    e = make()
    e.add(alert(GT))
    (f,) = e.on_trade("AMZN", 101.0, T0)
    e.update(alert(cond("LAST", "greaterThan", value=105), revision=1))
    assert e.on_trade("AMZN", 104.0, T0 + 1) == []
    (g,) = e.on_trade("AMZN", 106.0, T0 + 2)
    assert (f.key, g.key) == ("r0:once", "r1:once")


@pytest.mark.parametrize("make", ENGINES)
def test_update_with_the_same_revision_keeps_the_firing_state(make: type[Engine]) -> None:
    e = make()
    e.add(alert(GT, trigger=PER_BAR))
    assert e.on_trade("AMZN", 101.0, T0) != []
    e.update(alert(cond("LAST", "greaterThan", value=90), trigger=PER_BAR))
    assert e.on_trade("AMZN", 101.0, T0 + 1) == []  # same bar, same key: no repeat
    assert e.on_trade("AMZN", 101.0, T0 + MIN) != []


@pytest.mark.parametrize("make", ENGINES)
def test_stale_revisions_are_refused(make: type[Engine]) -> None:
    e = make()
    e.add(alert(GT, revision=3))
    with pytest.raises(InvalidAlert):
        e.update(alert(GT, revision=2))


def test_update_keeps_the_movement_history_it_shares() -> None:
    e = AlertEngine()
    move = {"by": 1, "bars": 5, "timeframe": "1m"}
    e.add(alert(cond("LAST", "movingUp", move=move)))
    e.on_trade("AMZN", 100.0, T0 + 1)
    e.on_bar_close("AMZN", M1, T0, T0 + MIN)
    e.update(alert(cond("LAST", "movingUp", move={**move, "by": 2}), revision=1))
    (f,) = e.on_trade("AMZN", 102.0, T0 + MIN + 1)
    assert f.conditions[0].right == 100.0


# ---------------------------------------------------------------- restart


@pytest.mark.parametrize("make", ENGINES)
def test_restart_does_not_repeat_a_once_firing(make: type[Engine]) -> None:
    before = make()
    before.add(alert(GT))
    (f,) = before.on_trade("AMZN", 101.0, T0)
    after = make()  # a new process: same alert, persisted state
    after.restore(alert(GT), FireState.after(f))
    assert fired_at(trades(after, [101, 102, 103])) == []


@pytest.mark.parametrize("make", ENGINES)
def test_restart_does_not_repeat_a_bar(make: type[Engine]) -> None:
    before = make()
    before.add(alert(UP, trigger=PER_BAR))
    before.on_trade("AMZN", 99.0, T0)
    (f,) = before.on_trade("AMZN", 101.0, T0 + 1000)
    after = make()
    after.restore(alert(UP, trigger=PER_BAR), FireState.after(f))
    # The same crossing replayed after the restart, in the same bar: nothing.
    assert fired_at(trades(after, [99, 101, 99, 101], t0=T0, step=1000)) == []
    (g,) = next(r for r in trades(after, [99, 101], t0=T0 + MIN) if r)
    assert g.key == f"r0:bar:{T0 + MIN}"


@pytest.mark.parametrize("make", ENGINES)
def test_restart_keeps_the_every_time_cooldown(make: type[Engine]) -> None:
    before = make()
    before.add(alert(GT, trigger=every(10_000)))
    (f,) = before.on_trade("AMZN", 101.0, T0)
    after = make()
    after.restore(alert(GT, trigger=every(10_000)), FireState.after(f))
    # The replayed event and everything inside the cooldown: nothing, same keys never.
    assert after.on_trade("AMZN", 101.0, T0) == []
    assert after.on_trade("AMZN", 101.0, T0 + 9999) == []
    (g,) = after.on_trade("AMZN", 101.0, T0 + 10_000)
    assert g.key != f.key


@pytest.mark.parametrize("make", ENGINES)
def test_restart_of_a_bar_close_alert(make: type[Engine]) -> None:
    before = make()
    before.add(alert(GT, trigger=CLOSE))
    before.on_trade("AMZN", 101.0, T0 + 1)
    (f,) = before.on_bar_close("AMZN", M1, T0, T0 + MIN)
    after = make()
    after.restore(alert(GT, trigger=CLOSE), FireState.after(f))
    after.on_trade("AMZN", 101.0, T0 + 1)
    assert after.on_bar_close("AMZN", M1, T0, T0 + MIN) == []  # the close, replayed
    assert after.on_bar_close("AMZN", M1, T0 + MIN, T0 + 2 * MIN) != []


def test_fire_state_from_persisted_columns() -> None:
    def parse(key: str | None, rev: int = 2) -> FireState:
        return FireState.from_persisted(revision=rev, last_key=key, last_fired_ms=7, done=False)

    assert parse("r2:once") == FireState(False, 7, None)
    assert parse(f"r2:bar:{T0}") == FireState(False, 7, T0)
    assert parse(f"r2:close:{T0}") == FireState(False, 7, T0)
    assert parse(f"r2:t:{T0}") == FireState(False, T0, None)
    assert parse(f"r1:bar:{T0}") == FireState()  # an older revision's state
    assert parse(None) == FireState()
    assert parse("garbage") == FireState()
    done = FireState.from_persisted(revision=0, last_key="r0:once", last_fired_ms=7, done=True)
    assert done.done


def test_dedup_keys_are_deterministic_across_a_replay() -> None:
    def replay() -> list[str]:
        e = AlertEngine()
        e.add(alert(cond("LAST", "crossing", value=100), trigger=every(0)))
        return keys(trades(e, [99, 101, 99, 101, 102], step=700))

    assert replay() == replay()
    assert len(set(replay())) == len(replay())
