"""After a restart, the window since the last durable evaluation: re-evaluated from
Polygon's prints (the real client against a fake speaking ``/v3/trades``) for alerts
that read only the last price, announced as a GAP for the others."""

from __future__ import annotations

import uuid

from server.alerts import FireState, validate
from server.alerts.naive import NaiveEngine
from server.analytics import firing_of
from server.delivery.firings import Firing
from server.history.polygon import PolygonHistory
from server.services.alert_recovery import AlertRecovery, re_evaluable
from server.services.alerts import output_index
from streams.events import Trade
from streams.recording import load_events
from tests.support.data import AMZN_REPLAY, require
from tests.support.fake_polygon_rest import FakePolygonRest, trades_from_recording

W = 1_340_287_200_000  # 10:00: the last durable evaluation before the crash
T1 = W + 20 * 60_000  # 10:20: the first event after the restart


class Capture:
    def __init__(self) -> None:
        self.firings: list[Firing] = []

    def submit(self, firing: Firing) -> None:
        self.firings.append(firing)


def alert(i: int, conditions: list[dict[str, object]], trigger: dict[str, object]) -> object:
    return validate(
        {"symbol": "AMZN", "conditions": conditions, "trigger": trigger},
        alert_id=str(uuid.UUID(int=i)),
        owner="u",
        now_ms=0,
        max_per_user=100,
    )


async def test_the_missed_window_is_re_evaluated_from_prints_or_reported() -> None:
    dense = alert(
        1,
        [{"left": "LAST", "op": "greaterThan", "value": 222.0}],
        {"mode": "everyTime", "cooldownMs": 30_000},
    )
    crossing = alert(
        2,
        [{"left": "LAST", "op": "crossingUp", "value": 223.0}],
        {"mode": "oncePerBar", "timeframe": "1m"},
    )
    on_bid = alert(3, [{"left": "BID", "op": "lessThan", "value": 300.0}], {"mode": "once"})
    restored = [(dense, FireState()), (crossing, FireState()), (on_bid, FireState())]
    assert [re_evaluable(a) for a, _ in restored] == [True, True, False]  # type: ignore[arg-type]
    async with FakePolygonRest(api_key="k") as rest:
        rest.add_trades("AMZN", trades_from_recording(require(AMZN_REPLAY), "AMZN"))
        capture = Capture()
        recovery = AlertRecovery(
            PolygonHistory("k", base_url=rest.base_url),
            capture,  # type: ignore[arg-type]
            output_index,
            firing_of,
        )
        watch = recovery.arm(restored, {"AMZN": W})  # type: ignore[arg-type]
        assert watch == {"AMZN": W}
        recovery.on_resume("AMZN", T1)
        await recovery.wait()
    # The same alerts fed the window's prints by hand.
    naive = NaiveEngine(outputs=output_index)
    for a, _ in restored[:2]:
        naive.restore(a, FireState())  # type: ignore[arg-type]
    expected = [
        (f.alert_id, f.key, f.t_ms)
        for e in load_events(AMZN_REPLAY)
        if type(e) is Trade and W <= e.t < T1
        for f in naive.on_trade("AMZN", e.p, e.t)
    ]
    firings = [f for f in capture.firings if f.kind == "firing"]
    gaps = [f for f in capture.firings if f.kind == "gap"]
    assert len(expected) > 5
    assert [(str(f.alert_id), f.dedup_key, f.fired_at_ms) for f in firings] == expected
    (gap,) = gaps
    assert str(gap.alert_id) == on_bid.id  # type: ignore[attr-defined]
    assert (gap.payload["fromMs"], gap.payload["toMs"]) == (W, T1)
    assert recovery.re_evaluated == 2 and recovery.gaps == 1


async def test_without_prints_in_history_every_alert_gets_a_gap() -> None:
    only = alert(1, [{"left": "LAST", "op": "greaterThan", "value": 1.0}], {"mode": "once"})

    class NoPrints:
        async def trades(self, *_: object) -> None:
            return None

    capture = Capture()
    recovery = AlertRecovery(NoPrints(), capture, output_index, firing_of)  # type: ignore[arg-type]
    recovery.arm([(only, FireState())], {"AMZN": W})  # type: ignore[list-item]
    recovery.on_resume("AMZN", W - 5)  # the feed went back in time: nothing was missed
    recovery.arm([(only, FireState())], {"AMZN": W})  # type: ignore[list-item]
    recovery.on_resume("AMZN", T1)
    await recovery.wait()
    (gap,) = capture.firings
    assert gap.kind == "gap" and gap.dedup_key == f"gap:{W}:{T1}"
    assert "no prints" in gap.payload["reason"]
